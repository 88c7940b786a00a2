package bootstrap

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/meshd/meshd/pkg/schema"
)

// configEntry is one entry of /debug/configz.
type configEntry struct {
	Kind            string `json:"kind"`
	Namespace       string `json:"namespace"`
	Name            string `json:"name"`
	ResourceVersion string `json:"resourceVersion"`
	Spec            any    `json:"spec"`
}

// configz lists the Istio config objects in the store (filter with ?kind=
// and ?namespace=), with their specs, as JSON.
func (s *Server) configz(w http.ResponseWriter, r *http.Request) {
	kindFilter, ns := r.URL.Query().Get("kind"), r.URL.Query().Get("namespace")
	out := []configEntry{}
	for _, k := range schema.IstioConfig {
		if kindFilter != "" && !strings.EqualFold(kindFilter, k.Name) {
			continue
		}
		for _, obj := range s.Store.List(k, ns) {
			out = append(out, configEntry{
				Kind: k.Name, Namespace: obj.GetNamespace(), Name: obj.GetName(),
				ResourceVersion: obj.GetResourceVersion(), Spec: schema.SpecOf(obj),
			})
		}
	}
	writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

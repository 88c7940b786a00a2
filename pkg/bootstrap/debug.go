package bootstrap

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshd/meshd/pkg/schema"
)

// registryService is one entry of /debug/registryz.
type registryService struct {
	Hostname  string             `json:"hostname"`
	Namespace string             `json:"namespace"`
	Name      string             `json:"name"`
	ClusterIP string             `json:"clusterIP,omitempty"`
	Ports     []registryPort     `json:"ports"`
	Endpoints []registryEndpoint `json:"endpoints"`
}

type registryPort struct {
	Name     string `json:"name,omitempty"`
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
}

type registryEndpoint struct {
	Address string `json:"address"`
	Port    int32  `json:"port,omitempty"`
	Ready   bool   `json:"ready"`
	Pod     string `json:"pod,omitempty"`
}

// registryz lists the Kubernetes services in the store with their ports and
// endpoints, as JSON.
func (s *Server) registryz(w http.ResponseWriter, r *http.Request) {
	out := []registryService{}
	for _, svc := range s.Store.Services.List(r.URL.Query().Get("namespace")) {
		rs := registryService{
			Hostname:  fmt.Sprintf("%s.%s.svc.%s", svc.Name, svc.Namespace, s.Options.TrustDomain),
			Namespace: svc.Namespace, Name: svc.Name, ClusterIP: svc.Spec.ClusterIP,
			Ports: []registryPort{}, Endpoints: []registryEndpoint{},
		}
		for _, p := range svc.Spec.Ports {
			rs.Ports = append(rs.Ports, registryPort{Name: p.Name, Port: p.Port, Protocol: portProtocol(p)})
		}
		for _, es := range s.Store.EndpointSlicesFor(svc.Namespace, svc.Name) {
			for _, ep := range es.Endpoints {
				ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
				pod := ""
				if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
					pod = ep.TargetRef.Name
				}
				for _, addr := range ep.Addresses {
					if len(es.Ports) == 0 {
						rs.Endpoints = append(rs.Endpoints, registryEndpoint{Address: addr, Ready: ready, Pod: pod})
					}
					for _, p := range es.Ports {
						if p.Port != nil {
							rs.Endpoints = append(rs.Endpoints, registryEndpoint{Address: addr, Port: *p.Port, Ready: ready, Pod: pod})
						}
					}
				}
			}
		}
		out = append(out, rs)
	}
	writeJSON(w, out)
}

// portProtocol names a port's protocol the way Istio selects it: appProtocol
// first, then the port name's prefix ("http-web" is HTTP), else TCP.
func portProtocol(p corev1.ServicePort) string {
	name := strings.ToLower(p.Name)
	if p.AppProtocol != nil && *p.AppProtocol != "" {
		name = strings.ToLower(*p.AppProtocol)
	}
	prefix, _, _ := strings.Cut(name, "-")
	switch prefix {
	case "http", "http2", "grpc", "https", "tls", "tcp", "mongo", "redis", "mysql", "udp":
		return strings.ToUpper(prefix)
	}
	if p.Protocol == corev1.ProtocolUDP {
		return "UDP"
	}
	return "TCP"
}

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

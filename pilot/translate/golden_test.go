package translate_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/meshd/meshd/pilot/model"
	"github.com/meshd/meshd/pilot/translate"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

var update = flag.Bool("update", false, "rewrite testdata/out from the current output (and prune outputs without an input)")

// proxyDoc is the test-only document that names the proxy of a scenario.
type proxyDoc struct {
	Kind     string         `json:"kind"`
	ID       string         `json:"id"`
	Metadata map[string]any `json:"metadata"`
	// Names lists extra resource names the proxy asks for by name (as
	// proxyless clients do), per type: listeners, routes, clusters, endpoints.
	Names map[string][]string `json:"names"`
	// Locality is the node's locality (region/zone/subzone).
	Locality string `json:"locality"`
}

var typeKeys = []struct{ key, url string }{
	{"clusters", translate.ClusterType},
	{"endpoints", translate.EndpointType},
	{"listeners", translate.ListenerType},
	{"routes", translate.RouteType},
}

// loadScenario reads store objects and the proxy from one input file.
func loadScenario(t testing.TB, path string) (*store.Store, *proxyDoc) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewMemory()
	var pd *proxyDoc
	for i, doc := range strings.Split(string(data), "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var head struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		if head.Kind == "Proxy" {
			pd = &proxyDoc{}
			if err := yaml.UnmarshalStrict([]byte(doc), pd); err != nil {
				t.Fatalf("%s: proxy: %v", path, err)
			}
			continue
		}
		obj, kind, err := schema.Decode([]byte(doc))
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		if err := st.Indexer(kind).Add(obj); err != nil {
			t.Fatal(err)
		}
	}
	if pd == nil {
		t.Fatalf("%s: no Proxy document", path)
	}
	st.MarkSynced()
	return st, pd
}

func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 15 {
		t.Fatalf("want at least 15 scenarios, have %d", len(inputs))
	}
	want := map[string]bool{}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		out := filepath.Join("testdata/out", name+".yaml")
		want[out] = true
		t.Run(name, func(t *testing.T) {
			got := render(t, in)
			if *update {
				if err := os.WriteFile(out, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("%v (run go test ./pilot/translate -run TestGolden -update)", err)
			}
			if !bytes.Equal(got, exp) {
				t.Errorf("%s differs from the generated config; diff it against:\n%s\n(regenerate with -update)", out, got)
			}
		})
	}
	if *update {
		outs, _ := filepath.Glob("testdata/out/*.yaml")
		for _, o := range outs {
			if !want[o] {
				if err := os.Remove(o); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// render translates one scenario and returns the expected-output YAML,
// checking on the way that every resource passes ValidateAll.
func render(t *testing.T, in string) []byte {
	st, pd := loadScenario(t, in)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	snap, _ := model.NewBuilder(log, model.Options{}).Build(nil, st, nil)
	p, err := model.NewProxy(pd.ID, pd.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	if pd.Locality != "" {
		p.Locality = model.ParseLocality(pd.Locality)
	}
	p = p.WithPod(st)
	view := translate.New(log).View(snap, p)

	doc := map[string]any{}
	for _, tk := range typeKeys {
		rs := append([]*translate.Resource(nil), view.All(tk.url)...)
		for _, name := range pd.Names[tk.key] {
			r := view.Get(tk.url, name)
			if r == nil {
				t.Errorf("%s %q: not generated", tk.key, name)
				continue
			}
			rs = append(rs, r)
		}
		var list []any
		for _, r := range rs {
			m, err := r.Message()
			if err != nil {
				t.Fatal(err)
			}
			validate(t, r.Name, m)
			list = append(list, toGeneric(t, m))
		}
		if list != nil {
			doc[tk.key] = list
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func toGeneric(t *testing.T, m proto.Message) any {
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// validate runs ValidateAll on m and on every message packed in an Any
// inside it (filters, protocol options), since ValidateAll stops at Anys.
func validate(t testing.TB, name string, m proto.Message) {
	t.Helper()
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Errorf("%s: %T fails ValidateAll: %v", name, m, err)
		}
	}
	walkAnys(m.ProtoReflect(), func(a *anypb.Any) {
		inner, err := a.UnmarshalNew()
		if err != nil {
			t.Errorf("%s: unpacking %s: %v", name, a.GetTypeUrl(), err)
			return
		}
		validate(t, fmt.Sprintf("%s/%s", name, a.GetTypeUrl()), inner)
	})
}

func walkAnys(m protoreflect.Message, fn func(*anypb.Any)) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		fn(a)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walkAnys(mv.Message(), fn)
					return true
				})
			}
		case fd.IsList():
			if fd.Message() != nil {
				for i := 0; i < v.List().Len(); i++ {
					walkAnys(v.List().Get(i).Message(), fn)
				}
			}
		case fd.Message() != nil:
			walkAnys(v.Message(), fn)
		}
		return true
	})
}

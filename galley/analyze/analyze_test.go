package analyze_test

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshd/meshd/galley/analyze"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/source/configdir"
	"github.com/meshd/meshd/pkg/store"
)

// memStore builds a store from YAML documents, as a source would.
func memStore(t *testing.T, docs ...string) *store.Store {
	t.Helper()
	s := store.NewMemory()
	for _, d := range docs {
		obj, kind, err := schema.Decode([]byte(d))
		if err != nil {
			t.Fatalf("decode: %v\n%s", err, d)
		}
		if obj.GetNamespace() == "" {
			obj.SetNamespace(metav1.NamespaceDefault)
		}
		if err := s.Indexer(kind).Add(obj); err != nil {
			t.Fatal(err)
		}
		s.Notify(store.Event{Kind: kind, Type: store.Added, New: obj})
	}
	s.MarkSynced()
	return s
}

// summary is "CODE objects" for each finding, sorted: what a test compares.
func summary(fs []analyze.Finding) []string {
	var out []string
	for _, f := range fs {
		objs := make([]string, len(f.Objects))
		for i, o := range f.Objects {
			objs[i] = o.String()
		}
		out = append(out, f.Code+" "+strings.Join(objs, ", "))
	}
	slices.Sort(out)
	return out
}

func assertFindings(t *testing.T, got []analyze.Finding, want ...string) {
	t.Helper()
	slices.Sort(want)
	if g := summary(got); !slices.Equal(g, want) {
		var lines []string
		for _, f := range got {
			lines = append(lines, f.String())
		}
		t.Errorf("findings:\n  got  %q\n  want %q\nin full:\n  %s", g, want, strings.Join(lines, "\n  "))
	}
}

// TestPitfalls loads a config directory with each pitfall of the seed notes
// through the real file-mode loader, and expects exactly one finding each.
func TestPitfalls(t *testing.T) {
	s, err := configdir.Load(slog.New(slog.DiscardHandler), "testdata/pitfalls")
	if err != nil {
		t.Fatal(err)
	}
	got := analyze.Analyze(s, analyze.Options{})
	assertFindings(t, got,
		"MESHD0003 VirtualService shop/api-routes, VirtualService shop/web-routes, Gateway shop/ingress",
		"MESHD0005 VirtualService shop/api",
		"MESHD0007 DestinationRule shop/payments",
		"MESHD0008 VirtualService shop/api, DestinationRule shop/api",
		"MESHD0009 DestinationRule shop/web, Service shop/web",
		"MESHD0010 Pod shop/worker-1",
		"MESHD0011 VirtualService shop/admin",
	)
	if !analyze.HasErrors(got) {
		t.Error("HasErrors is false with error-level findings")
	}
	// The messages say what to fix, with the field.
	for _, want := range []string{
		`both bound to gateway shop/ingress for host "shop.example.com" with overlapping matches (api-routes http[0].match[0] (uri prefix /api/v1) and web-routes http[0].match[0] (uri prefix /api))`,
		`spec.http[0].route[0].destination.host: host "api-v2" (api-v2.shop.svc.cluster.local) matches no Service or ServiceEntry`,
		`spec.http[1].route[0].destination.subset: subset "v2" of host "api" (api.shop.svc.cluster.local) is not defined by its DestinationRule`,
		`spec.subsets[1]: subset "canary" selects none of the 1 pods of Service shop/web`,
		`no Service selects this pod (labels app=worker)`,
		`spec.gateways[0]: gateway shop/admin-gateway does not exist`,
	} {
		if !slices.ContainsFunc(got, func(f analyze.Finding) bool { return strings.Contains(f.Message, want) }) {
			t.Errorf("no finding says %q", want)
		}
	}
	// Most severe first.
	if got[0].Level != analyze.Error || got[len(got)-1].Level != analyze.Warning {
		t.Errorf("findings not ordered by level: %v", got)
	}
}

// TestBookinfo: Bookinfo, complete, is clean.
func TestBookinfo(t *testing.T) {
	s, err := configdir.Load(slog.New(slog.DiscardHandler), "testdata/bookinfo")
	if err != nil {
		t.Fatal(err)
	}
	assertFindings(t, analyze.Analyze(s, analyze.Options{}))
}

const (
	svcA = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {selector: {app: a}, ports: [{port: 80}]}\n"
	podA = "apiVersion: v1\nkind: Pod\nmetadata: {name: a-1, labels: {app: a, version: v1}}\nspec: {containers: [{name: a, image: a}]}\nstatus: {phase: Running}\n"
	gw   = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]}\n"
)

func vs(name, spec string) string {
	return fmt.Sprintf("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: %s}\nspec: %s\n", name, spec)
}

func dr(name, spec string) string {
	return fmt.Sprintf("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: %s}\nspec: %s\n", name, spec)
}

func TestAnalyzers(t *testing.T) {
	for _, tc := range []struct {
		name string
		docs []string
		want []string
	}{
		{"exact and prefix overlap on one host",
			[]string{svcA, podA, gw,
				vs("x", `{hosts: [a.example.com], gateways: [gw], http: [{match: [{uri: {exact: /api/users}}], route: [{destination: {host: a}}]}]}`),
				vs("z", `{hosts: [a.example.com], gateways: [gw], http: [{match: [{uri: {prefix: /api}}], route: [{destination: {host: a}}]}]}`)},
			[]string{"MESHD0003 VirtualService default/x, VirtualService default/z, Gateway default/gw"}},
		{"disjoint prefixes do not conflict",
			[]string{svcA, podA, gw,
				vs("x", `{hosts: [a.example.com], gateways: [gw], http: [{match: [{uri: {prefix: /users}}], route: [{destination: {host: a}}]}]}`),
				vs("z", `{hosts: [a.example.com], gateways: [gw], http: [{match: [{uri: {prefix: /orders}}], route: [{destination: {host: a}}]}]}`)},
			nil},
		{"different ports, methods or header values do not conflict",
			[]string{svcA, podA, gw,
				vs("x", `{hosts: [a.example.com], gateways: [gw], http: [{match: [{port: 80, uri: {prefix: /}}, {method: {exact: GET}, uri: {prefix: /}}, {headers: {x-v: {exact: "1"}}}], route: [{destination: {host: a}}]}]}`),
				vs("z", `{hosts: [a.example.com], gateways: [gw], http: [{match: [{port: 8080, method: {exact: POST}, headers: {x-v: {exact: "2"}}}], route: [{destination: {host: a}}]}]}`)},
			nil},
		{"a regex that matches the other's exact path conflicts",
			[]string{svcA, podA, gw,
				vs("x", `{hosts: [a.example.com], gateways: [gw], http: [{match: [{uri: {regex: "/users/[0-9]+"}}], route: [{destination: {host: a}}]}]}`),
				vs("z", `{hosts: [a.example.com], gateways: [gw], http: [{match: [{uri: {exact: /users/42}}], route: [{destination: {host: a}}]}]}`)},
			[]string{"MESHD0003 VirtualService default/x, VirtualService default/z, Gateway default/gw"}},
		{"routes without matches on one host conflict",
			[]string{svcA, podA, gw,
				vs("x", `{hosts: [a.example.com], gateways: [default/gw], http: [{route: [{destination: {host: a}}]}]}`),
				vs("z", `{hosts: [a.example.com], gateways: [gw.default], http: [{route: [{destination: {host: a}}]}]}`)},
			[]string{"MESHD0003 VirtualService default/x, VirtualService default/z, Gateway default/gw", "MESHD0002 VirtualService default/z"}},
		{"a wildcard host overlapping a specific one is shadowed, a warning",
			[]string{svcA, podA, gw,
				vs("x", `{hosts: ["*.example.com"], gateways: [gw], http: [{route: [{destination: {host: a}}]}]}`),
				vs("z", `{hosts: [a.example.com], gateways: [gw], http: [{route: [{destination: {host: a}}]}]}`)},
			[]string{"MESHD0004 VirtualService default/x, VirtualService default/z, Gateway default/gw"}},
		{"a match restricted to another gateway does not count",
			[]string{svcA, podA, gw,
				"apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: other}\nspec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]}\n",
				vs("x", `{hosts: [a.example.com], gateways: [gw, other], http: [{match: [{gateways: [other], uri: {prefix: /}}], route: [{destination: {host: a}}]}]}`),
				vs("z", `{hosts: [a.example.com], gateways: [gw], http: [{route: [{destination: {host: a}}]}]}`)},
			nil},
		{"short name hint for svc.namespace",
			[]string{svcA, podA, vs("x", `{hosts: [a], http: [{route: [{destination: {host: a.default}}]}]}`)},
			[]string{"MESHD0005 VirtualService default/x"}},
		{"a ServiceEntry wildcard defines the host",
			[]string{"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext}\nspec: {hosts: ['*.example.com'], ports: [{number: 443, name: tls, protocol: TLS}], resolution: NONE}\n",
				vs("x", `{hosts: [api.example.com], tls: [{match: [{sniHosts: [api.example.com]}], route: [{destination: {host: api.example.com}}]}]}`)},
			nil},
		{"a ServiceEntry exported only to its namespace is not seen elsewhere",
			[]string{"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: other}\nspec: {hosts: [api.example.com], exportTo: [.], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}\n",
				vs("x", `{hosts: [api.example.com], http: [{route: [{destination: {host: api.example.com}}]}]}`)},
			[]string{"MESHD0005 VirtualService default/x", "MESHD0006 VirtualService default/x"}},
		{"a mesh virtual service for an unknown host",
			[]string{svcA, podA, vs("x", `{hosts: [nothing], http: [{route: [{destination: {host: a}}]}]}`)},
			[]string{"MESHD0006 VirtualService default/x"}},
		{"a subset with no DestinationRule at all",
			[]string{svcA, podA, vs("x", `{hosts: [a], http: [{route: [{destination: {host: a, subset: v1}}]}]}`)},
			[]string{"MESHD0008 VirtualService default/x"}},
		{"a DestinationRule in another namespace defines the subset by FQDN",
			[]string{svcA, podA,
				"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a, namespace: ops}\nspec: {host: a.default.svc.cluster.local, subsets: [{name: v1, labels: {version: v1}}]}\n",
				vs("x", `{hosts: [a], http: [{route: [{destination: {host: a, subset: v1}}]}]}`)},
			nil},
		{"a Service without pods does not make subsets suspect",
			[]string{svcA, dr("a", `{host: a, subsets: [{name: v9, labels: {version: v9}}]}`)},
			nil},
		{"a WorkloadEntry selected by the Service counts as a pod",
			[]string{svcA, podA,
				"apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm}\nspec: {address: 192.0.2.9, labels: {app: a, version: vm}}\n",
				dr("a", `{host: a, subsets: [{name: v1, labels: {version: v1}}, {name: vm, labels: {version: vm}}]}`)},
			nil},
		{"system and finished pods need no Service",
			[]string{"apiVersion: v1\nkind: Pod\nmetadata: {name: dns, namespace: kube-system}\nspec: {containers: [{name: c, image: c}]}\n",
				"apiVersion: v1\nkind: Pod\nmetadata: {name: job-1}\nspec: {containers: [{name: c, image: c}]}\nstatus: {phase: Succeeded}\n"},
			nil},
		{"invalid config and warnings are reported",
			[]string{svcA, podA, vs("x", `{hosts: ["*"], http: [{route: [{destination: {host: a, subset: v1}, weight: 50}, {destination: {host: a, subset: v2}, weight: 30}]}]}`),
				dr("a", `{host: a, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v1}}]}`)},
			[]string{"MESHD0001 VirtualService default/x", "MESHD0002 VirtualService default/x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertFindings(t, analyze.Analyze(memStore(t, tc.docs...), analyze.Options{}), tc.want...)
		})
	}
}

func TestShortNameHint(t *testing.T) {
	got := analyze.Analyze(memStore(t, svcA, podA, vs("x", `{hosts: [a], http: [{route: [{destination: {host: a.default}}]}]}`)), analyze.Options{})
	if len(got) != 1 || !strings.Contains(got[0].Message, "a Service is named by its short name or in full, e.g. a.default.svc.cluster.local") {
		t.Errorf("got %v", got)
	}
}

func TestCodesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, a := range analyze.Analyzers {
		if seen[a.Code] || seen[a.Name] || a.Description == "" {
			t.Errorf("analyzer %s %s: duplicate or undocumented", a.Code, a.Name)
		}
		seen[a.Code], seen[a.Name] = true, true
	}
}

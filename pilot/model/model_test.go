package model_test

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/meshd/meshd/pilot/model"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

func TestParseNodeID(t *testing.T) {
	for name, tc := range map[string]struct {
		id      string
		wantErr string
	}{
		"sidecar":        {id: "sidecar~10.0.0.1~pod-1.ns~ns.svc.cluster.local"},
		"router":         {id: "router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local"},
		"ipv6":           {id: "sidecar~2001:db8::1~pod.ns~ns.svc.cluster.local"},
		"too few fields": {id: "sidecar~10.0.0.1~pod.ns", wantErr: "got 3 fields"},
		"bad type":       {id: "proxy~10.0.0.1~pod.ns~ns.svc.cluster.local", wantErr: `unknown node type "proxy"`},
		"bad ip":         {id: "sidecar~not-an-ip~pod.ns~ns.svc.cluster.local", wantErr: "is not an IP address"},
		"empty pod":      {id: "sidecar~10.0.0.1~~ns.svc.cluster.local", wantErr: "empty POD.NAMESPACE"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, _, _, err := model.ParseNodeID(tc.id)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewProxyFromMetadataAlone(t *testing.T) {
	p, err := model.NewProxy("sidecar~192.0.2.7~vm-1.billing~billing.svc.cluster.local", map[string]any{
		"LABELS":          map[string]any{"app": "billing", "version": "v2"},
		"SERVICE_ACCOUNT": "billing-vm",
		"INSTANCE_IPS":    "192.0.2.7,2001:db8::7",
		"GENERATOR":       "grpc",
		"ISTIO_VERSION":   "1.28.0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != "vm-1.billing" || p.Namespace != "billing" || p.PodName != "vm-1" || p.Labels["version"] != "v2" ||
		p.ServiceAccount != "billing-vm" || len(p.IPs) != 2 || p.Generator != "grpc" {
		t.Fatalf("proxy %+v", p)
	}
	// No Pod in the store: the metadata is all there is.
	if q := p.WithPod(store.NewMemory()); q.HasPod || q.Labels["app"] != "billing" {
		t.Fatalf("proxy without a pod %+v", q)
	}
	if _, err := model.NewProxy("sidecar~10.0.0.1~p.ns~ns.svc.cluster.local", map[string]any{"LABELS": map[string]any{"a": 1.0}}); err == nil ||
		!strings.Contains(err.Error(), `label "a"`) {
		t.Fatalf("non-string label: %v", err)
	}
}

func TestPortProtocol(t *testing.T) {
	h2c, grpc, bogus := "kubernetes.io/h2c", "GRPC", "x-custom"
	for _, tc := range []struct {
		name string
		app  *string
		want model.Protocol
	}{
		{"http", nil, model.HTTP}, {"http-web", nil, model.HTTP}, {"http2-api", nil, model.HTTP2},
		{"grpc", nil, model.GRPC}, {"grpc-web", nil, model.GRPCWeb}, {"tcp-db", nil, model.TCP},
		{"tls", nil, model.TLS}, {"https-admin", nil, model.HTTPS}, {"mysql", nil, model.MySQL},
		{"web", nil, model.Unsupported}, {"web", &h2c, model.HTTP2}, {"tcp", &grpc, model.GRPC},
		{"http", &bogus, model.HTTP},
	} {
		if got := model.PortProtocol(tc.name, tc.app); got != tc.want {
			t.Errorf("PortProtocol(%q, %v) = %s, want %s", tc.name, tc.app, got, tc.want)
		}
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func add(t *testing.T, st *store.Store, ch *model.Changes, k schema.Kind, obj schema.Object) {
	t.Helper()
	old, existed := st.Get(k, obj.GetNamespace(), obj.GetName())
	if err := st.Indexer(k).Update(obj); err != nil {
		t.Fatal(err)
	}
	e := store.Event{Kind: k, Type: store.Added, New: obj}
	if existed {
		e.Type, e.Old = store.Updated, old
	}
	if ch != nil {
		ch.Add(e)
	}
}

func svc(name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.1", Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
}

func slice(name string, ips ...string) *discoveryv1.EndpointSlice {
	port, pname := int32(8080), "http"
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		Ports:      []discoveryv1.EndpointPort{{Name: &pname, Port: &port}},
	}
	for _, ip := range ips {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}})
	}
	return es
}

func TestIncrementalBuild(t *testing.T) {
	st := store.NewMemory()
	for _, n := range []string{"a", "b"} {
		add(t, st, nil, schema.Service, svc(n))
		add(t, st, nil, schema.EndpointSlice, slice(n, "10.0.0.1"))
	}
	b := model.NewBuilder(quiet(), model.Options{})
	s1, d1 := b.Build(nil, st, nil)
	if !d1.Full || len(s1.Services) != 2 {
		t.Fatalf("first build: %+v, %d services", d1, len(s1.Services))
	}
	a1, b1 := s1.Service("a.default.svc.cluster.local", "default"), s1.Service("b.default.svc.cluster.local", "default")

	// An endpoint change touches only a's endpoints.
	ch := &model.Changes{}
	add(t, st, ch, schema.EndpointSlice, slice("a", "10.0.0.1", "10.0.0.2"))
	s2, d2 := b.Build(s1, st, ch)
	if !d2.EndpointsOnly() || len(d2.Endpoints) != 1 || !d2.Hosts["a.default.svc.cluster.local"] {
		t.Fatalf("delta %+v", d2)
	}
	a2, b2 := s2.Service("a.default.svc.cluster.local", "default"), s2.Service("b.default.svc.cluster.local", "default")
	if a2 != a1 || b2 != b1 || s2.ServicesVersion != s1.ServicesVersion {
		t.Fatal("an endpoint change rebuilt services")
	}
	if s2.Endpoints(b2) != s1.Endpoints(b1) || s2.Endpoints(a2) == s1.Endpoints(a1) {
		t.Fatal("endpoints reused wrongly")
	}
	if got := len(s2.Endpoints(a2).For(80)); got != 2 {
		t.Fatalf("a has %d endpoints, want 2", got)
	}

	// A no-op update (a resync, a label we do not read) changes nothing.
	ch = &model.Changes{}
	same := svc("b")
	same.Annotations = map[string]string{"unrelated": "x"}
	add(t, st, ch, schema.Service, same)
	_, d3 := b.Build(s2, st, ch)
	if !d3.Empty() {
		t.Fatalf("a no-op update gave delta %+v", d3)
	}

	// A port change is a service change.
	ch = &model.Changes{}
	changed := svc("b")
	changed.Spec.Ports[0].Name = "grpc"
	add(t, st, ch, schema.Service, changed)
	s4, d4 := b.Build(s2, st, ch)
	if !d4.ServicesChanged || d4.EndpointsOnly() || s4.Service("b.default.svc.cluster.local", "default") == b2 {
		t.Fatalf("delta %+v", d4)
	}
	if p := s4.Service("b.default.svc.cluster.local", "default").Ports[0]; p.Protocol != model.GRPC {
		t.Fatalf("port %+v", p)
	}
}

func TestInvalidServiceEntryHostSkipped(t *testing.T) {
	st := store.NewMemory()
	se := &networkingv1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: "default"}}
	se.Spec.Hosts = []string{"*.example.com", "api.example.com"}
	se.Spec.Resolution = networking.ServiceEntry_DNS
	se.Spec.Ports = []*networking.ServicePort{{Number: 443, Name: "https", Protocol: "HTTPS"}}
	add(t, st, nil, schema.ServiceEntry, se)
	b := model.NewBuilder(quiet(), model.Options{})
	var skipped []string
	b.OnSkip = func(kind string) { skipped = append(skipped, kind) }
	snap, _ := b.Build(nil, st, nil)
	if len(skipped) != 1 || skipped[0] != "ServiceEntry" {
		t.Fatalf("skipped %v", skipped)
	}
	if len(snap.Services) != 1 || snap.Services[0].Hostname != "api.example.com" {
		t.Fatalf("services %v: the valid host must still be served", snap.Services)
	}
	if eps := snap.Endpoints(snap.Services[0]).For(443); len(eps) != 1 || eps[0].Address != "api.example.com" {
		t.Fatalf("DNS endpoints %+v", eps)
	}
}

// A VirtualService or DestinationRule that fails validation (it bypassed
// the webhook) is left out of the snapshot and counted; the valid ones stay.
func TestInvalidTrafficConfigSkipped(t *testing.T) {
	st := store.NewMemory()
	bad := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "default"}}
	bad.Spec.Hosts = []string{"reviews"}
	bad.Spec.Http = []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "reviews"}, Weight: -1}}}}
	good := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "good", Namespace: "default"}}
	good.Spec.Hosts = []string{"ratings"}
	good.Spec.Http = []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "ratings"}}}}}
	badDR := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "default"}}
	add(t, st, nil, schema.VirtualService, bad)
	add(t, st, nil, schema.VirtualService, good)
	add(t, st, nil, schema.DestinationRule, badDR) // no host
	b := model.NewBuilder(quiet(), model.Options{})
	var skipped []string
	b.OnSkip = func(kind string) { skipped = append(skipped, kind) }
	snap, _ := b.Build(nil, st, nil)
	if len(skipped) != 2 {
		t.Fatalf("skipped %v, want the bad VirtualService and DestinationRule", skipped)
	}
	if len(snap.VirtualServices) != 1 || snap.VirtualServices[0].Name != "good" || len(snap.DestinationRules) != 0 {
		t.Fatalf("snapshot kept %d VirtualServices, %d DestinationRules", len(snap.VirtualServices), len(snap.DestinationRules))
	}
}

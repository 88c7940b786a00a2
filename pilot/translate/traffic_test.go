package translate_test

import (
	"strings"
	"testing"

	"github.com/meshd/meshd/pilot/model"
	"github.com/meshd/meshd/pilot/translate"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

func apply(t *testing.T, st *store.Store, ch *model.Changes, doc string) {
	t.Helper()
	obj, kind, err := schema.Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	typ := store.Added
	if _, ok, _ := st.Indexer(kind).Get(obj); ok {
		typ = store.Updated
		err = st.Indexer(kind).Update(obj)
	} else {
		err = st.Indexer(kind).Add(obj)
	}
	if err != nil {
		t.Fatal(err)
	}
	ch.Add(store.Event{Kind: kind, Type: typ, New: obj})
}

func marshalled(t *testing.T, r *translate.Resource) string {
	t.Helper()
	if r == nil {
		return ""
	}
	m, err := r.Message()
	if err != nil {
		t.Fatal(err)
	}
	return m.(interface{ String() string }).String()
}

// A VirtualService or DestinationRule change reaches proxies through the
// translator's caches: their versions are part of the cache keys of the
// virtual hosts, proxyless routes and clusters built from them.
// (ROUND_ROBIN is Envoy's zero value: the cluster just loses LEAST_REQUEST.)
func TestTrafficConfigChangesInvalidateCaches(t *testing.T) {
	st := meshOf(t, 4)
	b := model.NewBuilder(quiet(), model.Options{})
	snap, _ := b.Build(nil, st, nil)
	tr := translate.New(quiet())
	sidecar := func(s *model.Snapshot) *translate.View {
		return tr.View(s, proxy(t, "sidecar~10.0.0.1~a.ns-1~ns-1.svc.cluster.local", nil))
	}
	grpc := func(s *model.Snapshot) *translate.View {
		return tr.View(s, proxy(t, "sidecar~10.0.0.2~g.ns-1~ns-1.svc.cluster.local", map[string]any{"GENERATOR": "grpc"}))
	}
	const host = "svc-1.ns-1.svc.cluster.local"
	before := marshalled(t, sidecar(snap).Get(translate.RouteType, "80"))
	beforeGRPC := marshalled(t, grpc(snap).Get(translate.RouteType, host+":7070"))

	step := func(doc string) *model.Snapshot {
		ch := &model.Changes{}
		apply(t, st, ch, doc)
		var next *model.Snapshot
		next, _ = b.Build(snap, st, ch)
		snap = next
		return next
	}
	s2 := step(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-1, namespace: ns-1}
spec:
  host: svc-1
  subsets: [{name: v1, labels: {version: v1}}]
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}`)
	if c := marshalled(t, sidecar(s2).Get(translate.ClusterType, "outbound|80|v1|"+host)); c == "" || strings.Contains(c, "LEAST_REQUEST") {
		t.Fatalf("subset cluster after the DestinationRule: %q", c)
	}
	if c := marshalled(t, grpc(s2).Get(translate.ClusterType, "outbound|7070|v1|"+host)); c == "" || strings.Contains(c, "LEAST_REQUEST") {
		t.Fatalf("proxyless subset cluster after the DestinationRule: %q", c)
	}
	s3 := step(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-1, namespace: ns-1}
spec:
  hosts: [svc-1]
  http: [{route: [{destination: {host: svc-1, subset: v1}}]}]`)
	after := marshalled(t, sidecar(s3).Get(translate.RouteType, "80"))
	if after == before || !strings.Contains(after, "outbound|80|v1|"+host) {
		t.Fatalf("route 80 did not pick up the VirtualService:\n%s", after)
	}
	afterGRPC := marshalled(t, grpc(s3).Get(translate.RouteType, host+":7070"))
	if afterGRPC == beforeGRPC || !strings.Contains(afterGRPC, "outbound|7070|v1|"+host) {
		t.Fatalf("proxyless route did not pick up the VirtualService:\n%s", afterGRPC)
	}
	if alias := marshalled(t, grpc(s3).Get(translate.RouteType, "svc-1:7070")); !strings.Contains(alias, "outbound|7070|v1|"+host) {
		t.Fatalf("proxyless alias route did not pick up the VirtualService:\n%s", alias)
	}
	// Removing the subset from the rule drops the VirtualService's route
	// (unknown subset) without breaking the others.
	s4 := step(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-1, namespace: ns-1}
spec:
  host: svc-1`)
	final := marshalled(t, sidecar(s4).Get(translate.RouteType, "80"))
	if strings.Contains(final, "outbound|80|v1|"+host) || !strings.Contains(final, "outbound|80||svc-2.ns-2.svc.cluster.local") {
		t.Fatalf("route 80 after the subset went away:\n%s", final)
	}
}

// Once a DestinationRule balances by locality, load assignments depend on
// where the proxy runs: proxies in one locality share them, proxies in
// another get their own.
func TestLocalityKeysEndpoints(t *testing.T) {
	st := meshOf(t, 2)
	b := model.NewBuilder(quiet(), model.Options{})
	ch := &model.Changes{}
	apply(t, st, ch, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-1, namespace: ns-1}
spec:
  host: svc-1
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3}
    loadBalancer: {localityLbSetting: {distribute: [{from: "r1/*", to: {"r1/*": 100}}]}}`)
	snap, _ := b.Build(nil, st, nil)
	tr := translate.New(quiet())
	at := func(id, loc string) *translate.View {
		p := proxy(t, id, nil)
		p.Locality = model.ParseLocality(loc)
		return tr.View(snap, p)
	}
	const eds = "outbound|80||svc-1.ns-1.svc.cluster.local"
	a := at("sidecar~10.0.0.1~a.ns-1~ns-1.svc.cluster.local", "r1/z1")
	a2 := at("sidecar~10.0.0.2~b.ns-1~ns-1.svc.cluster.local", "r1/z1")
	far := at("sidecar~10.0.0.3~c.ns-1~ns-1.svc.cluster.local", "r2/z1")
	if a.Get(translate.EndpointType, eds) != a2.Get(translate.EndpointType, eds) {
		t.Fatal("two proxies in one locality got different copies of a load assignment")
	}
	// The endpoints have no locality: r1/* sends them nothing from r1, while
	// a proxy in r2 matches no rule and keeps them all.
	if got, want := marshalled(t, a.Get(translate.EndpointType, eds)), marshalled(t, far.Get(translate.EndpointType, eds)); got == want {
		t.Fatalf("proxies in r1 and r2 got the same load assignment:\n%s", got)
	}
}

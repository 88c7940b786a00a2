package translate_test

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/meshd/meshd/pilot/model"
	"github.com/meshd/meshd/pilot/translate"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

func proxy(t testing.TB, id string, meta map[string]any) *model.Proxy {
	t.Helper()
	p, err := model.NewProxy(id, meta)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Proxies with the same sharing key get the very same resources, and an
// endpoint change rebuilds only the endpoints of the service it touched.
func TestResourcesSharedAndReused(t *testing.T) {
	st := meshOf(t, 20)
	b := model.NewBuilder(quiet(), model.Options{})
	snap, _ := b.Build(nil, st, nil)
	tr := translate.New(quiet())
	a := tr.View(snap, proxy(t, "sidecar~10.0.0.1~a.ns-1~ns-1.svc.cluster.local", nil))
	c := tr.View(snap, proxy(t, "sidecar~10.0.0.2~c.ns-1~ns-1.svc.cluster.local", nil))
	const svc0 = "outbound|7070||svc-0.ns-0.svc.cluster.local"
	const svc1 = "outbound|7070||svc-1.ns-1.svc.cluster.local"
	if a.Get(translate.ClusterType, svc0) != c.Get(translate.ClusterType, svc0) {
		t.Fatal("two proxies in one namespace got different copies of a cluster")
	}
	if a.Get(translate.RouteType, "80") != c.Get(translate.RouteType, "80") {
		t.Fatal("two proxies in one namespace got different copies of a route")
	}
	other := tr.View(snap, proxy(t, "sidecar~10.0.0.3~o.ns-2~ns-2.svc.cluster.local", nil))
	if a.Get(translate.ClusterType, svc0) != other.Get(translate.ClusterType, svc0) {
		t.Fatal("a cluster was not shared across namespaces although nothing in it depends on the namespace")
	}

	// Scale svc-0: a new snapshot that shares every unchanged service.
	es, _ := st.EndpointSlices.Get("ns-0", "svc-0-1")
	es = es.DeepCopy()
	es.Endpoints = es.Endpoints[:1]
	if err := st.Indexer(schema.EndpointSlice).Update(es); err != nil {
		t.Fatal(err)
	}
	ch := &model.Changes{}
	ch.Add(store.Event{Kind: schema.EndpointSlice, Type: store.Updated, New: es})
	snap2, delta := b.Build(snap, st, ch)
	if !delta.EndpointsOnly() || len(delta.Endpoints) != 1 {
		t.Fatalf("delta %+v: want endpoints of one service only", delta)
	}
	a2 := tr.View(snap2, proxy(t, "sidecar~10.0.0.1~a.ns-1~ns-1.svc.cluster.local", nil))
	if a2.Get(translate.ClusterType, svc0) != a.Get(translate.ClusterType, svc0) {
		t.Fatal("an endpoint change rebuilt an EDS cluster")
	}
	if a2.Get(translate.EndpointType, svc1) != a.Get(translate.EndpointType, svc1) {
		t.Fatal("an endpoint change rebuilt another service's endpoints")
	}
	if a2.Get(translate.EndpointType, svc0) == a.Get(translate.EndpointType, svc0) {
		t.Fatal("the changed service's endpoints were not rebuilt")
	}
	if a2.Get(translate.ListenerType, "0.0.0.0_80") != a.Get(translate.ListenerType, "0.0.0.0_80") {
		t.Fatal("an endpoint change rebuilt a listener")
	}
}

// Route configurations assembled from cached virtual hosts are byte for
// byte what serializing the whole message gives.
func TestAssembledRoutesMatchMarshal(t *testing.T) {
	st := meshOf(t, 30)
	snap, _ := model.NewBuilder(quiet(), model.Options{}).Build(nil, st, nil)
	v := translate.New(quiet()).View(snap, proxy(t, "sidecar~10.0.0.1~a.ns-1~ns-1.svc.cluster.local", nil))
	routes := v.All(translate.RouteType)
	if len(routes) == 0 {
		t.Fatal("no routes")
	}
	for _, r := range routes {
		m, err := r.Message()
		if err != nil {
			t.Fatal(err)
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, r.Any.GetValue()) {
			t.Fatalf("route %s: assembled bytes differ from proto.Marshal", r.Name)
		}
	}
}

package translate_test

import (
	"testing"

	"github.com/meshd/meshd/pilot/model"
	"github.com/meshd/meshd/pilot/translate"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

// Router proxies are keyed by the Gateways their labels select: equal
// selections share resources, other labels get no gateway listeners, a
// Gateway change rebuilds them, and sidecars keep their config.
func TestRouterKeyedByGateways(t *testing.T) {
	st, _ := loadScenario(t, "testdata/in/gateway-http.yaml")
	b := model.NewBuilder(quiet(), model.Options{})
	snap, _ := b.Build(nil, st, nil)
	tr := translate.New(quiet())
	ingress := map[string]any{"NAMESPACE": "istio-system", "LABELS": map[string]any{"istio": "ingressgateway"}}
	gw1 := tr.View(snap, proxy(t, "router~10.1.0.50~gw-1.istio-system~istio-system.svc.cluster.local", ingress))
	gw2 := tr.View(snap, proxy(t, "router~10.1.0.51~gw-2.istio-system~istio-system.svc.cluster.local", ingress))
	l1 := gw1.Get(translate.ListenerType, "0.0.0.0_8080")
	if l1 == nil || l1 != gw2.Get(translate.ListenerType, "0.0.0.0_8080") {
		t.Fatalf("routers selected by the same Gateway: listeners %v and %v, want one shared copy", l1, gw2.Get(translate.ListenerType, "0.0.0.0_8080"))
	}
	egress := map[string]any{"NAMESPACE": "istio-system", "LABELS": map[string]any{"istio": "egressgateway"}}
	other := tr.View(snap, proxy(t, "router~10.1.0.52~eg-1.istio-system~istio-system.svc.cluster.local", egress))
	if len(other.All(translate.ListenerType)) != 0 || len(other.All(translate.RouteType)) != 0 {
		t.Fatalf("a router no Gateway selects got listeners %d, routes %d", len(other.All(translate.ListenerType)), len(other.All(translate.RouteType)))
	}
	side := tr.View(snap, proxy(t, "sidecar~10.1.0.9~client-1.default~default.svc.cluster.local", map[string]any{"NAMESPACE": "default"}))
	if side.Get(translate.ListenerType, "0.0.0.0_9080") == nil || side.Get(translate.RouteType, "http.8080") != nil {
		t.Fatal("a sidecar got gateway config, or lost its own")
	}

	// Move the Gateway's server to port 8081.
	gw, _ := st.Gateways.Get("default", "bookinfo-gateway")
	gw = gw.DeepCopy()
	gw.Spec.Servers[0].Port.Number = 8081
	if err := st.Indexer(schema.Gateway).Update(gw); err != nil {
		t.Fatal(err)
	}
	ch := &model.Changes{}
	ch.Add(store.Event{Kind: schema.Gateway, Type: store.Updated, New: gw})
	snap2, _ := b.Build(snap, st, ch)
	moved := tr.View(snap2, proxy(t, "router~10.1.0.50~gw-1.istio-system~istio-system.svc.cluster.local", ingress))
	if moved.Get(translate.ListenerType, "0.0.0.0_8080") != nil || moved.Get(translate.ListenerType, "0.0.0.0_8081") == nil {
		t.Fatal("a Gateway port change did not move the router's listener")
	}
	if moved.Get(translate.RouteType, "http.8081") == nil {
		t.Fatal("no route http.8081 after the Gateway moved")
	}
}

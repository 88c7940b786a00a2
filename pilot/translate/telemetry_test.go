package translate_test

import (
	"bytes"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	telemetryapi "istio.io/api/telemetry/v1alpha1"
	typev1beta1 "istio.io/api/type/v1beta1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"

	"github.com/meshd/meshd/pilot/model"
	"github.com/meshd/meshd/pilot/translate"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
	"github.com/meshd/meshd/telemetry/provider"
)

func logsTo(r *translate.Resource) bool {
	return r != nil && bytes.Contains(r.Any.GetValue(), []byte(provider.ClusterName))
}

// The access-log decision joins the cache keys: with a workload-selector
// Telemetry, two proxies of one namespace that share everything else get
// different listeners when only one is selected, proxies with equal labels
// still share, and a Telemetry change on the same Translator reaches both.
func TestTelemetryJoinsCacheKeys(t *testing.T) {
	st := meshOf(t, 20)
	sel := &telemetryv1.Telemetry{
		ObjectMeta: metav1.ObjectMeta{Name: "logs", Namespace: "ns-1"},
		Spec: telemetryapi.Telemetry{
			Selector:      &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "logged"}},
			AccessLogging: []*telemetryapi.AccessLogging{{Providers: []*telemetryapi.ProviderRef{{Name: provider.Name}}}},
		},
	}
	if err := st.Indexer(schema.Telemetry).Add(sel); err != nil {
		t.Fatal(err)
	}
	b := model.NewBuilder(quiet(), model.Options{})
	snap, _ := b.Build(nil, st, nil)
	tr := translate.New(quiet())
	labelled := func(id, app string) *model.Proxy {
		return proxy(t, id, map[string]any{"LABELS": map[string]any{"app": app}})
	}
	logged := tr.View(snap, labelled("sidecar~10.0.0.1~a.ns-1~ns-1.svc.cluster.local", "logged"))
	logged2 := tr.View(snap, labelled("sidecar~10.0.0.2~b.ns-1~ns-1.svc.cluster.local", "logged"))
	plain := tr.View(snap, labelled("sidecar~10.0.0.3~c.ns-1~ns-1.svc.cluster.local", "plain"))
	other := tr.View(snap, labelled("sidecar~10.0.0.4~d.ns-2~ns-2.svc.cluster.local", "logged"))

	const l80 = "0.0.0.0_80"
	if !logsTo(logged.Get(translate.ListenerType, l80)) || logged.Get(translate.ClusterType, provider.ClusterName) == nil {
		t.Fatal("the selected proxy got no access logger or no cluster back to meshd")
	}
	if logged.Get(translate.ListenerType, l80) != logged2.Get(translate.ListenerType, l80) {
		t.Fatal("two proxies with the same labels and decision got different copies of a listener")
	}
	for name, v := range map[string]*translate.View{"unselected proxy": plain, "proxy in another namespace": other} {
		if logsTo(v.Get(translate.ListenerType, l80)) || v.Get(translate.ClusterType, provider.ClusterName) != nil {
			t.Fatalf("the %s got the selected proxy's access logging", name)
		}
	}

	// Delete the Telemetry: the same proxy, same Translator, logs no more.
	if err := st.Indexer(schema.Telemetry).Delete(sel); err != nil {
		t.Fatal(err)
	}
	ch := &model.Changes{}
	ch.Add(store.Event{Kind: schema.Telemetry, Type: store.Deleted, Old: sel})
	snap2, delta := b.Build(snap, st, ch)
	if !delta.ConfigChanged {
		t.Fatalf("delta %+v: a Telemetry change must push", delta)
	}
	after := tr.View(snap2, labelled("sidecar~10.0.0.1~a.ns-1~ns-1.svc.cluster.local", "logged"))
	if logsTo(after.Get(translate.ListenerType, l80)) || after.Get(translate.ClusterType, provider.ClusterName) != nil {
		t.Fatal("access logging outlived the Telemetry that enabled it")
	}
	if !logsTo(logged.Get(translate.ListenerType, l80)) {
		t.Fatal("a view handed out earlier changed")
	}
}

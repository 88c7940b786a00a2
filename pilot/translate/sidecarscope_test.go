package translate_test

import (
	"strings"
	"testing"

	"github.com/meshd/meshd/pilot/model"
	"github.com/meshd/meshd/pilot/translate"
)

// TestMeshWideRegistryOnly: with the mesh-wide policy REGISTRY_ONLY a
// sidecar's catch-all goes to the BlackHoleCluster; a Sidecar saying
// ALLOW_ANY puts its namespace's proxies back on PassthroughCluster.
func TestMeshWideRegistryOnly(t *testing.T) {
	st := meshOf(t, 2)
	b := model.NewBuilder(quiet(), model.Options{})
	snap, _ := b.Build(nil, st, nil)
	tr := translate.New(quiet())
	tr.RegistryOnly = true
	catchAll := func(s *model.Snapshot) string {
		v := tr.View(s, proxy(t, "sidecar~10.0.0.1~a.ns-1~ns-1.svc.cluster.local", nil))
		return marshalled(t, v.Get(translate.ListenerType, translate.VirtualOutboundListener))
	}
	if got := catchAll(snap); !strings.Contains(got, translate.BlackHoleCluster) || strings.Contains(got, translate.PassthroughCluster) {
		t.Errorf("REGISTRY_ONLY mesh: virtualOutbound %s", got)
	}
	ch := &model.Changes{}
	apply(t, st, ch, `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: ns-1}
spec:
  outboundTrafficPolicy: {mode: ALLOW_ANY}
`)
	snap, _ = b.Build(snap, st, ch)
	if got := catchAll(snap); !strings.Contains(got, translate.PassthroughCluster) {
		t.Errorf("Sidecar ALLOW_ANY: virtualOutbound %s", got)
	}
}

package provider

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"

	"github.com/meshd/meshd/pkg/schema"
)

// telemetry decodes one Telemetry from YAML (strictly, as meshd reads
// config) and gives it a creation time age seconds after an epoch, since
// precedence among equals goes by age.
func telemetry(t *testing.T, age int, doc string) *telemetryv1.Telemetry {
	t.Helper()
	obj, _, err := schema.Decode([]byte("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\n" + strings.TrimSpace(doc)))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	tel := obj.(*telemetryv1.Telemetry)
	tel.CreationTimestamp = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, age, 0, time.UTC))
	return tel
}

const (
	meshWide = `
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: meshd}]`
	meshWideEnvoy = `
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: envoy}]`
	nsDisabled = `
metadata: {name: quiet, namespace: default}
spec:
  accessLogging:
  - disabled: true`
	nsMeshd = `
metadata: {name: ns-logs, namespace: default}
spec:
  accessLogging:
  - providers: [{name: meshd}]`
	reviewsOn = `
metadata: {name: reviews-logs, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  accessLogging:
  - providers: [{name: meshd}]`
	reviewsOff = `
metadata: {name: reviews-quiet, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  accessLogging:
  - providers: [{name: meshd}]
    disabled: true`
	serverOnly = `
metadata: {name: server-only, namespace: default}
spec:
  accessLogging:
  - providers: [{name: meshd}]
    match: {mode: SERVER}
    filter: {expression: "response.code >= 400"}`
	otherNamespace = `
metadata: {name: ns-logs, namespace: other}
spec:
  accessLogging:
  - providers: [{name: meshd}]`
	rootSelector = `
metadata: {name: root-reviews, namespace: istio-system}
spec:
  selector: {matchLabels: {app: reviews}}
  accessLogging:
  - providers: [{name: meshd}]`
	gatewayTarget = `
metadata: {name: gw-logs, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: bookinfo-gateway}]
  accessLogging:
  - providers: [{name: meshd}]`
	metricsOnly = `
metadata: {name: metrics, namespace: default}
spec:
  metrics:
  - providers: [{name: prometheus}]`
	olderNsDisabled = `
metadata: {name: a-older, namespace: default}
spec:
  accessLogging:
  - disabled: true
    providers: [{name: meshd}]`
)

func TestAccessLogging(t *testing.T) {
	reviews := map[string]string{"app": "reviews", "version": "v1"}
	ratings := map[string]string{"app": "ratings"}
	gateway := map[string]string{gatewayNameLabel: "bookinfo-gateway"}
	both := Decision{Client: true, Server: true}

	type fixture struct {
		age int
		doc string
	}
	tests := map[string]struct {
		telemetries []fixture
		namespace   string
		labels      map[string]string
		want        Decision
	}{
		"no telemetry: off": {
			namespace: "default", labels: reviews,
		},
		"mesh-wide in the root namespace: on everywhere": {
			telemetries: []fixture{{0, meshWide}},
			namespace:   "default", labels: ratings, want: both,
		},
		"mesh-wide names another provider: off": {
			telemetries: []fixture{{0, meshWideEnvoy}},
			namespace:   "default", labels: ratings,
		},
		"namespace disables what the mesh enables": {
			telemetries: []fixture{{0, meshWide}, {1, nsDisabled}},
			namespace:   "default", labels: ratings,
		},
		"namespace disable does not reach other namespaces": {
			telemetries: []fixture{{0, meshWide}, {1, nsDisabled}},
			namespace:   "other", labels: ratings, want: both,
		},
		"namespace enables without a mesh-wide one": {
			telemetries: []fixture{{0, nsMeshd}},
			namespace:   "default", labels: ratings, want: both,
		},
		"namespace-wide in another namespace: off": {
			telemetries: []fixture{{0, otherNamespace}},
			namespace:   "default", labels: ratings,
		},
		"workload selector matches: on": {
			telemetries: []fixture{{0, reviewsOn}},
			namespace:   "default", labels: reviews, want: both,
		},
		"workload selector does not match: off": {
			telemetries: []fixture{{0, reviewsOn}},
			namespace:   "default", labels: ratings,
		},
		"workload selector overrides namespace disable": {
			telemetries: []fixture{{0, nsDisabled}, {1, reviewsOn}},
			namespace:   "default", labels: reviews, want: both,
		},
		"workload disable overrides mesh-wide": {
			telemetries: []fixture{{0, meshWide}, {1, reviewsOff}},
			namespace:   "default", labels: reviews,
		},
		"workload disable leaves other workloads on": {
			telemetries: []fixture{{0, meshWide}, {1, reviewsOff}},
			namespace:   "default", labels: ratings, want: both,
		},
		"server mode only, with its filter": {
			telemetries: []fixture{{0, serverOnly}},
			namespace:   "default", labels: ratings,
			want: Decision{Server: true, ServerFilter: "response.code >= 400"},
		},
		"root-namespace selector does not reach other namespaces": {
			telemetries: []fixture{{0, rootSelector}},
			namespace:   "default", labels: reviews,
		},
		"root-namespace selector applies in the root namespace": {
			telemetries: []fixture{{0, rootSelector}},
			namespace:   "istio-system", labels: reviews, want: both,
		},
		"targetRefs never attach to a sidecar": {
			telemetries: []fixture{{0, gatewayTarget}},
			namespace:   "default", labels: reviews,
		},
		"targetRefs attach to the named gateway": {
			telemetries: []fixture{{0, gatewayTarget}},
			namespace:   "default", labels: gateway, want: both,
		},
		"a Telemetry without accessLogging changes nothing": {
			telemetries: []fixture{{0, meshWide}, {1, metricsOnly}},
			namespace:   "default", labels: ratings, want: both,
		},
		"oldest namespace-wide Telemetry wins": {
			telemetries: []fixture{{5, nsMeshd}, {1, olderNsDisabled}},
			namespace:   "default", labels: ratings,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var tels []*telemetryv1.Telemetry
			for _, f := range tc.telemetries {
				tels = append(tels, telemetry(t, f.age, f.doc))
			}
			got := MeshdAccessLogging(tels, "istio-system", tc.namespace, tc.labels)
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestAccessLoggingProviderInheritance(t *testing.T) {
	// An entry with no providers inherits the previous one's: the
	// namespace's bare "disabled: false" entry keeps the mesh's meshd on,
	// and a later entry naming only envoy takes meshd out of scope.
	mesh := telemetry(t, 0, meshWide)
	inherit := telemetry(t, 1, `
metadata: {name: inherit, namespace: default}
spec:
  accessLogging:
  - disabled: false`)
	envoyOnly := telemetry(t, 1, `
metadata: {name: envoy-only, namespace: default}
spec:
  accessLogging:
  - providers: [{name: envoy}]`)
	for _, tc := range []struct {
		tels []*telemetryv1.Telemetry
		want bool
	}{
		{[]*telemetryv1.Telemetry{mesh, inherit}, true},
		{[]*telemetryv1.Telemetry{mesh, envoyOnly}, false},
	} {
		t.Run(fmt.Sprint(tc.tels[1].Name), func(t *testing.T) {
			got := MeshdAccessLogging(tc.tels, "istio-system", "default", nil)
			if got.Any() != tc.want {
				t.Errorf("got %+v, want on=%v", got, tc.want)
			}
		})
	}
}

package inject_test

import (
	"encoding/json"
	"reflect"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshd/meshd/pilot/inject"
)

var opts = inject.Options{ProxyImage: "docker.io/istio/proxyv2:1.28.0", DiscoveryAddress: "istiod.istio-system.svc:15012",
	ClusterID: "Kubernetes", TrustDomain: "cluster.local"}

func appPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews-v1-abc", Namespace: "default", Labels: map[string]string{"app": "reviews", "version": "v1"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "reviews", Image: "reviews:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 9080}},
			ReadinessProbe: &corev1.Probe{TimeoutSeconds: 2, ProbeHandler: corev1.ProbeHandler{
				HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromString("http")}}},
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9080)}}},
			StartupProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}},
		}}},
	}
}

// TestProbesGoThroughTheAgent: the kubelet's probes now call pilot-agent
// on 15020, and the agent is told the app's own checks (named port
// resolved); exec probes stay as they are.
func TestProbesGoThroughTheAgent(t *testing.T) {
	pod := appPod()
	out, err := inject.Mutate(pod, opts)
	if err != nil {
		t.Fatal(err)
	}
	app := out.Spec.Containers[0]
	for _, c := range []struct {
		probe *corev1.Probe
		path  string
	}{{app.ReadinessProbe, "/app-health/reviews/readyz"}, {app.LivenessProbe, "/app-health/reviews/livez"}} {
		if h := c.probe.HTTPGet; h == nil || h.Path != c.path || h.Port.IntValue() != inject.AgentPort {
			t.Errorf("probe %+v, want GET %s on %d", c.probe.ProbeHandler, c.path, inject.AgentPort)
		}
	}
	if app.StartupProbe.Exec == nil {
		t.Errorf("exec startup probe rewritten: %+v", app.StartupProbe)
	}
	proxy := out.Spec.Containers[1]
	if proxy.Name != inject.ProxyContainer || len(out.Spec.InitContainers) != 1 || out.Spec.InitContainers[0].Name != inject.InitContainer {
		t.Fatalf("containers %v / init %v", names(out.Spec.Containers), names(out.Spec.InitContainers))
	}
	var probers map[string]map[string]any
	for _, e := range proxy.Env {
		if e.Name == "ISTIO_KUBE_APP_PROBERS" {
			if err := json.Unmarshal([]byte(e.Value), &probers); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := map[string]map[string]any{
		"/app-health/reviews/readyz": {"httpGet": map[string]any{"path": "/health", "port": float64(9080)}, "timeoutSeconds": float64(2)},
		"/app-health/reviews/livez":  {"tcpSocket": map[string]any{"port": float64(9080)}},
	}
	if !reflect.DeepEqual(probers, want) {
		t.Errorf("ISTIO_KUBE_APP_PROBERS = %v\nwant %v", probers, want)
	}
	if out.Labels["security.istio.io/tlsMode"] != "istio" || out.Labels["service.istio.io/canonical-name"] != "reviews" || out.Labels["service.istio.io/canonical-revision"] != "v1" {
		t.Errorf("labels %v", out.Labels)
	}
	if !reflect.DeepEqual(pod, appPod()) {
		t.Error("Mutate changed the pod it was given")
	}
}

// TestPatchMakesTheInjectedPod: the JSON patch the webhook returns, applied
// to the pod as the API server applies it, gives exactly Mutate's pod.
func TestPatchMakesTheInjectedPod(t *testing.T) {
	pod := appPod()
	out, err := inject.Mutate(pod, opts)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := inject.Patch(out)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := json.Marshal(pod)
	patched, err := p.Apply(orig)
	if err != nil {
		t.Fatalf("applying %s: %v", patch, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	wantJSON, _ := json.Marshal(out)
	gotJSON, _ := json.Marshal(&got)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("patched pod\n%s\nwant\n%s", gotJSON, wantJSON)
	}
}

func TestDecide(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(*corev1.Pod)
		want bool
	}{
		"plain pod":          {func(*corev1.Pod) {}, true},
		"label opt-out":      {func(p *corev1.Pod) { p.Labels["sidecar.istio.io/inject"] = "false" }, false},
		"annotation opt-out": {func(p *corev1.Pod) { p.Annotations = map[string]string{"sidecar.istio.io/inject": "false"} }, false},
		"host network":       {func(p *corev1.Pod) { p.Spec.HostNetwork = true }, false},
		"injected already": {func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy"})
		}, false},
		"label opt-in (true)": {func(p *corev1.Pod) { p.Labels["sidecar.istio.io/inject"] = "true" }, true},
	} {
		p := appPod()
		tc.edit(p)
		if d := inject.Decide(p); d.Inject != tc.want {
			t.Errorf("%s: inject=%v (%s), want %v", name, d.Inject, d.Reason, tc.want)
		}
	}
}

// TestNamedPortMissing: a probe naming a port the container does not
// declare is an error naming the container and probe.
func TestNamedPortMissing(t *testing.T) {
	pod := appPod()
	pod.Spec.Containers[0].ReadinessProbe.HTTPGet.Port = intstr.FromString("admin")
	if _, err := inject.Mutate(pod, opts); err == nil || err.Error() != `container reviews ready probe: port "admin" is not a named port of the container` {
		t.Errorf("error %v", err)
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

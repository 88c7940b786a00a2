//go:build integration

package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshd/meshd/pilot/inject"
	"github.com/meshd/meshd/tests/integration/framework"
)

// TestSidecarInjection: the real API server calls meshd's injector for a
// pod created in a namespace labelled istio-injection=enabled; the stored
// pod has Istio's proxy and its readiness probe goes through the agent,
// which is told the app's own check. A pod elsewhere, and one opting out,
// are stored as written.
func TestSidecarInjection(t *testing.T) {
	c := framework.Start(t)
	ctx := context.Background()

	cert, caPEM := galleySelfSignedServing(t)
	mux := http.NewServeMux()
	inject.NewWebhook(slog.New(slog.NewTextHandler(t.Output(), nil)), prometheus.NewRegistry(), inject.Options{
		ProxyImage: "docker.io/istio/proxyv2:1.28.0", DiscoveryAddress: "istiod.istio-system.svc:15012",
		ClusterID: "Kubernetes", TrustDomain: "cluster.local",
	}).Routes(mux)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	injected := c.NewNamespace(t, "inject")
	plain := c.NewNamespace(t, "plain")
	nsObj, err := c.Kube.CoreV1().Namespaces().Get(ctx, injected, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels = map[string]string{"istio-injection": "enabled"}
	if _, err := c.Kube.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("https://%s%s", l.Addr(), inject.Path)
	fail, none, never := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone, admissionregistrationv1.NeverReinvocationPolicy
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector-" + injected},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         "namespace.sidecar-injector.istio.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"istio-injection": "enabled"}},
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "sidecar.istio.io/inject", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}}}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			ReinvocationPolicy:      &never,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	if _, err := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
	})

	pod := func(name string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "app", Image: "example/app:1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}},
			}}},
		}
	}
	// The API server may take a moment to see the new configuration: retry
	// the create (with a fresh name) until a pod comes back injected.
	var got *corev1.Pod
	attempt := 0
	framework.Eventually(t, 30*time.Second, func() error {
		attempt++
		p, err := c.Kube.CoreV1().Pods(injected).Create(ctx, pod(fmt.Sprintf("app-%d", attempt), map[string]string{"app": "shop"}), metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if len(p.Spec.Containers) != 2 {
			return fmt.Errorf("pod %s stored with containers %v", p.Name, containerNames(p.Spec.Containers))
		}
		got = p
		return nil
	})
	if names := containerNames(got.Spec.Containers); names[1] != "istio-proxy" || len(got.Spec.InitContainers) != 1 || got.Spec.InitContainers[0].Name != "istio-init" {
		t.Fatalf("containers %v, init containers %v", names, containerNames(got.Spec.InitContainers))
	}
	rp := got.Spec.Containers[0].ReadinessProbe
	if rp.HTTPGet == nil || rp.HTTPGet.Path != "/app-health/app/readyz" || rp.HTTPGet.Port.IntValue() != inject.AgentPort {
		t.Errorf("readiness probe %+v, want GET /app-health/app/readyz on %d", rp.ProbeHandler, inject.AgentPort)
	}
	var probers map[string]struct {
		HTTPGet *corev1.HTTPGetAction `json:"httpGet"`
	}
	for _, e := range got.Spec.Containers[1].Env {
		if e.Name == "ISTIO_KUBE_APP_PROBERS" {
			if err := json.Unmarshal([]byte(e.Value), &probers); err != nil {
				t.Fatal(err)
			}
		}
	}
	if h := probers["/app-health/app/readyz"].HTTPGet; h == nil || h.Path != "/ready" || h.Port.IntValue() != 8080 {
		t.Errorf("the agent was not told the app's check: ISTIO_KUBE_APP_PROBERS %+v", probers)
	}
	if got.Labels["security.istio.io/tlsMode"] != "istio" || got.Annotations["sidecar.istio.io/status"] == "" {
		t.Errorf("labels %v annotations %v", got.Labels, got.Annotations)
	}

	for _, tc := range []struct {
		ns, name string
		labels   map[string]string
	}{
		{plain, "elsewhere", nil},
		{injected, "opted-out", map[string]string{"sidecar.istio.io/inject": "false"}},
	} {
		p, err := c.Kube.CoreV1().Pods(tc.ns).Create(ctx, pod(tc.name, tc.labels), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Spec.Containers) != 1 || p.Spec.Containers[0].ReadinessProbe.HTTPGet.Path != "/ready" {
			t.Errorf("pod %s/%s was changed: containers %v", tc.ns, tc.name, containerNames(p.Spec.Containers))
		}
	}
}

func containerNames(cs []corev1.Container) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

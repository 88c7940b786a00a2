//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/meshd/meshd/pkg/bootstrap"
	"github.com/meshd/meshd/tests/integration/framework"
)

// meshd runs a whole meshd in-process against the cluster, on loopback
// ports, and stops it when the test ends.
type meshd struct {
	*bootstrap.Server
	t *testing.T
}

func startMeshd(t *testing.T, c *framework.Cluster, mutate ...func(*bootstrap.Options)) *meshd {
	t.Helper()
	ctx := context.Background()
	if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	opts := bootstrap.Options{
		Kubeconfig: c.Kubeconfig, TrustDomain: "cluster.local", Namespace: "istio-system", PodName: "meshd-test",
		GRPCAddr: "127.0.0.1:0", SecureGRPCAddr: "127.0.0.1:0", WebhookAddr: "127.0.0.1:0",
		MonitoringAddr: "127.0.0.1:0", DebugAddr: "127.0.0.1:0",
		DebounceAfter: 100 * time.Millisecond, DebounceMax: 10 * time.Second, DrainTimeout: 5 * time.Second,
		LogLevel: "info", LogFormat: "text",
	}
	for _, m := range mutate {
		m(&opts)
	}
	srv, err := bootstrap.New(opts, slog.New(slog.NewTextHandler(t.Output(), nil)).With("meshd", opts.PodName))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("meshd: %v", err)
		}
	})
	m := &meshd{Server: srv, t: t}
	framework.Eventually(t, time.Minute, func() error {
		code, body, err := m.get("/ready")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/ready: %d %s", code, body)
		}
		return err
	})
	return m
}

func (m *meshd) get(path string) (int, string, error) {
	resp, err := http.Get("http://" + m.Addr("debug") + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// debugJSON fetches a debug endpoint into v.
func (m *meshd) debugJSON(path string, v any) error {
	code, body, err := m.get(path)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s: %d %s", path, code, body)
	}
	return json.Unmarshal([]byte(body), v)
}

type configzEntry struct {
	Kind, Namespace, Name string
}

func (m *meshd) hasConfig(kind, ns, name string) (bool, error) {
	var entries []configzEntry
	if err := m.debugJSON("/debug/configz?namespace="+ns, &entries); err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.Kind == kind && e.Name == name {
			return true, nil
		}
	}
	return false, nil
}

func routeVS(ns, name, host string) *networkingv1.VirtualService {
	return &networkingv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: apinetworking.VirtualService{
			Hosts: []string{host},
			Http:  []*apinetworking.HTTPRoute{{Route: []*apinetworking.HTTPRouteDestination{{Destination: &apinetworking.Destination{Host: host}}}}},
		},
	}
}

// TestStoreFollowsTheAPIServer is the foundation's acceptance: objects
// created through the API appear in meshd's store, deletes disappear, and an
// API-server restart is survived without restarting meshd.
func TestStoreFollowsTheAPIServer(t *testing.T) {
	c := framework.Start(t)
	m := startMeshd(t, c)
	ns := c.NewNamespace(t, "store")
	ctx := context.Background()

	_, err := c.Kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "echo"},
			Ports:    []corev1.ServicePort{{Name: "grpc", Port: 7070}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "echo-1", Labels: map[string]string{discoveryv1.LabelServiceName: "echo"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](7070)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"192.0.2.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"192.0.2.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Istio.NetworkingV1().VirtualServices(ns).Create(ctx, routeVS(ns, "echo", "echo"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	framework.Eventually(t, 30*time.Second, func() error {
		var services []struct {
			Hostname  string
			Endpoints []struct{ Address string }
		}
		if err := m.debugJSON("/debug/registryz", &services); err != nil {
			return err
		}
		for _, s := range services {
			if s.Hostname == "echo."+ns+".svc.cluster.local" && len(s.Endpoints) == 2 {
				return nil
			}
		}
		return fmt.Errorf("echo with 2 endpoints not in registryz: %+v", services)
	})
	framework.Eventually(t, 30*time.Second, func() error {
		if ok, err := m.hasConfig("VirtualService", ns, "echo"); !ok {
			return fmt.Errorf("VirtualService not in configz (%v)", err)
		}
		return nil
	})

	if err := c.Istio.NetworkingV1().VirtualServices(ns).Delete(ctx, "echo", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 30*time.Second, func() error {
		if ok, err := m.hasConfig("VirtualService", ns, "echo"); ok || err != nil {
			return fmt.Errorf("deleted VirtualService still in configz (%v)", err)
		}
		return nil
	})

	// The API server goes away and comes back on the same etcd; meshd is
	// not restarted and sees what is created afterwards.
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, time.Minute, func() error {
		_, err := c.Istio.NetworkingV1().VirtualServices(ns).Create(ctx, routeVS(ns, "after-restart", "echo"), metav1.CreateOptions{})
		return err
	})
	framework.Eventually(t, 90*time.Second, func() error {
		if ok, err := m.hasConfig("VirtualService", ns, "after-restart"); !ok {
			return fmt.Errorf("object created after the restart not in configz (%v)", err)
		}
		return nil
	})
	if code, body, err := m.get("/ready"); err != nil || code != http.StatusOK {
		t.Fatalf("/ready after the restart: %d %s %v", code, body, err)
	}
}

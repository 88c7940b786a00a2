package webhookconfig_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/meshd/meshd/galley/webhookconfig"
)

const name = "istio-validator-istio-system"

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type caSource struct {
	mu  sync.Mutex
	pem []byte
}

func (c *caSource) get() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pem == nil {
		return nil, errors.New("no root yet")
	}
	return c.pem, nil
}

func (c *caSource) set(p string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pem = []byte(p)
}

func state(t *testing.T, client *fake.Clientset) (ca string, policy admissionregistrationv1.FailurePolicyType) {
	t.Helper()
	cfg, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Webhooks[0]
	return string(w.ClientConfig.CABundle), *w.FailurePolicy
}

func TestCABundleThenFailClosedAfterFirstReview(t *testing.T) {
	url := "https://127.0.0.1:15017/validate"
	cfg := webhookconfig.Configuration(name, admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: []byte("stale")})
	client := fake.NewClientset(cfg)
	ca := &caSource{}
	ca.set("ROOT-1")
	served := make(chan struct{})
	c := webhookconfig.New(slog.New(slog.DiscardHandler), client, webhookconfig.Options{
		Name: name, CABundle: ca.get, Served: served, Resync: 20 * time.Millisecond,
	})
	if !c.NeedLeaderElection() {
		t.Fatal("the controller must run on the leader only")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start returned %v", err)
		}
	}()

	eventually(t, "caBundle patched, still failing open", func() error {
		if got, p := state(t, client); got != "ROOT-1" || p != admissionregistrationv1.Ignore {
			return fmt.Errorf("caBundle %q, failurePolicy %s", got, p)
		}
		return nil
	})
	// Nothing has reached the webhook yet: it must stay open through resyncs.
	for i := 0; i < 5; i++ {
		if _, p := state(t, client); p != admissionregistrationv1.Ignore {
			t.Fatalf("failurePolicy switched to %s before any review was served", p)
		}
		time.Sleep(25 * time.Millisecond) // let a few resyncs pass; asserting they change nothing
	}
	close(served)
	eventually(t, "failurePolicy Fail after a review", func() error {
		if _, p := state(t, client); p != admissionregistrationv1.Fail {
			return fmt.Errorf("failurePolicy %s", p)
		}
		return nil
	})
	// The root rotates: the bundle follows; the policy stays closed.
	ca.set("ROOT-2")
	eventually(t, "rotated caBundle", func() error {
		if got, p := state(t, client); got != "ROOT-2" || p != admissionregistrationv1.Fail {
			return fmt.Errorf("caBundle %q, failurePolicy %s", got, p)
		}
		return nil
	})
	// Someone re-applies the manifest: drift is repaired.
	reset := webhookconfig.Configuration(name, admissionregistrationv1.WebhookClientConfig{URL: &url})
	cur, _ := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(context.Background(), name, metav1.GetOptions{})
	reset.ResourceVersion = cur.ResourceVersion
	if _, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(context.Background(), reset, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "drift repaired", func() error {
		if got, p := state(t, client); got != "ROOT-2" || p != admissionregistrationv1.Fail {
			return fmt.Errorf("caBundle %q, failurePolicy %s", got, p)
		}
		return nil
	})
}

func TestMissingConfigurationAndCA(t *testing.T) {
	client := fake.NewClientset()
	ca := &caSource{}
	c := webhookconfig.New(slog.New(slog.DiscardHandler), client, webhookconfig.Options{
		Name: name, CABundle: ca.get, Resync: 10 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Start(ctx) }()
	// No root and no configuration: the controller waits without failing.
	time.Sleep(50 * time.Millisecond) // a few passes over nothing; asserting they do no harm
	ca.set("ROOT")
	url := "https://127.0.0.1:15017/validate"
	if _, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx,
		webhookconfig.Configuration(name, admissionregistrationv1.WebhookClientConfig{URL: &url}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "configuration installed later is patched", func() error {
		if got, _ := state(t, client); got != "ROOT" {
			return fmt.Errorf("caBundle %q", got)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Start returned %v", err)
	}
}

// The manifest meshd is installed with (manifests/40-webhook.yaml) is the
// object Configuration builds, apart from where the webhook is served.
func TestConfigurationMatchesManifest(t *testing.T) {
	data, err := os.ReadFile("../../manifests/40-webhook.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var manifest admissionregistrationv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(data, &manifest); err != nil {
		t.Fatal(err)
	}
	want := webhookconfig.Configuration(manifest.Name, manifest.Webhooks[0].ClientConfig)
	if !equality.Semantic.DeepEqual(&manifest, want) {
		t.Errorf("manifest and Configuration differ:\nmanifest: %+v\nbuilt:    %+v", manifest, *want)
	}
	w := want.Webhooks[0]
	if *w.FailurePolicy != admissionregistrationv1.Ignore || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
		t.Errorf("webhook must start failing open with no side effects: %+v", w)
	}
	if p := w.ClientConfig.Service.Path; p == nil || *p != "/validate" {
		t.Errorf("manifest points at path %v, want /validate", p)
	}
}

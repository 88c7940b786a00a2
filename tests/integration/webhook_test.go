//go:build integration

package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshd/meshd/galley/webhook"
	"github.com/meshd/meshd/galley/webhookconfig"
	"github.com/meshd/meshd/tests/integration/framework"
)

// galleyWebhook is galley's webhook served over HTTPS on loopback with a
// self-signed root, as bootstrap serves it on 15017.
type galleyWebhook struct {
	url    string
	caPEM  []byte
	server *webhook.Server
	http   *http.Server
	done   chan error
}

func startGalleyWebhook(t *testing.T) *galleyWebhook {
	t.Helper()
	cert, caPEM := galleySelfSignedServing(t)
	s, err := webhook.New(slog.New(slog.NewTextHandler(t.Output(), nil)), prometheus.NewRegistry(), webhook.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Routes(mux)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &galleyWebhook{
		url:    fmt.Sprintf("https://%s%s", l.Addr(), webhook.Path),
		caPEM:  caPEM,
		server: s,
		http:   &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ReadHeaderTimeout: 10 * time.Second},
		done:   make(chan error, 1),
	}
	go func() { w.done <- w.http.ServeTLS(l, "", "") }()
	t.Cleanup(w.stop)
	return w
}

// stop shuts the server down; the API server then gets connection refused.
func (w *galleyWebhook) stop() {
	if w.http == nil {
		return
	}
	_ = w.http.Close()
	<-w.done
	w.http = nil
}

// galleySelfSignedServing makes a root and a serving certificate for 127.0.0.1
// signed by it (citadel will supply the real ones).
func galleySelfSignedServing(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "meshd test root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "istiod.istio-system.svc"},
		DNSNames:     []string{"istiod.istio-system.svc"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

func galleyVirtualService(ns, name string, hosts []string, timeout string) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	vs.Spec.Hosts = hosts
	vs.Spec.Http = []*networkingapi.HTTPRoute{{
		Route: []*networkingapi.HTTPRouteDestination{{Destination: &networkingapi.Destination{Host: "reviews"}}},
	}}
	if timeout != "" {
		d, _ := time.ParseDuration(timeout)
		vs.Spec.Http[0].Timeout = durationpb.New(d)
	}
	return vs
}

// TestWebhook runs galley's webhook against a real API server: the API
// server calls it during ordinary creates.
func TestWebhook(t *testing.T) {
	c := framework.Start(t)
	ns := c.NewNamespace(t, "webhook")
	ctx := context.Background()
	vss := c.Istio.NetworkingV1().VirtualServices(ns)
	// Bound to the mesh with host "*" and a sub-millisecond timeout: two
	// errors, both of which the API server must relay.
	invalid := galleyVirtualService(ns, "invalid", []string{"*"}, "1500us")

	t.Run("invalid rejected with meshd's message, valid stored", func(t *testing.T) {
		w := startGalleyWebhook(t)
		cfg := webhookconfig.Configuration("meshd-webhook-test", admissionregistrationv1.WebhookClientConfig{URL: &w.url, CABundle: w.caPEM})
		if _, err := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer deleteGalleyWebhookConfig(t, c, cfg.Name)

		// The API server learns of the configuration asynchronously; with
		// failurePolicy Ignore, dry runs pass until it calls the webhook.
		framework.Eventually(t, 30*time.Second, func() error {
			_, err := vss.Create(ctx, invalid, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err == nil {
				return errors.New("invalid VirtualService accepted: webhook not called yet")
			}
			return nil
		})
		_, err := vss.Create(ctx, invalid, metav1.CreateOptions{})
		if err == nil {
			t.Fatal("invalid VirtualService was stored")
		}
		for _, want := range []string{
			`admission webhook "validation.istio.io" denied the request`,
			"spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway",
			"spec.http[0].timeout: only durations to ms precision are supported",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("API error %q lacks %q", err, want)
			}
		}

		valid := galleyVirtualService(ns, "valid", []string{"reviews"}, "5s")
		if _, err := vss.Create(ctx, valid, metav1.CreateOptions{}); err != nil {
			t.Fatalf("valid VirtualService refused: %v", err)
		}
		if got, err := vss.Get(ctx, "valid", metav1.GetOptions{}); err != nil || got.Spec.Http[0].Timeout.AsDuration() != 5*time.Second {
			t.Fatalf("valid VirtualService not stored as sent: %v %v", got, err)
		}
		select {
		case <-w.server.Served():
		default:
			t.Error("the webhook served reviews but Served is still open")
		}

		// meshd goes away; with failurePolicy Ignore, creates go on.
		w.stop()
		after := galleyVirtualService(ns, "after-stop", []string{"reviews"}, "")
		if _, err := vss.Create(ctx, after, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create with the webhook down and failurePolicy Ignore: %v", err)
		}
	})

	t.Run("controller patches caBundle and fails closed once reachable", func(t *testing.T) {
		w := startGalleyWebhook(t)
		// Installed as from the manifest: no caBundle, failing open.
		cfg := webhookconfig.Configuration("meshd-webhook-controlled", admissionregistrationv1.WebhookClientConfig{URL: &w.url})
		if _, err := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer deleteGalleyWebhookConfig(t, c, cfg.Name)

		ctrl := webhookconfig.New(slog.New(slog.NewTextHandler(t.Output(), nil)), c.Kube, webhookconfig.Options{
			Name:           cfg.Name,
			CABundle:       func() ([]byte, error) { return w.caPEM, nil },
			Served:         w.server.Served(),
			ProbeNamespace: ns,
			Resync:         time.Second,
		})
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- ctrl.Start(cctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("controller: %v", err)
			}
		}()

		framework.Eventually(t, 60*time.Second, func() error {
			got, err := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, cfg.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			wh := got.Webhooks[0]
			if string(wh.ClientConfig.CABundle) != string(w.caPEM) || wh.FailurePolicy == nil || *wh.FailurePolicy != admissionregistrationv1.Fail {
				return fmt.Errorf("caBundle set %v, failurePolicy %v", len(wh.ClientConfig.CABundle) > 0, *wh.FailurePolicy)
			}
			return nil
		})
		// The probe (a dry run the webhook always rejects) is what proved the
		// path: it was served.
		select {
		case <-w.server.Served():
		default:
			t.Error("failed closed without the webhook having served a review")
		}

		// Failing closed: with meshd down, Istio config cannot be changed.
		w.stop()
		framework.Eventually(t, 30*time.Second, func() error {
			_, err := vss.Create(ctx, galleyVirtualService(ns, "while-down", []string{"reviews"}, ""), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			switch {
			case err == nil:
				return errors.New("create accepted with the webhook down and failurePolicy Fail")
			case !strings.Contains(err.Error(), "failed calling webhook"):
				return fmt.Errorf("unexpected error: %v", err)
			}
			return nil
		})
	})
}

func deleteGalleyWebhookConfig(t *testing.T, c *framework.Cluster, name string) {
	t.Helper()
	err := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting webhook configuration %s: %v", name, err)
	}
}

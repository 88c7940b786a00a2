//go:build integration

package load

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs every scenario at 20 services x 20 SotW sidecars against a
// meshd process and then upstream istiod on one real API server, as
// `meshload --target meshd,istiod` does, then the xDS scenarios again
// against meshd with 10 Delta sidecars and 3 proxyless gRPC clients. It
// checks only that every client converged and every CSR and review was
// answered: times are measured, never asserted.
func TestSmoke(t *testing.T) {
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	api, err := StartAPIServer(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	defer api.Stop()
	start := func(name string) Starter {
		return func(ctx context.Context) (*Target, func(), error) {
			var p *Process
			var err error
			if name == TargetMeshd {
				p, err = StartMeshd(ctx, log, api.Kubeconfig)
			} else {
				p, err = StartIstiod(ctx, log, api.Kubeconfig, nil)
			}
			if err != nil {
				return nil, nil, err
			}
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("%s log (tail):\n%s", name, tail(p.Log(), 40))
				}
			})
			return &p.Target, p.Stop, nil
		}
	}
	reports, err := Run(ctx, log, Config{
		Kubeconfig: api.Kubeconfig, NamespacePrefix: "smoke-sotw",
		Services: 20, Proxies: 20, VirtualServices: 3, Seed: 7,
		ChurnRate: 10, ChurnFor: 2 * time.Second, Timeout: 2 * time.Minute,
		CSRs: 20, CSRConcurrency: 5, WebhookRate: 50, WebhookFor: time.Second,
		// The smoke test must not stop on a busy CI machine; real runs keep the 2 GiB floor.
		MinMemAvailable: 256 << 20,
	}, start(TargetMeshd), start(TargetIstiod))
	for _, r := range reports {
		var b strings.Builder
		r.WriteTable(&b)
		t.Log("\n" + b.String())
	}
	if len(reports) == 2 {
		var b strings.Builder
		WriteRatios(&b, reports[0], reports[1])
		t.Log("\n" + b.String())
	}
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if len(reports) != 2 {
		t.Fatalf("measured %d targets, want meshd and istiod", len(reports))
	}
	allConverged(t, reports, "cold start", "config change", "endpoint churn", "csr ecdsa p256", "csr rsa 2048", "webhook")

	reports, err = Run(ctx, log, Config{
		Kubeconfig: api.Kubeconfig, NamespacePrefix: "smoke-delta",
		Services: 10, Proxies: 10, XDS: "delta", Proxyless: 3, VirtualServices: 2, Seed: 7,
		ChurnRate: 10, ChurnFor: 2 * time.Second, Timeout: 2 * time.Minute,
		CSRs: -1, WebhookRate: -1, MinMemAvailable: 256 << 20,
	}, start(TargetMeshd))
	for _, r := range reports {
		var b strings.Builder
		r.WriteTable(&b)
		t.Log("\n" + b.String())
	}
	if err != nil {
		t.Fatalf("delta run: %v", err)
	}
	allConverged(t, reports, "cold start", "config change", "endpoint churn")
}

// allConverged checks that each report ran the scenarios named, in order,
// and that every sample of each converged.
func allConverged(t *testing.T, reports []*Report, want ...string) {
	t.Helper()
	for _, rep := range reports {
		if len(rep.Scenarios) != len(want) {
			t.Errorf("%s: ran %d scenarios, want %v", rep.Target, len(rep.Scenarios), want)
			continue
		}
		for i, s := range rep.Scenarios {
			if s.Name != want[i] {
				t.Errorf("%s: scenario %d is %q, want %q", rep.Target, i, s.Name, want[i])
			}
			if !s.AllConverged() {
				t.Errorf("%s %s: %s: %d of %d converged or answered (%d errors)", rep.Target, rep.XDS, s.Name, s.Converged, s.Samples, s.Errors)
			}
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

//go:build integration

package load

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs every scenario against a meshd process and a real API
// server: 20 SotW sidecars x 20 services, then 10 Delta sidecars and 3
// proxyless gRPC clients x 10 services. It checks only that every client
// converged in every scenario: times are measured, never asserted.
func TestSmoke(t *testing.T) {
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	l, err := StartLocal(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	for _, tc := range []struct {
		name                string
		size, proxyless, vs int
		xds                 string
	}{
		{name: "sotw", size: 20, vs: 3, xds: "sotw"},
		{name: "delta+proxyless", size: 10, proxyless: 3, vs: 2, xds: "delta"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Run(ctx, log, Config{
				Kubeconfig: l.Kubeconfig, XDSAddress: l.XDSAddress, PID: l.PID,
				Services: tc.size, Proxies: tc.size, VirtualServices: tc.vs, Seed: 7,
				XDS: tc.xds, Proxyless: tc.proxyless,
				// Each run writes its own namespaces: a deleted one
				// lingers (no namespace controller runs here).
				NamespacePrefix: "smoke-" + strings.ReplaceAll(tc.name, "+", "-"),
				ChurnRate:       10, ChurnFor: 2 * time.Second, Timeout: 2 * time.Minute,
				// The smoke test must not stop on a busy CI machine; real runs keep the 2 GiB floor.
				MinMemAvailable: 256 << 20,
			})
			if rep != nil {
				var b strings.Builder
				rep.WriteTable(&b)
				t.Log("\n" + b.String())
			}
			if err != nil {
				t.Fatalf("run: %v\nmeshd log:\n%s", err, l.Log())
			}
			want := []string{"cold start", "config change", "endpoint churn"}
			if len(rep.Scenarios) != len(want) {
				t.Fatalf("ran %d scenarios, want %v", len(rep.Scenarios), want)
			}
			for i, s := range rep.Scenarios {
				if s.Name != want[i] {
					t.Errorf("scenario %d is %q, want %q", i, s.Name, want[i])
				}
				if !s.AllConverged() {
					t.Errorf("%s: %d of %d samples converged (%d stream errors)", s.Name, s.Converged, s.Samples, s.Errors)
				}
			}
		})
	}
}

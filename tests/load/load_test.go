//go:build integration

package load

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs every scenario at 20 services x 20 proxies against a meshd
// process and a real API server. It checks only that every proxy converged
// in every scenario: times are measured, never asserted.
func TestSmoke(t *testing.T) {
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l, err := StartLocal(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	rep, err := Run(ctx, log, Config{
		Kubeconfig: l.Kubeconfig, XDSAddress: l.XDSAddress, PID: l.PID,
		Services: 20, Proxies: 20, VirtualServices: 3, Seed: 7,
		ChurnRate: 10, ChurnFor: 2 * time.Second, Timeout: 2 * time.Minute,
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
			t.Errorf("%s: %d of %d proxies converged (%d stream errors)", s.Name, s.Converged, s.Samples, s.Errors)
		}
	}
}

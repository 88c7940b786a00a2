package component

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// toggleElector leads when told to and loses leadership when told to.
type toggleElector struct {
	lead, lose chan struct{}
}

func (e *toggleElector) Run(ctx context.Context, lead func(context.Context)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.lead:
		}
		lctx, cancel := context.WithCancel(ctx)
		lead(lctx)
		select {
		case <-ctx.Done():
			cancel()
			return
		case <-e.lose:
			cancel()
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLeaderComponentsRunOnlyWhileLeading(t *testing.T) {
	e := &toggleElector{lead: make(chan struct{}), lose: make(chan struct{})}
	m := NewManager(slog.Default(), e)
	var everywhere, singleton atomic.Int32
	m.Add("everywhere", Func(func(ctx context.Context) error {
		everywhere.Add(1)
		<-ctx.Done()
		everywhere.Add(-1)
		return nil
	}))
	m.Add("singleton", LeaderFunc(func(ctx context.Context) error {
		singleton.Add(1)
		<-ctx.Done()
		singleton.Add(-1)
		return ctx.Err()
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	waitFor(t, "replica-wide component", func() bool { return everywhere.Load() == 1 })
	if singleton.Load() != 0 {
		t.Fatal("singleton ran without leadership")
	}
	e.lead <- struct{}{}
	waitFor(t, "singleton to start on leading", func() bool { return singleton.Load() == 1 })
	e.lose <- struct{}{}
	waitFor(t, "singleton to stop on losing the lease", func() bool { return singleton.Load() == 0 })
	if everywhere.Load() != 1 {
		t.Fatal("losing leadership stopped a replica-wide component")
	}
	e.lead <- struct{}{}
	waitFor(t, "singleton to start again", func() bool { return singleton.Load() == 1 })

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after a clean stop: %v", err)
	}
	if everywhere.Load() != 0 || singleton.Load() != 0 {
		t.Fatal("components still running after Run returned")
	}
}

func TestFailingComponentStopsTheRest(t *testing.T) {
	m := NewManager(slog.Default(), AlwaysLeader{})
	stopped := make(chan struct{})
	m.Add("long", Func(func(ctx context.Context) error {
		<-ctx.Done()
		close(stopped)
		return nil
	}))
	m.Add("broken", LeaderFunc(func(context.Context) error { return errors.New("disk on fire") }))
	err := m.Run(context.Background())
	if err == nil || err.Error() != "broken: disk on fire" {
		t.Fatalf("Run = %v, want the failure named by component", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("other components were not stopped")
	}
}

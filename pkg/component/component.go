// Package component defines how meshd's subsystems are run: each is a
// Component with Start(ctx), and a Manager starts them, running the ones that
// need leadership only while this replica holds the lease.
package component

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// Component is one long-running piece of meshd.
type Component interface {
	// Start runs the component until ctx ends. It returns nil on a clean
	// stop and an error when the component cannot go on; a returned error
	// stops the whole process.
	Start(ctx context.Context) error
	// NeedLeaderElection is true for singleton work that must run on one
	// replica at a time.
	NeedLeaderElection() bool
}

// Func adapts a function to a Component that runs on every replica.
type Func func(ctx context.Context) error

// Start calls f.
func (f Func) Start(ctx context.Context) error { return f(ctx) }

// NeedLeaderElection is false.
func (Func) NeedLeaderElection() bool { return false }

// LeaderFunc adapts a function to a Component that runs only on the leader.
type LeaderFunc func(ctx context.Context) error

// Start calls f.
func (f LeaderFunc) Start(ctx context.Context) error { return f(ctx) }

// NeedLeaderElection is true.
func (LeaderFunc) NeedLeaderElection() bool { return true }

var (
	_ Component = Func(nil)
	_ Component = LeaderFunc(nil)
)

// Elector decides leadership. Run blocks until ctx ends, calling lead with a
// context that is cancelled when leadership is lost. A replica that loses
// leadership may be elected again later, so lead may be called more than once.
type Elector interface {
	Run(ctx context.Context, lead func(ctx context.Context))
}

// AlwaysLeader is the Elector of a single process (file mode): it leads at once.
type AlwaysLeader struct{}

// Run calls lead once and waits for ctx.
func (AlwaysLeader) Run(ctx context.Context, lead func(ctx context.Context)) {
	lead(ctx)
	<-ctx.Done()
}

// Manager runs a set of named components.
type Manager struct {
	log     *slog.Logger
	elector Elector
	entries []entry
}

type entry struct {
	name string
	c    Component
}

// NewManager returns a Manager that elects leaders with e.
func NewManager(log *slog.Logger, e Elector) *Manager {
	return &Manager{log: log, elector: e}
}

// Add registers a component; components start in the order they were added.
func (m *Manager) Add(name string, c Component) {
	m.entries = append(m.entries, entry{name, c})
}

// Run starts every component and blocks until ctx ends or one of them fails.
// It then cancels the others, waits for them to return, and returns the
// first failure (nil after a clean stop).
func (m *Manager) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	run := func(ctx context.Context, e entry) {
		defer wg.Done()
		m.log.Debug("component starting", "component", e.name)
		if err := e.c.Start(ctx); err != nil && !errors.Is(err, context.Canceled) {
			cancel(fmt.Errorf("%s: %w", e.name, err))
			return
		}
		m.log.Debug("component stopped", "component", e.name)
	}
	var leaders []entry
	for _, e := range m.entries {
		if e.c.NeedLeaderElection() {
			leaders = append(leaders, e)
			continue
		}
		wg.Add(1)
		go run(ctx, e)
	}
	if len(leaders) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.elector.Run(ctx, func(lctx context.Context) {
				m.log.Info("leading: starting singleton components", "count", len(leaders))
				for _, e := range leaders {
					wg.Add(1)
					go run(lctx, e)
				}
			})
		}()
	}
	<-ctx.Done()
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// Package xds serves pilot's config over ADS (State of the World and Delta)
// on go-control-plane: it owns the one debounce of store changes, builds
// each new snapshot once, and pushes to each connected proxy only the
// resources whose content changed.
package xds

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"

	"github.com/meshd/meshd/pilot/model"
	"github.com/meshd/meshd/pilot/translate"
	"github.com/meshd/meshd/pkg/component"
	"github.com/meshd/meshd/pkg/store"
)

// Options configure the server.
type Options struct {
	// Mesh holds the domain suffix, trust domain and cluster ID.
	Mesh model.Options
	// DebounceAfter is the quiet period after the last change before a
	// push (Istio's PILOT_DEBOUNCE_AFTER, 100ms).
	DebounceAfter time.Duration
	// DebounceMax bounds how long changes may keep a push waiting
	// (Istio's PILOT_DEBOUNCE_MAX, 10s).
	DebounceMax time.Duration
	// InstanceID names this control plane instance in responses and in
	// proxy-status's ISTIOD column (defaults to the host name).
	InstanceID string
	// Version is reported as the control plane version.
	Version string
	// ControlPlaneAddress (host:port) is where sidecars stream access logs
	// when a Telemetry enables the meshd provider
	// (translate.DefaultControlPlaneAddress when empty).
	ControlPlaneAddress string
	// RegistryOnly is the mesh-wide outboundTrafficPolicy REGISTRY_ONLY.
	RegistryOnly bool
}

func (o Options) withDefaults() Options {
	o.Mesh = o.Mesh.WithDefaults()
	if o.DebounceAfter <= 0 {
		o.DebounceAfter = 100 * time.Millisecond
	}
	if o.DebounceMax <= 0 {
		o.DebounceMax = 10 * time.Second
	}
	if o.InstanceID == "" {
		o.InstanceID, _ = os.Hostname()
		if o.InstanceID == "" {
			o.InstanceID = "meshd"
		}
	}
	if o.Version == "" {
		o.Version = "meshd"
	}
	return o
}

// Server is pilot's ADS server.
type Server struct {
	log     *slog.Logger
	store   *store.Store
	opts    Options
	metrics *metrics
	// differ is the latest push's: ACKs arriving after it compare views
	// with it.
	differ atomic.Pointer[translate.Differ]

	builder    *model.Builder
	translator *translate.Translator
	xds        serverv3.Server

	snap atomic.Pointer[model.Snapshot]
	// pushStart is when the change behind the current snapshot was first seen.
	pushStart atomic.Pointer[time.Time]

	mu    sync.RWMutex
	conns map[connKey]*conn

	// pending hands a request from the stream callback to the watch the
	// server creates for it right after, on the same goroutine.
	pending sync.Map // *cache.Request or *cache.DeltaRequest -> *conn
	// inflight hands a response's metadata to the send callback.
	inflight sync.Map // *discovery.DiscoveryResponse or *DeltaDiscoveryResponse -> *sent

	changesMu sync.Mutex
	changes   *model.Changes
	firstSeen time.Time
	signal    chan struct{}
}

// New builds a server reading the store. Its metrics are registered on reg
// (nil: not registered).
func New(log *slog.Logger, st *store.Store, reg prometheus.Registerer, opts Options) *Server {
	opts = opts.withDefaults()
	s := &Server{
		log:        log,
		store:      st,
		opts:       opts,
		metrics:    newMetrics(reg),
		builder:    model.NewBuilder(log, opts.Mesh),
		translator: translate.New(log),
		conns:      map[connKey]*conn{},
		changes:    &model.Changes{},
		signal:     make(chan struct{}, 1),
	}
	s.builder.OnSkip = func(kind string) { s.metrics.skipped.WithLabelValues(kind).Inc() }
	s.translator.OnDrop = func(what string) { s.metrics.dropped.WithLabelValues(what).Inc() }
	s.translator.ControlPlaneAddress = opts.ControlPlaneAddress
	s.translator.RegistryOnly = opts.RegistryOnly
	s.xds = serverv3.NewServer(context.Background(), s, s, sotw.WithOrderedADS())
	return s
}

// Register serves ADS on g (plaintext 15010 and TLS 15012 alike).
func (s *Server) Register(g *grpc.Server) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
}

// Component runs the debounce loop; it runs on every replica.
func (s *Server) Component() component.Component { return component.Func(s.Start) }

// Snapshot returns the current snapshot (nil before the store synced).
func (s *Server) Snapshot() *model.Snapshot { return s.snap.Load() }

// Start subscribes to the store, builds the first snapshot once the store
// has synced, then turns each debounced batch of changes into a new
// snapshot and a push, until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	s.store.Subscribe(ctx, s.onEvent)
	if err := s.store.WaitForSync(ctx); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled) {
			return nil
		}
		return err
	}
	// Everything before sync is in the store already: start from scratch.
	s.takeChanges()
	s.rebuild(&model.Changes{Full: true}, time.Now())

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.signal:
		}
		// Debounce: wait for a quiet period, but never longer than max
		// since the first change of the batch.
		start := s.firstChangeTime()
		timer := time.NewTimer(s.quietFor(start))
	wait:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-s.signal:
				timer.Reset(s.quietFor(start))
			case <-timer.C:
				break wait
			}
		}
		ch, first := s.takeChanges()
		if ch.Empty() {
			continue
		}
		s.metrics.debounceTime.Observe(time.Since(first).Seconds())
		for t, n := range ch.Triggers() {
			s.metrics.pushTriggers.WithLabelValues(t).Add(float64(n))
		}
		s.rebuild(ch, first)
	}
}

func (s *Server) quietFor(start time.Time) time.Duration {
	left := s.opts.DebounceMax - time.Since(start)
	if left < 0 {
		left = 0
	}
	return min(s.opts.DebounceAfter, left)
}

func (s *Server) onEvent(e store.Event) {
	s.changesMu.Lock()
	if !s.changes.Add(e) {
		s.changesMu.Unlock()
		return
	}
	if s.firstSeen.IsZero() {
		s.firstSeen = time.Now()
	}
	s.changesMu.Unlock()
	s.metrics.inboundUpdates.WithLabelValues(updateType(e)).Inc()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

func updateType(e store.Event) string {
	switch e.Kind.Name {
	case "EndpointSlice", "Pod", "WorkloadEntry":
		return "eds"
	case "Service":
		if e.Type == store.Deleted {
			return "svcdelete"
		}
		return "svc"
	}
	return "config"
}

func (s *Server) firstChangeTime() time.Time {
	s.changesMu.Lock()
	defer s.changesMu.Unlock()
	if s.firstSeen.IsZero() {
		return time.Now()
	}
	return s.firstSeen
}

func (s *Server) takeChanges() (*model.Changes, time.Time) {
	s.changesMu.Lock()
	defer s.changesMu.Unlock()
	ch, first := s.changes, s.firstSeen
	s.changes, s.firstSeen = &model.Changes{}, time.Time{}
	return ch, first
}

// rebuild builds the next snapshot from the changes and pushes it.
func (s *Server) rebuild(ch *model.Changes, first time.Time) {
	t0 := time.Now()
	prev := s.snap.Load()
	snap, delta := s.builder.Build(prev, s.store, ch)
	s.metrics.snapshotBuildTime.Observe(time.Since(t0).Seconds())
	s.metrics.services.Set(float64(len(snap.Services)))
	if prev != nil && delta.Empty() {
		// Keep the snapshot (its raw config lists may be newer) but push nothing.
		s.snap.Store(snap)
		s.log.Debug("changes left the mesh as it was: no push", "events", ch.Events())
		return
	}
	s.Push(snap, delta, first)
}

// Push makes snap current and sends every connected proxy what changed for
// it. Proxies whose resources hash the same get nothing; an endpoint-only
// change therefore sends EDS alone.
func (s *Server) Push(snap *model.Snapshot, delta *model.Delta, first time.Time) {
	t0 := time.Now()
	s.snap.Store(snap)
	s.pushStart.Store(&first)
	conns := s.connections()
	differ := translate.NewDiffer()
	// ACKs of this push's responses compare against views of it: they
	// share its comparisons (and drop the previous push's).
	s.differ.Store(differ)
	pushed := 0
	for _, c := range conns {
		c.mu.Lock()
		if c.proxy != nil {
			if !c.proxy.HasPod {
				if p := c.proxy.WithPod(s.store); p.HasPod {
					// Its labels may have changed: compare everything.
					c.proxy = p
					for _, st := range c.types {
						st.view = nil
					}
				}
			}
			c.view = s.translator.View(snap, c.proxy)
			if s.respondAll(c, first, differ) {
				pushed++
			}
		}
		c.mu.Unlock()
	}
	s.translator.Sweep(snap)
	s.log.Info("push",
		"snapshot", snap.Version, "full", delta.Full, "endpointsOnly", delta.EndpointsOnly(),
		"hosts", len(delta.Hosts), "services", len(snap.Services),
		"proxies", len(conns), "proxiesPushed", pushed, "took", time.Since(t0))
}

// respondAll answers the parked watches of a connection in push order,
// looking for each type only at what changed since the view it was last
// compared against; c.mu must be held. It reports whether anything was sent.
func (s *Server) respondAll(c *conn, first time.Time, differ *translate.Differ) bool {
	sent := false
	order := append([]string(nil), translate.Types...)
	var others []string
	for t := range c.types {
		if !isKnownType(t) {
			others = append(others, t)
		}
	}
	sort.Strings(others)
	for _, t := range append(order, others...) {
		st := c.types[t]
		if st == nil || isDebugType(t) {
			continue
		}
		if st.sotw == nil && st.delta == nil {
			continue // a response is in flight; the ACK's new watch compares in full
		}
		var h hint
		if isKnownType(t) {
			names, all := c.view.Changed(st.view, t, differ)
			if !all && len(names) == 0 {
				continue
			}
			h = hint{only: !all, names: names}
		}
		switch {
		case st.sotw != nil:
			sent = s.respondSotw(c, st, st.sotw, first, h) || sent
		case st.delta != nil:
			sent = s.respondDelta(c, st, st.delta, first, h) || sent
		}
	}
	return sent
}

func isKnownType(t string) bool {
	for _, k := range translate.Types {
		if k == t {
			return true
		}
	}
	return false
}

func (s *Server) connections() []*conn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].key.delta != out[j].key.delta {
			return !out[i].key.delta
		}
		return out[i].key.id < out[j].key.id
	})
	return out
}

func (s *Server) conn(k connKey) *conn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.conns[k]
}

// currentView returns the connection's view at the current snapshot
// without storing it; c.mu must be held.
func (s *Server) currentView(c *conn) *translate.View {
	snap := s.snap.Load()
	if snap == nil || c.proxy == nil {
		return nil
	}
	if c.view != nil && c.view.Snapshot == snap {
		return c.view
	}
	return s.translator.View(snap, c.proxy)
}

// ensureView returns the connection's view at the current snapshot (nil
// before the first snapshot); c.mu must be held.
func (s *Server) ensureView(c *conn) *translate.View {
	snap := s.snap.Load()
	if snap == nil || c.proxy == nil {
		return nil
	}
	if c.view == nil || c.view.Snapshot != snap {
		c.view = s.translator.View(snap, c.proxy)
	}
	return c.view
}

func (s *Server) currentPushStart() time.Time {
	if t := s.pushStart.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// ackDiffer is the Differ ACKs share: the latest push's.
func (s *Server) ackDiffer() *translate.Differ {
	if d := s.differ.Load(); d != nil {
		return d
	}
	d := translate.NewDiffer()
	s.differ.CompareAndSwap(nil, d)
	return s.differ.Load()
}

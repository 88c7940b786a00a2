// Package graph keeps a sliding window of mesh traffic between workloads
// and serves it as a service graph: /api/graph (JSON) and /ui/graph (a
// self-contained page that draws it).
//
// The window is a ring of fixed-length slots, each holding per-edge
// counters and a sparse latency histogram, so a query over the last N
// minutes sums at most N/slot slots and memory is bounded by the edges
// active in the longest window.
package graph

import (
	"math"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshd/meshd/telemetry/traffic"
)

// Defaults for Options.
const (
	DefaultSlot      = 10 * time.Second
	DefaultMaxWindow = time.Hour
	DefaultMaxEdges  = 5000
)

// Options tune a Graph.
type Options struct {
	// Slot is the time resolution of the window; zero means DefaultSlot.
	Slot time.Duration
	// MaxWindow is the longest window a query may ask for; zero means
	// DefaultMaxWindow.
	MaxWindow time.Duration
	// MaxEdges caps the edges held in one slot; records beyond it are
	// dropped and counted. Zero means DefaultMaxEdges.
	MaxEdges int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Slot <= 0 {
		o.Slot = DefaultSlot
	}
	if o.MaxWindow <= 0 {
		o.MaxWindow = DefaultMaxWindow
	}
	if o.MaxWindow < o.Slot {
		o.MaxWindow = o.Slot
	}
	if o.MaxEdges <= 0 {
		o.MaxEdges = DefaultMaxEdges
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// workload is one end of an edge.
type workload struct {
	Namespace, Name, App, Version string
}

func (w workload) id() string {
	if w.Name == traffic.Unknown {
		return traffic.Unknown
	}
	return w.Namespace + "/" + w.Name
}

type edgeKey struct {
	Src, Dst workload
	Protocol string
	Reporter string
}

// maxServices bounds the destination services remembered per edge.
const maxServices = 8

type edgeStats struct {
	requests, errors uint64
	mtls, plain      uint64
	latency          latency

	connections, sent, received uint64
	services                    []string
}

func (e *edgeStats) add(o *edgeStats) {
	e.requests += o.requests
	e.errors += o.errors
	e.mtls += o.mtls
	e.plain += o.plain
	e.latency.merge(&o.latency)
	e.connections += o.connections
	e.sent += o.sent
	e.received += o.received
	for _, s := range o.services {
		e.addService(s)
	}
}

func (e *edgeStats) addService(s string) {
	if s == "" || s == traffic.Unknown {
		return
	}
	for _, have := range e.services {
		if have == s {
			return
		}
	}
	if len(e.services) < maxServices {
		e.services = append(e.services, s)
	}
}

type slot struct {
	idx   int64
	edges map[edgeKey]*edgeStats
}

// Graph is the windowed aggregation. It is a traffic.Sink. Safe for
// concurrent use.
type Graph struct {
	opts    Options
	started time.Time

	mu    sync.Mutex
	slots []slot

	dropped prometheus.Counter
}

// New builds a graph; its dropped-edges counter is registered in ctrl
// (the control-plane registry), which may be nil.
func New(opts Options, ctrl prometheus.Registerer) *Graph {
	opts = opts.withDefaults()
	n := int(opts.MaxWindow/opts.Slot) + 1
	g := &Graph{
		opts:    opts,
		started: opts.Now(),
		slots:   make([]slot, n),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshd_telemetry_graph_dropped_records_total",
			Help: "Traffic records left out of the service graph because a window slot held the maximum number of edges.",
		}),
	}
	for i := range g.slots {
		g.slots[i].idx = -1
	}
	if ctrl != nil {
		ctrl.MustRegister(g.dropped)
	}
	return g
}

// MaxWindow is the longest window Query accepts.
func (g *Graph) MaxWindow() time.Duration { return g.opts.MaxWindow }

// Slot is the window resolution.
func (g *Graph) Slot() time.Duration { return g.opts.Slot }

func (g *Graph) slotFor(idx int64) *slot {
	s := &g.slots[int(idx%int64(len(g.slots)))]
	if s.idx != idx {
		s.idx = idx
		s.edges = map[edgeKey]*edgeStats{}
	}
	return s
}

// Record adds a batch to the current slot.
func (g *Graph) Record(batch []traffic.Record) {
	idx := g.opts.Now().UnixNano() / int64(g.opts.Slot)
	var dropped int
	g.mu.Lock()
	s := g.slotFor(idx)
	for i := range batch {
		r := &batch[i]
		l := &r.Labels
		k := edgeKey{
			Src:      workload{l.SourceWorkloadNamespace, l.SourceWorkload, l.SourceApp, l.SourceVersion},
			Dst:      workload{l.DestinationWorkloadNamespace, l.DestinationWorkload, l.DestinationApp, l.DestinationVersion},
			Protocol: l.RequestProtocol,
			Reporter: l.Reporter,
		}
		e := s.edges[k]
		if e == nil {
			if len(s.edges) >= g.opts.MaxEdges {
				dropped++
				continue
			}
			e = &edgeStats{}
			s.edges[k] = e
		}
		e.addService(l.DestinationService)
		switch r.Kind {
		case traffic.HTTP:
			e.requests++
			if r.Error() {
				e.errors++
			}
			e.latency.observe(r.DurationMillis)
		case traffic.TCP:
			if r.Opened {
				e.connections++
			}
			e.sent += r.SentBytes
			e.received += r.ReceivedBytes
		}
		if l.Reporter == traffic.ReporterDestination {
			switch l.ConnectionSecurityPolicy {
			case traffic.SecurityMutualTLS:
				e.mtls++
			case traffic.SecurityNone:
				e.plain++
			}
		}
	}
	g.mu.Unlock()
	if dropped > 0 {
		g.dropped.Add(float64(dropped))
	}
}

// Node is a workload in the graph.
type Node struct {
	// ID is NAMESPACE/WORKLOAD, or "unknown" for callers or callees meshd
	// could not identify.
	ID        string `json:"id"`
	Namespace string `json:"namespace"`
	Workload  string `json:"workload"`
	App       string `json:"app"`
	Version   string `json:"version"`
}

// Edge is the traffic from one workload to another over one protocol.
type Edge struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	Protocol string `json:"protocol"`
	// Reporter says whose records the figures come from: the destination's
	// when its proxy reports, else the source's, so a call seen by both
	// proxies is counted once.
	Reporter string   `json:"reporter"`
	Services []string `json:"services"`

	// HTTP and gRPC.
	Requests    uint64  `json:"requests"`
	Errors      uint64  `json:"errors"`
	RequestRate float64 `json:"requestRate"`
	ErrorRate   float64 `json:"errorRate"`
	P50Ms       float64 `json:"p50Ms"`
	P99Ms       float64 `json:"p99Ms"`

	// TCP.
	Connections       uint64  `json:"connections"`
	SentBytesRate     float64 `json:"sentBytesRate"`
	ReceivedBytesRate float64 `json:"receivedBytesRate"`

	// MTLS is "mutual_tls" when every call the destination reported was
	// mutual TLS, "none" when none was, "partial" when some were, and
	// "unknown" when only the source reported.
	MTLS string `json:"mtls"`
}

// Result is a graph over one window.
type Result struct {
	Window string `json:"window"`
	// Seconds is the time the rates are over: the window, or less when
	// meshd has been up for less.
	Seconds float64 `json:"seconds"`
	Nodes   []Node  `json:"nodes"`
	Edges   []Edge  `json:"edges"`
}

// Query sums the slots of the last window (clamped to [Slot, MaxWindow])
// into nodes and edges, sorted by ID.
func (g *Graph) Query(window time.Duration) Result {
	window = min(max(window, g.opts.Slot), g.opts.MaxWindow)
	now := g.opts.Now()
	nowIdx := now.UnixNano() / int64(g.opts.Slot)
	oldest := nowIdx - int64((window+g.opts.Slot-1)/g.opts.Slot) + 1

	type pairKey struct {
		Src, Dst workload
		Protocol string
	}
	byReporter := map[pairKey]map[string]*edgeStats{}
	g.mu.Lock()
	for i := range g.slots {
		s := &g.slots[i]
		if s.idx < oldest || s.idx > nowIdx {
			continue
		}
		for k, e := range s.edges {
			pk := pairKey{k.Src, k.Dst, k.Protocol}
			m := byReporter[pk]
			if m == nil {
				m = map[string]*edgeStats{}
				byReporter[pk] = m
			}
			sum := m[k.Reporter]
			if sum == nil {
				sum = &edgeStats{}
				m[k.Reporter] = sum
			}
			sum.add(e)
		}
	}
	g.mu.Unlock()

	secs := window.Seconds()
	if up := now.Sub(g.started).Seconds(); up < secs {
		secs = max(up, 1)
	}
	res := Result{Window: window.String(), Seconds: secs, Nodes: []Node{}, Edges: []Edge{}}
	nodes := map[string]Node{}
	addNode := func(w workload) string {
		id := w.id()
		if _, ok := nodes[id]; !ok {
			nodes[id] = Node{ID: id, Namespace: w.Namespace, Workload: w.Name, App: w.App, Version: w.Version}
		}
		return id
	}
	for pk, m := range byReporter {
		reporter := traffic.ReporterDestination
		e := m[reporter]
		if e == nil {
			reporter = traffic.ReporterSource
			e = m[reporter]
		}
		if e == nil {
			continue
		}
		out := Edge{
			Source: addNode(pk.Src), Target: addNode(pk.Dst), Protocol: pk.Protocol, Reporter: reporter,
			Services: append([]string{}, e.services...),
			Requests: e.requests, Errors: e.errors,
			RequestRate:       round(float64(e.requests) / secs),
			Connections:       e.connections,
			SentBytesRate:     round(float64(e.sent) / secs),
			ReceivedBytesRate: round(float64(e.received) / secs),
			MTLS:              traffic.Unknown,
		}
		sort.Strings(out.Services)
		if e.requests > 0 {
			out.ErrorRate = round(float64(e.errors) / float64(e.requests))
			out.P50Ms = round(e.latency.quantile(0.5))
			out.P99Ms = round(e.latency.quantile(0.99))
		}
		if reporter == traffic.ReporterDestination {
			switch {
			case e.mtls > 0 && e.plain == 0:
				out.MTLS = traffic.SecurityMutualTLS
			case e.mtls == 0 && e.plain > 0:
				out.MTLS = traffic.SecurityNone
			case e.mtls > 0:
				out.MTLS = "partial"
			}
		}
		res.Edges = append(res.Edges, out)
	}
	for _, n := range nodes {
		res.Nodes = append(res.Nodes, n)
	}
	sort.Slice(res.Nodes, func(i, j int) bool { return res.Nodes[i].ID < res.Nodes[j].ID })
	sort.Slice(res.Edges, func(i, j int) bool {
		a, b := res.Edges[i], res.Edges[j]
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		if a.Target != b.Target {
			return a.Target < b.Target
		}
		return a.Protocol < b.Protocol
	})
	return res
}

// round keeps three decimals: enough for a page, and stable JSON.
func round(v float64) float64 { return math.Round(v*1000) / 1000 }

var _ traffic.Sink = (*Graph)(nil)

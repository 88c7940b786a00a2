package traffic

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Buckets are the upper bounds of every Istio histogram meshd exposes:
// Envoy's default histogram buckets, which Istio's sidecars use for
// istio_request_duration_milliseconds, istio_request_bytes and
// istio_response_bytes unless a pod overrides them. Keeping them lets
// dashboards' histogram_quantile queries read the same le values.
var Buckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// Defaults for Options.
const (
	DefaultMaxSeries = 10000
	DefaultSeriesTTL = time.Hour
)

// Options tune an Aggregator.
type Options struct {
	// MaxSeries caps the label sets held (HTTP and TCP together, including
	// those reported through the metrics service). A record that would
	// create one more is dropped and counted in
	// meshd_telemetry_dropped_series_total. Each HTTP label set is exposed
	// as one counter and three histograms, each TCP label set as four
	// counters. Zero means DefaultMaxSeries.
	MaxSeries int
	// SeriesTTL forgets a label set that saw no record for this long, so
	// that workloads that went away make room for new ones. Zero means
	// DefaultSeriesTTL; negative keeps series forever.
	SeriesTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.MaxSeries <= 0 {
		o.MaxSeries = DefaultMaxSeries
	}
	if o.SeriesTTL == 0 {
		o.SeriesTTL = DefaultSeriesTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// numBuckets is len(Buckets), as a constant so that a Histogram is a
// fixed-size value needing no allocation.
const numBuckets = 19

func init() {
	if len(Buckets) != numBuckets {
		panic("traffic: Buckets and numBuckets disagree")
	}
}

// Histogram is a histogram over Buckets: Counts[i] counts observations in
// (Buckets[i-1], Buckets[i]], and the last element those above every bound.
type Histogram struct {
	Counts [numBuckets + 1]uint64
	Sum    float64
}

// Observe adds one value.
func (h *Histogram) Observe(v float64) {
	h.Counts[sort.SearchFloat64s(Buckets, v)]++
	h.Sum += v
}

// Count is the number of observations.
func (h *Histogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

func (h *Histogram) add(o *Histogram) {
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.Sum += o.Sum
}

// cumulative returns the buckets as Prometheus wants them: upper bound ->
// observations at or below it.
func (h *Histogram) cumulative() (map[float64]uint64, uint64) {
	m := make(map[float64]uint64, len(Buckets))
	var n uint64
	for i, b := range Buckets {
		n += h.Counts[i]
		m[b] = n
	}
	return m, n + h.Counts[len(Buckets)]
}

// HTTPTotals are the cumulative values of one HTTP label set.
type HTTPTotals struct {
	Requests      uint64
	Duration      Histogram
	RequestBytes  Histogram
	ResponseBytes Histogram
}

func (t *HTTPTotals) add(o *HTTPTotals) {
	t.Requests += o.Requests
	t.Duration.add(&o.Duration)
	t.RequestBytes.add(&o.RequestBytes)
	t.ResponseBytes.add(&o.ResponseBytes)
}

// TCPTotals are the cumulative values of one TCP label set.
type TCPTotals struct {
	SentBytes, ReceivedBytes uint64
	Opened, Closed           uint64
}

func (t *TCPTotals) add(o *TCPTotals) {
	t.SentBytes += o.SentBytes
	t.ReceivedBytes += o.ReceivedBytes
	t.Opened += o.Opened
	t.Closed += o.Closed
}

// Snapshot is one proxy's own cumulative Istio metrics, as it reports them
// through Envoy's metrics service. Label sets must be normalized.
type Snapshot struct {
	HTTP map[Labels]*HTTPTotals
	TCP  map[Labels]*TCPTotals
}

func (s *Snapshot) size() int {
	if s == nil {
		return 0
	}
	return len(s.HTTP) + len(s.TCP)
}

type httpSeries struct {
	HTTPTotals
	seen time.Time
}

type tcpSeries struct {
	TCPTotals
	seen time.Time
}

// Aggregator folds records into Istio's standard metrics. It is a
// prometheus.Collector: register it in the registry served at
// /stats/prometheus. Safe for concurrent use.
type Aggregator struct {
	opts Options

	mu      sync.Mutex
	http    map[Labels]*httpSeries
	tcp     map[Labels]*tcpSeries
	proxies map[string]*Snapshot
	ext     int // label sets held in proxies

	dropped prometheus.Counter
	expired prometheus.Counter
}

// NewAggregator builds an aggregator. Its own health metrics (series held,
// series dropped by the cap, series expired) are registered in ctrl, the
// control-plane registry; ctrl may be nil.
func NewAggregator(opts Options, ctrl prometheus.Registerer) *Aggregator {
	a := &Aggregator{
		opts:    opts.withDefaults(),
		http:    map[Labels]*httpSeries{},
		tcp:     map[Labels]*tcpSeries{},
		proxies: map[string]*Snapshot{},
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshd_telemetry_dropped_series_total",
			Help: "Traffic records (or proxy-reported label sets) not aggregated because they would have created a series beyond the series cap.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshd_telemetry_expired_series_total",
			Help: "Traffic series forgotten because they saw no record for the series TTL.",
		}),
	}
	if ctrl != nil {
		ctrl.MustRegister(a.dropped, a.expired, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meshd_telemetry_series",
			Help: "Traffic label sets held for /stats/prometheus (HTTP and TCP), against the series cap.",
		}, func() float64 { return float64(a.Len()) }))
	}
	return a
}

// Len returns the number of label sets held.
func (a *Aggregator) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lenLocked()
}

func (a *Aggregator) lenLocked() int { return len(a.http) + len(a.tcp) + a.ext }

// Record aggregates a batch. Labels must have been normalized
// (Labels.Normalize); the aggregator checks only new label sets.
func (a *Aggregator) Record(batch []Record) {
	now := a.opts.Now()
	var dropped int
	a.mu.Lock()
	for i := range batch {
		r := &batch[i]
		switch r.Kind {
		case HTTP:
			s := a.http[r.Labels]
			if s == nil {
				if s = a.newHTTP(r.Labels); s == nil {
					dropped++
					continue
				}
			}
			s.seen = now
			s.Requests++
			s.Duration.Observe(r.DurationMillis)
			s.RequestBytes.Observe(float64(r.RequestBytes))
			s.ResponseBytes.Observe(float64(r.ResponseBytes))
		case TCP:
			s := a.tcp[r.Labels]
			if s == nil {
				if s = a.newTCP(r.Labels); s == nil {
					dropped++
					continue
				}
			}
			s.seen = now
			s.SentBytes += r.SentBytes
			s.ReceivedBytes += r.ReceivedBytes
			if r.Opened {
				s.Opened++
			}
			if r.Closed {
				s.Closed++
			}
		}
	}
	a.mu.Unlock()
	if dropped > 0 {
		a.dropped.Add(float64(dropped))
	}
}

// newHTTP makes room for a label set, or returns nil when the cap is reached.
func (a *Aggregator) newHTTP(l Labels) *httpSeries {
	n := l
	n.Normalize()
	if n != l {
		// Unnormalized input would become a second key for the same
		// exposed series; keep the normalized one.
		if s := a.http[n]; s != nil {
			return s
		}
	}
	if a.lenLocked() >= a.opts.MaxSeries {
		return nil
	}
	s := &httpSeries{}
	a.http[n] = s
	return s
}

func (a *Aggregator) newTCP(l Labels) *tcpSeries {
	n := l
	n.Normalize()
	n.ResponseCode, n.GRPCResponseStatus = "", ""
	if n != l {
		if s := a.tcp[n]; s != nil {
			return s
		}
	}
	if a.lenLocked() >= a.opts.MaxSeries {
		return nil
	}
	s := &tcpSeries{}
	a.tcp[n] = s
	return s
}

// SetProxy replaces the cumulative metrics one proxy reported (keyed by
// its node ID and stream), within the series cap: label sets beyond it are
// left out and counted as dropped.
func (a *Aggregator) SetProxy(id string, snap *Snapshot) {
	a.mu.Lock()
	old := a.proxies[id]
	a.ext -= old.size()
	room := a.opts.MaxSeries - a.lenLocked()
	var dropped int
	if snap.size() > room {
		trimmed := &Snapshot{HTTP: map[Labels]*HTTPTotals{}, TCP: map[Labels]*TCPTotals{}}
		for l, t := range snap.HTTP {
			if trimmed.size() < room {
				trimmed.HTTP[l] = t
			}
		}
		for l, t := range snap.TCP {
			if trimmed.size() < room {
				trimmed.TCP[l] = t
			}
		}
		dropped = snap.size() - trimmed.size()
		snap = trimmed
	}
	a.proxies[id] = snap
	a.ext += snap.size()
	a.mu.Unlock()
	if dropped > 0 {
		a.dropped.Add(float64(dropped))
	}
}

// RemoveProxy forgets a proxy's reported metrics (its stream ended).
func (a *Aggregator) RemoveProxy(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ext -= a.proxies[id].size()
	delete(a.proxies, id)
}

// Sweep forgets label sets that saw no record since now minus the TTL.
func (a *Aggregator) Sweep() {
	if a.opts.SeriesTTL < 0 {
		return
	}
	cutoff := a.opts.Now().Add(-a.opts.SeriesTTL)
	var n int
	a.mu.Lock()
	for l, s := range a.http {
		if s.seen.Before(cutoff) {
			delete(a.http, l)
			n++
		}
	}
	for l, s := range a.tcp {
		if s.seen.Before(cutoff) {
			delete(a.tcp, l)
			n++
		}
	}
	a.mu.Unlock()
	if n > 0 {
		a.expired.Add(float64(n))
	}
}

// Run sweeps expired series until ctx ends.
func (a *Aggregator) Run(ctx context.Context) error {
	if a.opts.SeriesTTL < 0 {
		<-ctx.Done()
		return nil
	}
	every := a.opts.SeriesTTL / 4
	if every < 10*time.Second {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.Sweep()
		}
	}
}

// The exposed families.
var (
	descRequests = prometheus.NewDesc("istio_requests_total",
		"Requests, as reported by the source or destination proxy.", httpLabelNames, nil)
	descDuration = prometheus.NewDesc("istio_request_duration_milliseconds",
		"Request duration in milliseconds.", httpLabelNames, nil)
	descRequestBytes = prometheus.NewDesc("istio_request_bytes",
		"Request sizes (headers and body) in bytes.", httpLabelNames, nil)
	descResponseBytes = prometheus.NewDesc("istio_response_bytes",
		"Response sizes (headers and body) in bytes.", httpLabelNames, nil)
	descTCPSent = prometheus.NewDesc("istio_tcp_sent_bytes_total",
		"Bytes sent to the downstream during TCP connections.", tcpLabelNames, nil)
	descTCPReceived = prometheus.NewDesc("istio_tcp_received_bytes_total",
		"Bytes received from the downstream during TCP connections.", tcpLabelNames, nil)
	descTCPOpened = prometheus.NewDesc("istio_tcp_connections_opened_total",
		"TCP connections opened.", tcpLabelNames, nil)
	descTCPClosed = prometheus.NewDesc("istio_tcp_connections_closed_total",
		"TCP connections closed.", tcpLabelNames, nil)
)

// Describe sends the descriptors of every Istio family.
func (a *Aggregator) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descDuration, descRequestBytes, descResponseBytes,
		descTCPSent, descTCPReceived, descTCPOpened, descTCPClosed} {
		ch <- d
	}
}

// Collect sends every series: records aggregated here plus what proxies
// reported themselves, summed per label set.
func (a *Aggregator) Collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	httpT := make(map[Labels]HTTPTotals, len(a.http))
	for l, s := range a.http {
		httpT[l] = s.HTTPTotals
	}
	tcpT := make(map[Labels]TCPTotals, len(a.tcp))
	for l, s := range a.tcp {
		tcpT[l] = s.TCPTotals
	}
	for _, p := range a.proxies {
		for l, t := range p.HTTP {
			v := httpT[l]
			v.add(t)
			httpT[l] = v
		}
		for l, t := range p.TCP {
			v := tcpT[l]
			v.add(t)
			tcpT[l] = v
		}
	}
	a.mu.Unlock()

	for l, t := range httpT {
		vals := l.values()
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(t.Requests), vals...)
		for _, h := range []struct {
			d *prometheus.Desc
			h *Histogram
		}{{descDuration, &t.Duration}, {descRequestBytes, &t.RequestBytes}, {descResponseBytes, &t.ResponseBytes}} {
			buckets, n := h.h.cumulative()
			ch <- prometheus.MustNewConstHistogram(h.d, n, h.h.Sum, buckets, vals...)
		}
	}
	for l, t := range tcpT {
		vals := l.values()[:len(tcpLabelNames)]
		ch <- prometheus.MustNewConstMetric(descTCPSent, prometheus.CounterValue, float64(t.SentBytes), vals...)
		ch <- prometheus.MustNewConstMetric(descTCPReceived, prometheus.CounterValue, float64(t.ReceivedBytes), vals...)
		ch <- prometheus.MustNewConstMetric(descTCPOpened, prometheus.CounterValue, float64(t.Opened), vals...)
		ch <- prometheus.MustNewConstMetric(descTCPClosed, prometheus.CounterValue, float64(t.Closed), vals...)
	}
}

var (
	_ prometheus.Collector = (*Aggregator)(nil)
	_ Sink                 = (*Aggregator)(nil)
)

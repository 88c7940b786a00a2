package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Config sizes the mesh and the load. Every count has a deadline beside it:
// a run never waits forever.
type Config struct {
	Kubeconfig      string // API server the mesh is written to
	Services        int
	Namespaces      int
	VirtualServices int // services that also get a DestinationRule with subsets v1, v2
	Proxies         int
	// XDS is the protocol the sidecars speak: "sotw" (default) or "delta".
	XDS string
	// Proxyless is how many proxyless gRPC clients connect besides the
	// sidecars; they count in every scenario's convergence figures.
	Proxyless       int
	Seed            int64
	NamespacePrefix string
	ChurnRate       int           // EndpointSlice updates per second
	ChurnFor        time.Duration // how long the churn lasts
	Timeout         time.Duration // per scenario: how long to wait for convergence
	MinMemAvailable int64         // bytes: stop cleanly when MemAvailable drops below
	Keep            bool          // leave the mesh in the API server afterwards
	// CSRs certificates are requested in the CSR storm, of each key type,
	// by CSRConcurrency workloads at once (CSRs < 0 skips the storm).
	CSRs, CSRConcurrency int
	// WebhookRate AdmissionReviews per second are sent for WebhookFor
	// (WebhookRate < 0 skips the webhook load).
	WebhookRate int
	WebhookFor  time.Duration
	// With ProfileDir set, a CPU profile of the first ProfileFor of the
	// scenarios and a heap profile after each are saved in
	// ProfileDir/TARGET, from the target's PprofURL.
	ProfileDir string
	ProfileFor time.Duration
	// Progress, when set (a terminal), gets a live line while a scenario
	// waits for convergence, instead of a log line every 5 s.
	Progress io.Writer
}

// Target is one control plane under measurement: where its servers listen
// and which process it is.
type Target struct {
	Name       string
	XDSAddress string // plaintext ADS (15010)
	CAAddress  string // TLS gRPC with IstioCertificateService (15012); "" skips the CSR storm
	WebhookURL string // validating webhook, https://.../validate (15017); "" skips the webhook load
	PprofURL   string // debug server with /debug/pprof (8080)
	PID        int    // sampled from /proc for CPU and RSS (0: not sampled)
}

// Starter brings a target up on the API server and returns it with the
// function that stops it. Run starts each target only when the previous
// one has stopped: each is measured alone on the machine.
type Starter func(ctx context.Context) (*Target, func(), error)

// Running is a Starter for a control plane already running elsewhere.
func Running(t Target) Starter {
	return func(context.Context) (*Target, func(), error) { return &t, func() {}, nil }
}

// Defaults fills in zero fields.
func (c *Config) Defaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Services, 100)
	def(&c.Proxies, 100)
	def(&c.Namespaces, 4)
	def(&c.ChurnRate, 10)
	def(&c.CSRs, 1000)
	def(&c.CSRConcurrency, 50)
	def(&c.WebhookRate, 500)
	if c.VirtualServices == 0 {
		c.VirtualServices = max(1, c.Services/10)
	}
	if c.XDS == "" {
		c.XDS = "sotw"
	}
	if c.NamespacePrefix == "" {
		c.NamespacePrefix = "meshload"
	}
	if c.ChurnFor == 0 {
		c.ChurnFor = 10 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Minute
	}
	if c.WebhookFor == 0 {
		c.WebhookFor = 10 * time.Second
	}
	if c.ProfileFor == 0 {
		c.ProfileFor = 30 * time.Second
	}
	if c.MinMemAvailable == 0 {
		c.MinMemAvailable = 2 << 30
	}
}

// Scenario is one measured scenario's figures. Latencies are per proxy (per
// proxy and update for churn), in milliseconds.
type Scenario struct {
	Name       string  `json:"name"`
	Samples    int     `json:"samples"`
	Converged  int     `json:"converged"`
	P50ms      float64 `json:"p50_ms"`
	P90ms      float64 `json:"p90_ms"`
	P99ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	Bytes      int64   `json:"bytes"`
	BytesProxy int64   `json:"bytes_per_proxy"`
	CPUSeconds float64 `json:"cpu_seconds"`
	PeakRSSMB  float64 `json:"peak_rss_mb"`
	WallSecs   float64 `json:"wall_seconds"`
	PerSec     float64 `json:"per_second,omitempty"` // CSR storm: certificates signed; webhook: reviews answered
	Errors     int     `json:"errors"`               // proxies whose stream failed; requests that failed
	Reconnects int     `json:"reconnects"`           // streams opened again after a failure, as Envoy does
}

// AllConverged reports whether every sample converged.
func (s Scenario) AllConverged() bool { return s.Samples > 0 && s.Converged == s.Samples }

// Report is a whole run.
type Report struct {
	Target          string     `json:"target"`
	Services        int        `json:"services"`
	Proxies         int        `json:"proxies"`
	XDS             string     `json:"xds"`
	Proxyless       int        `json:"proxyless"`
	VirtualServices int        `json:"virtual_services"`
	Seed            int64      `json:"seed"`
	XDSAddress      string     `json:"xds_address"`
	MeshCreateSecs  float64    `json:"mesh_create_seconds"`
	Scenarios       []Scenario `json:"scenarios"`
	Stopped         string     `json:"stopped,omitempty"` // why the run ended early
}

// Run writes the mesh into the API server once and measures each target
// in turn on it, with the same seed: cold start, config change, endpoint
// churn, CSR storm and webhook load. Between targets the mesh is put back
// as it was written. It returns what it measured even when it stops early
// (the error says why); a target that runs the machine short of memory is
// stopped and the next one still runs.
func Run(ctx context.Context, log *slog.Logger, cfg Config, targets ...Starter) ([]*Report, error) {
	cfg.Defaults()
	if cfg.XDS != "sotw" && cfg.XDS != "delta" {
		return nil, fmt.Errorf("config XDS %q: want sotw or delta", cfg.XDS)
	}
	if cfg.Proxyless < 0 {
		return nil, fmt.Errorf("config Proxyless %d: must not be negative", cfg.Proxyless)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	rc.QPS, rc.Burst = 500, 1000 // writing the mesh must not be the slow part
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kube client: %w", err)
	}
	ic, err := istioclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("istio client: %w", err)
	}

	m := newMesh(cfg)
	t0 := time.Now()
	log.Info("creating mesh", "services", cfg.Services, "namespaces", len(m.namespaces), "virtualServices", len(m.routed))
	err = m.create(ctx, kc, ic)
	if !cfg.Keep {
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := m.delete(dctx, kc); err != nil {
				log.Warn("cleanup failed", "err", err)
			}
		}()
	}
	if err != nil {
		return nil, err
	}
	created := time.Since(t0).Seconds()

	var reports []*Report
	var errs []error
	for i, start := range targets {
		if i > 0 {
			if err := m.reset(ctx, kc, ic, cfg); err != nil {
				return reports, err
			}
		}
		t, stop, err := start(ctx)
		if err != nil {
			return reports, errors.Join(append(errs, err)...)
		}
		r := &runner{log: log.With("target", t.Name), cfg: cfg, t: *t, m: m, kc: kc, ic: ic}
		rep, err := r.measure(ctx)
		stop()
		rep.MeshCreateSecs = created
		reports = append(reports, rep)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.Name, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return reports, errors.Join(errs...)
}

// runner measures one target.
type runner struct {
	log *slog.Logger
	cfg Config
	t   Target
	m   *mesh
	kc  kubernetes.Interface
	ic  istioclient.Interface
}

func (r *runner) measure(parent context.Context) (*Report, error) {
	cfg, log, m, kc, ic := r.cfg, r.log, r.m, r.kc, r.ic
	rep := &Report{Target: r.t.Name, Services: cfg.Services, Proxies: cfg.Proxies, XDS: cfg.XDS, Proxyless: cfg.Proxyless,
		VirtualServices: min(cfg.VirtualServices, cfg.Services), Seed: cfg.Seed, XDSAddress: r.t.XDSAddress}
	sidecarKind := sotwSidecar
	if cfg.XDS == "delta" {
		sidecarKind = deltaSidecar
	}
	ctx, stop := context.WithCancelCause(parent)
	defer stop(nil)
	mon := newMonitor(r.t.PID, cfg.MinMemAvailable, func(err error) { stop(err) })
	go mon.run(ctx)

	var profDir string
	if cfg.ProfileDir != "" {
		profDir = filepath.Join(cfg.ProfileDir, r.t.Name)
	}
	prof := newProfiler(log, r.t.PprofURL, profDir)
	defer prof.wait()
	hosts := m.hostIndex()
	proxies := make([]*proxy, cfg.Proxies+cfg.Proxyless)
	pctx, cancelProxies := context.WithCancel(ctx)
	var wg sync.WaitGroup
	disconnect := func() { cancelProxies(); wg.Wait() }
	defer disconnect()
	finish := func(err error) (*Report, error) {
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			rep.Stopped = c.Error()
			return rep, c
		}
		return rep, err
	}

	// Cold start: all proxies connect at once.
	log.Info("cold start", "proxies", cfg.Proxies, "proxyless", cfg.Proxyless, "protocol", cfg.XDS, "xds", r.t.XDSAddress)
	prof.startCPU(ctx, cfg.ProfileFor)
	sc := mon.begin("cold start", proxies)
	start := time.Now()
	for i := range proxies {
		k := sidecarKind
		if i >= cfg.Proxies {
			k = proxyless
		}
		proxies[i] = newProxy(i, k, m, hosts)
		wg.Add(1)
		go func(p *proxy) { defer wg.Done(); p.run(pctx, r.t.XDSAddress) }(proxies[i])
	}
	r.await(ctx, "cold start", len(proxies), func() int {
		return countDone(proxies, func(p *proxy) bool { return !p.fullAt.IsZero() })
	})
	lat := make([]time.Duration, 0, len(proxies))
	for _, p := range proxies {
		p.mu.Lock()
		if !p.fullAt.IsZero() {
			lat = append(lat, p.fullAt.Sub(start))
		}
		p.mu.Unlock()
	}
	rep.Scenarios = append(rep.Scenarios, sc.end(len(proxies), lat))
	log.Info("cold start done", "converged", len(lat), "of", len(proxies))
	prof.heap(ctx, "cold start")
	if ctx.Err() != nil || len(lat) < len(proxies) {
		return finish(fmt.Errorf("cold start: %d of %d proxies converged within %v", len(lat), len(proxies), cfg.Timeout))
	}

	// Config change: one VirtualService gets new weights; each proxy
	// converges when it ACKs an RDS response carrying them.
	if len(m.routed) > 0 {
		weight := m.changedWeight()
		for _, p := range proxies {
			p.routeMarker.Store(uint32(weight))
		}
		i := m.routed[0]
		s := m.services[i]
		log.Info("config change", "virtualService", s.ns+"/"+s.name, "weight", weight)
		sc := mon.begin("config change", proxies)
		t0 := time.Now()
		if err := m.putVirtualService(ctx, ic, i, weight); err != nil {
			return finish(err)
		}
		r.await(ctx, "config change", len(proxies), func() int {
			return countDone(proxies, func(p *proxy) bool { return !p.markerAck.IsZero() })
		})
		lat := lat[:0]
		for _, p := range proxies {
			p.mu.Lock()
			if !p.markerAck.IsZero() {
				lat = append(lat, p.markerAck.Sub(t0))
			}
			p.mu.Unlock()
		}
		rep.Scenarios = append(rep.Scenarios, sc.end(len(proxies), lat))
		log.Info("config change done", "converged", len(lat), "of", len(proxies))
		prof.heap(ctx, "config change")
		if ctx.Err() != nil {
			return finish(nil)
		}
	}

	// Endpoint churn: ChurnRate updates per second, round robin over the
	// services, each adding a marker endpoint that names its generation.
	updates := cfg.churnUpdates()
	log.Info("endpoint churn", "rate", cfg.ChurnRate, "for", cfg.ChurnFor, "updates", updates)
	for _, p := range proxies {
		p.endpointWatch.Store(true)
	}
	sc = mon.begin("endpoint churn", proxies)
	written := make([]time.Time, updates+1) // by generation, from 1
	tick := time.NewTicker(time.Second / time.Duration(cfg.ChurnRate))
	var churnErr error
	for gen := 1; gen <= updates && churnErr == nil; gen++ {
		select {
		case <-ctx.Done():
			churnErr = context.Cause(ctx)
		case <-tick.C:
		}
		if churnErr != nil {
			break
		}
		churnErr = m.putSlice(ctx, kc, (gen-1)%len(m.services), gen, func() { written[gen] = time.Now() })
	}
	tick.Stop()
	if churnErr != nil {
		return finish(churnErr)
	}
	// A proxy has converged on update g once it ACKed EDS holding g or a
	// later update of the same service (debouncing may skip g itself).
	// Only updates of services a proxy watches count: a proxyless client
	// never hears of the others.
	svcOf := func(g int) int { return (g - 1) % len(m.services) }
	samples := 0
	for _, p := range proxies {
		for g := 1; g <= updates; g++ {
			if p.watches(svcOf(g)) {
				samples++
			}
		}
	}
	converged := func(p *proxy, g int) (time.Time, bool) {
		var best time.Time
		for h := g; h <= updates; h += len(m.services) {
			if t, ok := p.genAck[h]; ok && (best.IsZero() || t.Before(best)) {
				best = t
			}
		}
		return best, !best.IsZero()
	}
	r.await(ctx, "endpoint churn", len(proxies), func() int {
		return countDone(proxies, func(p *proxy) bool {
			for g := max(1, updates-len(m.services)+1); g <= updates; g++ {
				if !p.watches(svcOf(g)) {
					continue
				}
				if _, ok := converged(p, g); !ok {
					return false
				}
			}
			return true
		})
	})
	lat = lat[:0]
	for _, p := range proxies {
		p.mu.Lock()
		for g := 1; g <= updates; g++ {
			if !p.watches(svcOf(g)) {
				continue
			}
			if t, ok := converged(p, g); ok {
				lat = append(lat, max(0, t.Sub(written[g])))
			}
		}
		p.mu.Unlock()
	}
	rep.Scenarios = append(rep.Scenarios, sc.end(samples, lat))
	log.Info("endpoint churn done", "converged", len(lat), "of", samples)
	prof.heap(ctx, "endpoint churn")
	if ctx.Err() != nil {
		return finish(nil)
	}
	// The CA and the webhook are measured without proxies connected, so
	// their figures do not depend on the mesh's size.
	disconnect()

	if err := r.caAndWebhook(ctx, mon, rep); err != nil {
		return finish(err)
	}
	return finish(nil)
}

// caAndWebhook runs the CSR storm (one per key type) and the webhook load.
func (r *runner) caAndWebhook(ctx context.Context, mon *monitor, rep *Report) error {
	cfg, ns := r.cfg, r.m.namespaces[0]
	if (r.t.CAAddress == "" || cfg.CSRs < 0) && (r.t.WebhookURL == "" || cfg.WebhookRate < 0) {
		return nil
	}
	// Both control planes publish their root in every namespace; the
	// webhook is served with the same certificate as the CA.
	addr := r.t.CAAddress
	if addr == "" {
		u, err := url.Parse(r.t.WebhookURL)
		if err != nil {
			return fmt.Errorf("webhook URL %q: %w", r.t.WebhookURL, err)
		}
		addr = u.Host
	}
	pool, err := meshRoot(ctx, r.kc, ns, addr, 2*time.Minute)
	if err != nil {
		return err
	}
	if r.t.CAAddress != "" && cfg.CSRs > 0 {
		for _, kt := range []string{"ecdsa", "rsa"} {
			req, err := newCSR(kt, "cluster.local", ns)
			if err != nil {
				return err
			}
			tokens, err := workloadTokens(ctx, r.kc, ns, cfg.CSRs)
			if err != nil {
				return err
			}
			r.log.Info("csr storm", "key", req.name, "csrs", cfg.CSRs, "concurrency", cfg.CSRConcurrency)
			sc := mon.begin(req.name, nil)
			lat, err := csrStorm(ctx, r.t.CAAddress, pool, tokens, req, cfg.CSRConcurrency)
			s := sc.end(cfg.CSRs, lat)
			s.PerSec = float64(len(lat)) / s.WallSecs
			s.Errors = cfg.CSRs - len(lat)
			rep.Scenarios = append(rep.Scenarios, s)
			if err != nil {
				r.log.Warn("csr storm: requests failed", "key", req.name, "failed", s.Errors, "first", err)
			}
			if ctx.Err() != nil {
				return nil
			}
		}
	}
	if r.t.WebhookURL != "" && cfg.WebhookRate > 0 {
		n := max(1, int(float64(cfg.WebhookRate)*cfg.WebhookFor.Seconds()))
		r.log.Info("webhook load", "rate", cfg.WebhookRate, "for", cfg.WebhookFor)
		sc := mon.begin("webhook", nil)
		lat, err := webhookLoad(ctx, r.t.WebhookURL, pool, cfg.WebhookRate, cfg.WebhookFor)
		s := sc.end(n, lat)
		s.PerSec = float64(len(lat)) / s.WallSecs
		s.Errors = n - len(lat)
		rep.Scenarios = append(rep.Scenarios, s)
		if err != nil {
			r.log.Warn("webhook load: reviews failed", "failed", s.Errors, "first", err)
		}
	}
	return nil
}

// await waits for done() to reach total within the scenario timeout,
// showing progress on cfg.Progress (a live line) or in the log.
func (r *runner) await(ctx context.Context, what string, total int, done func() int) bool {
	if r.cfg.Progress == nil {
		return waitFor(ctx, r.log, what, r.cfg.Timeout, total, done)
	}
	start, last := time.Now(), time.Time{}
	ok := waitFor(ctx, nil, what, r.cfg.Timeout, total, func() int {
		n := done()
		if now := time.Now(); now.Sub(last) >= 250*time.Millisecond || n >= total {
			last = now
			fmt.Fprintf(r.cfg.Progress, "\r\033[K%s %s: %d/%d converged, %.0fs", r.t.Name, what, n, total, now.Sub(start).Seconds())
		}
		return n
	})
	fmt.Fprintln(r.cfg.Progress)
	return ok
}

// churnUpdates is how many EndpointSlice updates the churn writes.
func (c Config) churnUpdates() int {
	return min(max(1, int(float64(c.ChurnRate)*c.ChurnFor.Seconds())), 0xffff)
}

func countDone(ps []*proxy, done func(*proxy) bool) int {
	n := 0
	for _, p := range ps {
		p.mu.Lock()
		if done(p) {
			n++
		}
		p.mu.Unlock()
	}
	return n
}

// waitFor polls until done() reaches total, ctx ends or d passes, logging
// progress every few seconds so a long run shows it is alive.
func waitFor(ctx context.Context, log *slog.Logger, what string, d time.Duration, total int, done func() int) bool {
	deadline := time.Now().Add(d)
	nextLog := time.Now().Add(5 * time.Second)
	for {
		n := done()
		if n >= total {
			return true
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		if log != nil && time.Now().After(nextLog) {
			log.Info("waiting", "for", what, "done", n, "of", total)
			nextLog = time.Now().Add(5 * time.Second)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func percentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

func summarize(s *Scenario, lat []time.Duration) {
	l := slices.Clone(lat)
	slices.Sort(l)
	s.Converged = len(l)
	s.P50ms, s.P90ms, s.P99ms = percentile(l, .50), percentile(l, .90), percentile(l, .99)
	if len(l) > 0 {
		s.MaxMs = float64(l[len(l)-1]) / float64(time.Millisecond)
	}
}

// WriteTable prints the report as one table.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "%s: %d services x %d %s sidecars + %d proxyless gRPC, %d VirtualServices, seed %d, xds %s (mesh written in %.1fs)\n",
		r.Target, r.Services, r.Proxies, r.XDS, r.Proxyless, r.VirtualServices, r.Seed, r.XDSAddress, r.MeshCreateSecs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tconverged\tp50 ms\tp90 ms\tp99 ms\tmax ms\tper s\tMB recv\tKB/proxy\tCPU s\tpeak RSS MB\twall s\treconnects\t")
	for _, s := range r.Scenarios {
		fmt.Fprintf(tw, "%s\t%d/%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.1f\t%.1f\t%.2f\t%.0f\t%.1f\t%d\t\n", s.Name, s.Converged, s.Samples,
			s.P50ms, s.P90ms, s.P99ms, s.MaxMs, s.PerSec, float64(s.Bytes)/1e6, float64(s.BytesProxy)/1e3, s.CPUSeconds, s.PeakRSSMB, s.WallSecs, s.Reconnects)
	}
	tw.Flush()
	if r.Stopped != "" {
		fmt.Fprintf(w, "stopped early: %s\n", r.Stopped)
	}
}

// Ratio is one figure of one scenario, for two targets side by side.
type Ratio struct {
	Scenario string  `json:"scenario"`
	Figure   string  `json:"figure"`
	A        float64 `json:"a"`
	B        float64 `json:"b"`
	Ratio    float64 `json:"ratio"` // A / B; 0 when B is 0
}

// Ratios compares every figure of the scenarios both reports ran.
func Ratios(a, b *Report) []Ratio {
	var out []Ratio
	for _, sa := range a.Scenarios {
		i := slices.IndexFunc(b.Scenarios, func(s Scenario) bool { return s.Name == sa.Name })
		if i < 0 {
			continue
		}
		sb := b.Scenarios[i]
		figs := []struct {
			name string
			a, b float64
		}{
			{"p50 ms", sa.P50ms, sb.P50ms}, {"p99 ms", sa.P99ms, sb.P99ms}, {"max ms", sa.MaxMs, sb.MaxMs},
			{"per s", sa.PerSec, sb.PerSec}, {"MB sent", float64(sa.Bytes) / 1e6, float64(sb.Bytes) / 1e6},
			{"CPU s", sa.CPUSeconds, sb.CPUSeconds}, {"peak RSS MB", sa.PeakRSSMB, sb.PeakRSSMB},
		}
		for _, f := range figs {
			if f.a == 0 && f.b == 0 {
				continue
			}
			r := Ratio{Scenario: sa.Name, Figure: f.name, A: f.a, B: f.b}
			if f.b != 0 {
				r.Ratio = f.a / f.b
			}
			out = append(out, r)
		}
	}
	return out
}

// WriteRatios prints a's figures over b's, scenario by scenario.
func WriteRatios(w io.Writer, a, b *Report) {
	fmt.Fprintf(w, "%s / %s (below 1: %s is lower)\n", a.Target, b.Target, a.Target)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "scenario\tfigure\t%s\t%s\tratio\t\n", a.Target, b.Target)
	for _, r := range Ratios(a, b) {
		ratio := "n/a"
		if r.B != 0 {
			ratio = fmt.Sprintf("%.3f", r.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%s\t\n", r.Scenario, r.Figure, r.A, r.B, ratio)
	}
	tw.Flush()
}

// WriteJSON writes the reports (and, for two, their ratios) to path.
func WriteJSON(path string, reports []*Report) error {
	out := struct {
		Reports []*Report `json:"reports"`
		Ratios  []Ratio   `json:"ratios,omitempty"`
	}{Reports: reports}
	if len(reports) == 2 {
		out.Ratios = Ratios(reports[0], reports[1])
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}

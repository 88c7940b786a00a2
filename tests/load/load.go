package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Config sizes the mesh and the load. Every count has a deadline beside it:
// a run never waits forever.
type Config struct {
	Kubeconfig      string // API server the mesh is written to
	XDSAddress      string // plaintext ADS address of the control plane
	PID             int    // control plane's process, sampled from /proc (0: not sampled)
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
	// PprofURL is the control plane's debug address (http://host:port);
	// with ProfileDir set, a CPU profile of the first ProfileFor of the
	// scenarios and a heap profile after each are saved there.
	PprofURL, ProfileDir string
	ProfileFor           time.Duration
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
	Errors     int     `json:"proxy_errors"`
}

// AllConverged reports whether every sample converged.
func (s Scenario) AllConverged() bool { return s.Samples > 0 && s.Converged == s.Samples }

// Report is a whole run.
type Report struct {
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

// Run writes the mesh, connects the proxies and runs cold start, config
// change and endpoint churn in that order. It returns what it measured even
// when it stops early (the error says why).
func Run(ctx context.Context, log *slog.Logger, cfg Config) (*Report, error) {
	cfg.Defaults()
	rep := &Report{Services: cfg.Services, Proxies: cfg.Proxies, XDS: cfg.XDS, Proxyless: cfg.Proxyless,
		VirtualServices: min(cfg.VirtualServices, cfg.Services), Seed: cfg.Seed, XDSAddress: cfg.XDSAddress}
	sidecarKind := sotwSidecar
	switch cfg.XDS {
	case "sotw":
	case "delta":
		sidecarKind = deltaSidecar
	default:
		return rep, fmt.Errorf("config XDS %q: want sotw or delta", cfg.XDS)
	}
	if cfg.Proxyless < 0 {
		return rep, fmt.Errorf("config Proxyless %d: must not be negative", cfg.Proxyless)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return rep, fmt.Errorf("load kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	rc.QPS, rc.Burst = 500, 1000 // writing the mesh must not be the slow part
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return rep, fmt.Errorf("kube client: %w", err)
	}
	ic, err := istioclient.NewForConfig(rc)
	if err != nil {
		return rep, fmt.Errorf("istio client: %w", err)
	}

	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	mon := newMonitor(cfg.PID, cfg.MinMemAvailable, func(err error) { stop(err) })
	go mon.run(ctx)

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
		return rep, err
	}
	rep.MeshCreateSecs = time.Since(t0).Seconds()

	prof := newProfiler(log, cfg.PprofURL, cfg.ProfileDir)
	defer prof.wait()
	hosts := m.hostIndex()
	proxies := make([]*proxy, cfg.Proxies+cfg.Proxyless)
	pctx, cancelProxies := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancelProxies(); wg.Wait() }()
	finish := func(err error) (*Report, error) {
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			rep.Stopped = c.Error()
			return rep, c
		}
		return rep, err
	}

	// Cold start: all proxies connect at once.
	log.Info("cold start", "proxies", cfg.Proxies, "proxyless", cfg.Proxyless, "protocol", cfg.XDS, "xds", cfg.XDSAddress)
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
		go func(p *proxy) { defer wg.Done(); p.run(pctx, cfg.XDSAddress) }(proxies[i])
	}
	waitFor(ctx, log, "cold start", cfg.Timeout, len(proxies), func() int {
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
		weight := int32(11 + (cfg.Seed%39+39)%39) // 11..49: never the initial 50
		for _, p := range proxies {
			p.routeMarker.Store(uint32(weight))
		}
		i := m.routed[0]
		s := m.services[i]
		log.Info("config change", "virtualService", s.ns+"/"+s.name, "weight", weight)
		sc := mon.begin("config change", proxies)
		cur, err := ic.NetworkingV1().VirtualServices(s.ns).Get(ctx, s.name, metav1.GetOptions{})
		if err != nil {
			return finish(fmt.Errorf("get virtualservice %s/%s: %w", s.ns, s.name, err))
		}
		vs := m.virtualService(i, weight)
		vs.ResourceVersion = cur.ResourceVersion
		t0 := time.Now()
		if _, err := ic.NetworkingV1().VirtualServices(s.ns).Update(ctx, vs, metav1.UpdateOptions{}); err != nil {
			return finish(fmt.Errorf("update virtualservice %s/%s: %w", s.ns, s.name, err))
		}
		waitFor(ctx, log, "config change", cfg.Timeout, len(proxies), func() int {
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
	updates := max(1, int(float64(cfg.ChurnRate)*cfg.ChurnFor.Seconds()))
	if updates > 0xffff {
		updates = 0xffff
	}
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
		i := (gen - 1) % len(m.services)
		s := m.services[i]
		es := m.slice(i, gen)
		cur, err := kc.DiscoveryV1().EndpointSlices(s.ns).Get(ctx, es.Name, metav1.GetOptions{})
		if err == nil {
			es.ResourceVersion = cur.ResourceVersion
			written[gen] = time.Now()
			_, err = kc.DiscoveryV1().EndpointSlices(s.ns).Update(ctx, es, metav1.UpdateOptions{})
		}
		if err != nil {
			churnErr = fmt.Errorf("update endpointslice %s/%s: %w", s.ns, es.Name, err)
		}
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
	waitFor(ctx, log, "endpoint churn", cfg.Timeout, len(proxies), func() int {
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
	return finish(nil)
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
	fmt.Fprintf(w, "meshload: %d services x %d %s sidecars + %d proxyless gRPC, %d VirtualServices, seed %d, xds %s (mesh written in %.1fs)\n",
		r.Services, r.Proxies, r.XDS, r.Proxyless, r.VirtualServices, r.Seed, r.XDSAddress, r.MeshCreateSecs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tconverged\tp50 ms\tp90 ms\tp99 ms\tmax ms\tMB recv\tKB/proxy\tCPU s\tpeak RSS MB\twall s\t")
	for _, s := range r.Scenarios {
		fmt.Fprintf(tw, "%s\t%d/%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.2f\t%.0f\t%.1f\t\n", s.Name, s.Converged, s.Samples,
			s.P50ms, s.P90ms, s.P99ms, s.MaxMs, float64(s.Bytes)/1e6, float64(s.BytesProxy)/1e3, s.CPUSeconds, s.PeakRSSMB, s.WallSecs)
	}
	tw.Flush()
	if r.Stopped != "" {
		fmt.Fprintf(w, "stopped early: %s\n", r.Stopped)
	}
}

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}

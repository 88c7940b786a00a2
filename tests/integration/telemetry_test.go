//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslog "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"golang.org/x/net/html"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshd/meshd/pkg/bootstrap"
	"github.com/meshd/meshd/telemetry"
	"github.com/meshd/meshd/telemetry/als/alstest"
	"github.com/meshd/meshd/tests/integration/framework"
)

// The real programs this test drives; hack/install-test-deps.sh installs
// them from Debian.
const (
	prometheusBin = "/usr/bin/prometheus"
	chromiumBin   = "/usr/bin/chromium"
)

// TestTelemetry is the telemetry acceptance: sidecars' access-log streams
// (go-control-plane's ALS protos over real gRPC) for a Bookinfo call graph
// reach meshd; a real Prometheus scrapes meshd's /stats/prometheus and
// /metrics and answers PromQL with the expected values; and headless
// Chromium renders /ui/graph with Bookinfo's edges.
func TestTelemetry(t *testing.T) {
	for _, bin := range []string{prometheusBin, chromiumBin} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s is missing: run hack/install-test-deps.sh (as root) first", bin)
		}
	}
	m := startTelemetryMeshd(t)
	prom := startPrometheus(t, m.Addr("monitoring"))

	// One ALS stream per Bookinfo sidecar; rounds of a page load each,
	// paced so that Prometheus scrapes many times while they flow.
	const rounds = 160
	streamBookinfo(t, m.Addr("grpc"), rounds, 50*time.Millisecond)

	t.Run("PromQL over the scraped traffic metrics", func(t *testing.T) {
		// Every call to reviews is logged by both of its ends: 200s come
		// from v1 and v2, 503s from v3.
		want := map[string]float64{"200": 4 * rounds, "503": 2 * rounds}
		framework.Eventually(t, time.Minute, func() error {
			got, err := prom.query(`sum(istio_requests_total{destination_service_name="reviews"}) by (response_code)`, "response_code")
			if err != nil {
				return err
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("totals %v, want %v", got, want)
			}
			return nil
		})
		rates, err := prom.query(`sum(rate(istio_requests_total{destination_service_name="reviews"}[1m])) by (response_code)`, "response_code")
		if err != nil {
			t.Fatal(err)
		}
		if len(rates) != 2 || rates["200"] <= 0 || rates["503"] <= 0 {
			t.Fatalf("rates by response_code: %v, want 200 and 503, both positive", rates)
		}
		// Two 200s for each 503, whatever the pace: only the rounds cut
		// by the window's edges can skew it.
		if r := rates["200"] / rates["503"]; math.Abs(r-2) > 0.3 {
			t.Errorf("rate(200)/rate(503) = %.3f (%v), want 2", r, rates)
		}
		t.Logf("rates by response_code: %v", rates)

		// Istio's labels as its dashboards select them.
		byReporter, err := prom.query(`sum(istio_requests_total{destination_workload="reviews-v3",source_workload="productpage-v1"}) by (reporter, connection_security_policy)`, "reporter", "connection_security_policy")
		if err != nil {
			t.Fatal(err)
		}
		wantReporter := map[string]float64{"destination/mutual_tls": rounds, "source/unknown": rounds}
		if fmt.Sprint(byReporter) != fmt.Sprint(wantReporter) {
			t.Errorf("productpage -> reviews-v3 by reporter: %v, want %v", byReporter, wantReporter)
		}
		buckets, err := prom.query(`sum(istio_request_duration_milliseconds_bucket{destination_service_name="ratings",reporter="destination",le="25"})`)
		if err != nil {
			t.Fatal(err)
		}
		// The ratings calls take 3 ms (from v2) and 40 ms (from v3).
		if buckets[""] != rounds {
			t.Errorf("ratings calls within 25ms: %v, want %d", buckets, rounds)
		}
	})

	t.Run("control-plane metrics on /metrics", func(t *testing.T) {
		framework.Eventually(t, time.Minute, func() error {
			got, err := prom.query(`sum(meshd_telemetry_accesslog_entries_total{kind="http"})`)
			if err != nil {
				return err
			}
			// Per round: productpage 4 + details 1 + reviews 1+2+2 + ratings 2.
			if want := float64(12 * rounds); got[""] != want {
				return fmt.Errorf("access-log entries %v, want %v", got, want)
			}
			return nil
		})
	})

	t.Run("pilot_xds counts connected proxies", func(t *testing.T) {
		if _, ok := m.GRPC.GetServiceInfo()["envoy.service.discovery.v3.AggregatedDiscoveryService"]; !ok {
			t.Skip("pilot is not wired into bootstrap yet: no ADS on the shared gRPC server")
		}
		const clients = 3
		connectADS(t, m.Addr("grpc"), clients)
		framework.Eventually(t, time.Minute, func() error {
			got, err := prom.query(`sum(pilot_xds)`)
			if err != nil {
				return err
			}
			if got[""] != clients {
				return fmt.Errorf("sum(pilot_xds) = %v, want %d", got, clients)
			}
			return nil
		})
	})

	t.Run("graph page in headless Chromium", func(t *testing.T) {
		page := "http://" + m.Addr("monitoring") + "/ui/graph"
		dom := chromium(t, "--dump-dom", page)
		rows := edgeRows(t, dom)
		want := map[string]string{
			"default/productpage-v1 -> default/details-v1": "0.0%",
			"default/productpage-v1 -> default/reviews-v1": "0.0%",
			"default/productpage-v1 -> default/reviews-v2": "0.0%",
			"default/productpage-v1 -> default/reviews-v3": "100.0%",
			"default/reviews-v2 -> default/ratings-v1":     "0.0%",
			"default/reviews-v3 -> default/ratings-v1":     "0.0%",
		}
		for edge, errRate := range want {
			row, ok := rows[edge]
			if !ok {
				t.Errorf("edge %s not shown; rows: %v", edge, rows)
				continue
			}
			if row.errors != errRate || row.mtls != "mutual_tls" {
				t.Errorf("edge %s shows errors %q mTLS %q, want %q and mutual_tls", edge, row.errors, row.mtls, errRate)
			}
		}
		if len(rows) != len(want) {
			t.Errorf("%d edges shown, want %d: %v", len(rows), len(want), rows)
		}
		if !strings.Contains(dom, `class="edge ok"`) || !strings.Contains(dom, `class="edge bad"`) {
			t.Errorf("the SVG lacks the healthy and failing edges:\n%s", dom)
		}

		dir, err := filepath.Abs("../artifacts")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		shot := filepath.Join(dir, "telemetry-graph.png")
		_ = os.Remove(shot)
		chromium(t, "--screenshot="+shot, "--window-size=1400,900", page)
		png, err := os.ReadFile(shot)
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
			t.Fatalf("no screenshot at %s (%v)", shot, err)
		}
		t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	})
}

// startTelemetryMeshd runs meshd in file mode over examples/bookinfo on
// loopback ports, with a CA of its own. Until bootstrap wires telemetry
// itself, the test does it the way bootstrap is meant to.
func startTelemetryMeshd(t *testing.T) *bootstrap.Server {
	t.Helper()
	opts := bootstrap.Options{
		ConfigDir: "../../examples/bookinfo", CADir: t.TempDir(),
		TrustDomain: "cluster.local", Namespace: "istio-system", PodName: "meshd-telemetry",
		GRPCAddr: "127.0.0.1:0", SecureGRPCAddr: "127.0.0.1:0", WebhookAddr: "127.0.0.1:0",
		MonitoringAddr: "127.0.0.1:0", DebugAddr: "127.0.0.1:0",
		DebounceAfter: 100 * time.Millisecond, DebounceMax: 10 * time.Second, DrainTimeout: 5 * time.Second,
		LogLevel: "info", LogFormat: "text",
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil)).With("meshd", opts.PodName)
	srv, err := bootstrap.New(opts, log)
	if err != nil {
		t.Fatal(err)
	}
	_, wiredGRPC := srv.GRPC.GetServiceInfo()["envoy.service.accesslog.v3.AccessLogService"]
	_, pattern := srv.MonitoringMux.Handler(httptest.NewRequest("GET", telemetry.StatsPath, nil))
	if !wiredGRPC && pattern == "" {
		tel := telemetry.New(log.With("subsystem", "telemetry"), srv.Store, srv.Registry, telemetry.Options{})
		tel.Register(srv.GRPC)
		tel.Register(srv.SecureGRPC)
		tel.Routes(srv.MonitoringMux)
		srv.AddComponent("telemetry", tel.Component())
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("meshd: %v", err)
		}
	})
	framework.Eventually(t, time.Minute, func() error {
		resp, err := http.Get("http://" + srv.Addr("debug") + "/ready")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/ready: %d %s", resp.StatusCode, body)
		}
		return nil
	})
	return srv
}

// streamBookinfo plays rounds of Bookinfo page loads: each sidecar streams
// its own view of each call on its own ALS stream, as Envoy does.
func streamBookinfo(t *testing.T, grpcAddr string, rounds int, pace time.Duration) {
	t.Helper()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bi := alstest.Bookinfo
	pp, det, rv1, rv2, rv3, rt := bi["productpage-v1"], bi["details-v1"], bi["reviews-v1"], bi["reviews-v2"], bi["reviews-v3"], bi["ratings-v1"]
	ms := time.Millisecond
	// What each sidecar logs for one page load.
	type sidecar struct {
		w       alstest.Workload
		entries func() []*accesslog.HTTPAccessLogEntry
	}
	sidecars := []sidecar{
		{pp, func() []*accesslog.HTTPAccessLogEntry {
			return []*accesslog.HTTPAccessLogEntry{
				alstest.Outbound(pp, det, 200, 5*ms), alstest.Outbound(pp, rv1, 200, 8*ms),
				alstest.Outbound(pp, rv2, 200, 20*ms), alstest.Outbound(pp, rv3, 503, 60*ms),
			}
		}},
		{det, func() []*accesslog.HTTPAccessLogEntry {
			return []*accesslog.HTTPAccessLogEntry{alstest.Inbound(pp, det, 200, 4*ms)}
		}},
		{rv1, func() []*accesslog.HTTPAccessLogEntry {
			return []*accesslog.HTTPAccessLogEntry{alstest.Inbound(pp, rv1, 200, 7*ms)}
		}},
		{rv2, func() []*accesslog.HTTPAccessLogEntry {
			return []*accesslog.HTTPAccessLogEntry{alstest.Inbound(pp, rv2, 200, 18*ms), alstest.Outbound(rv2, rt, 200, 4*ms)}
		}},
		{rv3, func() []*accesslog.HTTPAccessLogEntry {
			return []*accesslog.HTTPAccessLogEntry{alstest.Inbound(pp, rv3, 503, 58*ms), alstest.Outbound(rv3, rt, 200, 41*ms)}
		}},
		{rt, func() []*accesslog.HTTPAccessLogEntry {
			return []*accesslog.HTTPAccessLogEntry{alstest.Inbound(rv2, rt, 200, 3*ms), alstest.Inbound(rv3, rt, 200, 40*ms)}
		}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(sidecars))
	for _, sc := range sidecars {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- streamSidecar(ctx, conn, sc.w.Node(), rounds, pace, sc.entries)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func streamSidecar(ctx context.Context, conn *grpc.ClientConn, node *core.Node, rounds int, pace time.Duration, entries func() []*accesslog.HTTPAccessLogEntry) error {
	stream, err := alsv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx)
	if err != nil {
		return fmt.Errorf("%s: open stream: %w", node.GetId(), err)
	}
	tick := time.NewTicker(pace)
	defer tick.Stop()
	for i := range rounds {
		first := node
		if i > 0 {
			first = nil
		}
		if err := stream.Send(alstest.HTTPMessage(first, entries()...)); err != nil {
			_, err = stream.CloseAndRecv()
			return fmt.Errorf("%s: round %d: %w", node.GetId(), i, err)
		}
		<-tick.C
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		return fmt.Errorf("%s: close: %w", node.GetId(), err)
	}
	return nil
}

// connectADS opens n ADS streams as Bookinfo sidecars and waits for each
// to receive its first response.
func connectADS(t *testing.T, grpcAddr string, n int) {
	t.Helper()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	pods := []string{"productpage-v1", "details-v1", "reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1"}
	for i := range n {
		w := alstest.Bookinfo[pods[i%len(pods)]]
		stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&discovery.DiscoveryRequest{Node: w.Node(), TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("ADS client %d: %v", i, err)
		}
	}
}

// promServer is a real Prometheus on loopback.
type promServer struct {
	url string
}

// startPrometheus runs Debian's Prometheus with a temporary config that
// scrapes meshd's two endpoints every second.
func startPrometheus(t *testing.T, monitoringAddr string) *promServer {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: meshd-traffic
  metrics_path: %s
  static_configs: [{targets: [%q]}]
- job_name: meshd
  metrics_path: /metrics
  static_configs: [{targets: [%q]}]
`, telemetry.StatsPath, monitoringAddr, monitoringAddr)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logPath := filepath.Join(dir, "prometheus.log")
	stopProc := startChild(t, "prometheus", logPath, prometheusBin,
		"--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	t.Cleanup(func() {
		stopProc()
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("prometheus log:\n%s", log)
		}
	})
	p := &promServer{url: "http://" + addr}
	framework.Eventually(t, time.Minute, func() error {
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %d", resp.StatusCode)
		}
		return nil
	})
	return p
}

// query runs an instant PromQL query and returns its vector keyed by the
// values of the given labels joined with "/" ("" with no labels).
func (p *promServer) query(q string, by ...string) (map[string]float64, error) {
	resp, err := http.Get(p.url + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	if body.Status != "success" || body.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: %s %s (%s)", q, body.Status, body.Error, body.Data.ResultType)
	}
	out := map[string]float64{}
	for _, r := range body.Data.Result {
		var key []string
		for _, l := range by {
			key = append(key, r.Metric[l])
		}
		s, _ := r.Value[1].(string)
		var v float64
		if _, err := fmt.Sscan(s, &v); err != nil {
			return nil, fmt.Errorf("query %s: value %q: %w", q, s, err)
		}
		out[strings.Join(key, "/")] = v
	}
	return out, nil
}

// startChild runs a program in a process group of its own, output to
// logPath, killed with the test binary if need be; the returned function
// stops it and waits for it.
func startChild(t *testing.T, name, logPath, bin string, args ...string) func() {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

// chromium runs headless Chromium once (a dump or a screenshot) and
// returns its standard output. The virtual time budget lets the page's
// fetch of /api/graph finish before the DOM is taken.
func chromium(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=10000",
	}
	cmd := exec.CommandContext(ctx, chromiumBin, append(base, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Chromium forks helpers: end the whole group if the deadline passes.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

type edgeRow struct{ errors, mtls string }

// edgeRows reads the page's edge table from the rendered DOM, keyed by
// "SOURCE -> TARGET".
func edgeRows(t *testing.T, dom string) map[string]edgeRow {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(dom))
	if err != nil {
		t.Fatalf("parse DOM: %v", err)
	}
	rows := map[string]edgeRow{}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "tr" && attr(n, "class") == "edge-row" {
			var cells []string
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				if c.Type == html.ElementNode && c.Data == "td" {
					cells = append(cells, text(c))
				}
			}
			if len(cells) >= 9 {
				rows[attr(n, "data-source")+" -> "+attr(n, "data-target")] = edgeRow{errors: cells[5], mtls: cells[8]}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return rows
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	if n.Type == html.TextNode {
		return n.Data
	}
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		b.WriteString(text(c))
	}
	return b.String()
}

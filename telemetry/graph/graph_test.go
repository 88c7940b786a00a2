package graph

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/telemetry/traffic"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

// req builds one call from src to dst (workloads in default) as reporter
// saw it.
func req(reporter, src, dst, code string, ms float64, mtls bool) traffic.Record {
	l := traffic.Labels{
		Reporter:       reporter,
		SourceWorkload: src, SourceWorkloadNamespace: "default", SourceApp: strings.TrimSuffix(src, "-v1"), SourceVersion: "v1",
		DestinationWorkload: dst, DestinationWorkloadNamespace: "default", DestinationApp: strings.TrimSuffix(dst, "-v1"), DestinationVersion: "v1",
		DestinationService: strings.TrimSuffix(dst, "-v1") + ".default.svc.cluster.local",
		RequestProtocol:    traffic.ProtocolHTTP, ResponseCode: code,
		ConnectionSecurityPolicy: traffic.Unknown,
	}
	if reporter == traffic.ReporterDestination {
		l.ConnectionSecurityPolicy = traffic.SecurityNone
		if mtls {
			l.ConnectionSecurityPolicy = traffic.SecurityMutualTLS
		}
	}
	l.Normalize()
	return traffic.Record{Kind: traffic.HTTP, Labels: l, DurationMillis: ms}
}

func edge(t *testing.T, r Result, src, dst string) Edge {
	t.Helper()
	for _, e := range r.Edges {
		if e.Source == src && e.Target == dst {
			return e
		}
	}
	t.Fatalf("no edge %s -> %s in %+v", src, dst, r.Edges)
	return Edge{}
}

func near(got, want float64) bool { return math.Abs(got-want) <= want*0.1 }

func TestGraphEdges(t *testing.T) {
	c := newClock()
	g := New(Options{Now: c.now}, nil)
	c.add(10 * time.Minute) // up long enough that rates are over the whole window

	var batch []traffic.Record
	for i := range 100 {
		// productpage -> reviews, seen by both ends: the destination's view
		// wins, so the call is counted once. 10% fail, latencies 1..100 ms.
		code := "200"
		if i%10 == 0 {
			code = "503"
		}
		batch = append(batch,
			req(traffic.ReporterDestination, "productpage-v1", "reviews-v1", code, float64(i+1), true),
			req(traffic.ReporterSource, "productpage-v1", "reviews-v1", code, float64(i+1), false))
	}
	// reviews -> ratings: only the source reported.
	for range 30 {
		batch = append(batch, req(traffic.ReporterSource, "reviews-v1", "ratings-v1", "200", 5, false))
	}
	g.Record(batch)

	res := g.Query(5 * time.Minute)
	if len(res.Edges) != 2 || len(res.Nodes) != 3 {
		t.Fatalf("got %d edges, %d nodes; want 2 and 3: %+v", len(res.Edges), len(res.Nodes), res)
	}
	pr := edge(t, res, "default/productpage-v1", "default/reviews-v1")
	if pr.Reporter != traffic.ReporterDestination || pr.Requests != 100 || pr.Errors != 10 {
		t.Errorf("productpage->reviews: %+v", pr)
	}
	if pr.RequestRate != round(100.0/300) || pr.ErrorRate != 0.1 {
		t.Errorf("rates: %v rps, %v errors; want %v and 0.1", pr.RequestRate, pr.ErrorRate, round(100.0/300))
	}
	if !near(pr.P50Ms, 50) || !near(pr.P99Ms, 99) {
		t.Errorf("p50 %v p99 %v, want about 50 and 99", pr.P50Ms, pr.P99Ms)
	}
	if pr.MTLS != traffic.SecurityMutualTLS {
		t.Errorf("mtls %q", pr.MTLS)
	}
	if len(pr.Services) != 1 || pr.Services[0] != "reviews.default.svc.cluster.local" {
		t.Errorf("services %v", pr.Services)
	}
	rr := edge(t, res, "default/reviews-v1", "default/ratings-v1")
	if rr.Reporter != traffic.ReporterSource || rr.Requests != 30 || rr.MTLS != traffic.Unknown {
		t.Errorf("reviews->ratings: %+v", rr)
	}

	// Six minutes later the calls are out of a 5m window, still in 15m.
	c.add(6 * time.Minute)
	if n := len(g.Query(5 * time.Minute).Edges); n != 0 {
		t.Errorf("5m window after 6m: %d edges, want 0", n)
	}
	if n := len(g.Query(15 * time.Minute).Edges); n != 2 {
		t.Errorf("15m window after 6m: %d edges, want 2", n)
	}
	// An hour later the ring has reused their slots.
	c.add(time.Hour)
	g.Record([]traffic.Record{req(traffic.ReporterDestination, "productpage-v1", "details-v1", "200", 1, false)})
	res = g.Query(time.Hour)
	if len(res.Edges) != 1 || res.Edges[0].Target != "default/details-v1" || res.Edges[0].MTLS != traffic.SecurityNone {
		t.Errorf("after an hour: %+v", res.Edges)
	}
}

func TestGraphUnknownPeers(t *testing.T) {
	g := New(Options{}, nil)
	r := req(traffic.ReporterDestination, "", "reviews-v1", "200", 1, false)
	g.Record([]traffic.Record{r})
	res := g.Query(time.Minute)
	if len(res.Edges) != 1 || res.Edges[0].Source != traffic.Unknown {
		t.Fatalf("edges %+v", res.Edges)
	}
}

func TestGraphEdgeCap(t *testing.T) {
	g := New(Options{MaxEdges: 2}, nil)
	g.Record([]traffic.Record{
		req(traffic.ReporterSource, "a", "b", "200", 1, false),
		req(traffic.ReporterSource, "a", "c", "200", 1, false),
		req(traffic.ReporterSource, "a", "d", "200", 1, false),
	})
	if n := len(g.Query(time.Minute).Edges); n != 2 {
		t.Errorf("%d edges, want the cap of 2", n)
	}
}

func TestAPI(t *testing.T) {
	g := New(Options{}, nil)
	g.Record([]traffic.Record{req(traffic.ReporterDestination, "productpage-v1", "reviews-v1", "200", 1, true)})
	mux := http.NewServeMux()
	g.Routes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/api/graph?window=5m")
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if res.Window != "5m0s" || len(res.Edges) != 1 || res.Edges[0].MTLS != "mutual_tls" {
		t.Errorf("got %+v", res)
	}

	for _, bad := range []string{"banana", "1s", "2h"} {
		resp, err := http.Get(srv.URL + "/api/graph?window=" + bad)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(string(body), "window: ") {
			t.Errorf("window=%s: %d %q, want 400 naming the window", bad, resp.StatusCode, body)
		}
	}

	resp, err = http.Get(srv.URL + "/api/graph?namespace=elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	res = Result{}
	_ = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if len(res.Edges) != 0 || res.Nodes == nil {
		t.Errorf("namespace filter: %+v", res)
	}
}

func TestPageIsSelfContained(t *testing.T) {
	mux := http.NewServeMux()
	New(Options{}, nil).Routes(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/ui/graph", nil))
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /ui/graph: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	// Nothing is loaded from elsewhere: every src/href is relative or data:,
	// and the only absolute URL is the SVG namespace, which is a name.
	body := rec.Body.String()
	for _, m := range regexp.MustCompile(`(?:src|href)\s*=\s*"([^"]*)"`).FindAllStringSubmatch(body, -1) {
		if strings.Contains(m[1], "//") {
			t.Errorf("page loads %s", m[1])
		}
	}
	for _, u := range regexp.MustCompile(`https?://[^"' )]+`).FindAllString(body, -1) {
		if u != "http://www.w3.org/2000/svg" {
			t.Errorf("page mentions %s", u)
		}
	}
}

func BenchmarkGraphRecord(b *testing.B) {
	g := New(Options{}, nil)
	batch := make([]traffic.Record, 100)
	for i := range batch {
		batch[i] = req(traffic.ReporterDestination, "productpage-v1", "reviews-v1", "200", float64(i), true)
	}
	b.ReportAllocs()
	for b.Loop() {
		g.Record(batch)
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "records/s")
}

package traffic

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// call builds the labels of productpage calling a destination workload, as
// the destination reports it.
func call(dst, code string) Labels {
	l := Labels{
		Reporter:       ReporterDestination,
		SourceWorkload: "productpage-v1", SourceWorkloadNamespace: "default",
		SourcePrincipal: "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
		SourceApp:       "productpage", SourceVersion: "v1",
		DestinationWorkload: dst + "-v1", DestinationWorkloadNamespace: "default",
		DestinationService:     dst + ".default.svc.cluster.local",
		DestinationServiceName: dst, DestinationServiceNamespace: "default",
		RequestProtocol: ProtocolHTTP, ResponseCode: code, ResponseFlags: "-",
		ConnectionSecurityPolicy: SecurityMutualTLS,
	}
	l.Normalize()
	return l
}

func httpRecord(l Labels, ms float64, reqBytes, respBytes uint64) Record {
	return Record{Kind: HTTP, Labels: l, DurationMillis: ms, RequestBytes: reqBytes, ResponseBytes: respBytes}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }
func gather(t *testing.T, a *Aggregator) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// series renders a metric's labels as name=value pairs, for comparisons.
func series(m *dto.Metric, only ...string) string {
	var parts []string
	for _, p := range m.GetLabel() {
		if len(only) == 0 || slices.Contains(only, p.GetName()) {
			parts = append(parts, p.GetName()+"="+p.GetValue())
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func TestAggregatorSeriesAndBuckets(t *testing.T) {
	a := NewAggregator(Options{}, nil)
	a.Record([]Record{
		httpRecord(call("reviews", "200"), 3, 100, 1000),
		httpRecord(call("reviews", "200"), 30, 100, 2000),
		httpRecord(call("reviews", "200"), 4000, 100, 3000),
		httpRecord(call("reviews", "503"), 0.2, 50, 0),
		httpRecord(call("details", "200"), 10, 80, 120),
	})
	tcp := call("ratings", "")
	tcp.RequestProtocol, tcp.ResponseCode, tcp.GRPCResponseStatus = ProtocolTCP, "", ""
	a.Record([]Record{
		{Kind: TCP, Labels: tcp, Opened: true},
		{Kind: TCP, Labels: tcp, SentBytes: 10, ReceivedBytes: 20},
		{Kind: TCP, Labels: tcp, Closed: true, SentBytes: 5, ReceivedBytes: 1},
	})

	fams := gather(t, a)
	var names []string
	for n := range fams {
		names = append(names, n)
	}
	sort.Strings(names)
	want := []string{
		"istio_request_bytes", "istio_request_duration_milliseconds", "istio_requests_total", "istio_response_bytes",
		"istio_tcp_connections_closed_total", "istio_tcp_connections_opened_total",
		"istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total",
	}
	if !slices.Equal(names, want) {
		t.Fatalf("families:\n got %v\nwant %v", names, want)
	}

	// Exactly three HTTP series, each with Istio's full label set.
	got := map[string]float64{}
	for _, m := range fams["istio_requests_total"].GetMetric() {
		if n := len(m.GetLabel()); n != len(httpLabelNames) {
			t.Errorf("istio_requests_total has %d labels, want %d", n, len(httpLabelNames))
		}
		got[series(m, "destination_service_name", "response_code")] = m.GetCounter().GetValue()
	}
	wantReq := map[string]float64{
		"destination_service_name=reviews,response_code=200": 3,
		"destination_service_name=reviews,response_code=503": 1,
		"destination_service_name=details,response_code=200": 1,
	}
	if fmt.Sprint(got) != fmt.Sprint(wantReq) {
		t.Errorf("istio_requests_total:\n got %v\nwant %v", got, wantReq)
	}

	// Buckets: Envoy's bounds, cumulative, with the values where they fall.
	for _, m := range fams["istio_request_duration_milliseconds"].GetMetric() {
		if series(m, "destination_service_name", "response_code") != "destination_service_name=reviews,response_code=200" {
			continue
		}
		h := m.GetHistogram()
		var bounds []float64
		cum := map[float64]uint64{}
		for _, b := range h.GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
			cum[b.GetUpperBound()] = b.GetCumulativeCount()
		}
		if !slices.Equal(bounds, Buckets) {
			t.Errorf("bounds %v, want Envoy's %v", bounds, Buckets)
		}
		// 3 ms falls in le=5, 30 ms in le=50, 4000 ms in le=5000.
		for bound, want := range map[float64]uint64{0.5: 0, 1: 0, 5: 1, 10: 1, 25: 1, 50: 2, 100: 2, 2500: 2, 5000: 3, 3600000: 3} {
			if cum[bound] != want {
				t.Errorf("le=%g: %d, want %d", bound, cum[bound], want)
			}
		}
		if h.GetSampleCount() != 3 || h.GetSampleSum() != 4033 {
			t.Errorf("count %d sum %g, want 3 and 4033", h.GetSampleCount(), h.GetSampleSum())
		}
	}
	for _, m := range fams["istio_response_bytes"].GetMetric() {
		if series(m, "response_code") == "response_code=200" && series(m, "destination_service_name") == "destination_service_name=reviews" {
			if m.GetHistogram().GetSampleSum() != 6000 {
				t.Errorf("istio_response_bytes sum %g, want 6000", m.GetHistogram().GetSampleSum())
			}
		}
	}

	// TCP series carry no response_code or grpc_response_status.
	tcpFams := map[string]float64{}
	for _, n := range want[4:] {
		ms := fams[n].GetMetric()
		if len(ms) != 1 {
			t.Fatalf("%s: %d series, want 1", n, len(ms))
		}
		if s := series(ms[0]); strings.Contains(s, "response_code") || strings.Contains(s, "grpc_response_status") {
			t.Errorf("%s carries HTTP labels: %s", n, s)
		}
		if s := series(ms[0], "request_protocol"); s != "request_protocol=tcp" {
			t.Errorf("%s: %s", n, s)
		}
		tcpFams[n] = ms[0].GetCounter().GetValue()
	}
	wantTCP := map[string]float64{
		"istio_tcp_connections_opened_total": 1, "istio_tcp_connections_closed_total": 1,
		"istio_tcp_sent_bytes_total": 15, "istio_tcp_received_bytes_total": 21,
	}
	if fmt.Sprint(tcpFams) != fmt.Sprint(wantTCP) {
		t.Errorf("tcp:\n got %v\nwant %v", tcpFams, wantTCP)
	}
}

func TestAggregatorCardinalityCap(t *testing.T) {
	ctrl := prometheus.NewRegistry()
	a := NewAggregator(Options{MaxSeries: 3}, ctrl)
	var batch []Record
	for i := range 10 {
		batch = append(batch, httpRecord(call(fmt.Sprintf("svc%d", i), "200"), 1, 1, 1))
	}
	a.Record(batch)
	// The first three label sets made it; the rest were dropped, not
	// aggregated into something else.
	a.Record([]Record{httpRecord(call("svc0", "200"), 1, 1, 1), httpRecord(call("svc9", "200"), 1, 1, 1)})

	if n := a.Len(); n != 3 {
		t.Errorf("series held: %d, want 3", n)
	}
	if got := testutil.ToFloat64(a.dropped); got != 8 {
		t.Errorf("meshd_telemetry_dropped_series_total = %g, want 8", got)
	}
	fams := gather(t, a)
	if n := len(fams["istio_requests_total"].GetMetric()); n != 3 {
		t.Errorf("exposed istio_requests_total series: %d, want 3", n)
	}
	for _, m := range fams["istio_requests_total"].GetMetric() {
		if series(m, "destination_service_name") == "destination_service_name=svc0" && m.GetCounter().GetValue() != 2 {
			t.Errorf("svc0 requests %g, want 2: existing series keep counting at the cap", m.GetCounter().GetValue())
		}
	}
	if err := testutil.GatherAndCompare(ctrl, strings.NewReader(`
# HELP meshd_telemetry_series Traffic label sets held for /stats/prometheus (HTTP and TCP), against the series cap.
# TYPE meshd_telemetry_series gauge
meshd_telemetry_series 3
`), "meshd_telemetry_series"); err != nil {
		t.Error(err)
	}

	// Proxy-reported label sets count against the same cap.
	snap := &Snapshot{HTTP: map[Labels]*HTTPTotals{call("a", "200"): {Requests: 1}, call("b", "200"): {Requests: 1}}}
	a.SetProxy("p1", snap)
	if n := a.Len(); n != 3 {
		t.Errorf("series after a proxy snapshot at the cap: %d, want 3", n)
	}
	if got := testutil.ToFloat64(a.dropped); got != 10 {
		t.Errorf("dropped after the snapshot = %g, want 10", got)
	}
}

func TestAggregatorMergesProxySnapshots(t *testing.T) {
	a := NewAggregator(Options{}, nil)
	l := call("reviews", "200")
	a.Record([]Record{httpRecord(l, 3, 1, 1)})
	var h Histogram
	h.Observe(3)
	h.Observe(3)
	a.SetProxy("p1", &Snapshot{HTTP: map[Labels]*HTTPTotals{l: {Requests: 2, Duration: h}}})
	a.SetProxy("p2", &Snapshot{HTTP: map[Labels]*HTTPTotals{l: {Requests: 5}}})

	check := func(want float64) {
		t.Helper()
		fams := gather(t, a)
		ms := fams["istio_requests_total"].GetMetric()
		if len(ms) != 1 || ms[0].GetCounter().GetValue() != want {
			t.Fatalf("istio_requests_total: %v, want one series at %g", ms, want)
		}
	}
	check(8)
	// A newer snapshot replaces the proxy's previous one.
	a.SetProxy("p2", &Snapshot{HTTP: map[Labels]*HTTPTotals{l: {Requests: 7}}})
	check(10)
	a.RemoveProxy("p2")
	check(3)
}

func TestAggregatorExpiresIdleSeries(t *testing.T) {
	c := newClock()
	a := NewAggregator(Options{SeriesTTL: time.Minute, Now: c.now}, nil)
	a.Record([]Record{httpRecord(call("reviews", "200"), 1, 1, 1), httpRecord(call("details", "200"), 1, 1, 1)})
	c.add(50 * time.Second)
	a.Record([]Record{httpRecord(call("reviews", "200"), 1, 1, 1)})
	c.add(30 * time.Second)
	a.Sweep()
	fams := gather(t, a)
	ms := fams["istio_requests_total"].GetMetric()
	if len(ms) != 1 || series(ms[0], "destination_service_name") != "destination_service_name=reviews" {
		t.Errorf("after the sweep: %v, want only reviews", ms)
	}
}

func TestLabelsNormalize(t *testing.T) {
	l := Labels{SourceWorkload: "bad\xffname", DestinationService: strings.Repeat("x", 300)}
	l.Normalize()
	if l.SourceWorkload != "badname" {
		t.Errorf("invalid UTF-8 kept: %q", l.SourceWorkload)
	}
	if len(l.DestinationService) != maxLabelLen {
		t.Errorf("long value kept at %d bytes", len(l.DestinationService))
	}
	if l.Reporter != Unknown || l.ResponseCode != "" || l.GRPCResponseStatus != "" {
		t.Errorf("empty values: reporter %q response_code %q grpc %q", l.Reporter, l.ResponseCode, l.GRPCResponseStatus)
	}
}

func BenchmarkAggregatorRecord(b *testing.B) {
	a := NewAggregator(Options{}, nil)
	batch := make([]Record, 100)
	for i := range batch {
		batch[i] = httpRecord(call(fmt.Sprintf("svc%d", i%20), "200"), float64(i), 100, 1000)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		a.Record(batch)
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "records/s")
}

package als

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	accesslog "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshd/meshd/pkg/source/configdir"
	"github.com/meshd/meshd/pkg/store"
	"github.com/meshd/meshd/telemetry/als/alstest"
	"github.com/meshd/meshd/telemetry/traffic"
)

// recorder is a sink keeping copies of everything it is given.
type recorder struct {
	mu   sync.Mutex
	recs []traffic.Record
}

func (r *recorder) Record(batch []traffic.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, batch...)
}

func (r *recorder) all() []traffic.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]traffic.Record(nil), r.recs...)
}

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	srv  *Server
	rec  *recorder
	agg  *traffic.Aggregator
	ctrl *prometheus.Registry
	logs *syncBuffer
	conn *grpc.ClientConn
}

func bookinfoStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := configdir.Load(slog.New(slog.DiscardHandler), "../../examples/bookinfo")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// start serves the access-log and metrics services on loopback over the
// Bookinfo store, as meshd does on 15010.
func start(t testing.TB) *env { return startWith(t, true) }

// startWith can leave out the recording sink (benchmarks).
func startWith(t testing.TB, record bool) *env {
	t.Helper()
	e := &env{rec: &recorder{}, ctrl: prometheus.NewRegistry(), logs: &syncBuffer{}}
	e.agg = traffic.NewAggregator(traffic.Options{}, e.ctrl)
	log := slog.New(slog.NewTextHandler(e.logs, nil))
	sinks := traffic.Sinks{e.agg}
	if record {
		sinks = append(sinks, e.rec)
	}
	e.srv = New(log, bookinfoStore(t), sinks, e.agg, e.ctrl, Options{})
	g := grpc.NewServer()
	e.srv.Register(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	e.conn, err = grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.conn.Close() })
	return e
}

// send streams messages on one stream and returns how the server ended it.
func (e *env) send(t testing.TB, msgs ...*alsv3.StreamAccessLogsMessage) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := alsv3.NewAccessLogServiceClient(e.conn).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			break // the server ended the stream; CloseAndRecv says why
		}
	}
	_, err = stream.CloseAndRecv()
	return err
}

var bi = alstest.Bookinfo

func TestOutboundLabels(t *testing.T) {
	e := start(t)
	pp, rv2 := bi["productpage-v1"], bi["reviews-v2"]
	if err := e.send(t, alstest.HTTPMessage(pp.Node(), alstest.Outbound(pp, rv2, 200, 12*time.Millisecond))); err != nil {
		t.Fatal(err)
	}
	recs := e.rec.all()
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	want := traffic.Labels{
		Reporter:       "source",
		SourceWorkload: "productpage-v1", SourceWorkloadNamespace: "default", SourcePrincipal: "unknown",
		SourceApp: "productpage", SourceVersion: "v1", SourceCanonicalService: "productpage", SourceCanonicalRevision: "v1",
		SourceCluster:       "Kubernetes",
		DestinationWorkload: "reviews-v2", DestinationWorkloadNamespace: "default", DestinationPrincipal: "unknown",
		DestinationApp: "reviews", DestinationVersion: "v2",
		DestinationService: "reviews.default.svc.cluster.local", DestinationServiceName: "reviews", DestinationServiceNamespace: "default",
		DestinationCanonicalService: "reviews", DestinationCanonicalRevision: "v2", DestinationCluster: "Kubernetes",
		RequestProtocol: "http", ResponseCode: "200", GRPCResponseStatus: "", ResponseFlags: "-",
		ConnectionSecurityPolicy: "unknown",
	}
	if recs[0].Labels != want {
		t.Errorf("labels:\n got %+v\nwant %+v", recs[0].Labels, want)
	}
	if recs[0].DurationMillis != 12 || recs[0].RequestBytes != 300 || recs[0].ResponseBytes != 1200 {
		t.Errorf("measurements: %+v", recs[0])
	}
}

func TestInboundLabels(t *testing.T) {
	e := start(t)
	pp, rv2 := bi["productpage-v1"], bi["reviews-v2"]
	if err := e.send(t, alstest.HTTPMessage(rv2.Node(), alstest.Inbound(pp, rv2, 503, time.Millisecond))); err != nil {
		t.Fatal(err)
	}
	recs := e.rec.all()
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	want := traffic.Labels{
		Reporter:       "destination",
		SourceWorkload: "productpage-v1", SourceWorkloadNamespace: "default",
		SourcePrincipal: "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
		SourceApp:       "productpage", SourceVersion: "v1", SourceCanonicalService: "productpage", SourceCanonicalRevision: "v1",
		SourceCluster:       "Kubernetes",
		DestinationWorkload: "reviews-v2", DestinationWorkloadNamespace: "default",
		DestinationPrincipal: "spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
		DestinationApp:       "reviews", DestinationVersion: "v2",
		DestinationService: "reviews.default.svc.cluster.local", DestinationServiceName: "reviews", DestinationServiceNamespace: "default",
		DestinationCanonicalService: "reviews", DestinationCanonicalRevision: "v2", DestinationCluster: "Kubernetes",
		RequestProtocol: "http", ResponseCode: "503", ResponseFlags: "-",
		ConnectionSecurityPolicy: "mutual_tls",
	}
	if recs[0].Labels != want {
		t.Errorf("labels:\n got %+v\nwant %+v", recs[0].Labels, want)
	}
}

func TestIdentityFallbacks(t *testing.T) {
	rv1 := bi["reviews-v1"]
	tests := map[string]struct {
		call  alstest.Call
		check func(l traffic.Labels) string
	}{
		"peer metadata from filter state wins over the address": {
			call: alstest.Call{Inbound: true, Port: 9080, Host: "reviews", LocalIP: rv1.IP, PeerIP: "203.0.113.9", Code: 200,
				Peer: map[string]string{"workload": "gateway", "namespace": "istio-system", "app": "istio-ingressgateway", "cluster": "east"}},
			check: func(l traffic.Labels) string {
				return fmt.Sprint(l.SourceWorkload, l.SourceWorkloadNamespace, l.SourceApp, l.SourceCluster, l.ConnectionSecurityPolicy)
			},
		},
		"unknown caller address": {
			call: alstest.Call{Inbound: true, Port: 9080, Host: "reviews:9080", LocalIP: rv1.IP, PeerIP: "203.0.113.9", Code: 200},
			check: func(l traffic.Labels) string {
				return fmt.Sprint(l.SourceWorkload, l.SourceWorkloadNamespace, l.SourcePrincipal, l.DestinationServiceName)
			},
		},
		"no authority: the Service selecting the workload": {
			call:  alstest.Call{Inbound: true, Port: 9080, Host: "", LocalIP: rv1.IP, PeerIP: bi["productpage-v1"].IP, Code: 200},
			check: func(l traffic.Labels) string { return fmt.Sprint(l.DestinationService, l.SourceWorkload) },
		},
		"gRPC with a status": {
			call: alstest.Call{Port: 9080, Host: "ratings.default.svc.cluster.local", LocalIP: rv1.IP, PeerIP: bi["ratings-v1"].IP, Code: 200, GRPCStatus: "14"},
			check: func(l traffic.Labels) string {
				return fmt.Sprint(l.RequestProtocol, l.GRPCResponseStatus, l.DestinationWorkload)
			},
		},
		"outbound to a host outside the mesh": {
			call: alstest.Call{Port: 443, Host: "api.example.com", LocalIP: rv1.IP, PeerIP: "203.0.113.7", Code: 200},
			check: func(l traffic.Labels) string {
				return fmt.Sprint(l.DestinationService, l.DestinationServiceName, l.DestinationWorkload)
			},
		},
	}
	want := map[string]string{
		"peer metadata from filter state wins over the address": "gatewayistio-systemistio-ingressgatewayeastnone",
		"unknown caller address":                                "unknownunknownunknownreviews",
		"no authority: the Service selecting the workload":      "reviews.default.svc.cluster.localproductpage-v1",
		"gRPC with a status":                                    "grpc14ratings-v1",
		"outbound to a host outside the mesh":                   "api.example.comapi.example.comunknown",
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := start(t)
			if err := e.send(t, alstest.HTTPMessage(rv1.Node(), tc.call.HTTP())); err != nil {
				t.Fatal(err)
			}
			recs := e.rec.all()
			if len(recs) != 1 {
				t.Fatalf("%d records", len(recs))
			}
			if got := tc.check(recs[0].Labels); got != want[name] {
				t.Errorf("got %q, want %q (labels %+v)", got, want[name], recs[0].Labels)
			}
		})
	}
}

func TestResponseFlagsAndIntermediateEntries(t *testing.T) {
	e := start(t)
	pp, rt := bi["productpage-v1"], bi["ratings-v1"]
	failed := alstest.Outbound(pp, rt, 503, time.Millisecond)
	failed.CommonProperties.ResponseFlags = &accesslog.ResponseFlags{UpstreamConnectionFailure: true, UpstreamRetryLimitExceeded: true}
	started := alstest.Outbound(pp, rt, 0, 0)
	started.CommonProperties.AccessLogType = accesslog.AccessLogType_DownstreamStart
	if err := e.send(t, alstest.HTTPMessage(pp.Node(), failed, started)); err != nil {
		t.Fatal(err)
	}
	recs := e.rec.all()
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1: a start-of-request entry is not a request", len(recs))
	}
	if recs[0].Labels.ResponseFlags != "UF,URX" {
		t.Errorf("response_flags %q, want UF,URX", recs[0].Labels.ResponseFlags)
	}
}

func TestTCPConnections(t *testing.T) {
	e := start(t)
	rv, rt := bi["reviews-v1"], bi["ratings-v1"]
	conn := alstest.Call{Port: 3306, Host: "ratings.default.svc.cluster.local", LocalIP: rv.IP, PeerIP: rt.IP}
	err := e.send(t,
		alstest.TCPMessage(rv.Node(),
			conn.TCP(accesslog.AccessLogType_TcpUpstreamConnected, "c1", 0, 0),
			conn.TCP(accesslog.AccessLogType_TcpPeriodic, "c1", 100, 40)),
		alstest.TCPMessage(nil,
			conn.TCP(accesslog.AccessLogType_TcpConnectionEnd, "c1", 150, 60),
			// A connection logged only when it ends.
			conn.TCP(accesslog.AccessLogType_TcpConnectionEnd, "c2", 7, 3)),
	)
	if err != nil {
		t.Fatal(err)
	}
	fams := gatherTraffic(t, e.agg)
	got := map[string]float64{}
	for _, n := range []string{"istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total", "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total"} {
		ms := fams[n].GetMetric()
		if len(ms) != 1 {
			t.Fatalf("%s: %d series, want 1", n, len(ms))
		}
		got[n] = ms[0].GetCounter().GetValue()
	}
	want := map[string]float64{
		"istio_tcp_connections_opened_total": 2, "istio_tcp_connections_closed_total": 2,
		"istio_tcp_sent_bytes_total": 157, "istio_tcp_received_bytes_total": 63,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func gatherTraffic(t *testing.T, a *traffic.Aggregator) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

func TestGarbageEndsOnlyThatStream(t *testing.T) {
	e := start(t)
	pp, rv, rt := bi["productpage-v1"], bi["reviews-v1"], bi["ratings-v1"]

	// A healthy stream stays open across the other's rejection.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	healthy, err := alsv3.NewAccessLogServiceClient(e.conn).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := healthy.Send(alstest.HTTPMessage(rv.Node(), alstest.Outbound(rv, rt, 200, time.Millisecond))); err != nil {
		t.Fatal(err)
	}

	bad := alstest.Outbound(pp, rv, 200, time.Millisecond)
	bad.Response.ResponseCode = wrapperspb.UInt32(1234)
	err = e.send(t,
		alstest.HTTPMessage(pp.Node(), alstest.Outbound(pp, rv, 200, time.Millisecond)),
		alstest.HTTPMessage(nil, alstest.Outbound(pp, rv, 200, time.Millisecond), bad),
		alstest.HTTPMessage(nil, alstest.Outbound(pp, rv, 200, time.Millisecond)),
	)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "http_logs.log_entry[1].response.response_code: 1234 is not an HTTP status") {
		t.Fatalf("bad stream ended with %v, want InvalidArgument naming the field", err)
	}
	if !strings.Contains(e.logs.String(), "telemetry stream rejected") || !strings.Contains(e.logs.String(), "productpage-v1.default") {
		t.Errorf("no log line naming the node and reason:\n%s", e.logs.String())
	}
	if got := testutil.ToFloat64(e.srv.rejected.WithLabelValues(serviceAccessLog)); got != 1 {
		t.Errorf("rejected streams %g, want 1", got)
	}

	if err := healthy.Send(alstest.HTTPMessage(nil, alstest.Outbound(rv, rt, 200, time.Millisecond))); err != nil {
		t.Fatalf("healthy stream broken: %v", err)
	}
	if _, err := healthy.CloseAndRecv(); err != nil {
		t.Fatalf("healthy stream ended with %v", err)
	}
	// Only the first message of the bad stream counted; nothing of the
	// bad message, not even its good entry.
	from := map[string]int{}
	for _, r := range e.rec.all() {
		from[r.Labels.SourceWorkload]++
	}
	if from["productpage-v1"] != 1 || from["reviews-v1"] != 2 {
		t.Errorf("records by source: %v, want productpage-v1:1 reviews-v1:2", from)
	}
}

func TestMalformedStreams(t *testing.T) {
	pp := bi["productpage-v1"]
	noEntries := alstest.HTTPMessage(pp.Node())
	negative := alstest.Outbound(pp, bi["details-v1"], 200, time.Millisecond)
	negative.CommonProperties.Duration.Seconds, negative.CommonProperties.Duration.Nanos = -5, 0
	otherNode := alstest.HTTPMessage(bi["details-v1"].Node(), alstest.Outbound(pp, bi["details-v1"], 200, 0))
	tests := map[string]struct {
		msgs []*alsv3.StreamAccessLogsMessage
		want string
	}{
		"no identifier":      {[]*alsv3.StreamAccessLogsMessage{alstest.HTTPMessage(nil, alstest.Outbound(pp, bi["details-v1"], 200, 0))}, "identifier.node.id: missing"},
		"no entries":         {[]*alsv3.StreamAccessLogsMessage{noEntries}, "http_logs.log_entry: empty"},
		"neither kind":       {[]*alsv3.StreamAccessLogsMessage{{Identifier: noEntries.Identifier}}, "neither http_logs nor tcp_logs"},
		"negative duration":  {[]*alsv3.StreamAccessLogsMessage{alstest.HTTPMessage(pp.Node(), negative)}, "http_logs.log_entry[0].common_properties.duration: negative"},
		"node changes":       {[]*alsv3.StreamAccessLogsMessage{alstest.HTTPMessage(pp.Node(), alstest.Outbound(pp, bi["details-v1"], 200, 0)), otherNode}, "changed from"},
		"entry without body": {[]*alsv3.StreamAccessLogsMessage{alstest.HTTPMessage(pp.Node(), &accesslog.HTTPAccessLogEntry{})}, "common_properties: missing"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := start(t)
			err := e.send(t, tc.msgs...)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want InvalidArgument with %q", err, tc.want)
			}
		})
	}
}

func family(name string, typ dto.MetricType, ms ...*dto.Metric) *dto.MetricFamily {
	return &dto.MetricFamily{Name: proto.String(name), Type: typ.Enum(), Metric: ms}
}

func labelPairs(kv ...string) []*dto.LabelPair {
	var out []*dto.LabelPair
	for i := 0; i < len(kv); i += 2 {
		out = append(out, &dto.LabelPair{Name: proto.String(kv[i]), Value: proto.String(kv[i+1])})
	}
	return out
}

func TestMetricsService(t *testing.T) {
	e := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := metricsv3.NewMetricsServiceClient(e.conn).StreamMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lbls := labelPairs("reporter", "destination", "destination_service_name", "reviews", "response_code", "200", "some_extra_tag", "x")
	msg := &metricsv3.StreamMetricsMessage{
		Identifier: &metricsv3.StreamMetricsMessage_Identifier{Node: bi["reviews-v1"].Node()},
		EnvoyMetrics: []*dto.MetricFamily{
			family("envoy_cluster_upstream_rq_total", dto.MetricType_COUNTER, &dto.Metric{Counter: &dto.Counter{Value: proto.Float64(99)}}),
			family("istio_requests_total", dto.MetricType_COUNTER, &dto.Metric{Label: lbls, Counter: &dto.Counter{Value: proto.Float64(42)}}),
			family("istio_request_duration_milliseconds", dto.MetricType_HISTOGRAM, &dto.Metric{Label: lbls, Histogram: &dto.Histogram{
				SampleCount: proto.Uint64(42), SampleSum: proto.Float64(420),
				Bucket: []*dto.Bucket{{UpperBound: proto.Float64(5), CumulativeCount: proto.Uint64(2)}, {UpperBound: proto.Float64(10), CumulativeCount: proto.Uint64(40)}},
			}}),
		},
	}
	if err := stream.Send(msg); err != nil {
		t.Fatal(err)
	}
	// The snapshot shows up in the aggregate; poll, the server applies it
	// asynchronously to this goroutine.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams := gatherTraffic(t, e.agg)
		if ms := fams["istio_requests_total"].GetMetric(); len(ms) == 1 && ms[0].GetCounter().GetValue() == 42 {
			h := fams["istio_request_duration_milliseconds"].GetMetric()[0].GetHistogram()
			cum := map[float64]uint64{}
			for _, b := range h.GetBucket() {
				cum[b.GetUpperBound()] = b.GetCumulativeCount()
			}
			if cum[5] != 2 || cum[10] != 40 || cum[25] != 40 || h.GetSampleCount() != 42 {
				t.Errorf("histogram %v", h)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy metrics never appeared: %v", fams["istio_requests_total"])
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); e.agg.Len() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("proxy metrics kept after its stream ended")
		}
	}

	// Decreasing cumulative counts are garbage.
	stream, err = metricsv3.NewMetricsServiceClient(e.conn).StreamMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg.EnvoyMetrics[2].Metric[0].Histogram.Bucket[1].CumulativeCount = proto.Uint64(1)
	_ = stream.Send(msg)
	_, err = stream.CloseAndRecv()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "cumulative count 1 below") {
		t.Errorf("got %v, want InvalidArgument about the buckets", err)
	}
}

// BenchmarkStreamAccessLogs measures entries aggregated per second end to
// end: over gRPC on loopback, decoded, labelled from the store, and folded
// into the Istio metrics, in batches of 100 as Envoy buffers them.
func BenchmarkStreamAccessLogs(b *testing.B) {
	e := startWith(b, false)
	pp := bi["productpage-v1"]
	var batch []*accesslog.HTTPAccessLogEntry
	for i := range 100 {
		dst := []alstest.Workload{bi["reviews-v1"], bi["reviews-v2"], bi["reviews-v3"], bi["details-v1"]}[i%4]
		batch = append(batch, alstest.Outbound(pp, dst, []uint32{200, 200, 200, 503}[i%4], time.Duration(i)*time.Millisecond))
	}
	ctx := context.Background()
	stream, err := alsv3.NewAccessLogServiceClient(e.conn).StreamAccessLogs(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := stream.Send(alstest.HTTPMessage(pp.Node(), batch...)); err != nil {
		b.Fatal(err)
	}
	msg := alstest.HTTPMessage(nil, batch...)
	b.ResetTimer()
	for b.Loop() {
		if err := stream.Send(msg); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkDecode measures the server's own work per entry, without gRPC.
func BenchmarkDecode(b *testing.B) {
	st := bookinfoStore(b)
	res := &resolver{store: st, domain: DefaultClusterDomain, clusterID: DefaultClusterID}
	pp := bi["productpage-v1"]
	now := time.Now()
	d := newDecoder(newLookups(res, pp.Node(), now))
	agg := traffic.NewAggregator(traffic.Options{}, nil)
	var batch []*accesslog.HTTPAccessLogEntry
	for i := range 100 {
		batch = append(batch, alstest.Outbound(pp, bi["reviews-v1"], 200, time.Duration(i)*time.Millisecond))
	}
	b.ReportAllocs()
	for b.Loop() {
		recs, err := d.decodeHTTP(batch, now)
		if err != nil {
			b.Fatal(err)
		}
		agg.Record(recs)
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "entries/s")
}

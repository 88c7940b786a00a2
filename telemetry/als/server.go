// Package als is meshd's end of Envoy's telemetry streams: the
// envoy.service.accesslog.v3.AccessLogService (StreamAccessLogs) and
// envoy.service.metrics.v3.MetricsService (StreamMetrics) servers. It
// identifies both ends of every logged request or connection, labels it as
// Istio's stats do, and hands the records to a traffic.Sink.
//
// How an entry is labelled:
//
//   - The reporting proxy is the stream's identifier.node: Istio's node ID
//     (TYPE~IP~POD.NS~DOMAIN) and metadata (NAMESPACE, LABELS,
//     WORKLOAD_NAME, CLUSTER_ID, INSTANCE_IPS), completed from its Pod in
//     the store.
//   - Direction: an inbound|PORT|| cluster (or an inbound passthrough) makes
//     the proxy the destination (reporter="destination"); an
//     outbound|PORT|SUBSET|HOST cluster (or PassthroughCluster, BlackHole)
//     the source. With no cluster, traffic to the proxy's own IP is inbound.
//   - The other end: the peer workload metadata Istio's metadata exchange
//     leaves in filter state (downstream_peer / upstream_peer, logged via
//     filter_state_objects_to_log), else the Pod owning the peer address
//     (downstream direct remote address inbound, upstream remote address
//     outbound), else "unknown".
//   - Destination service: the host of the outbound cluster; inbound, the
//     request's authority, else the Service in the proxy's namespace that
//     selects it (on the inbound port).
//   - Principals and connection_security_policy: inbound, from the
//     downstream TLS certificates (mutual_tls when the peer presented a URI
//     SAN, none otherwise); outbound the access log carries no upstream
//     certificate, so "unknown", as Istio's source reporter says.
//   - Any custom_tags entry named like an Istio label overrides it.
//
// A stream that sends something malformed is ended with InvalidArgument and
// a logged reason; nothing of the offending message is used, and other
// streams are unaffected.
package als

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshd/meshd/pkg/store"
	"github.com/meshd/meshd/telemetry/traffic"
)

// Defaults for Options.
const (
	DefaultClusterDomain = "cluster.local"
	// DefaultClusterID is Istio's default cluster name.
	DefaultClusterID = "Kubernetes"
)

// Options tune a Server.
type Options struct {
	// ClusterDomain is the DNS suffix of Service hosts; "" means cluster.local.
	ClusterDomain string
	// ClusterID fills source_cluster / destination_cluster when a proxy's
	// metadata does not say; "" means Kubernetes.
	ClusterID string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ProxyMetrics receives what proxies report through the metrics service:
// their own cumulative Istio metrics, per stream. traffic.Aggregator is one.
type ProxyMetrics interface {
	SetProxy(id string, snap *traffic.Snapshot)
	RemoveProxy(id string)
}

// Server serves both Envoy telemetry APIs.
type Server struct {
	log     *slog.Logger
	res     *resolver
	sink    traffic.Sink
	proxies ProxyMetrics
	now     func() time.Time
	seq     atomic.Uint64

	streams  *prometheus.GaugeVec
	rejected *prometheus.CounterVec
	entries  *prometheus.CounterVec
}

// Service names, as the stream metrics label them.
const (
	serviceAccessLog = "accesslog"
	serviceMetrics   = "metrics"
)

// New builds a server over the store (nil: identify proxies from their
// metadata only). Access-log records go to sink, proxy-reported metrics to
// proxies; the server's own metrics are registered in ctrl (may be nil).
func New(log *slog.Logger, st *store.Store, sink traffic.Sink, proxies ProxyMetrics, ctrl prometheus.Registerer, opts Options) *Server {
	if opts.ClusterDomain == "" {
		opts.ClusterDomain = DefaultClusterDomain
	}
	if opts.ClusterID == "" {
		opts.ClusterID = DefaultClusterID
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		log:     log,
		res:     &resolver{store: st, domain: opts.ClusterDomain, clusterID: opts.ClusterID},
		sink:    sink,
		proxies: proxies,
		now:     opts.Now,
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshd_telemetry_streams",
			Help: "Open telemetry streams from proxies, by service (accesslog, metrics).",
		}, []string{"service"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshd_telemetry_rejected_streams_total",
			Help: "Telemetry streams ended by meshd because the proxy sent malformed data, by service.",
		}, []string{"service"}),
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshd_telemetry_accesslog_entries_total",
			Help: "Access-log entries received, by kind (http, tcp).",
		}, []string{"kind"}),
	}
	if ctrl != nil {
		ctrl.MustRegister(s.streams, s.rejected, s.entries)
	}
	return s
}

// Register adds both services to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	alsv3.RegisterAccessLogServiceServer(g, accessLogService{s: s})
	metricsv3.RegisterMetricsServiceServer(g, metricsService{s: s})
}

type accessLogService struct {
	alsv3.UnimplementedAccessLogServiceServer
	s *Server
}

type metricsService struct {
	metricsv3.UnimplementedMetricsServiceServer
	s *Server
}

// garbageError marks errors that end a stream as the proxy's fault.
type garbageError struct{ err error }

func (g garbageError) Error() string { return g.err.Error() }
func (g garbageError) Unwrap() error { return g.err }

func garbage(format string, args ...any) error {
	return garbageError{fmt.Errorf(format, args...)}
}

// end turns a stream's outcome into its gRPC status, logging and counting
// rejections.
func (s *Server) end(service string, log *slog.Logger, err error) error {
	var g garbageError
	if errors.As(err, &g) {
		log.Warn("telemetry stream rejected", "reason", g.err)
		s.rejected.WithLabelValues(service).Inc()
		return status.Error(codes.InvalidArgument, g.err.Error())
	}
	return err
}

func peerAddr(stream grpc.ServerStream) string {
	if p, ok := peer.FromContext(stream.Context()); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// StreamAccessLogs aggregates one proxy's access-log stream.
func (a accessLogService) StreamAccessLogs(stream grpc.ClientStreamingServer[alsv3.StreamAccessLogsMessage, alsv3.StreamAccessLogsResponse]) error {
	s := a.s
	s.streams.WithLabelValues(serviceAccessLog).Inc()
	defer s.streams.WithLabelValues(serviceAccessLog).Dec()
	node, err := s.accessLogs(stream)
	if errors.Is(err, io.EOF) {
		return stream.SendAndClose(&alsv3.StreamAccessLogsResponse{})
	}
	return s.end(serviceAccessLog, s.log.With("service", serviceAccessLog, "peer", peerAddr(stream), "node", node), err)
}

// accessLogs reads a stream to its end, returning the node ID it named.
func (s *Server) accessLogs(stream grpc.ClientStreamingServer[alsv3.StreamAccessLogsMessage, alsv3.StreamAccessLogsResponse]) (string, error) {
	msg, err := stream.Recv()
	if err != nil {
		return "", err
	}
	node := msg.GetIdentifier().GetNode()
	if node.GetId() == "" {
		return "", garbage("identifier.node.id: missing in the stream's first message")
	}
	d := newDecoder(newLookups(s.res, node, s.now()))
	httpEntries, tcpEntries := s.entries.WithLabelValues("http"), s.entries.WithLabelValues("tcp")
	for {
		if id := msg.GetIdentifier().GetNode().GetId(); id != "" && id != node.GetId() {
			return node.GetId(), garbage("identifier.node.id: changed from %q to %q within the stream", node.GetId(), id)
		}
		now := s.now()
		d.look.tick(now)
		var recs []traffic.Record
		switch x := msg.GetLogEntries().(type) {
		case *alsv3.StreamAccessLogsMessage_HttpLogs:
			entries := x.HttpLogs.GetLogEntry()
			if recs, err = d.decodeHTTP(entries, now); err == nil {
				httpEntries.Add(float64(len(entries)))
			}
		case *alsv3.StreamAccessLogsMessage_TcpLogs:
			entries := x.TcpLogs.GetLogEntry()
			if recs, err = d.decodeTCP(entries, now); err == nil {
				tcpEntries.Add(float64(len(entries)))
			}
		default:
			err = errors.New("log_entries: neither http_logs nor tcp_logs")
		}
		if err != nil {
			return node.GetId(), garbageError{err}
		}
		if len(recs) > 0 {
			s.sink.Record(recs)
		}
		if msg, err = stream.Recv(); err != nil {
			return node.GetId(), err
		}
	}
}

// StreamMetrics keeps one proxy's latest Istio metrics while its stream
// lasts.
func (m metricsService) StreamMetrics(stream grpc.ClientStreamingServer[metricsv3.StreamMetricsMessage, metricsv3.StreamMetricsResponse]) error {
	s := m.s
	s.streams.WithLabelValues(serviceMetrics).Inc()
	defer s.streams.WithLabelValues(serviceMetrics).Dec()
	node, err := s.metrics(stream)
	if errors.Is(err, io.EOF) {
		return stream.SendAndClose(&metricsv3.StreamMetricsResponse{})
	}
	return s.end(serviceMetrics, s.log.With("service", serviceMetrics, "peer", peerAddr(stream), "node", node), err)
}

// metrics reads a stream to its end, returning the node ID it named.
func (s *Server) metrics(stream grpc.ClientStreamingServer[metricsv3.StreamMetricsMessage, metricsv3.StreamMetricsResponse]) (string, error) {
	msg, err := stream.Recv()
	if err != nil {
		return "", err
	}
	node := msg.GetIdentifier().GetNode()
	if node.GetId() == "" {
		return "", garbage("identifier.node.id: missing in the stream's first message")
	}
	// Two streams from one node (a reconnect racing the old stream's end)
	// must not overwrite each other.
	key := fmt.Sprintf("%s#%d", node.GetId(), s.seq.Add(1))
	if s.proxies != nil {
		defer s.proxies.RemoveProxy(key)
	}
	for {
		if id := msg.GetIdentifier().GetNode().GetId(); id != "" && id != node.GetId() {
			return node.GetId(), garbage("identifier.node.id: changed from %q to %q within the stream", node.GetId(), id)
		}
		snap, err := snapshotOf(msg.GetEnvoyMetrics())
		if err != nil {
			return node.GetId(), garbageError{err}
		}
		if s.proxies != nil {
			s.proxies.SetProxy(key, snap)
		}
		if msg, err = stream.Recv(); err != nil {
			return node.GetId(), err
		}
	}
}

var (
	_ alsv3.AccessLogServiceServer   = accessLogService{}
	_ metricsv3.MetricsServiceServer = metricsService{}
)

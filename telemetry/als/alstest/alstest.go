// Package alstest builds what an Istio sidecar's Envoy sends to meshd's
// access-log service: nodes, HTTP and TCP entries, stream messages. Tests
// and load clients use it to speak the real protocol without an Envoy.
package alstest

import (
	"strconv"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslog "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshd/meshd/telemetry/provider"
)

// SidecarNode is the node an Istio sidecar of pod NS/POD at ip presents:
// node ID sidecar~IP~POD.NS~NS.svc.cluster.local and metadata NAMESPACE
// and LABELS.
func SidecarNode(pod, namespace, ip string, labels map[string]string) *core.Node {
	l := map[string]any{}
	for k, v := range labels {
		l[k] = v
	}
	meta, err := structpb.NewStruct(map[string]any{"NAMESPACE": namespace, "LABELS": l, "INSTANCE_IPS": ip})
	if err != nil {
		panic(err) // only strings go in
	}
	return &core.Node{
		Id:       "sidecar~" + ip + "~" + pod + "." + namespace + "~" + namespace + ".svc.cluster.local",
		Cluster:  pod,
		Metadata: meta,
	}
}

// Call is one HTTP request as a sidecar logs it.
type Call struct {
	// Inbound is true for a request the sidecar received for its workload
	// (cluster inbound|PORT||); false for one its workload sent out
	// (cluster outbound|PORT||Host).
	Inbound bool
	Port    uint32
	// Host is the destination service's FQDN (outbound) or the request's
	// authority (inbound; may be a short name).
	Host string
	// LocalIP is the sidecar's own address, PeerIP the other end's.
	LocalIP, PeerIP string
	Code            uint32
	Duration        time.Duration
	RequestBytes    uint64
	ResponseBytes   uint64
	// PeerPrincipal and LocalPrincipal are the SPIFFE IDs of an inbound
	// mutual-TLS connection.
	PeerPrincipal, LocalPrincipal string
	// GRPCStatus, when set, makes the call gRPC.
	GRPCStatus string
	// Peer, when set, is the peer metadata Istio's metadata exchange would
	// have left in filter state (fields workload, namespace, app, ...).
	Peer map[string]string
	// Start is when the request began; zero means now.
	Start time.Time
}

func addr(ip string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address: ip, PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}

func principal(uri string) *accesslog.TLSProperties_CertificateProperties {
	return &accesslog.TLSProperties_CertificateProperties{SubjectAltName: []*accesslog.TLSProperties_CertificateProperties_SubjectAltName{
		{San: &accesslog.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: uri}},
	}}
}

func peerState(fields map[string]string) *anypb.Any {
	m := map[string]any{}
	for k, v := range fields {
		m[k] = v
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	a, err := anypb.New(s)
	if err != nil {
		panic(err)
	}
	return a
}

// common fills what HTTP and TCP entries share.
func (c Call) common() *accesslog.AccessLogCommon {
	start := c.Start
	if start.IsZero() {
		start = time.Now()
	}
	cp := &accesslog.AccessLogCommon{
		SampleRate:    1,
		StartTime:     timestamppb.New(start),
		Duration:      durationpb.New(c.Duration),
		ResponseFlags: &accesslog.ResponseFlags{},
	}
	if c.Inbound {
		cp.UpstreamCluster = "inbound|" + itoa(c.Port) + "||"
		cp.DownstreamRemoteAddress = addr(c.PeerIP, 40000)
		cp.DownstreamDirectRemoteAddress = addr(c.PeerIP, 40000)
		cp.DownstreamLocalAddress = addr(c.LocalIP, c.Port)
		cp.UpstreamRemoteAddress = addr(c.LocalIP, c.Port)
		if c.PeerPrincipal != "" {
			cp.TlsProperties = &accesslog.TLSProperties{
				TlsVersion:                 accesslog.TLSProperties_TLSv1_3,
				PeerCertificateProperties:  principal(c.PeerPrincipal),
				LocalCertificateProperties: principal(c.LocalPrincipal),
			}
		}
		if c.Peer != nil {
			cp.FilterStateObjects = map[string]*anypb.Any{provider.DownstreamPeer: peerState(c.Peer)}
		}
	} else {
		cp.UpstreamCluster = "outbound|" + itoa(c.Port) + "||" + c.Host
		cp.DownstreamRemoteAddress = addr(c.LocalIP, 50000)
		cp.DownstreamDirectRemoteAddress = addr(c.LocalIP, 50000)
		cp.DownstreamLocalAddress = addr("198.18.0.1", c.Port)
		cp.UpstreamRemoteAddress = addr(c.PeerIP, c.Port)
		if c.Peer != nil {
			cp.FilterStateObjects = map[string]*anypb.Any{provider.UpstreamPeer: peerState(c.Peer)}
		}
	}
	return cp
}

// HTTP is the entry of the call.
func (c Call) HTTP() *accesslog.HTTPAccessLogEntry {
	cp := c.common()
	cp.TimeToLastDownstreamTxByte = durationpb.New(c.Duration)
	cp.AccessLogType = accesslog.AccessLogType_DownstreamEnd
	e := &accesslog.HTTPAccessLogEntry{
		CommonProperties: cp,
		ProtocolVersion:  accesslog.HTTPAccessLogEntry_HTTP11,
		Request: &accesslog.HTTPRequestProperties{
			RequestMethod: core.RequestMethod_GET, Scheme: "http", Authority: c.Host, Path: "/",
			RequestHeadersBytes: c.RequestBytes,
		},
		Response: &accesslog.HTTPResponseProperties{
			ResponseCode:         wrapperspb.UInt32(c.Code),
			ResponseHeadersBytes: c.ResponseBytes / 4, ResponseBodyBytes: c.ResponseBytes - c.ResponseBytes/4,
		},
	}
	if c.GRPCStatus != "" {
		e.ProtocolVersion = accesslog.HTTPAccessLogEntry_HTTP2
		e.Request.RequestMethod = core.RequestMethod_POST
		e.Request.RequestHeaders = map[string]string{provider.ContentType: "application/grpc"}
		e.Response.ResponseTrailers = map[string]string{provider.GRPCStatus: c.GRPCStatus}
	}
	return e
}

// TCP is one entry of a TCP connection: typ says which (connection start,
// periodic, end), streamID ties a connection's entries together, and the
// byte counts are totals so far, as Envoy logs them.
func (c Call) TCP(typ accesslog.AccessLogType, streamID string, sent, received uint64) *accesslog.TCPAccessLogEntry {
	cp := c.common()
	cp.AccessLogType = typ
	cp.StreamId = streamID
	return &accesslog.TCPAccessLogEntry{
		CommonProperties:     cp,
		ConnectionProperties: &accesslog.ConnectionProperties{SentBytes: sent, ReceivedBytes: received},
	}
}

// HTTPMessage wraps entries in a stream message; node is set on a
// stream's first message only, as Envoy does.
func HTTPMessage(node *core.Node, entries ...*accesslog.HTTPAccessLogEntry) *alsv3.StreamAccessLogsMessage {
	m := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{
		HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries},
	}}
	if node != nil {
		m.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{Node: node, LogName: provider.LogName}
	}
	return m
}

// TCPMessage is HTTPMessage for TCP entries.
func TCPMessage(node *core.Node, entries ...*accesslog.TCPAccessLogEntry) *alsv3.StreamAccessLogsMessage {
	m := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_TcpLogs{
		TcpLogs: &alsv3.StreamAccessLogsMessage_TCPAccessLogEntries{LogEntry: entries},
	}}
	if node != nil {
		m.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{Node: node, LogName: provider.LogName}
	}
	return m
}

// Workload is one Bookinfo-like workload: a pod with a sidecar.
type Workload struct {
	Pod, Namespace, IP string
	Labels             map[string]string
	// Principal is its SPIFFE ID.
	Principal string
}

// Node is the workload's sidecar node.
func (w Workload) Node() *core.Node { return SidecarNode(w.Pod, w.Namespace, w.IP, w.Labels) }

// Bookinfo is Istio's Bookinfo as examples/bookinfo describes it.
var Bookinfo = map[string]Workload{
	"productpage-v1": bookinfo("productpage", "v1", "192.0.2.10"),
	"details-v1":     bookinfo("details", "v1", "192.0.2.11"),
	"reviews-v1":     bookinfo("reviews", "v1", "192.0.2.12"),
	"reviews-v2":     bookinfo("reviews", "v2", "192.0.2.13"),
	"reviews-v3":     bookinfo("reviews", "v3", "192.0.2.14"),
	"ratings-v1":     bookinfo("ratings", "v1", "192.0.2.15"),
}

func bookinfo(app, version, ip string) Workload {
	return Workload{
		Pod: app + "-" + version, Namespace: "default", IP: ip,
		Labels:    map[string]string{"app": app, "version": version},
		Principal: "spiffe://cluster.local/ns/default/sa/bookinfo-" + app,
	}
}

// Outbound is the entry the caller's sidecar logs for a call from src to
// dst through dst's service on port 9080.
func Outbound(src, dst Workload, code uint32, d time.Duration) *accesslog.HTTPAccessLogEntry {
	return Call{
		Port: 9080, Host: dst.Labels["app"] + "." + dst.Namespace + ".svc.cluster.local",
		LocalIP: src.IP, PeerIP: dst.IP, Code: code, Duration: d, RequestBytes: 300, ResponseBytes: 1200,
	}.HTTP()
}

// Inbound is the entry the callee's sidecar logs for the same call, over
// mutual TLS.
func Inbound(src, dst Workload, code uint32, d time.Duration) *accesslog.HTTPAccessLogEntry {
	return Call{
		Inbound: true, Port: 9080, Host: dst.Labels["app"] + ":9080",
		LocalIP: dst.IP, PeerIP: src.IP, Code: code, Duration: d, RequestBytes: 300, ResponseBytes: 1200,
		PeerPrincipal: src.Principal, LocalPrincipal: dst.Principal,
	}.HTTP()
}

func itoa(p uint32) string { return strconv.FormatUint(uint64(p), 10) }

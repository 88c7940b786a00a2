package translate

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	accesslog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	celfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	grpcals "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/meshd/meshd/pilot/model"
	"github.com/meshd/meshd/telemetry/provider"
)

// DefaultControlPlaneAddress is where sidecars stream access logs when
// Translator.ControlPlaneAddress is unset: meshd's plaintext gRPC port,
// by the Service name istiod has.
const DefaultControlPlaneAddress = "istiod.istio-system.svc:15010"

// Envoy extension names of the access loggers and their CEL filter.
const (
	httpGRPCAccessLogger = "envoy.access_loggers.http_grpc"
	tcpGRPCAccessLogger  = "envoy.access_loggers.tcp_grpc"
	celAccessLogFilter   = "envoy.access_loggers.extension_filters.cel"
)

// accessLogs is what a proxy's Telemetry decides for the meshd provider,
// as listener builders consume it. The zero value logs nothing.
type accessLogs struct {
	client, server             bool
	clientFilter, serverFilter string
}

func accessLogsOf(d provider.Decision) accessLogs {
	return accessLogs{client: d.Client, server: d.Server, clientFilter: d.ClientFilter, serverFilter: d.ServerFilter}
}

// any reports whether the proxy needs the cluster back to meshd.
func (a accessLogs) any() bool { return a.client || a.server }

// key is a cache-key fragment holding every part of the decision: "" when
// nothing is logged, so proxies without Telemetry keep their old keys.
func (a accessLogs) key() string {
	if !a.any() {
		return ""
	}
	return fmt.Sprintf("als:%t:%t:%q:%q", a.client, a.server, a.clientFilter, a.serverFilter)
}

// serverKey is key restricted to inbound traffic.
func (a accessLogs) serverKey() string {
	if !a.server {
		return ""
	}
	return fmt.Sprintf("als:%q", a.serverFilter)
}

// accessLogsFor decides the meshd provider for a proxy, memoized per
// snapshot by namespace, and by labels too only when a workload-scoped
// Telemetry exists in the namespace (the decision reads the labels only
// then); t.mu is held by the caller.
func (t *Translator) accessLogsFor(snap *model.Snapshot, p *model.Proxy) accessLogs {
	if len(snap.Telemetries) == 0 || p.Generator == model.GeneratorGRPC {
		// Proxyless gRPC has no Envoy access loggers.
		return accessLogs{}
	}
	idx := t.index(snap)
	if idx.als == nil || idx.alsVersion != snap.TelemetryVersion {
		idx.als, idx.alsVersion = map[string]accessLogs{}, snap.TelemetryVersion
	}
	memo := p.Namespace
	for _, tel := range snap.Telemetries {
		if tel.Namespace == p.Namespace && (len(tel.Spec.GetSelector().GetMatchLabels()) > 0 ||
			len(tel.Spec.GetTargetRefs()) > 0 || tel.Spec.GetTargetRef() != nil) {
			memo += "|" + labelString(p.Labels)
			break
		}
	}
	if a, ok := idx.als[memo]; ok {
		return a
	}
	a := accessLogsOf(provider.MeshdAccessLogging(snap.Telemetries, snap.Options.RootNamespace, p.Namespace, p.Labels))
	idx.als[memo] = a
	return a
}

func labelString(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s,", k, labels[k])
	}
	return b.String()
}

// commonALSConfig is the part of the gRPC access logger config the HTTP
// and TCP loggers share: where to stream and which peer metadata to log.
func commonALSConfig() *grpcals.CommonGrpcAccessLogConfig {
	return &grpcals.CommonGrpcAccessLogConfig{
		LogName:             provider.LogName,
		TransportApiVersion: core.ApiVersion_V3,
		GrpcService: &core.GrpcService{TargetSpecifier: &core.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: provider.ClusterName},
		}},
		FilterStateObjectsToLog: append([]string(nil), provider.FilterStateObjectsToLog...),
	}
}

// httpAccessLogs returns the HTTP connection manager's access_log list
// for one direction, or nil when it logs nothing.
func httpAccessLogs(on bool, filter string) []*accesslog.AccessLog {
	if !on {
		return nil
	}
	cfg := &grpcals.HttpGrpcAccessLogConfig{
		CommonConfig:                    commonALSConfig(),
		AdditionalRequestHeadersToLog:   append([]string(nil), provider.AdditionalRequestHeadersToLog...),
		AdditionalResponseHeadersToLog:  append([]string(nil), provider.AdditionalResponseHeadersToLog...),
		AdditionalResponseTrailersToLog: append([]string(nil), provider.AdditionalResponseTrailersToLog...),
	}
	return []*accesslog.AccessLog{accessLogOf(httpGRPCAccessLogger, cfg, filter)}
}

// tcpAccessLogs is httpAccessLogs for TCP proxies.
func tcpAccessLogs(on bool, filter string) []*accesslog.AccessLog {
	if !on {
		return nil
	}
	cfg := &grpcals.TcpGrpcAccessLogConfig{CommonConfig: commonALSConfig()}
	return []*accesslog.AccessLog{accessLogOf(tcpGRPCAccessLogger, cfg, filter)}
}

func accessLogOf(name string, cfg proto.Message, filter string) *accesslog.AccessLog {
	al := &accesslog.AccessLog{Name: name, ConfigType: &accesslog.AccessLog_TypedConfig{TypedConfig: mustAny(cfg)}}
	if filter != "" {
		al.Filter = &accesslog.AccessLogFilter{FilterSpecifier: &accesslog.AccessLogFilter_ExtensionFilter{
			ExtensionFilter: &accesslog.ExtensionFilter{
				Name:       celAccessLogFilter,
				ConfigType: &accesslog.ExtensionFilter_TypedConfig{TypedConfig: mustAny(&celfilter.ExpressionFilter{Expression: filter})},
			},
		}}
	}
	return al
}

// withTCPAccessLogs returns f, a tcp_proxy filter, logging to logs; f
// itself when logs is empty.
func withTCPAccessLogs(f *listener.Filter, logs []*accesslog.AccessLog) *listener.Filter {
	if len(logs) == 0 || f.GetTypedConfig() == nil {
		return f
	}
	tp := &tcpproxy.TcpProxy{}
	if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
		// Built by this package a moment ago: cannot happen.
		panic(fmt.Sprintf("tcp_proxy %s: %v", f.Name, err))
	}
	tp.AccessLog = logs
	return &listener.Filter{Name: f.Name, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(tp)}}
}

// telemetryCluster builds the cluster sidecars stream access logs on:
// HTTP/2 to meshd at addr (host:port), STATIC for an IP, STRICT_DNS for a
// name.
func telemetryCluster(addr string) (*Resource, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("control plane address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("control plane address %q: bad port %q", addr, portStr)
	}
	typ := cluster.Cluster_STRICT_DNS
	if _, err := netip.ParseAddr(host); err == nil {
		typ = cluster.Cluster_STATIC
	}
	c := &cluster.Cluster{
		Name:                          provider.ClusterName,
		ClusterDiscoveryType:          &cluster.Cluster_Type{Type: typ},
		ConnectTimeout:                durationpb.New(defaultConnectTimeout),
		TypedExtensionProtocolOptions: http2Options(),
		LoadAssignment: loadAssignment(provider.ClusterName,
			[]model.Endpoint{{Address: host, Port: int32(port), Ready: true, Weight: 1}}, false),
	}
	if typ == cluster.Cluster_STRICT_DNS {
		c.DnsLookupFamily = cluster.Cluster_V4_ONLY
	}
	return mustResource(c.Name, c), nil
}

// telemetryClusterResource returns the cluster back to meshd, built once
// per address; t.mu is held by the caller. A bad address is logged and
// leaves the cluster (and so the access logs' destination) out.
func (t *Translator) telemetryClusterResource() *Resource {
	addr := t.ControlPlaneAddress
	if addr == "" {
		addr = DefaultControlPlaneAddress
	}
	if t.alsClusterAddr != addr {
		r, err := telemetryCluster(addr)
		if err != nil {
			t.log.Error("no access-log cluster", "field", "ControlPlaneAddress", "error", err)
		}
		t.alsCluster, t.alsClusterAddr = r, addr
	}
	return t.alsCluster
}

// withHTTPAccessLogs sets m's access loggers and returns it.
func withHTTPAccessLogs(m *hcm.HttpConnectionManager, logs []*accesslog.AccessLog) *hcm.HttpConnectionManager {
	m.AccessLog = logs
	return m
}

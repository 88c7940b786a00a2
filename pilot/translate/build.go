package translate

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	httpopts "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/meshd/meshd/pilot/model"
)

// Well-known cluster names, as istiod names them.
const (
	BlackHoleCluster          = "BlackHoleCluster"
	PassthroughCluster        = "PassthroughCluster"
	InboundPassthroughCluster = "InboundPassthroughCluster"

	VirtualOutboundListener = "virtualOutbound"
	VirtualInboundListener  = "virtualInbound"

	// GRPCInboundPrefix starts the names proxyless gRPC servers ask for.
	GRPCInboundPrefix = "xds.istio.io/grpc/lds/inbound/"

	// Filter names.
	hcmFilter      = "envoy.filters.network.http_connection_manager"
	tcpProxyFilter = "envoy.filters.network.tcp_proxy"
	routerFilter   = "envoy.filters.http.router"
)

// OutboundClusterName is outbound|PORT|SUBSET|HOST.
func OutboundClusterName(port int32, subset, host string) string {
	return fmt.Sprintf("outbound|%d|%s|%s", port, subset, host)
}

// InboundClusterName is inbound|PORT||.
func InboundClusterName(port int32) string { return fmt.Sprintf("inbound|%d||", port) }

// ParseClusterName splits outbound|PORT|SUBSET|HOST (or inbound|PORT||).
func ParseClusterName(name string) (direction string, port int32, subset, host string, ok bool) {
	parts := strings.Split(name, "|")
	if len(parts) != 4 {
		return "", 0, "", "", false
	}
	var p int
	if _, err := fmt.Sscanf(parts[1], "%d", &p); err != nil {
		return "", 0, "", "", false
	}
	return parts[0], int32(p), parts[2], parts[3], true
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("translate: packing %T: %v", m, err))
	}
	return a
}

// adsSource tells a client to fetch the resource over the same ADS stream;
// grpc-go accepts nothing else for RDS and EDS.
func adsSource() *core.ConfigSource {
	return &core.ConfigSource{
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
		ResourceApiVersion:    core.ApiVersion_V3,
	}
}

func socketAddress(addr string, port int32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address:       addr,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}
}

const defaultConnectTimeout = 10 * time.Second

// applyDefaultLB sets Istio's default load balancing: LEAST_REQUEST with
// power-of-two choices (Istio >= 1.17).
func applyDefaultLB(c *cluster.Cluster) {
	c.LbPolicy = cluster.Cluster_LEAST_REQUEST
	c.LbConfig = &cluster.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &cluster.Cluster_LeastRequestLbConfig{
		ChoiceCount: wrapperspb.UInt32(2),
	}}
}

// maxCircuitBreakers lifts Envoy's default limits (1024), as istiod does:
// the mesh, not the proxy, decides limits (via DestinationRules).
func maxCircuitBreakers() *cluster.CircuitBreakers {
	const maxU32 = 4294967295
	return &cluster.CircuitBreakers{Thresholds: []*cluster.CircuitBreakers_Thresholds{{
		MaxConnections:     wrapperspb.UInt32(maxU32),
		MaxPendingRequests: wrapperspb.UInt32(maxU32),
		MaxRequests:        wrapperspb.UInt32(maxU32),
		MaxRetries:         wrapperspb.UInt32(maxU32),
		TrackRemaining:     true,
	}}}
}

func http2Options() map[string]*anypb.Any {
	return map[string]*anypb.Any{
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&httpopts.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &core.Http2ProtocolOptions{}},
			}},
		}),
	}
}

// outboundCluster builds the cluster of one service port. ok is false when
// the generator has no cluster for it (proxyless gRPC cannot pass through).
func outboundCluster(svc *model.Service, p model.Port, subset string, eps []model.Endpoint, grpc bool) (*cluster.Cluster, bool) {
	name := OutboundClusterName(p.Port, subset, svc.Hostname)
	c := &cluster.Cluster{Name: name, ConnectTimeout: durationpb.New(defaultConnectTimeout)}
	eds := func() {
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_EDS}
		c.EdsClusterConfig = &cluster.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name}
		applyDefaultLB(c)
	}
	if grpc {
		// grpc-go resolves everything through EDS: it has no ORIGINAL_DST and
		// takes LOGICAL_DNS only with one host, so DNS names travel in EDS too.
		if svc.Resolution == model.Passthrough && !svc.Headless {
			return nil, false
		}
		eds()
		return c, true
	}
	switch svc.Resolution {
	case model.ClientSideLB:
		eds()
	case model.DNSLB, model.DNSRoundRobinLB:
		typ := cluster.Cluster_STRICT_DNS
		if svc.Resolution == model.DNSRoundRobinLB {
			typ = cluster.Cluster_LOGICAL_DNS
			if len(eps) > 1 {
				eps = eps[:1] // LOGICAL_DNS takes exactly one host
			}
		}
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: typ}
		c.DnsLookupFamily = cluster.Cluster_V4_ONLY
		c.LoadAssignment = loadAssignment(name, eps, false)
		applyDefaultLB(c)
	case model.Passthrough:
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST}
		c.LbPolicy = cluster.Cluster_CLUSTER_PROVIDED
	}
	c.CircuitBreakers = maxCircuitBreakers()
	if p.Protocol.IsHTTP2() {
		c.TypedExtensionProtocolOptions = http2Options()
	}
	return c, true
}

// loadAssignment groups a service port's endpoints by locality. Proxyless
// gRPC gets only ready endpoints; Envoy also gets terminating-but-serving
// ones as DRAINING so that existing connections finish.
func loadAssignment(name string, eps []model.Endpoint, grpc bool) *endpoint.ClusterLoadAssignment {
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name}
	byLoc := map[model.Locality][]*endpoint.LbEndpoint{}
	weights := map[model.Locality]uint32{}
	seen := map[string]bool{}
	for _, ep := range eps {
		health := core.HealthStatus_HEALTHY
		switch {
		case ep.Ready:
		case !grpc && ep.Terminating && ep.Serving:
			health = core.HealthStatus_DRAINING
		default:
			continue
		}
		// grpc-go NACKs two endpoints with one address.
		key := fmt.Sprintf("%s:%d", ep.Address, ep.Port)
		if seen[key] {
			continue
		}
		seen[key] = true
		w := ep.Weight
		if w == 0 {
			w = 1
		}
		byLoc[ep.Locality] = append(byLoc[ep.Locality], &endpoint.LbEndpoint{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
				Address: socketAddress(ep.Address, ep.Port),
			}},
			HealthStatus:        health,
			LoadBalancingWeight: wrapperspb.UInt32(w),
		})
		weights[ep.Locality] += w
	}
	locs := make([]model.Locality, 0, len(byLoc))
	for l := range byLoc {
		locs = append(locs, l)
	}
	sort.Slice(locs, func(i, j int) bool { return locs[i].String() < locs[j].String() })
	for _, l := range locs {
		cla.Endpoints = append(cla.Endpoints, &endpoint.LocalityLbEndpoints{
			// grpc-go needs a locality on every group, and a weight above 0.
			Locality:            &core.Locality{Region: l.Region, Zone: l.Zone, SubZone: l.SubZone},
			LbEndpoints:         byLoc[l],
			LoadBalancingWeight: wrapperspb.UInt32(weights[l]),
		})
	}
	return cla
}

func routerHTTPFilter() *hcm.HttpFilter {
	return &hcm.HttpFilter{Name: routerFilter, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&router.Router{})}}
}

func hcmFilterOf(m *hcm.HttpConnectionManager) *listener.Filter {
	return &listener.Filter{Name: hcmFilter, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(m)}}
}

func tcpProxyFilterTo(statPrefix, clusterName string) *listener.Filter {
	return &listener.Filter{Name: tcpProxyFilter, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(&tcpproxy.TcpProxy{
		StatPrefix:       statPrefix,
		ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: clusterName},
	})}}
}

// rdsHCM is an HTTP connection manager that takes route configuration
// routeName over ADS, with the router as its last (terminal) filter.
func rdsHCM(statPrefix, routeName string, filters ...*hcm.HttpFilter) *hcm.HttpConnectionManager {
	return &hcm.HttpConnectionManager{
		StatPrefix: statPrefix,
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: routeName,
		}},
		HttpFilters: append(filters, routerHTTPFilter()),
	}
}

// routeToCluster is the catch-all route of a service's virtual host.
func routeToCluster(clusterName string, envoy bool) *route.Route {
	action := &route.RouteAction{
		ClusterSpecifier: &route.RouteAction_Cluster{Cluster: clusterName},
	}
	if envoy {
		// Istio's defaults: no route timeout, and two retries on failures
		// that are safe to retry.
		action.Timeout = durationpb.New(0)
		action.MaxStreamDuration = &route.RouteAction_MaxStreamDuration{GrpcTimeoutHeaderMax: durationpb.New(0)}
		action.RetryPolicy = &route.RetryPolicy{
			RetryOn:                       "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
			NumRetries:                    wrapperspb.UInt32(2),
			HostSelectionRetryMaxAttempts: 5,
		}
	}
	return &route.Route{
		Name:   "default",
		Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
		Action: &route.Route_Route{Route: action},
	}
}

// hostDomains lists the names a client in namespace ns may use for a
// service: the short name (same namespace only), name.namespace, the FQDN
// and the cluster IP (or ServiceEntry addresses), each with and without
// the port.
func hostDomains(svc *model.Service, port int32, ns string) []string {
	var names []string
	if svc.Kind == model.KindKubernetes {
		if svc.Namespace == ns {
			names = append(names, svc.Name)
		}
		names = append(names, svc.Name+"."+svc.Namespace)
	}
	names = append(names, svc.Hostname)
	if svc.ClusterIP != "" {
		names = append(names, svc.ClusterIP)
	}
	for _, a := range svc.Addresses {
		if !strings.Contains(a, "/") {
			names = append(names, a)
		}
	}
	out := make([]string, 0, 2*len(names))
	suffix := ":" + strconv.Itoa(int(port))
	for _, n := range names {
		withPort := n + suffix
		if strings.Contains(n, ":") { // an IPv6 address
			withPort = "[" + n + "]" + suffix
		}
		out = append(out, n, withPort)
	}
	return out
}

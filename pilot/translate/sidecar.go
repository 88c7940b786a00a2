package translate

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	accesslog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	originaldst "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshd/meshd/pilot/model"
)

// Ports of the sidecar's capture listeners.
const (
	virtualOutboundPort = 15001
	virtualInboundPort  = 15006
)

// serviceClusters builds the outbound clusters of one service (one per
// port, and one per port and DestinationRule subset). It reads the service,
// its endpoints (for DNS clusters, which carry them inline) and the
// DestinationRule dr (nil: none), and nothing else.
func serviceClusters(snap *model.Snapshot, svc *model.Service, dr *drEntry, grpc bool) []*Resource {
	eps := snap.Endpoints(svc)
	out := make([]*Resource, 0, len(svc.Ports))
	for _, p := range svc.Ports {
		subsets := []*networking.Subset{nil}
		if dr != nil {
			subsets = append(subsets, dr.spec.Subsets...)
		}
		for _, ss := range subsets {
			name := ""
			var labels map[string]string
			if ss != nil {
				name, labels = ss.Name, ss.Labels
			}
			c, ok := outboundCluster(svc, p, name, subsetEndpoints(eps.For(p.Port), labels), grpc)
			if !ok {
				continue
			}
			applyPolicy(c, policyFor(dr, ss, p.Port), svc, p.Protocol.IsHTTP2(), grpc, istioSNI(p.Port, name, svc.Hostname))
			if !grpc {
				applyLocalityCluster(c, localitySetting(dr, p.Port))
			}
			out = append(out, mustResource(c.Name, c))
		}
	}
	return out
}

// serviceEndpoints builds the load assignments of one service's EDS
// clusters, subsets included. It reads the service, its endpoints and the
// subsets of its DestinationRule.
//
// For Envoy, a locality load-balancing setting reshapes them for a proxy
// at from (the caller keys its cache on from when localityAware).
func serviceEndpoints(snap *model.Snapshot, svc *model.Service, dr *drEntry, grpc bool, from model.Locality) []*Resource {
	eds := svc.Resolution == model.ClientSideLB || (grpc && (svc.Headless || svc.Resolution != model.Passthrough))
	if !eds {
		return nil
	}
	eps := snap.Endpoints(svc)
	out := make([]*Resource, 0, len(svc.Ports))
	for _, p := range svc.Ports {
		var ls *networking.LocalityLoadBalancerSetting
		if !grpc {
			ls = localitySetting(dr, p.Port)
		}
		name := OutboundClusterName(p.Port, "", svc.Hostname)
		cla := loadAssignment(name, eps.For(p.Port), grpc)
		applyLocality(cla, ls, from)
		out = append(out, mustResource(name, cla))
		if dr == nil {
			continue
		}
		for _, ss := range dr.spec.Subsets {
			name := OutboundClusterName(p.Port, ss.Name, svc.Hostname)
			cla := loadAssignment(name, subsetEndpoints(eps.For(p.Port), ss.Labels), grpc)
			applyLocality(cla, ls, from)
			out = append(out, mustResource(name, cla))
		}
	}
	return out
}

// staticClusters are the clusters every sidecar has.
func staticClusters() []*Resource {
	blackhole := &cluster.Cluster{
		Name:                 BlackHoleCluster,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(defaultConnectTimeout),
	}
	passthrough := &cluster.Cluster{
		Name:                 PassthroughCluster,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST},
		LbPolicy:             cluster.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(defaultConnectTimeout),
		CircuitBreakers:      maxCircuitBreakers(),
	}
	inboundPassthrough := &cluster.Cluster{
		Name:                 InboundPassthroughCluster,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST},
		LbPolicy:             cluster.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(defaultConnectTimeout),
		CircuitBreakers:      maxCircuitBreakers(),
	}
	return []*Resource{
		mustResource(blackhole.Name, blackhole),
		mustResource(passthrough.Name, passthrough),
		mustResource(inboundPassthrough.Name, inboundPassthrough),
	}
}

// chain is one filter chain of an outbound listener under construction.
type chain struct {
	key      string // what it matches: "" (everything), "cidr:..." or "sni:..."
	match    *listener.FilterChainMatch
	filter   *listener.Filter
	http     bool
	sni      bool
	service  string
	protocol model.Protocol
}

type outboundListener struct {
	name   string
	addr   string
	port   int32
	chains map[string]*chain
}

// sidecarListeners builds the outbound listeners of a sidecar in namespace
// ns: one 0.0.0.0_PORT listener per HTTP port (routes by Host header via
// RDS), one CLUSTERIP_PORT listener per TCP port of a service with an
// address, SNI chains for TLS to addressless services, and the capture
// listeners. A port claimed twice in ways a listener cannot tell apart is
// given to the first service (in hostname order) and the conflict logged.
func sidecarListeners(env *routeEnv, services []*model.Service) []*Resource {
	log := env.log
	clientLogs := httpAccessLogs(env.als.client, env.als.clientFilter)
	clientTCPLogs := tcpAccessLogs(env.als.client, env.als.clientFilter)
	ls := map[string]*outboundListener{}
	get := func(addr string, port int32) *outboundListener {
		name := fmt.Sprintf("%s_%d", addr, port)
		l := ls[name]
		if l == nil {
			l = &outboundListener{name: name, addr: addr, port: port, chains: map[string]*chain{}}
			ls[name] = l
		}
		return l
	}
	add := func(l *outboundListener, c *chain) {
		if have, ok := l.chains[c.key]; ok {
			if have.http && c.http {
				return // one HTTP chain routes every service on the port
			}
			log.Debug("outbound listener conflict: keeping the first service", "listener", l.name, "kept", have.service, "dropped", c.service)
			return
		}
		l.chains[c.key] = c
	}
	for _, svc := range services {
		for _, p := range svc.Ports {
			clusterName := OutboundClusterName(p.Port, "", svc.Hostname)
			if p.Protocol.IsHTTP() {
				l := get("0.0.0.0", p.Port)
				if have, ok := l.chains[""]; ok && have.http {
					continue // one HTTP chain routes every service on the port
				}
				add(l, &chain{http: true, service: svc.Hostname, protocol: p.Protocol,
					filter: hcmFilterOf(withHTTPAccessLogs(rdsHCM(fmt.Sprintf("outbound_0.0.0.0_%d", p.Port), strconv.Itoa(int(p.Port)), corsHTTPFilter(), faultHTTPFilter()), clientLogs))})
				continue
			}
			tcp := func(statPrefix string) *listener.Filter {
				return withTCPAccessLogs(env.tcpFilter(svc, p.Port, statPrefix, p.Protocol == model.TLS || p.Protocol == model.HTTPS), clientTCPLogs)
			}
			switch {
			case svc.ClusterIP != "":
				add(get(svc.ClusterIP, p.Port), &chain{service: svc.Hostname, filter: tcp(clusterName)})
			case len(svc.Addresses) > 0:
				for _, a := range svc.Addresses {
					if pfx, err := netip.ParsePrefix(a); err == nil {
						add(get("0.0.0.0", p.Port), &chain{
							key: "cidr:" + pfx.String(), service: svc.Hostname, filter: tcp(clusterName),
							match: &listener.FilterChainMatch{PrefixRanges: []*core.CidrRange{{
								AddressPrefix: pfx.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(pfx.Bits())),
							}}},
						})
						continue
					}
					add(get(a, p.Port), &chain{service: svc.Hostname, filter: tcp(clusterName)})
				}
			case p.Protocol == model.TLS || p.Protocol == model.HTTPS:
				// Addressless TLS (external HTTPS services): tell hosts apart by SNI.
				add(get("0.0.0.0", p.Port), &chain{
					key: "sni:" + svc.Hostname, sni: true, service: svc.Hostname, filter: tcp(clusterName),
					match: &listener.FilterChainMatch{ServerNames: []string{svc.Hostname}},
				})
			default:
				add(get("0.0.0.0", p.Port), &chain{service: svc.Hostname, filter: tcp(clusterName)})
			}
		}
	}

	names := make([]string, 0, len(ls))
	for n := range ls {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*Resource, 0, len(names)+2)
	out = append(out, virtualOutbound(clientTCPLogs, env.registryOnly))
	for _, n := range names {
		l := ls[n]
		keys := make([]string, 0, len(l.chains))
		for k := range l.chains {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		lis := &listener.Listener{
			Name:             l.name,
			Address:          socketAddress(l.addr, l.port),
			BindToPort:       wrapperspb.Bool(false),
			TrafficDirection: core.TrafficDirection_OUTBOUND,
		}
		sni := false
		for _, k := range keys {
			c := l.chains[k]
			sni = sni || c.sni
			lis.FilterChains = append(lis.FilterChains, &listener.FilterChain{
				Name:             k,
				FilterChainMatch: c.match,
				Filters:          []*listener.Filter{c.filter},
			})
		}
		if sni {
			lis.ListenerFilters = []*listener.ListenerFilter{{
				Name:       "envoy.filters.listener.tls_inspector",
				ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspector.TlsInspector{})},
			}}
		}
		out = append(out, mustResource(lis.Name, lis))
	}
	return out
}

// virtualOutbound captures all outbound traffic (iptables sends it to
// 15001) and hands it to the listener for its original destination; what
// no listener claims passes through (outboundTrafficPolicy ALLOW_ANY) or,
// under REGISTRY_ONLY, goes nowhere.
func virtualOutbound(logs []*accesslog.AccessLog, registryOnly bool) *Resource {
	fallback := PassthroughCluster
	if registryOnly {
		fallback = BlackHoleCluster
	}
	l := &listener.Listener{
		Name:             VirtualOutboundListener,
		Address:          socketAddress("0.0.0.0", virtualOutboundPort),
		UseOriginalDst:   wrapperspb.Bool(true),
		TrafficDirection: core.TrafficDirection_OUTBOUND,
		FilterChains: []*listener.FilterChain{{
			Name:    fallback,
			Filters: []*listener.Filter{withTCPAccessLogs(tcpProxyFilterTo(fallback, fallback), logs)},
		}},
	}
	return mustResource(l.Name, l)
}

// VirtualHostCache returns the serialized virtual host of one service
// port as seen from the same namespace (short name included) or another;
// build makes it on a miss. It lets route configurations, which hold every
// service on a port, be assembled from per-service pieces built once.
type VirtualHostCache func(svc *model.Service, port int32, sameNamespace bool, build func() []byte) []byte

// sidecarRoutes builds one route configuration per HTTP port, named by the
// port, with one virtual host per service on it, plus allow_any. Virtual
// hosts come from vhosts when no domain had to be dropped as a duplicate.
func sidecarRoutes(env *routeEnv, services []*model.Service, vhosts VirtualHostCache) []*Resource {
	log, ns := env.log, env.ns
	byPort := map[int32][][]byte{}
	seen := map[int32]map[string]string{}
	for _, svc := range services {
		for _, p := range svc.Ports {
			if !p.Protocol.IsHTTP() {
				continue
			}
			if seen[p.Port] == nil {
				seen[p.Port] = map[string]string{}
			}
			all := hostDomains(svc, p.Port, ns)
			domains := make([]string, 0, len(all))
			for _, d := range all {
				if owner, dup := seen[p.Port][d]; dup {
					// Envoy refuses a domain in two virtual hosts.
					log.Debug("duplicate domain on route: keeping the first service", "port", p.Port, "domain", d, "kept", owner, "dropped", svc.Hostname)
					continue
				}
				seen[p.Port][d] = svc.Hostname
				domains = append(domains, d)
			}
			if len(domains) == 0 {
				continue
			}
			build := func() []byte { return mustMarshal(serviceVirtualHost(env, svc, p.Port, domains)) }
			var b []byte
			if len(domains) == len(all) && vhosts != nil {
				b = vhosts(svc, p.Port, svc.Namespace == ns, build)
			} else {
				b = build()
			}
			byPort[p.Port] = append(byPort[p.Port], b)
		}
	}
	ports := make([]int, 0, len(byPort))
	for p := range byPort {
		ports = append(ports, int(p))
	}
	sort.Ints(ports)
	out := make([]*Resource, 0, len(ports))
	for _, p := range ports {
		last := allowAnyBytes
		if env.registryOnly {
			last = blockAllBytes
		}
		out = append(out, routeConfiguration(strconv.Itoa(p), append(byPort[int32(p)], last)))
	}
	return out
}

func serviceVirtualHost(env *routeEnv, svc *model.Service, port int32, domains []string) *route.VirtualHost {
	return &route.VirtualHost{
		Name:    fmt.Sprintf("%s:%d", svc.Hostname, port),
		Domains: domains,
		Routes:  env.routes(svc, port),
	}
}

var (
	allowAnyBytes = mustMarshal(allowAny())
	blockAllBytes = mustMarshal(blockAll())
)

func mustMarshal(m proto.Message) []byte {
	b, err := marshal.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("translate: serializing %T: %v", m, err))
	}
	return b
}

// routeConfiguration serializes a RouteConfiguration from already
// serialized virtual hosts, as proto.Marshal would (fields in number
// order: name, virtual_hosts, validate_clusters=false).
func routeConfiguration(name string, vhosts [][]byte) *Resource {
	size := 0
	for _, v := range vhosts {
		size += 1 + protowire.SizeBytes(len(v))
	}
	b := make([]byte, 0, size+len(name)+16)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, name)
	for _, v := range vhosts {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, v)
	}
	// validate_clusters: an explicit false (an empty BoolValue).
	b = protowire.AppendTag(b, 7, protowire.BytesType)
	b = protowire.AppendBytes(b, nil)
	return rawResource(name, "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", b)
}

func allowAny() *route.VirtualHost {
	return &route.VirtualHost{
		Name:    "allow_any",
		Domains: []string{"*"},
		Routes: []*route.Route{{
			Name:  "allow_any",
			Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
			Action: &route.Route_Route{Route: &route.RouteAction{
				ClusterSpecifier: &route.RouteAction_Cluster{Cluster: PassthroughCluster},
				Timeout:          durationpb.New(0),
			}},
		}},
	}
}

// blockAll answers HTTP to a host the registry does not know with 502, as
// Istio does under outboundTrafficPolicy REGISTRY_ONLY.
func blockAll() *route.VirtualHost {
	return &route.VirtualHost{
		Name:    "block_all",
		Domains: []string{"*"},
		Routes: []*route.Route{{
			Name:   "block_all",
			Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
			Action: &route.Route_DirectResponse{DirectResponse: &route.DirectResponseAction{Status: 502}},
		}},
	}
}

// sidecarInbound builds the inbound clusters and the virtualInbound
// listener for the ports the workload serves, logging to meshd as als
// says for server traffic.
func sidecarInbound(inbound []model.InboundPort, als accessLogs) (clusters, listeners []*Resource) {
	httpLogs := httpAccessLogs(als.server, als.serverFilter)
	tcpLogs := tcpAccessLogs(als.server, als.serverFilter)
	vi := &listener.Listener{
		Name:             VirtualInboundListener,
		Address:          socketAddress("0.0.0.0", virtualInboundPort),
		TrafficDirection: core.TrafficDirection_INBOUND,
		ListenerFilters: []*listener.ListenerFilter{{
			Name:       "envoy.filters.listener.original_dst",
			ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(&originaldst.OriginalDst{})},
		}},
		DefaultFilterChain: &listener.FilterChain{
			Name:    InboundPassthroughCluster,
			Filters: []*listener.Filter{withTCPAccessLogs(tcpProxyFilterTo(InboundPassthroughCluster, InboundPassthroughCluster), tcpLogs)},
		},
	}
	for _, in := range inbound {
		name := InboundClusterName(in.TargetPort)
		c := &cluster.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(defaultConnectTimeout),
			LoadAssignment:       loadAssignment(name, []model.Endpoint{{Address: "127.0.0.1", Port: in.TargetPort, Ready: true, Weight: 1}}, false),
			CircuitBreakers:      maxCircuitBreakers(),
		}
		if in.Port.Protocol.IsHTTP2() {
			c.TypedExtensionProtocolOptions = http2Options()
		}
		clusters = append(clusters, mustResource(name, c))

		fc := &listener.FilterChain{
			Name:             name,
			FilterChainMatch: &listener.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(in.TargetPort))},
		}
		if in.Port.Protocol.IsHTTP() {
			fc.Filters = []*listener.Filter{hcmFilterOf(&hcm.HttpConnectionManager{
				StatPrefix: fmt.Sprintf("inbound_0.0.0.0_%d", in.TargetPort),
				RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{
					Name: name,
					VirtualHosts: []*route.VirtualHost{{
						Name:    fmt.Sprintf("inbound|http|%d", in.TargetPort),
						Domains: []string{"*"},
						Routes:  []*route.Route{routeToCluster(name, false)},
					}},
					ValidateClusters: wrapperspb.Bool(false),
				}},
				HttpFilters: []*hcm.HttpFilter{routerHTTPFilter()},
				AccessLog:   httpLogs,
			})}
		} else {
			fc.Filters = []*listener.Filter{withTCPAccessLogs(tcpProxyFilterTo(name, name), tcpLogs)}
		}
		vi.FilterChains = append(vi.FilterChains, fc)
	}
	return clusters, []*Resource{mustResource(vi.Name, vi)}
}

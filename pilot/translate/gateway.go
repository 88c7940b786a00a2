package translate

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/types/known/wrapperspb"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/meshd/meshd/pilot/model"
)

// A router proxy (an ingress gateway) is a standalone Envoy: the Gateways
// selecting it open its ports and terminate TLS (L4-L6), and the
// VirtualServices bound to those Gateways route what enters (L7). Its
// routes are built by the same routeEnv code as a sidecar's; env.gateways
// names the Gateways so that matches restricted to gateways apply.

// gatewayEntry is one Gateway selecting a router proxy.
type gatewayEntry struct {
	gw *networkingv1.Gateway
	id string // namespace/name@hash of the spec
}

func (g *gatewayEntry) name() string { return g.gw.Namespace + "/" + g.gw.Name }

// selectedGateways returns the Gateways, in any namespace, whose selector
// matches the proxy's labels, sorted by namespace/name.
func selectedGateways(snap *model.Snapshot, labels map[string]string) []*gatewayEntry {
	var out []*gatewayEntry
	for _, gw := range snap.Gateways {
		if len(gw.Spec.Selector) == 0 || !model.Selects(gw.Spec.Selector, labels) {
			continue
		}
		out = append(out, &gatewayEntry{gw: gw, id: specID(gw.Namespace, gw.Name, &gw.Spec)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name() < out[j].name() })
	return out
}

// gatewayKey is the cache-key part of a router proxy: the Gateways that
// select it (their specs hashed), all its config depends on besides the
// snapshot's services and VirtualServices.
func gatewayKey(gws []*gatewayEntry) string {
	ids := make([]string, len(gws))
	for i, g := range gws {
		ids[i] = g.id
	}
	return "gateways=" + strings.Join(ids, ",")
}

// boundTo reports whether a VirtualService of namespace vsNS lists the
// Gateway (as "name", meaning its own namespace, or "ns/name").
func boundTo(gateways []string, vsNS string, gw *gatewayEntry) bool {
	for _, g := range gateways {
		if g == gw.gw.Name && vsNS == gw.gw.Namespace || g == gw.name() {
			return true
		}
	}
	return false
}

// gatewayApplies reports whether a match's gateways list (empty: all the
// VirtualService's) lets it apply on the router's Gateways.
func (env *routeEnv) gatewayApplies(gateways []string, vsNS string) bool {
	if len(gateways) == 0 {
		return true
	}
	for _, g := range env.gateways {
		if boundTo(gateways, vsNS, g) {
			return true
		}
	}
	return false
}

// serverHost is a Gateway server host split into its namespace
// restriction ("*" for any) and its host pattern.
type serverHost struct{ ns, host string }

func serverHosts(hosts []string) []serverHost {
	out := make([]serverHost, 0, len(hosts))
	for _, h := range hosts {
		ns, host, ok := strings.Cut(h, "/")
		if !ok {
			ns, host = "*", h
		}
		out = append(out, serverHost{ns, host})
	}
	return out
}

// hostIntersect returns the more specific of two host patterns when they
// overlap ("*" and wildcards allowed), or "".
func hostIntersect(a, b string) string {
	switch {
	case a == b:
		return a
	case a == "*":
		return b
	case b == "*":
		return a
	case strings.HasPrefix(a, "*.") && strings.HasSuffix(b, a[1:]):
		return b
	case strings.HasPrefix(b, "*.") && strings.HasSuffix(a, b[1:]):
		return a
	}
	return ""
}

// boundVirtualServices returns the VirtualServices bound to gw, oldest
// first (as the traffic index orders them), with the hosts of each that the
// server's hosts admit.
func (env *routeEnv) boundVirtualServices(gw *gatewayEntry, srv *networking.Server) []boundVS {
	hosts := serverHosts(srv.Hosts)
	var out []boundVS
	for _, e := range env.idx.ordered {
		if !boundTo(e.spec.Gateways, e.vs.Namespace, gw) {
			continue
		}
		var matched []string
		seen := map[string]bool{}
		for _, h := range e.spec.Hosts {
			for _, sh := range hosts {
				if sh.ns != "*" && sh.ns != e.vs.Namespace && !(sh.ns == "." && e.vs.Namespace == gw.gw.Namespace) {
					continue
				}
				if x := hostIntersect(sh.host, h); x != "" && !seen[x] {
					seen[x] = true
					matched = append(matched, x)
				}
			}
		}
		if len(matched) > 0 {
			out = append(out, boundVS{e: e, hosts: matched})
		}
	}
	return out
}

type boundVS struct {
	e     *vsEntry
	hosts []string
}

// gatewayRoute builds the route configuration of one server (name as
// istiod names it): a virtual host per host, with the http routes of the
// bound VirtualServices naming it, first defined first.
func (env *routeEnv) gatewayRoute(name string, port int32, bound []boundVS) *Resource {
	byHost := map[string][]*route.Route{}
	var order []string
	done := map[[2]string]bool{} // a VirtualService bound by two servers routes a host once
	for _, b := range bound {
		for _, h := range b.hosts {
			if _, ok := byHost[h]; !ok {
				order = append(order, h)
				byHost[h] = nil
			}
			if done[[2]string{b.e.id, h}] {
				continue
			}
			done[[2]string{b.e.id, h}] = true
			for i, hr := range env.idx.expandDelegates(b.e) {
				rs, err := env.httpRoute(b.e, hr, port)
				if err != nil {
					if !errors.Is(err, errSkip) {
						env.drop("route", b.e, "route", fmt.Sprintf("spec.http[%d]", i), "host", h, "reason", err.Error())
					}
					continue
				}
				byHost[h] = append(byHost[h], rs...)
			}
		}
	}
	rc := &route.RouteConfiguration{Name: name, ValidateClusters: wrapperspb.Bool(false)}
	for _, h := range order {
		domains := []string{h, h + ":*"}
		if h == "*" {
			domains = domains[:1] // "*" already takes any port
		}
		rc.VirtualHosts = append(rc.VirtualHosts, &route.VirtualHost{
			Name:    fmt.Sprintf("%s:%d", h, port),
			Domains: domains,
			Routes:  byHost[h],
		})
	}
	return mustResource(name, rc)
}

// downstreamTLS is the TLS context of a SIMPLE or MUTUAL server, its
// certificate (and CA) read over SDS from the credentialName Secret.
func downstreamTLS(tls *networking.ServerTLSSettings) *core.TransportSocket {
	common := &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "kubernetes://" + tls.CredentialName, SdsConfig: adsSource()}},
		AlpnProtocols:                  []string{"h2", "http/1.1"},
	}
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: common}
	if tls.Mode == networking.ServerTLSSettings_MUTUAL {
		common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "kubernetes://" + tls.CredentialName + "-cacert", SdsConfig: adsSource()},
		}
		ctx.RequireClientCertificate = wrapperspb.Bool(true)
	}
	return &core.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
}

// sniNames are the server names of a TLS server's hosts (no namespace,
// "*" matches any and so sets none).
func sniNames(hosts []string) []string {
	var out []string
	for _, sh := range serverHosts(hosts) {
		if sh.host == "*" {
			return nil
		}
		out = append(out, sh.host)
	}
	return out
}

// l4Cluster returns the cluster a tcp[] or tls[] route sends to (the first
// destination; a gateway's tcp_proxy splits no weights here).
func (env *routeEnv) l4Cluster(e *vsEntry, dests []*networking.RouteDestination, port int32) (string, error) {
	if len(dests) == 0 {
		return "", errors.New("no route")
	}
	name, _, err := env.destination(e, dests[0].Destination, port)
	return name, err
}

// routerConfig builds a router proxy's listeners and routes from the
// Gateways selecting it, and lists the services its routes send to.
func routerConfig(env *routeEnv, gws []*gatewayEntry) (listeners, routes []*Resource, dests []*model.Service) {
	type lis struct {
		port   int32
		chains []*listener.FilterChain
		sni    bool
	}
	ls := map[int32]*lis{}
	seenDest := map[string]bool{}
	addDest := func(e *vsEntry, hosts ...string) {
		for _, h := range hosts {
			fq := resolveHost(h, e.vs.Namespace, env.idx.snap.Options.DomainSuffix)
			if svc := env.idx.snap.Service(fq, env.ns); svc != nil && !seenDest[svc.Key()] {
				seenDest[svc.Key()] = true
				dests = append(dests, svc)
			}
		}
	}
	get := func(port int32) *lis {
		if ls[port] == nil {
			ls[port] = &lis{port: port}
		}
		return ls[port]
	}
	httpRoutes := map[int32]bool{}
	for _, gw := range gws {
		for si, srv := range gw.gw.Spec.Servers {
			port := int32(srv.GetPort().GetNumber())
			if port == 0 {
				continue
			}
			proto := model.ParseProtocol(srv.GetPort().GetProtocol())
			bound := env.boundVirtualServices(gw, srv)
			for _, b := range bound {
				for _, h := range env.idx.expandDelegates(b.e) {
					for _, d := range h.Route {
						addDest(b.e, d.GetDestination().GetHost())
					}
				}
				for _, t := range b.e.spec.Tcp {
					for _, d := range t.Route {
						addDest(b.e, d.GetDestination().GetHost())
					}
				}
				for _, t := range b.e.spec.Tls {
					for _, d := range t.Route {
						addDest(b.e, d.GetDestination().GetHost())
					}
				}
			}
			l := get(port)
			tls := srv.GetTls()
			switch {
			case proto == model.HTTPS && tls != nil && (tls.Mode == networking.ServerTLSSettings_SIMPLE || tls.Mode == networking.ServerTLSSettings_MUTUAL) && tls.CredentialName != "":
				names := sniNames(srv.Hosts)
				// istiod's name: https.PORT.PORTNAME.GATEWAY.NAMESPACE.
				rname := fmt.Sprintf("https.%d.%s.%s.%s", port, srv.GetPort().GetName(), gw.gw.Name, gw.gw.Namespace)
				l.chains = append(l.chains, &listener.FilterChain{
					Name:             rname,
					FilterChainMatch: &listener.FilterChainMatch{ServerNames: names},
					TransportSocket:  downstreamTLS(tls),
					Filters:          []*listener.Filter{hcmFilterOf(rdsHCM(rname, rname, corsHTTPFilter(), faultHTTPFilter()))},
				})
				l.sni = true
				routes = append(routes, env.gatewayRoute(rname, port, bound))
			case (proto == model.HTTPS || proto == model.TLS) && tls != nil && tls.Mode == networking.ServerTLSSettings_PASSTHROUGH:
				l.sni = true
				for _, b := range bound {
					for i, t := range b.e.spec.Tls {
						for _, m := range t.Match {
							if (m.Port != 0 && int32(m.Port) != port) || !env.gatewayApplies(m.Gateways, b.e.vs.Namespace) {
								continue
							}
							// Only the names the server admits reach this chain.
							var snis []string
							for _, sni := range m.SniHosts {
								for _, h := range b.hosts {
									if hostIntersect(h, sni) == sni {
										snis = append(snis, sni)
										break
									}
								}
							}
							if len(snis) == 0 {
								continue
							}
							c, err := env.l4Cluster(b.e, t.Route, port)
							if err != nil {
								env.drop("route", b.e, "route", fmt.Sprintf("spec.tls[%d]", i), "reason", err.Error())
								continue
							}
							l.chains = append(l.chains, &listener.FilterChain{
								Name:             fmt.Sprintf("tls.%d.%s", port, strings.Join(snis, ",")),
								FilterChainMatch: &listener.FilterChainMatch{ServerNames: snis},
								Filters:          []*listener.Filter{tcpProxyFilterTo(c, c)},
							})
						}
					}
				}
			case proto == model.TCP || proto == model.TLS:
				for _, b := range bound {
					for i, t := range b.e.spec.Tcp {
						ok := len(t.Match) == 0
						for _, m := range t.Match {
							ok = ok || ((m.Port == 0 || int32(m.Port) == port) && env.gatewayApplies(m.Gateways, b.e.vs.Namespace))
						}
						if !ok {
							continue
						}
						c, err := env.l4Cluster(b.e, t.Route, port)
						if err != nil {
							env.drop("route", b.e, "route", fmt.Sprintf("spec.tcp[%d]", i), "reason", err.Error())
							continue
						}
						if len(l.chains) == 0 {
							l.chains = append(l.chains, &listener.FilterChain{Name: fmt.Sprintf("tcp.%d", port), Filters: []*listener.Filter{tcpProxyFilterTo(c, c)}})
						}
					}
				}
			case proto.IsHTTP():
				rname := fmt.Sprintf("http.%d", port)
				if httpRoutes[port] {
					continue
				}
				httpRoutes[port] = true
				l.chains = append(l.chains, &listener.FilterChain{
					Filters: []*listener.Filter{hcmFilterOf(rdsHCM(rname, rname, corsHTTPFilter(), faultHTTPFilter()))},
				})
				var all []boundVS
				for _, g := range gws {
					for _, s := range g.gw.Spec.Servers {
						if int32(s.GetPort().GetNumber()) == port && model.ParseProtocol(s.GetPort().GetProtocol()).IsHTTP() {
							all = append(all, env.boundVirtualServices(g, s)...)
						}
					}
				}
				routes = append(routes, env.gatewayRoute(rname, port, all))
			default:
				// Bad input: say which server, keep serving the others.
				env.log.Warn("skipping gateway server: unsupported protocol or TLS settings",
					"gateway", gw.name(), "field", fmt.Sprintf("spec.servers[%d]", si),
					"protocol", srv.GetPort().GetProtocol(), "tlsMode", tls.GetMode().String(), "credentialName", tls.GetCredentialName())
				if env.onDrop != nil {
					env.onDrop("gateway server")
				}
			}
		}
	}
	ports := make([]int, 0, len(ls))
	for p := range ls {
		ports = append(ports, int(p))
	}
	sort.Ints(ports)
	for _, p := range ports {
		l := ls[int32(p)]
		if len(l.chains) == 0 {
			continue
		}
		name := fmt.Sprintf("0.0.0.0_%d", p)
		out := &listener.Listener{
			Name:             name,
			Address:          socketAddress("0.0.0.0", l.port),
			TrafficDirection: core.TrafficDirection_OUTBOUND,
			FilterChains:     l.chains,
		}
		if l.sni {
			out.ListenerFilters = []*listener.ListenerFilter{{
				Name:       "envoy.filters.listener.tls_inspector",
				ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspector.TlsInspector{})},
			}}
		}
		listeners = append(listeners, mustResource(name, out))
	}
	sort.Slice(dests, func(i, j int) bool { return dests[i].Key() < dests[j].Key() })
	return listeners, routes, dests
}

// routerFor returns the config of a router proxy. Its key adds to the
// sharing key the proxy's labels' pick of Gateways (their specs hashed):
// routers selected by the same Gateways share one copy. Listeners and
// routes are rebuilt when services or Istio config change; clusters and
// endpoints come from the per-service pieces every snapshot, as a
// sidecar's do.
func (t *Translator) routerFor(snap *model.Snapshot, p *model.Proxy) *outbound {
	gws := selectedGateways(snap, p.Labels)
	key := "router|" + p.SharingKey() + "|" + gatewayKey(gws)
	if lk := t.index(snap).labelKey(p.Labels); lk != "" {
		key += "|" + lk
	}
	if t.index(snap).localityLB {
		key += "|@" + p.Locality.String()
	}
	o := t.outbound[key]
	if o == nil {
		o = &outbound{}
		t.outbound[key] = o
	}
	o.used = max(o.used, snap.Version)
	if o.initialized && o.snapVersion == snap.Version {
		return o
	}
	keep := !o.initialized || o.snapVersion < snap.Version
	n := &outbound{used: snap.Version, snapVersion: snap.Version, initialized: true,
		servicesVersion: snap.ServicesVersion, configVersion: snap.ConfigVersion}
	env := &routeEnv{log: t.log, idx: t.index(snap), ns: p.Namespace, labels: p.Labels, onDrop: t.OnDrop, gateways: gws, router: true}
	listeners, routes, dests := routerConfig(env, gws)
	clusters := append([]*Resource(nil), t.static...)
	var endpoints []*Resource
	for _, svc := range dests {
		f := t.fragFor(snap, svc, p.Namespace, p.Labels, p.Locality, false)
		clusters = append(clusters, f.clusters...)
		endpoints = append(endpoints, f.endpoints...)
	}
	n.clusters, n.endpoints = reuseSet(o.clusters, clusters), reuseSet(o.endpoints, endpoints)
	if o.initialized && o.servicesVersion == snap.ServicesVersion && o.configVersion == snap.ConfigVersion {
		n.listeners, n.routes = o.listeners, o.routes
	} else {
		n.listeners, n.routes = NewSet(listeners), NewSet(routes)
	}
	if keep {
		t.outbound[key] = n
	}
	return n
}

package translate

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/meshd/meshd/pilot/model"
)

// grpcTarget is the listener and route name proxyless clients use: the
// authority of xds:///HOST:PORT.
func grpcTarget(host string, port int32) string { return fmt.Sprintf("%s:%d", host, port) }

// grpcServiceResources builds a proxyless client's listener and route for
// each port of a service, named HOST:PORT. grpc-go wants an api_listener
// holding an HTTP connection manager that takes its routes over ADS and
// ends in the router filter.
func grpcServiceResources(env *routeEnv, svc *model.Service) (listeners, routes []*Resource) {
	if svc.Resolution == model.Passthrough && !svc.Headless {
		return nil, nil
	}
	for _, p := range svc.Ports {
		name := grpcTarget(svc.Hostname, p.Port)
		listeners = append(listeners, grpcListener(name))
		routes = append(routes, grpcRoute(env, name, svc, p.Port, []string{svc.Hostname, name}))
	}
	return listeners, routes
}

func grpcListener(name string) *Resource {
	l := &listener.Listener{
		Name: name,
		ApiListener: &listener.ApiListener{
			ApiListener: mustAny(rdsHCM(name, name, faultHTTPFilter())),
		},
	}
	return mustResource(name, l)
}

func grpcRoute(env *routeEnv, name string, svc *model.Service, port int32, domains []string) *Resource {
	rc := &route.RouteConfiguration{
		Name: name,
		VirtualHosts: []*route.VirtualHost{{
			Name:    name,
			Domains: domains,
			Routes:  env.routes(svc, port),
		}},
	}
	return mustResource(name, rc)
}

// grpcAlias answers a proxyless client that dials a service by a shorter
// name than its FQDN (name.namespace:PORT, or name:PORT in its own
// namespace): the listener and route carry the name the client used.
func grpcAlias(env *routeEnv, typeURL, name string) *Resource {
	snap, ns := env.idx.snap, env.ns
	host, portStr, err := net.SplitHostPort(name)
	if err != nil {
		return nil
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil
	}
	var fqdn string
	switch parts := strings.Split(host, "."); {
	case len(parts) == 1:
		fqdn = host + "." + ns + ".svc." + snap.Options.DomainSuffix
	case len(parts) == 2:
		fqdn = host + ".svc." + snap.Options.DomainSuffix
	case len(parts) == 3 && parts[2] == "svc":
		fqdn = host + "." + snap.Options.DomainSuffix
	default:
		return nil
	}
	svc := snap.Service(fqdn, ns)
	if svc == nil || (svc.Resolution == model.Passthrough && !svc.Headless) {
		return nil
	}
	if _, ok := svc.Port(int32(port)); !ok {
		return nil
	}
	switch typeURL {
	case ListenerType:
		return grpcListener(name)
	case RouteType:
		return grpcRoute(env, name, svc, int32(port), []string{host, name, svc.Hostname, grpcTarget(svc.Hostname, int32(port))})
	}
	return nil
}

// grpcInboundListener answers a proxyless gRPC server asking for
// xds.istio.io/grpc/lds/inbound/IP:PORT: a listener on that address whose
// routes accept every call (non-forwarding: the server handles them).
func grpcInboundListener(name string) *Resource {
	addr := strings.TrimPrefix(name, GRPCInboundPrefix)
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil
	}
	l := &listener.Listener{
		Name:             name,
		Address:          socketAddress(host, int32(port)),
		TrafficDirection: core.TrafficDirection_INBOUND,
		FilterChains: []*listener.FilterChain{{
			Name: "inbound|" + portStr,
			Filters: []*listener.Filter{hcmFilterOf(&hcm.HttpConnectionManager{
				StatPrefix: "inbound|" + portStr,
				RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{
					Name: "inbound|" + portStr,
					VirtualHosts: []*route.VirtualHost{{
						Name:    "inbound|" + portStr,
						Domains: []string{"*"},
						Routes: []*route.Route{{
							Match:     &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
							Decorator: &route.Decorator{Operation: "xds.istio.io/grpc/inbound"},
							Action:    &route.Route_NonForwardingAction{NonForwardingAction: &route.NonForwardingAction{}},
						}},
					}},
				}},
				HttpFilters: []*hcm.HttpFilter{routerHTTPFilter()},
			})},
		}},
	}
	return mustResource(name, l)
}

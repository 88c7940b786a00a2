package load

import (
	"context"
	"fmt"
	"slices"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
)

// grpcPort is the port every mesh service serves on; a proxyless client
// dials xds:///HOST:grpcPort.
const grpcPort = 80

// grpcTargets picks the services the id-th proxyless client dials: the
// service the config-change scenario edits (so the client sees the new
// weights) and n-1 others, spread over the mesh by id so different
// clients share some targets and not others.
func (m *mesh) grpcTargets(id, n int) []int {
	var out []int
	if len(m.routed) > 0 {
		out = append(out, m.routed[0])
	}
	start := (id * 7) % len(m.services)
	for k := 0; k < len(m.services) && len(out) < n; k++ {
		if i := (start + k*3) % len(m.services); !slices.Contains(out, i) {
			out = append(out, i)
		}
	}
	return out
}

// grpcClient plays grpc-go's xDS resolver over SotW ADS: LDS for its
// targets' listeners (HOST:PORT), RDS for the route their API listeners
// name, CDS for the clusters those routes use, EDS for the EDS clusters
// among them; every request names its resources and every response is
// ACKed.
func (p *proxy) grpcClient(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient) error {
	st, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open ADS stream: %w", err)
	}
	names := map[string][]string{}
	for _, i := range p.targets {
		names[listenerType] = append(names[listenerType], fmt.Sprintf("%s:%d", p.mesh.services[i].host(), grpcPort))
	}
	slices.Sort(names[listenerType])
	if err := st.Send(&discovery.DiscoveryRequest{Node: p.node(), TypeUrl: listenerType, ResourceNames: names[listenerType]}); err != nil {
		return fmt.Errorf("request LDS: %w", err)
	}
	f := newFacts(p.hosts)
	// What the routes and clusters held point at: a handful of entries,
	// so names are kept as they are.
	routeClusters := map[string][]string{} // route -> clusters it sends to
	clusterEDS := map[string]string{}      // cluster -> its EDS service name ("" if not EDS)
	request := func(typ string, want []string) error {
		if sameNames(want, names[typ]) {
			return nil
		}
		names[typ] = want
		if err := st.Send(&discovery.DiscoveryRequest{TypeUrl: typ, ResourceNames: want}); err != nil {
			return fmt.Errorf("request %s: %w", typ, err)
		}
		return nil
	}
	for {
		r, err := st.Recv()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		p.bytes.Add(int64(proto.Size(r)))
		var gens []int
		switch r.TypeUrl {
		case listenerType:
			// LDS and CDS responses hold every requested resource the
			// server has, so each replaces what was held.
			clear(f.listeners)
			for _, a := range r.Resources {
				var l listener.Listener
				if a.UnmarshalTo(&l) == nil && slices.Contains(names[listenerType], l.Name) {
					f.putListener(l.Name, listenerRoutes(&l))
				}
			}
			routes := f.routeNames()
			f.keepRoutes(routes)
			for n := range routeClusters {
				if _, ok := slices.BinarySearch(routes, n); !ok {
					delete(routeClusters, n)
				}
			}
			if err := request(routeType, routes); err != nil {
				return err
			}
		case routeType:
			w := p.routeMarker.Load()
			for _, a := range r.Resources {
				var rc route.RouteConfiguration
				if a.UnmarshalTo(&rc) != nil {
					continue
				}
				f.putRoute(rc.Name, w != 0 && routeHasWeight(a.Value, w))
				routeClusters[rc.Name] = routedClusters(&rc)
			}
			var want []string
			for _, cs := range routeClusters {
				want = append(want, cs...)
			}
			slices.Sort(want)
			want = slices.Compact(want)
			for c := range clusterEDS {
				if _, ok := slices.BinarySearch(want, c); !ok {
					delete(clusterEDS, c)
					f.dropCluster(c)
				}
			}
			if err := request(clusterType, want); err != nil {
				return err
			}
		case clusterType:
			clear(clusterEDS)
			f.clearClusters()
			for _, a := range r.Resources {
				var c cluster.Cluster
				if a.UnmarshalTo(&c) != nil {
					continue
				}
				eds := ""
				if c.GetType() == cluster.Cluster_EDS {
					eds = c.GetEdsClusterConfig().GetServiceName()
					if eds == "" {
						eds = c.Name
					}
				}
				clusterEDS[c.Name] = eds
				f.putCluster(c.Name)
			}
			var want []string
			for _, eds := range clusterEDS {
				if eds != "" {
					want = append(want, eds)
				}
			}
			slices.Sort(want)
			want = slices.Compact(want)
			if !sameNames(want, names[endpointType]) {
				f.keepCLAs(want)
			}
			if err := request(endpointType, want); err != nil {
				return err
			}
		case endpointType:
			watch := p.endpointWatch.Load()
			for _, a := range r.Resources {
				f.putCLA(field1(a.Value))
				if watch {
					gens = append(gens, claGens(a.Value)...)
				}
			}
		}
		if err := st.Send(&discovery.DiscoveryRequest{TypeUrl: r.TypeUrl, VersionInfo: r.VersionInfo,
			ResponseNonce: r.Nonce, ResourceNames: names[r.TypeUrl]}); err != nil {
			return fmt.Errorf("ACK %s: %w", r.TypeUrl, err)
		}
		p.acked(r.TypeUrl, f, grpcFull(f, names, clusterEDS), gens)
	}
}

// grpcFull reports whether a proxyless client holds everything its
// targets need: their listeners, the routes those name, the clusters the
// routes use and the load assignments of the EDS clusters.
func grpcFull(f *facts, names map[string][]string, clusterEDS map[string]string) bool {
	for _, l := range names[listenerType] {
		if _, ok := f.listeners[l]; !ok {
			return false
		}
	}
	if !f.routesHeld() || len(names[clusterType]) == 0 {
		return false
	}
	for _, c := range names[clusterType] {
		if _, ok := clusterEDS[c]; !ok {
			return false
		}
	}
	for _, e := range names[endpointType] {
		if !f.holdsCLA(e) {
			return false
		}
	}
	return true
}

// routedClusters returns the clusters a route configuration sends to.
func routedClusters(rc *route.RouteConfiguration) []string {
	var out []string
	for _, vh := range rc.VirtualHosts {
		for _, rt := range vh.Routes {
			a := rt.GetRoute()
			if c := a.GetCluster(); c != "" {
				out = append(out, c)
			}
			for _, wc := range a.GetWeightedClusters().GetClusters() {
				out = append(out, wc.GetName())
			}
		}
	}
	return out
}

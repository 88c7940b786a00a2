package load

import (
	"context"
	"fmt"
	"slices"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
)

// delta plays Envoy over incremental ADS: wildcard CDS and LDS, then EDS
// subscriptions for the mesh clusters CDS adds (dropped when CDS removes
// them) and RDS subscriptions for the routes the held listeners use. A
// response carries only changes, so what the proxy holds lives in facts and
// "full", the marker and the churn generations are judged against that.
func (p *proxy) delta(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient) error {
	st, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open Delta ADS stream: %w", err)
	}
	// No names on a type's first request subscribes to all of it.
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: p.node(), TypeUrl: clusterType}); err != nil {
		return fmt.Errorf("subscribe CDS: %w", err)
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: listenerType}); err != nil {
		return fmt.Errorf("subscribe LDS: %w", err)
	}
	f := newFacts(p.hosts)
	lds := false
	var rds []string // RDS names subscribed, sorted
	for {
		r, err := st.Recv()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		p.bytes.Add(int64(proto.Size(r)))
		var gens []int
		switch r.TypeUrl {
		case clusterType:
			var sub, unsub []string
			for _, res := range r.Resources {
				if name := resourceName(res); f.putCluster(name) {
					sub = append(sub, name)
				}
			}
			for _, name := range r.RemovedResources {
				if f.dropCluster(name) {
					unsub = append(unsub, name)
					// Envoy drops a removed cluster's endpoints with it.
					f.dropCLA(name)
				}
			}
			if len(sub)+len(unsub) > 0 {
				if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: endpointType,
					ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub}); err != nil {
					return fmt.Errorf("change EDS subscriptions: %w", err)
				}
			}
		case listenerType:
			for _, res := range r.Resources {
				var l listener.Listener
				if res.GetResource().UnmarshalTo(&l) == nil {
					f.putListener(resourceName(res), listenerRoutes(&l))
				}
			}
			for _, name := range r.RemovedResources {
				f.dropListener(name)
			}
			routes := f.routeNames()
			sub, unsub := diffNames(rds, routes)
			if len(sub)+len(unsub) > 0 {
				rds = routes
				f.keepRoutes(routes)
				if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: routeType,
					ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub}); err != nil {
					return fmt.Errorf("change RDS subscriptions: %w", err)
				}
			}
			lds = true
		case endpointType:
			watch := p.endpointWatch.Load()
			for _, res := range r.Resources {
				f.putCLA(resourceName(res))
				if watch {
					gens = append(gens, claGens(res.GetResource().GetValue())...)
				}
			}
			for _, name := range r.RemovedResources {
				f.dropCLA(name)
			}
		case routeType:
			w := p.routeMarker.Load()
			for _, res := range r.Resources {
				f.putRoute(resourceName(res), w != 0 && routeHasWeight(res.GetResource().GetValue(), w))
			}
			for _, name := range r.RemovedResources {
				f.dropRoute(name)
			}
		}
		if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce}); err != nil {
			return fmt.Errorf("ACK %s: %w", r.TypeUrl, err)
		}
		p.acked(r.TypeUrl, f, f.sidecarFull(lds), gens)
	}
}

// resourceName is a Delta resource's name, read from the resource itself
// (field 1 of every type here) when the server left Name empty.
func resourceName(res *discovery.Resource) string {
	if res.Name != "" {
		return res.Name
	}
	return field1(res.GetResource().GetValue())
}

// diffNames returns the names in want but not in have, and those in have
// but not in want; both lists are sorted.
func diffNames(have, want []string) (added, gone []string) {
	for _, n := range want {
		if _, ok := slices.BinarySearch(have, n); !ok {
			added = append(added, n)
		}
	}
	for _, n := range have {
		if _, ok := slices.BinarySearch(want, n); !ok {
			gone = append(gone, n)
		}
	}
	return added, gone
}

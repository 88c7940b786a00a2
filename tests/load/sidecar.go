package load

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Envoy's v3 type URLs; the simulated sidecars speak only these.
const (
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	routeType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	endpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// sidecar is one simulated Envoy on its own connection and SotW ADS stream.
// The stream goroutine writes its fields; the scenario reads them through
// the mutex or the atomics.
type sidecar struct {
	id    int
	mesh  *mesh
	hosts map[string]int

	bytes atomic.Int64 // serialized size of every response received
	err   atomic.Pointer[error]

	// routeMarker, when non-zero, is a route weight the proxy looks for in
	// RDS responses; endpointWatch makes it scan EDS for churn markers.
	routeMarker   atomic.Uint32
	endpointWatch atomic.Bool

	mu                         sync.Mutex
	fullAt                     time.Time         // first time it had ACKed a full config
	markerAck                  time.Time         // ACK time of the first RDS response holding routeMarker
	genAck                     map[int]time.Time // churn generation -> ACK time of the first EDS holding it
	cdsFull, edsFull, lds, rds bool
}

func newSidecar(id int, m *mesh, hosts map[string]int) *sidecar {
	return &sidecar{id: id, mesh: m, hosts: hosts, genAck: map[int]time.Time{}}
}

func (p *sidecar) node() *core.Node {
	s := p.mesh.services[p.id%len(p.mesh.services)]
	version := "v1"
	if p.id%2 == 1 {
		version = "v2"
	}
	pod := fmt.Sprintf("%s-%d", s.name, p.id)
	meta, _ := structpb.NewStruct(map[string]any{
		"NAMESPACE":       s.ns,
		"SERVICE_ACCOUNT": "default",
		"CLUSTER_ID":      "Kubernetes",
		"LABELS":          map[string]any{"app": s.name, "version": version},
		"NAME":            pod,
		"ISTIO_VERSION":   "1.28.0",
	})
	return &core.Node{
		Id:       fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", proxyIP(p.id), pod, s.ns, s.ns),
		Cluster:  s.name + "." + s.ns,
		Metadata: meta,
	}
}

// run dials addr and plays Envoy until ctx ends: wildcard CDS and LDS, then
// EDS for the clusters CDS names and RDS for the routes LDS names, re-sent
// whenever those name sets change; every response is ACKed.
func (p *sidecar) run(ctx context.Context, addr string) {
	err := p.stream(ctx, addr)
	if err != nil && ctx.Err() == nil {
		p.err.Store(&err)
	}
}

func (p *sidecar) stream(ctx context.Context, addr string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		return fmt.Errorf("proxy %d: dial %s: %w", p.id, addr, err)
	}
	defer cc.Close()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("proxy %d: open ADS stream: %w", p.id, err)
	}
	if err := st.Send(&discovery.DiscoveryRequest{Node: p.node(), TypeUrl: clusterType}); err != nil {
		return fmt.Errorf("proxy %d: request CDS: %w", p.id, err)
	}
	if err := st.Send(&discovery.DiscoveryRequest{TypeUrl: listenerType}); err != nil {
		return fmt.Errorf("proxy %d: request LDS: %w", p.id, err)
	}
	names := map[string][]string{}
	for {
		r, err := st.Recv()
		if err != nil {
			return fmt.Errorf("proxy %d: receive: %w", p.id, err)
		}
		p.bytes.Add(int64(proto.Size(r)))
		var ack func()
		switch r.TypeUrl {
		case clusterType:
			eds, full := p.clusters(r)
			if !sameNames(eds, names[endpointType]) {
				names[endpointType] = eds
				if err := st.Send(&discovery.DiscoveryRequest{TypeUrl: endpointType, ResourceNames: eds}); err != nil {
					return fmt.Errorf("proxy %d: request EDS: %w", p.id, err)
				}
			}
			ack = func() { p.cdsFull = full }
		case listenerType:
			routes := routeNames(r)
			if !sameNames(routes, names[routeType]) {
				names[routeType] = routes
				if err := st.Send(&discovery.DiscoveryRequest{TypeUrl: routeType, ResourceNames: routes}); err != nil {
					return fmt.Errorf("proxy %d: request RDS: %w", p.id, err)
				}
			}
			ack = func() { p.lds = true }
		case endpointType:
			full := p.countHosts(r) >= len(p.mesh.services)
			var gens []int
			if p.endpointWatch.Load() {
				gens = markerGens(r)
			}
			ack = func() {
				p.edsFull = p.edsFull || full
				now := time.Now()
				for _, g := range gens {
					if _, ok := p.genAck[g]; !ok {
						p.genAck[g] = now
					}
				}
			}
		case routeType:
			hit := false
			if w := p.routeMarker.Load(); w != 0 {
				hit = hasWeight(r, w)
			}
			ack = func() {
				p.rds = true
				if hit && p.markerAck.IsZero() {
					p.markerAck = time.Now()
				}
			}
		}
		if err := st.Send(&discovery.DiscoveryRequest{TypeUrl: r.TypeUrl, VersionInfo: r.VersionInfo,
			ResponseNonce: r.Nonce, ResourceNames: names[r.TypeUrl]}); err != nil {
			return fmt.Errorf("proxy %d: ACK %s: %w", p.id, r.TypeUrl, err)
		}
		// Times are taken after the ACK is sent: that is what the
		// control plane sees as convergence.
		p.mu.Lock()
		if ack != nil {
			ack()
		}
		if p.fullAt.IsZero() && p.cdsFull && p.edsFull && p.lds && p.rds {
			p.fullAt = time.Now()
		}
		p.mu.Unlock()
	}
}

// clusters returns the EDS cluster names in a CDS response and whether it
// covers every service of the mesh. It reads only each Cluster's name
// (field 1): decoding thousands of clusters per proxy would make the load
// client, not the control plane, the bottleneck.
func (p *sidecar) clusters(r *discovery.DiscoveryResponse) ([]string, bool) {
	var eds []string
	seen := map[int]bool{}
	for _, a := range r.Resources {
		name := field1(a.Value)
		if i, ok := p.outboundHost(name); ok {
			eds = append(eds, name)
			seen[i] = true
		}
	}
	return eds, len(seen) >= len(p.mesh.services)
}

// outboundHost parses Istio's "outbound|port|subset|host" cluster name and
// reports the mesh service it names.
func (p *sidecar) outboundHost(name string) (int, bool) {
	parts := strings.Split(name, "|")
	if len(parts) != 4 || parts[0] != "outbound" {
		return 0, false
	}
	i, ok := p.hosts[parts[3]]
	return i, ok
}

func (p *sidecar) countHosts(r *discovery.DiscoveryResponse) int {
	seen := map[int]bool{}
	for _, a := range r.Resources {
		if i, ok := p.outboundHost(field1(a.Value)); ok {
			seen[i] = true
		}
	}
	return len(seen)
}

// field1 returns field 1 (the name in Cluster and ClusterLoadAssignment)
// of a serialized message, or "".
func field1(b []byte) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return ""
			}
			return string(v)
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return ""
		}
		b = b[m:]
	}
	return ""
}

func routeNames(r *discovery.DiscoveryResponse) []string {
	var routes []string
	seen := map[string]bool{}
	for _, a := range r.Resources {
		var l listener.Listener
		if a.UnmarshalTo(&l) != nil {
			continue
		}
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				var h hcm.HttpConnectionManager
				if f.GetTypedConfig().UnmarshalTo(&h) == nil && h.GetRds() != nil {
					if n := h.GetRds().GetRouteConfigName(); !seen[n] {
						seen[n] = true
						routes = append(routes, n)
					}
				}
			}
		}
	}
	return routes
}

// markerGens returns the churn generations (198.19.x.y endpoints) in an EDS response.
func markerGens(r *discovery.DiscoveryResponse) []int {
	var gens []int
	for _, a := range r.Resources {
		var cla endpoint.ClusterLoadAssignment
		if a.UnmarshalTo(&cla) != nil {
			continue
		}
		for _, le := range cla.Endpoints {
			for _, e := range le.LbEndpoints {
				ip := e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
				var x, y int
				if _, err := fmt.Sscanf(ip, "198.19.%d.%d", &x, &y); err == nil {
					gens = append(gens, x<<8|y)
				}
			}
		}
	}
	return gens
}

// hasWeight reports whether any weighted route in an RDS response carries weight w.
func hasWeight(r *discovery.DiscoveryResponse, w uint32) bool {
	for _, a := range r.Resources {
		var rc route.RouteConfiguration
		if a.UnmarshalTo(&rc) != nil {
			continue
		}
		for _, vh := range rc.VirtualHosts {
			for _, rt := range vh.Routes {
				for _, c := range rt.GetRoute().GetWeightedClusters().GetClusters() {
					if c.GetWeight().GetValue() == w {
						return true
					}
				}
			}
		}
	}
	return false
}

func sameNames(a, b []string) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

package load

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
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
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Envoy's v3 type URLs; the simulated clients speak only these.
const (
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	routeType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	endpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// kind is what a simulated client plays.
type kind int

const (
	sotwSidecar  kind = iota // Envoy over State-of-the-World ADS
	deltaSidecar             // Envoy over incremental (Delta) ADS
	proxyless                // grpc-go's xDS resolver, SotW ADS
)

func (k kind) String() string {
	switch k {
	case deltaSidecar:
		return "delta sidecar"
	case proxyless:
		return "proxyless gRPC"
	}
	return "sidecar"
}

// proxy is one simulated xDS client on its own connection and ADS stream.
// The stream goroutine writes its fields; the scenario reads them through
// the mutex or the atomics.
type proxy struct {
	id    int
	kind  kind
	mesh  *mesh
	hosts map[string]int
	// targets are the services a proxyless client dials (nil for
	// sidecars, which hold every service); watched those of them whose
	// endpoint churn reaches it.
	targets []int
	watched map[int]bool

	bytes      atomic.Int64 // serialized size of every response received
	err        atomic.Pointer[error]
	reconnects atomic.Int64 // streams opened again after one ended

	// routeMarker, when non-zero, is a route weight the proxy looks for in
	// RDS responses; endpointWatch makes it scan EDS for churn markers.
	routeMarker   atomic.Uint32
	endpointWatch atomic.Bool

	mu        sync.Mutex
	fullAt    time.Time         // first time it had ACKed a full config
	markerAck time.Time         // ACK time of the first RDS response that left it holding routeMarker
	genAck    map[int]time.Time // churn generation -> ACK time of the first EDS holding it
}

func newProxy(id int, k kind, m *mesh, hosts map[string]int) *proxy {
	p := &proxy{id: id, kind: k, mesh: m, hosts: hosts, genAck: map[int]time.Time{}}
	if k == proxyless {
		p.targets = m.grpcTargets(id, 4)
		p.watched = map[int]bool{}
		for _, i := range p.targets {
			// A routed target's routes name only subset clusters, whose
			// endpoints are picked by pod labels; the churn's marker
			// endpoints carry none, so they never reach this client.
			if !slices.Contains(m.routed, i) {
				p.watched[i] = true
			}
		}
	}
	return p
}

// watches reports whether endpoint churn of service i reaches the proxy:
// sidecars hold every service's endpoints, proxyless clients only those
// of their targets.
func (p *proxy) watches(i int) bool { return p.kind != proxyless || p.watched[i] }

func (p *proxy) node() *core.Node {
	s := p.mesh.services[p.id%len(p.mesh.services)]
	version := "v1"
	if p.id%2 == 1 {
		version = "v2"
	}
	pod := fmt.Sprintf("%s-%d", s.name, p.id)
	md := map[string]any{
		"NAMESPACE":       s.ns,
		"SERVICE_ACCOUNT": "default",
		"CLUSTER_ID":      "Kubernetes",
		"LABELS":          map[string]any{"app": s.name, "version": version},
		"NAME":            pod,
		"ISTIO_VERSION":   "1.28.0",
	}
	if p.kind == proxyless {
		// What Istio's gRPC bootstrap writes: istiod picks the gRPC
		// generator by it.
		md["GENERATOR"] = "grpc"
	}
	meta, _ := structpb.NewStruct(md)
	return &core.Node{
		Id:       fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", proxyIP(p.id), pod, s.ns, s.ns),
		Cluster:  s.name + "." + s.ns,
		Metadata: meta,
	}
}

// run dials addr and plays its kind of client until ctx ends. A stream
// that fails (a control plane shedding load refuses streams) is opened
// again after Envoy's backoff: jittered, from 500 ms doubling to 30 s,
// starting over once a stream has delivered config.
func (p *proxy) run(ctx context.Context, addr string) {
	attempt := 0
	for {
		before := p.bytes.Load()
		err := p.dial(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			p.err.Store(&err)
		}
		p.reconnects.Add(1)
		if p.bytes.Load() > before {
			attempt = 0
		}
		ceiling := min(500*time.Millisecond<<min(attempt, 6), 30*time.Second)
		attempt++
		select {
		case <-ctx.Done():
			return
		case <-time.After(rand.N(ceiling) + time.Millisecond):
		}
	}
}

func (p *proxy) dial(ctx context.Context, addr string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		return fmt.Errorf("%s %d: dial %s: %w", p.kind, p.id, addr, err)
	}
	defer cc.Close()
	ads := discovery.NewAggregatedDiscoveryServiceClient(cc)
	switch p.kind {
	case deltaSidecar:
		err = p.delta(ctx, ads)
	case proxyless:
		err = p.grpcClient(ctx, ads)
	default:
		err = p.sotw(ctx, ads)
	}
	if err != nil {
		return fmt.Errorf("%s %d: %w", p.kind, p.id, err)
	}
	return nil
}

// acked records, after an ACK of a typ response was sent, what the proxy
// holds: times are taken after the ACK because that is what the control
// plane sees as convergence.
func (p *proxy) acked(typ string, f *facts, full bool, gens []int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if typ == routeType && f.markers > 0 && p.markerAck.IsZero() {
		p.markerAck = now
	}
	// A generation first becomes held when a load assignment carrying it
	// is added or updated, so the updated ones are all there is to scan.
	for _, g := range gens {
		if _, ok := p.genAck[g]; !ok {
			p.genAck[g] = now
		}
	}
	if full && p.fullAt.IsZero() {
		p.fullAt = now
	}
}

// sotw plays Envoy over SotW ADS: wildcard CDS and LDS, then EDS for the
// clusters CDS names and RDS for the routes LDS names, re-sent whenever
// those name sets change; every response is ACKed. A CDS or LDS response
// replaces the whole set; an EDS or RDS one replaces the resources it names.
func (p *proxy) sotw(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient) error {
	st, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open ADS stream: %w", err)
	}
	if err := st.Send(&discovery.DiscoveryRequest{Node: p.node(), TypeUrl: clusterType}); err != nil {
		return fmt.Errorf("request CDS: %w", err)
	}
	if err := st.Send(&discovery.DiscoveryRequest{TypeUrl: listenerType}); err != nil {
		return fmt.Errorf("request LDS: %w", err)
	}
	f := newFacts(p.hosts)
	lds := false
	names := map[string][]string{}
	for {
		r, err := st.Recv()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		p.bytes.Add(int64(proto.Size(r)))
		var gens []int
		switch r.TypeUrl {
		case clusterType:
			f.clearClusters()
			var eds []string
			for _, a := range r.Resources {
				if name := field1(a.Value); f.putCluster(name) {
					eds = append(eds, name)
				}
			}
			if !sameNames(eds, names[endpointType]) {
				names[endpointType] = eds
				f.keepCLAs(eds)
				if err := st.Send(&discovery.DiscoveryRequest{TypeUrl: endpointType, ResourceNames: eds}); err != nil {
					return fmt.Errorf("request EDS: %w", err)
				}
			}
		case listenerType:
			clear(f.listeners)
			for _, a := range r.Resources {
				var l listener.Listener
				if a.UnmarshalTo(&l) == nil {
					f.putListener(l.Name, listenerRoutes(&l))
				}
			}
			if routes := f.routeNames(); !sameNames(routes, names[routeType]) {
				names[routeType] = routes
				f.keepRoutes(routes)
				if err := st.Send(&discovery.DiscoveryRequest{TypeUrl: routeType, ResourceNames: routes}); err != nil {
					return fmt.Errorf("request RDS: %w", err)
				}
			}
			lds = true
		case endpointType:
			watch := p.endpointWatch.Load()
			for _, a := range r.Resources {
				f.putCLA(field1(a.Value))
				if watch {
					gens = append(gens, claGens(a.Value)...)
				}
			}
		case routeType:
			w := p.routeMarker.Load()
			for _, a := range r.Resources {
				f.putRoute(field1(a.Value), w != 0 && routeHasWeight(a.Value, w))
			}
		}
		if err := st.Send(&discovery.DiscoveryRequest{TypeUrl: r.TypeUrl, VersionInfo: r.VersionInfo,
			ResponseNonce: r.Nonce, ResourceNames: names[r.TypeUrl]}); err != nil {
			return fmt.Errorf("ACK %s: %w", r.TypeUrl, err)
		}
		p.acked(r.TypeUrl, f, f.sidecarFull(lds), gens)
	}
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

// listenerRoutes returns the RDS route names a listener's HTTP connection
// managers use, in its filter chains or (proxyless) its API listener.
func listenerRoutes(l *listener.Listener) []string {
	var routes []string
	add := func(a *anypb.Any) {
		var h hcm.HttpConnectionManager
		if a.UnmarshalTo(&h) == nil && h.GetRds() != nil {
			if n := h.GetRds().GetRouteConfigName(); !slices.Contains(routes, n) {
				routes = append(routes, n)
			}
		}
	}
	for _, fc := range l.FilterChains {
		for _, f := range fc.Filters {
			if tc := f.GetTypedConfig(); tc != nil {
				add(tc)
			}
		}
	}
	if a := l.GetApiListener().GetApiListener(); a != nil {
		add(a)
	}
	return routes
}

// claGens returns the churn generations (198.19.x.y endpoints) in a
// serialized ClusterLoadAssignment.
func claGens(b []byte) []int {
	var cla endpoint.ClusterLoadAssignment
	if proto.Unmarshal(b, &cla) != nil {
		return nil
	}
	var gens []int
	for _, le := range cla.Endpoints {
		for _, e := range le.LbEndpoints {
			ip := e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
			var x, y int
			if _, err := fmt.Sscanf(ip, "198.19.%d.%d", &x, &y); err == nil {
				gens = append(gens, x<<8|y)
			}
		}
	}
	return gens
}

// routeHasWeight reports whether any weighted route in a serialized
// RouteConfiguration carries weight w.
func routeHasWeight(b []byte, w uint32) bool {
	// A ClusterWeight holding w holds these bytes (weight, field 2, a
	// UInt32Value whose value is field 1): ruling out the rest without
	// decoding keeps a thousand proxies' clients from being what a config
	// change measures.
	if w < 0x80 && !bytes.Contains(b, []byte{0x12, 0x02, 0x08, byte(w)}) {
		return false
	}
	var rc route.RouteConfiguration
	if proto.Unmarshal(b, &rc) != nil {
		return false
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

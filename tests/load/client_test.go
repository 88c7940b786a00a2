package load

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	server "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// everyNode makes the snapshot cache serve one snapshot to all proxies.
type everyNode struct{}

func (everyNode) ID(*core.Node) string { return "all" }

// fakeCP is a go-control-plane ADS server (SotW and Delta) on 127.0.0.1
// serving snapshots built from a mesh; it records Delta subscription
// changes so a test can see what a client asked for.
type fakeCP struct {
	addr  string
	cache cache.SnapshotCache
	ver   int

	mu    sync.Mutex
	unsub []string // EDS names Delta clients unsubscribed from
}

func startFakeCP(t *testing.T) *fakeCP {
	t.Helper()
	// Not ADS mode: in it the cache answers a request only if it names
	// every resource of the snapshot, which a proxyless client never does.
	cp := &fakeCP{cache: cache.NewSnapshotCache(false, everyNode{}, nil)}
	cb := server.CallbackFuncs{StreamDeltaRequestFunc: func(_ int64, r *discovery.DeltaDiscoveryRequest) error {
		if r.TypeUrl == endpointType {
			cp.mu.Lock()
			cp.unsub = append(cp.unsub, r.ResourceNamesUnsubscribe...)
			cp.mu.Unlock()
		}
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	srv := server.NewServer(ctx, cp.cache, cb)
	gs := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(func() { gs.Stop(); cancel() })
	cp.addr = lis.Addr().String()
	return cp
}

func (cp *fakeCP) unsubscribed() []string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return slices.Clone(cp.unsub)
}

// meshConfig is what the fake serves: routed services split weight/100-weight
// over subsets v1 and v2; skip leaves a service out entirely; marker, when
// non-zero, adds churn generation marker to service markerSvc's endpoints.
type meshConfig struct {
	weight            uint32
	skip              int
	marker, markerSvc int
}

// set builds and installs a snapshot of m as Istio would shape it: sidecar
// listener 0.0.0.0_80 with route "80", proxyless listeners and routes
// HOST:80, clusters outbound|80|SUBSET|HOST over EDS.
func (cp *fakeCP) set(t *testing.T, m *mesh, c meshConfig) {
	t.Helper()
	var clusters, clas, listeners, routes []types.Resource
	var vhosts []*route.VirtualHost
	for i, s := range m.services {
		if i == c.skip {
			continue
		}
		subsets := []string{""}
		action := &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: outName(s, "")}}
		if slices.Contains(m.routed, i) {
			subsets = append(subsets, "v1", "v2")
			action = &route.RouteAction{ClusterSpecifier: &route.RouteAction_WeightedClusters{WeightedClusters: &route.WeightedCluster{
				Clusters: []*route.WeightedCluster_ClusterWeight{
					{Name: outName(s, "v1"), Weight: wrapperspb.UInt32(c.weight)},
					{Name: outName(s, "v2"), Weight: wrapperspb.UInt32(100 - c.weight)},
				}}}}
		}
		for _, ss := range subsets {
			name := outName(s, ss)
			clusters = append(clusters, &cluster.Cluster{Name: name,
				ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
				EdsClusterConfig:     &cluster.Cluster_EdsClusterConfig{ServiceName: name}})
			ips := []string{endpointIP(i, 0)}
			if ss == "" && c.marker != 0 && c.markerSvc == i {
				ips = append(ips, markerIP(c.marker))
			}
			clas = append(clas, testCLA(name, ips))
		}
		vh := &route.VirtualHost{Name: s.host() + ":80", Domains: []string{s.host()},
			Routes: []*route.Route{{Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
				Action: &route.Route_Route{Route: action}}}}
		vhosts = append(vhosts, vh)
		grpcName := fmt.Sprintf("%s:%d", s.host(), grpcPort)
		listeners = append(listeners, &listener.Listener{Name: grpcName,
			ApiListener: &listener.ApiListener{ApiListener: rdsManager(t, grpcName)}})
		routes = append(routes, &route.RouteConfiguration{Name: grpcName, VirtualHosts: []*route.VirtualHost{vh}})
	}
	// A non-mesh cluster, as every sidecar has: it must not count.
	clusters = append(clusters, &cluster.Cluster{Name: "BlackHoleCluster",
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STATIC}})
	listeners = append(listeners, &listener.Listener{Name: "0.0.0.0_80", FilterChains: []*listener.FilterChain{{
		Filters: []*listener.Filter{{Name: "envoy.filters.network.http_connection_manager",
			ConfigType: &listener.Filter_TypedConfig{TypedConfig: rdsManager(t, "80")}}}}}})
	routes = append(routes, &route.RouteConfiguration{Name: "80", VirtualHosts: vhosts})
	cp.ver++
	snap, err := cache.NewSnapshot(fmt.Sprint(cp.ver), map[resource.Type][]types.Resource{
		resource.ClusterType: clusters, resource.EndpointType: clas,
		resource.ListenerType: listeners, resource.RouteType: routes,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), "all", snap); err != nil {
		t.Fatal(err)
	}
}

func outName(s svc, subset string) string {
	return fmt.Sprintf("outbound|%d|%s|%s", grpcPort, subset, s.host())
}

func rdsManager(t *testing.T, routeName string) *anypb.Any {
	t.Helper()
	a, err := anypb.New(&hcm.HttpConnectionManager{StatPrefix: routeName, RouteSpecifier: &hcm.HttpConnectionManager_Rds{
		Rds: &hcm.Rds{RouteConfigName: routeName}}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func testCLA(name string, ips []string) *endpoint.ClusterLoadAssignment {
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpoint.LocalityLbEndpoints{{}}}
	for _, ip := range ips {
		cla.Endpoints[0].LbEndpoints = append(cla.Endpoints[0].LbEndpoints, &endpoint.LbEndpoint{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: &core.Address{
				Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{Address: ip,
					PortSpecifier: &core.SocketAddress_PortValue{PortValue: 8080}}}}}}})
	}
	return cla
}

// startProxy runs p against cp until the test ends.
func startProxy(t *testing.T, p *proxy, cp *fakeCP) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.run(ctx, cp.addr) }()
	t.Cleanup(func() { cancel(); <-done })
}

// eventually polls cond (under p.mu) until it holds, failing the test
// after a generous deadline or when the proxy's stream failed.
func eventually(t *testing.T, p *proxy, what string, cond func() bool) {
	t.Helper()
	ok := waitFor(t.Context(), nil, what, 20*time.Second, 1, func() int {
		if p.err.Load() != nil {
			return 1
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if cond() {
			return 1
		}
		return 0
	})
	if e := p.err.Load(); e != nil {
		t.Fatalf("%s %d: stream failed: %v", p.kind, p.id, *e)
	}
	if !ok {
		t.Fatalf("%s %d: never reached %s", p.kind, p.id, what)
	}
}

// TestSidecars runs both sidecar kinds through what the scenarios judge:
// full only once every mesh service is held, the marker weight after a
// route change, and a cluster removed and re-added (a Delta sidecar must
// unsubscribe from its endpoints and subscribe again).
func TestSidecars(t *testing.T) {
	for _, k := range []kind{sotwSidecar, deltaSidecar} {
		t.Run(k.String(), func(t *testing.T) {
			m := newMesh(Config{Services: 6, Namespaces: 2, VirtualServices: 2, Seed: 1, NamespacePrefix: "t"})
			cp := startFakeCP(t)
			gone := 0
			for slices.Contains(m.routed, gone) {
				gone++
			}
			cp.set(t, m, meshConfig{weight: 50, skip: gone})
			p := newProxy(0, k, m, m.hostIndex())
			startProxy(t, p, cp)
			eventually(t, p, "first response", func() bool { return p.bytes.Load() > 0 })
			p.mu.Lock()
			early := !p.fullAt.IsZero()
			p.mu.Unlock()
			if early {
				t.Fatal("full before the mesh's last service existed")
			}
			cp.set(t, m, meshConfig{weight: 50, skip: -1})
			eventually(t, p, "full config", func() bool { return !p.fullAt.IsZero() })

			p.routeMarker.Store(23)
			cp.set(t, m, meshConfig{weight: 23, skip: -1})
			eventually(t, p, "marker weight 23 ACKed", func() bool { return !p.markerAck.IsZero() })

			cp.set(t, m, meshConfig{weight: 23, skip: gone})
			if k == deltaSidecar {
				removed := outName(m.services[gone], "")
				if !waitFor(t.Context(), nil, "unsubscribe", 20*time.Second, 1, func() int {
					if slices.Contains(cp.unsubscribed(), removed) {
						return 1
					}
					return 0
				}) {
					t.Fatalf("never unsubscribed from EDS %s after CDS removed it (unsubscribed %v)", removed, cp.unsubscribed())
				}
			}
			p.endpointWatch.Store(true)
			cp.set(t, m, meshConfig{weight: 23, skip: -1, marker: 7, markerSvc: gone})
			eventually(t, p, "churn generation 7 of the re-added service", func() bool { _, ok := p.genAck[7]; return ok })
		})
	}
}

func TestProxylessClient(t *testing.T) {
	m := newMesh(Config{Services: 8, Namespaces: 2, VirtualServices: 2, Seed: 3, NamespacePrefix: "t"})
	cp := startFakeCP(t)
	cp.set(t, m, meshConfig{weight: 50, skip: -1})
	p := newProxy(5, proxyless, m, m.hostIndex())
	if len(p.targets) != 4 || p.targets[0] != m.routed[0] {
		t.Fatalf("targets %v: want 4 starting with the edited service %d", p.targets, m.routed[0])
	}
	if md := p.node().Metadata.Fields["GENERATOR"]; md.GetStringValue() != "grpc" {
		t.Errorf("node metadata GENERATOR = %v, want grpc", md)
	}
	startProxy(t, p, cp)
	eventually(t, p, "full config for its targets", func() bool { return !p.fullAt.IsZero() })

	p.routeMarker.Store(31)
	cp.set(t, m, meshConfig{weight: 31, skip: -1})
	eventually(t, p, "marker weight 31 ACKed", func() bool { return !p.markerAck.IsZero() })

	var watched, other int = -1, -1
	for i := range m.services {
		switch {
		case p.watches(i) && watched < 0:
			watched = i
		case !slices.Contains(p.targets, i) && other < 0:
			other = i
		}
	}
	if watched < 0 || other < 0 || p.watches(other) || p.watches(m.routed[0]) {
		t.Fatalf("watches: targets %v, routed %v: want an unrouted target watched and nothing else", p.targets, m.routed)
	}
	p.endpointWatch.Store(true)
	cp.set(t, m, meshConfig{weight: 31, skip: -1, marker: 9, markerSvc: watched})
	eventually(t, p, "churn generation 9 of a target", func() bool { _, ok := p.genAck[9]; return ok })
}

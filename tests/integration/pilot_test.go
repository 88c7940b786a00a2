//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingv1 "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	xdscreds "google.golang.org/grpc/xds"

	"github.com/meshd/meshd/pilot/cli"
	"github.com/meshd/meshd/pilot/translate"
	"github.com/meshd/meshd/pilot/xds"
	"github.com/meshd/meshd/pkg/source/kube"
	"github.com/meshd/meshd/tests/integration/framework"
)

// pilotEnv is meshd's store and pilot, run in-process against a real API
// server, with gRPC backends on loopback that the mesh knows as 192.0.2.x.
type pilotEnv struct {
	t        *testing.T
	cluster  *framework.Cluster
	ns       string
	xdsAddr  string
	registry *prometheus.Registry
	backends map[string]string // "192.0.2.N:7070" -> "127.0.0.1:port"
	names    map[string]string // "192.0.2.N:7070" -> backend name
}

func startPilot(t *testing.T) *pilotEnv {
	c := framework.Start(t)
	e := &pilotEnv{t: t, cluster: c, ns: c.NewNamespace(t, "pilot"), registry: prometheus.NewRegistry(),
		backends: map[string]string{}, names: map[string]string{}}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	// The same pieces bootstrap wires: the kube source's store, pilot's
	// ADS server registered on a gRPC server, and its debounce component.
	src, err := kube.New(log.With("source", "kube"), c.Kube, c.Istio, e.ns)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = src.Start(ctx) }()
	srv := xds.New(log.With("subsystem", "pilot"), src.Store(), e.registry, xds.Options{
		DebounceAfter: 50 * time.Millisecond, DebounceMax: time.Second, InstanceID: "meshd-it",
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	go func() { _ = srv.Component().Start(ctx) }()
	e.xdsAddr = lis.Addr().String()

	for i := 1; i <= 3; i++ {
		e.backend(fmt.Sprintf("192.0.2.%d:7070", i), fmt.Sprintf("backend-%d", i))
	}
	return e
}

// backend starts a gRPC server on loopback that answers every method with
// its own name, and maps meshAddr to it.
func (e *pilotEnv) backend(meshAddr, name string) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	g := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		var in emptypb.Empty
		if err := stream.RecvMsg(&in); err != nil {
			return err
		}
		return stream.SendMsg(wrapperspb.String(name))
	}))
	go func() { _ = g.Serve(lis) }()
	e.t.Cleanup(g.Stop)
	e.backends[meshAddr] = lis.Addr().String()
	e.names[meshAddr] = name
}

// dial maps each 192.0.2.x address to its loopback backend and refuses
// anything else: no packet goes to the documentation range.
func (e *pilotEnv) dial(ctx context.Context, addr string) (net.Conn, error) {
	real, ok := e.backends[addr]
	if !ok {
		return nil, fmt.Errorf("test dialer: no backend for %s", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", real)
}

func (e *pilotEnv) createEcho(ips ...string) {
	ctx := context.Background()
	_, err := e.cluster.Kube.CoreV1().Services(e.ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "echo"},
			Ports:    []corev1.ServicePort{{Name: "grpc", Port: 7070}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	_, err = e.cluster.Kube.DiscoveryV1().EndpointSlices(e.ns).Create(ctx, e.slice(ips...), metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
}

// slice is the EndpointSlice a kubelet and the endpoint controller would write.
func (e *pilotEnv) slice(ips ...string) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "echo-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "echo"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](7070), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, ip := range ips {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return es
}

func (e *pilotEnv) scale(ips ...string) {
	ctx := context.Background()
	cur, err := e.cluster.Kube.DiscoveryV1().EndpointSlices(e.ns).Get(ctx, "echo-abc", metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	next := e.slice(ips...)
	next.ResourceVersion = cur.ResourceVersion
	if _, err := e.cluster.Kube.DiscoveryV1().EndpointSlices(e.ns).Update(ctx, next, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *pilotEnv) host() string { return "echo." + e.ns + ".svc.cluster.local" }

// grpcClient dials xds:///echo.NS.svc.cluster.local:7070 with grpc-go's own
// xDS resolver, bootstrapped to meshd as a proxyless gRPC proxy.
func (e *pilotEnv) grpcClient(pod string) *grpc.ClientConn {
	return e.grpcClientFor(pod, e.host()+":7070")
}

// grpcClientFor dials xds:///target the same way.
func (e *pilotEnv) grpcClientFor(pod, target string) *grpc.ClientConn {
	bootstrap := fmt.Sprintf(`{
	  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
	  "node": {
	    "id": "sidecar~192.0.2.100~%s.%s~%s.svc.cluster.local",
	    "metadata": {"GENERATOR": "grpc", "NAMESPACE": %q, "ISTIO_VERSION": "1.28.0", "CLUSTER_ID": "Kubernetes"},
	    "locality": {}
	  },
	  "server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%%s"
	}`, e.xdsAddr, pod, e.ns, e.ns, e.ns)
	resolver, err := xdscreds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		e.t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///"+target,
		grpc.WithResolvers(resolver),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(e.dial))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return cc
}

// call makes one RPC and returns the name of the backend that answered.
func call(ctx context.Context, cc *grpc.ClientConn) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var out wrapperspb.StringValue
	if err := cc.Invoke(ctx, "/echo.Echo/Name", &emptypb.Empty{}, &out); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

// waitForBackends calls until every wanted backend has answered.
func waitForBackends(t *testing.T, cc *grpc.ClientConn, want ...string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	framework.Eventually(t, 30*time.Second, func() error {
		name, err := call(context.Background(), cc)
		if err != nil {
			return err
		}
		seen[name]++
		for _, w := range want {
			if seen[w] == 0 {
				return fmt.Errorf("%s has not answered yet (answers so far: %v)", w, seen)
			}
		}
		return nil
	})
	return seen
}

func (e *pilotEnv) pushes(short string) float64 {
	mfs, err := e.registry.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "pilot_xds_pushes" {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "type" && l.GetValue() == short {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func meshctl(t *testing.T, args ...string) string {
	t.Helper()
	root := &cobra.Command{Use: "meshctl", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(cli.Commands()...)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("meshctl %s: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

// TestProxylessGRPC: a real grpc-go xDS client reaches the backends the
// EndpointSlice lists, sees a third endpoint through an EDS-only push, and
// meshctl shows it SYNCED with its clusters.
func TestProxylessGRPC(t *testing.T) {
	e := startPilot(t)
	e.createEcho("192.0.2.1", "192.0.2.2")
	cc := e.grpcClient("client-0")

	seen := waitForBackends(t, cc, "backend-1", "backend-2")
	if seen["backend-3"] != 0 {
		t.Fatalf("backend-3 answered before it was in the EndpointSlice: %v", seen)
	}

	// meshctl proxy-status lists the client SYNCED on every type it uses.
	proxyID := "client-0." + e.ns
	framework.Eventually(t, 30*time.Second, func() error {
		out := meshctl(t, "proxy-status", "--xds-address", e.xdsAddr)
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, proxyID+" ") {
				if f := strings.Fields(line); len(f) >= 6 && f[2] == "SYNCED" && f[3] == "SYNCED" && f[4] == "SYNCED" && f[5] == "SYNCED" {
					return nil
				}
				return fmt.Errorf("not synced yet: %q", line)
			}
		}
		return fmt.Errorf("%s not listed:\n%s", proxyID, out)
	})
	clusters := meshctl(t, "proxy-config", "clusters", proxyID, "--xds-address", e.xdsAddr)
	if !strings.Contains(clusters, e.host()) || !strings.Contains(clusters, "7070") || !strings.Contains(clusters, "EDS") {
		t.Fatalf("proxy-config clusters:\n%s", clusters)
	}

	// Scale 2 -> 3: the third backend starts answering, and only EDS moved.
	before := map[string]float64{}
	for _, ty := range []string{"cds", "lds", "rds", "eds"} {
		before[ty] = e.pushes(ty)
	}
	e.scale("192.0.2.1", "192.0.2.2", "192.0.2.3")
	waitForBackends(t, cc, "backend-3")
	for _, ty := range []string{"cds", "lds", "rds"} {
		if got := e.pushes(ty); got != before[ty] {
			t.Errorf("scaling the EndpointSlice pushed %s (%v -> %v pushes): want an EDS-only push", ty, before[ty], got)
		}
	}
	if got := e.pushes("eds"); got <= before["eds"] {
		t.Errorf("no EDS push for the scale-up (%v -> %v)", before["eds"], got)
	}
}

// TestDeltaClientSeesEndpointChanges: a client on Delta xDS gets the
// endpoints, then exactly the changed load assignment when the slice grows.
func TestDeltaClientSeesEndpointChanges(t *testing.T) {
	e := startPilot(t)
	e.createEcho("192.0.2.1", "192.0.2.2")
	clusterName := translate.OutboundClusterName(7070, "", e.host())

	cc, err := grpc.NewClient(e.xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var responses []*discovery.DeltaDiscoveryResponse
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			mu.Lock()
			responses = append(responses, r)
			mu.Unlock()
			_ = stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce})
		}
	}()
	meta, _ := structpb.NewStruct(map[string]any{"GENERATOR": "grpc", "NAMESPACE": e.ns})
	node := &core.Node{Id: fmt.Sprintf("sidecar~192.0.2.101~delta-0.%s~%s.svc.cluster.local", e.ns, e.ns), Metadata: meta}
	for _, req := range []*discovery.DeltaDiscoveryRequest{
		{Node: node, TypeUrl: translate.ClusterType, ResourceNamesSubscribe: []string{clusterName}},
		{TypeUrl: translate.EndpointType, ResourceNamesSubscribe: []string{clusterName}},
	} {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	// endpointsNow returns the addresses in the latest EDS response for the
	// cluster, and how many CDS responses came so far.
	endpointsNow := func() ([]string, int) {
		mu.Lock()
		defer mu.Unlock()
		var addrs []string
		cds := 0
		for _, r := range responses {
			if r.TypeUrl == translate.ClusterType {
				cds++
			}
			if r.TypeUrl != translate.EndpointType {
				continue
			}
			for _, res := range r.Resources {
				if res.Name != clusterName {
					continue
				}
				var cla endpoint.ClusterLoadAssignment
				if err := res.Resource.UnmarshalTo(&cla); err != nil {
					t.Error(err)
					continue
				}
				addrs = nil
				for _, l := range cla.Endpoints {
					for _, ep := range l.LbEndpoints {
						addrs = append(addrs, ep.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
					}
				}
			}
		}
		return addrs, cds
	}
	var cdsBefore int
	framework.Eventually(t, 30*time.Second, func() error {
		addrs, cds := endpointsNow()
		if len(addrs) != 2 {
			return fmt.Errorf("endpoints %v, want 2", addrs)
		}
		cdsBefore = cds
		return nil
	})
	e.scale("192.0.2.1", "192.0.2.2", "192.0.2.3")
	framework.Eventually(t, 30*time.Second, func() error {
		if addrs, _ := endpointsNow(); len(addrs) != 3 {
			return fmt.Errorf("endpoints %v, want 3", addrs)
		}
		return nil
	})
	if _, cds := endpointsNow(); cds != cdsBefore {
		t.Fatalf("the endpoint change sent CDS to the delta client (%d -> %d responses)", cdsBefore, cds)
	}
}

// TestSidecarScopesProxylessClient: a Sidecar whose egress imports only
// istio-system takes the echo service out of a connected gRPC client's
// reach (its calls fail), and deleting the Sidecar gives it back.
func TestSidecarScopesProxylessClient(t *testing.T) {
	e := startPilot(t)
	e.createEcho("192.0.2.1")
	cc := e.grpcClient("client-0")
	waitForBackends(t, cc, "backend-1")

	ctx := context.Background()
	sidecars := e.cluster.Istio.NetworkingV1().Sidecars(e.ns)
	_, err := sidecars.Create(ctx, &istionet.Sidecar{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec:       networkingv1.Sidecar{Egress: []*networkingv1.IstioEgressListener{{Hosts: []string{"istio-system/*"}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 30*time.Second, func() error {
		if name, err := call(ctx, cc); err == nil {
			return fmt.Errorf("%s still answers with the Sidecar in place", name)
		}
		return nil
	})

	if err := sidecars.Delete(ctx, "default", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForBackends(t, cc, "backend-1")
}

package xds_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	networkingv1 "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/meshd/meshd/pilot/translate"
	"github.com/meshd/meshd/pilot/xds"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

// ---- fixtures ---------------------------------------------------------------

func service(ns, name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{ClusterIP: ip, Selector: map[string]string{"app": name}, Ports: ports},
	}
}

func grpcPort(n int32) corev1.ServicePort { return corev1.ServicePort{Name: "grpc", Port: n} }

func slice(ns, svc string, port int32, ips ...string) *discoveryv1.EndpointSlice {
	name := "grpc"
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svc + "-1", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	}
	for _, ip := range ips {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}})
	}
	return es
}

// put adds or replaces an object and tells subscribers, as a source does.
func put(t testing.TB, st *store.Store, kind schema.Kind, obj schema.Object) {
	t.Helper()
	old, existed := st.Get(kind, obj.GetNamespace(), obj.GetName())
	if err := st.Indexer(kind).Update(obj); err != nil {
		t.Fatal(err)
	}
	e := store.Event{Kind: kind, Type: store.Added, New: obj}
	if existed {
		e.Type, e.Old = store.Updated, old
	}
	st.Notify(e)
}

func remove(t testing.TB, st *store.Store, kind schema.Kind, obj schema.Object) {
	t.Helper()
	if err := st.Indexer(kind).Delete(obj); err != nil {
		t.Fatal(err)
	}
	st.Notify(store.Event{Kind: kind, Type: store.Deleted, Old: obj})
}

type env struct {
	t      *testing.T
	st     *store.Store
	srv    *xds.Server
	reg    *prometheus.Registry
	addr   string
	grpc   *grpc.Server
	cancel context.CancelFunc
}

func newEnv(t *testing.T) *env {
	st := store.NewMemory()
	put(t, st, schema.Service, service("default", "echo", "10.96.0.10", grpcPort(7070)))
	put(t, st, schema.EndpointSlice, slice("default", "echo", 7070, "192.0.2.1", "192.0.2.2"))
	st.MarkSynced()
	e := &env{t: t, st: st}
	e.start("127.0.0.1:0")
	return e
}

func (e *env) start(addr string) {
	t := e.t
	level := slog.LevelWarn
	if os.Getenv("MESHD_TEST_LOG") == "info" {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	e.reg = prometheus.NewRegistry()
	e.srv = xds.New(log, e.st, e.reg, xds.Options{DebounceAfter: 5 * time.Millisecond, DebounceMax: 50 * time.Millisecond, InstanceID: "meshd-test"})
	var lis net.Listener
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		lis, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the old server's port is being released
	}
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	e.grpc = grpc.NewServer()
	e.srv.Register(e.grpc)
	go func() { _ = e.grpc.Serve(lis) }()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { _ = e.srv.Start(ctx) }()
	t.Cleanup(e.stop)
}

func (e *env) stop() {
	e.cancel()
	e.grpc.Stop()
}

func (e *env) dial() discovery.AggregatedDiscoveryServiceClient {
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return discovery.NewAggregatedDiscoveryServiceClient(cc)
}

func node(id string, meta map[string]any) *core.Node {
	m, err := structpb.NewStruct(meta)
	if err != nil {
		panic(err)
	}
	return &core.Node{Id: id, Metadata: m}
}

const sidecarID = "sidecar~10.1.0.9~client-1.default~default.svc.cluster.local"

// ---- a scripted SotW client ---------------------------------------------------

type sotwClient struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *core.Node
	recv   chan *discovery.DiscoveryResponse
	errs   chan error
}

func (e *env) sotw(n *core.Node) *sotwClient {
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	stream, err := e.dial().StreamAggregatedResources(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	c := &sotwClient{t: e.t, stream: stream, node: n, recv: make(chan *discovery.DiscoveryResponse, 100), errs: make(chan error, 1)}
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				c.errs <- err
				return
			}
			c.recv <- r
		}
	}()
	return c
}

func (c *sotwClient) send(req *discovery.DiscoveryRequest) {
	c.t.Helper()
	if c.node != nil {
		req.Node, c.node = c.node, nil // only the first request carries the node
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *sotwClient) request(typeURL string, names ...string) {
	c.send(&discovery.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names})
}

func (c *sotwClient) ack(r *discovery.DiscoveryResponse, names ...string) {
	c.send(&discovery.DiscoveryRequest{TypeUrl: r.TypeUrl, VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce, ResourceNames: names})
}

func (c *sotwClient) nack(r *discovery.DiscoveryResponse, lastGood string, names ...string) {
	c.send(&discovery.DiscoveryRequest{TypeUrl: r.TypeUrl, VersionInfo: lastGood, ResponseNonce: r.Nonce, ResourceNames: names,
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "cluster rejected by test"}})
}

// expect waits for the next response, which must be of typeURL.
func (c *sotwClient) expect(typeURL string) *discovery.DiscoveryResponse {
	c.t.Helper()
	select {
	case r := <-c.recv:
		if r.TypeUrl != typeURL {
			c.t.Fatalf("got a %s response, want %s", translate.ShortType(r.TypeUrl), translate.ShortType(typeURL))
		}
		return r
	case err := <-c.errs:
		c.t.Fatalf("stream ended waiting for %s: %v", translate.ShortType(typeURL), err)
	case <-time.After(10 * time.Second):
		c.t.Fatalf("no %s response within 10s", translate.ShortType(typeURL))
	}
	return nil
}

func names(r *discovery.DiscoveryResponse) []string {
	var out []string
	for _, a := range r.Resources {
		switch a.TypeUrl {
		case translate.ClusterType:
			var c cluster.Cluster
			_ = a.UnmarshalTo(&c)
			out = append(out, c.Name)
		case translate.EndpointType:
			var cla endpoint.ClusterLoadAssignment
			_ = a.UnmarshalTo(&cla)
			out = append(out, cla.ClusterName)
		}
	}
	return out
}

func addresses(t *testing.T, r *discovery.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range r.Resources {
		var cla endpoint.ClusterLoadAssignment
		if err := a.UnmarshalTo(&cla); err != nil {
			t.Fatal(err)
		}
		for _, l := range cla.Endpoints {
			for _, e := range l.LbEndpoints {
				out = append(out, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) status(proxy, short string) xds.SyncStatus {
	for _, row := range e.srv.SyncStatuses() {
		if row.ProxyID == proxy {
			return row.Status[short]
		}
	}
	return ""
}

func pushes(e *env, short string) float64 { return metric(e, "pilot_xds_pushes", short) }

// metric reads a counter with one label value from the server's registry.
func metric(e *env, name, label string) float64 {
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// ---- tests ---------------------------------------------------------------------

const echoCluster = "outbound|7070||echo.default.svc.cluster.local"

func TestSotWAckAndEndpointOnlyPush(t *testing.T) {
	e := newEnv(t)
	c := e.sotw(node(sidecarID, map[string]any{"ISTIO_VERSION": "1.28.0"}))

	c.request(translate.ClusterType)
	cds := c.expect(translate.ClusterType)
	if !contains(names(cds), echoCluster) {
		t.Fatalf("clusters %v lack %s", names(cds), echoCluster)
	}
	c.ack(cds)
	c.request(translate.EndpointType, echoCluster)
	eds := c.expect(translate.EndpointType)
	if got := addresses(t, eds); len(got) != 2 {
		t.Fatalf("endpoints %v, want 2", got)
	}
	c.ack(eds, echoCluster)
	eventually(t, "cds and eds SYNCED", func() bool {
		return e.status("client-1.default", "cds") == xds.Synced && e.status("client-1.default", "eds") == xds.Synced
	})
	cdsPushes := pushes(e, "cds")

	// Scale to three endpoints: only EDS moves.
	put(t, e.st, schema.EndpointSlice, slice("default", "echo", 7070, "192.0.2.1", "192.0.2.2", "192.0.2.3"))
	eds2 := c.expect(translate.EndpointType) // a CDS push would have come first (ordered ADS)
	if got := addresses(t, eds2); !contains(got, "192.0.2.3") || len(got) != 3 {
		t.Fatalf("endpoints after scale-up %v", got)
	}
	c.ack(eds2, echoCluster)
	if got := pushes(e, "cds"); got != cdsPushes {
		t.Fatalf("an endpoint change pushed CDS (%v -> %v pushes)", cdsPushes, got)
	}
	eventually(t, "eds SYNCED after the endpoint push", func() bool { return e.status("client-1.default", "eds") == xds.Synced })
}

func TestSotWNackKeepsLastGoodConfig(t *testing.T) {
	e := newEnv(t)
	c := e.sotw(node(sidecarID, nil))
	c.request(translate.ClusterType)
	good := c.expect(translate.ClusterType)
	c.ack(good)

	// A new service: CDS changes; the proxy rejects it.
	put(t, e.st, schema.Service, service("default", "other", "10.96.0.11", grpcPort(8080)))
	bad := c.expect(translate.ClusterType)
	if !contains(names(bad), "outbound|8080||other.default.svc.cluster.local") {
		t.Fatalf("clusters %v lack the new service", names(bad))
	}
	c.nack(bad, good.VersionInfo)
	eventually(t, "cds ERROR after the NACK", func() bool { return e.status("client-1.default", "cds") == xds.Error })
	if got := metric(e, "pilot_total_xds_rejects", "cds"); got != 1 {
		t.Fatalf("pilot_total_xds_rejects{type=cds} = %v, want 1", got)
	}

	// Nothing is resent for the NACK; the next change brings a new version.
	put(t, e.st, schema.Service, service("default", "third", "10.96.0.12", grpcPort(9090)))
	next := c.expect(translate.ClusterType)
	if !contains(names(next), "outbound|9090||third.default.svc.cluster.local") {
		t.Fatalf("clusters %v lack the third service", names(next))
	}
	c.ack(next)
	eventually(t, "cds SYNCED after a later ACK", func() bool { return e.status("client-1.default", "cds") == xds.Synced })
}

func TestSyncStatusStaleUntilAck(t *testing.T) {
	e := newEnv(t)
	c := e.sotw(node(sidecarID, nil))
	c.request(translate.ClusterType)
	r := c.expect(translate.ClusterType)
	eventually(t, "cds STALE before the ACK", func() bool { return e.status("client-1.default", "cds") == xds.Stale })
	if got := e.status("client-1.default", "lds"); got != xds.NotSent {
		t.Fatalf("lds status %q, want NOT SENT", got)
	}
	c.ack(r)
	eventually(t, "cds SYNCED after the ACK", func() bool { return e.status("client-1.default", "cds") == xds.Synced })
}

func TestSynczOverADS(t *testing.T) {
	e := newEnv(t)
	c := e.sotw(node(sidecarID, map[string]any{"ISTIO_VERSION": "1.28.0", "CLUSTER_ID": "east"}))
	c.request(translate.ClusterType)
	c.ack(c.expect(translate.ClusterType))
	eventually(t, "cds SYNCED", func() bool { return e.status("client-1.default", "cds") == xds.Synced })

	dbg := e.sotw(node("sidecar~0.0.0.0~meshctl.default~default.svc.cluster.local", nil))
	dbg.request(xds.TypeSyncz)
	r := dbg.expect(xds.TypeSyncz)
	if len(r.Resources) != 1 {
		t.Fatalf("syncz lists %d proxies, want 1 (debug clients are left out)", len(r.Resources))
	}
	var cc statusv3.ClientConfig
	if err := r.Resources[0].UnmarshalTo(&cc); err != nil {
		t.Fatal(err)
	}
	if cc.Node.Id != "client-1.default" || cc.Node.Metadata.Fields["CLUSTER_ID"].GetStringValue() != "east" {
		t.Fatalf("node %v", cc.Node)
	}
	found := false
	for _, x := range cc.GenericXdsConfigs {
		if x.TypeUrl == translate.ClusterType {
			found = true
			if x.ConfigStatus != statusv3.ConfigStatus_SYNCED {
				t.Fatalf("cds status %v", x.ConfigStatus)
			}
		}
	}
	if !found {
		t.Fatalf("no cds status in %v", cc.GenericXdsConfigs)
	}
	if !strings.Contains(r.ControlPlane.GetIdentifier(), "meshd-test") {
		t.Fatalf("control plane identifier %q", r.ControlPlane.GetIdentifier())
	}
}

func TestInvalidNodeID(t *testing.T) {
	e := newEnv(t)
	c := e.sotw(node("not-a-node-id", nil))
	c.request(translate.ClusterType)
	select {
	case err := <-c.errs:
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "not-a-node-id") {
			t.Fatalf("got %v, want InvalidArgument naming the node ID", err)
		}
	case r := <-c.recv:
		t.Fatalf("got a response %v for an invalid node", r.TypeUrl)
	case <-time.After(10 * time.Second):
		t.Fatal("stream not ended")
	}
	// The server keeps serving others.
	ok := e.sotw(node(sidecarID, nil))
	ok.request(translate.ClusterType)
	ok.expect(translate.ClusterType)
}

func TestReconnectAfterServerRestart(t *testing.T) {
	e := newEnv(t)
	c := e.sotw(node(sidecarID, nil))
	c.request(translate.ClusterType)
	c.ack(c.expect(translate.ClusterType))

	addr := e.addr
	e.stop()
	select {
	case <-c.errs:
	case <-time.After(10 * time.Second):
		t.Fatal("stream did not end when the server stopped")
	}
	e.start(addr)
	c2 := e.sotw(node(sidecarID, nil))
	c2.request(translate.ClusterType)
	if r := c2.expect(translate.ClusterType); !contains(names(r), echoCluster) {
		t.Fatalf("after restart: clusters %v", names(r))
	}
}

// ---- a scripted Delta client ------------------------------------------------------

type deltaClient struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	node   *core.Node
	recv   chan *discovery.DeltaDiscoveryResponse
	errs   chan error
}

func (e *env) delta(n *core.Node) *deltaClient {
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	stream, err := e.dial().DeltaAggregatedResources(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	c := &deltaClient{t: e.t, stream: stream, node: n, recv: make(chan *discovery.DeltaDiscoveryResponse, 100), errs: make(chan error, 1)}
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				if err != io.EOF {
					c.errs <- err
				}
				return
			}
			c.recv <- r
		}
	}()
	return c
}

func (c *deltaClient) send(req *discovery.DeltaDiscoveryRequest) {
	c.t.Helper()
	if c.node != nil {
		req.Node, c.node = c.node, nil
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *deltaClient) expect(typeURL string) *discovery.DeltaDiscoveryResponse {
	c.t.Helper()
	select {
	case r := <-c.recv:
		if r.TypeUrl != typeURL {
			c.t.Fatalf("got a %s response, want %s", translate.ShortType(r.TypeUrl), translate.ShortType(typeURL))
		}
		return r
	case err := <-c.errs:
		c.t.Fatalf("stream ended: %v", err)
	case <-time.After(10 * time.Second):
		c.t.Fatalf("no %s response within 10s", translate.ShortType(typeURL))
	}
	return nil
}

func (c *deltaClient) ack(r *discovery.DeltaDiscoveryResponse) {
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce})
}

func deltaNames(r *discovery.DeltaDiscoveryResponse) []string {
	var out []string
	for _, x := range r.Resources {
		out = append(out, x.Name)
	}
	return out
}

func TestDeltaAckNackAndEndpointOnlyPush(t *testing.T) {
	e := newEnv(t)
	c := e.delta(node(sidecarID, nil))
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.ClusterType, ResourceNamesSubscribe: []string{"*"}})
	cds := c.expect(translate.ClusterType)
	if !contains(deltaNames(cds), echoCluster) {
		t.Fatalf("clusters %v", deltaNames(cds))
	}
	c.ack(cds)
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.EndpointType, ResourceNamesSubscribe: []string{echoCluster}})
	eds := c.expect(translate.EndpointType)
	if len(eds.Resources) != 1 {
		t.Fatalf("eds resources %v", deltaNames(eds))
	}
	c.ack(eds)
	eventually(t, "delta cds and eds SYNCED", func() bool {
		return e.status("client-1.default", "cds") == xds.Synced && e.status("client-1.default", "eds") == xds.Synced
	})
	cdsPushes := pushes(e, "cds")

	put(t, e.st, schema.EndpointSlice, slice("default", "echo", 7070, "192.0.2.1", "192.0.2.2", "192.0.2.3"))
	eds2 := c.expect(translate.EndpointType)
	if len(eds2.Resources) != 1 || eds2.Resources[0].Name != echoCluster {
		t.Fatalf("delta EDS push %v", deltaNames(eds2))
	}
	c.ack(eds2)
	if got := pushes(e, "cds"); got != cdsPushes {
		t.Fatalf("an endpoint change pushed CDS (%v -> %v)", cdsPushes, got)
	}

	// Adding a service sends just that cluster; the proxy NACKs it.
	put(t, e.st, schema.Service, service("default", "other", "10.96.0.11", grpcPort(8080)))
	add := c.expect(translate.ClusterType)
	if got := deltaNames(add); len(got) != 1 || got[0] != "outbound|8080||other.default.svc.cluster.local" {
		t.Fatalf("delta CDS after adding a service: %v", got)
	}
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.ClusterType, ResponseNonce: add.Nonce,
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "rejected by test"}})
	eventually(t, "delta cds ERROR", func() bool { return e.status("client-1.default", "cds") == xds.Error })

	// Removing it is a removal, not a resend.
	remove(t, e.st, schema.Service, service("default", "other", "10.96.0.11", grpcPort(8080)))
	rm := c.expect(translate.ClusterType)
	if len(rm.Resources) != 0 || len(rm.RemovedResources) != 1 || rm.RemovedResources[0] != "outbound|8080||other.default.svc.cluster.local" {
		t.Fatalf("delta CDS after removing: resources %v removed %v", deltaNames(rm), rm.RemovedResources)
	}
	c.ack(rm)
	eventually(t, "delta cds SYNCED again", func() bool { return e.status("client-1.default", "cds") == xds.Synced })
}

func TestProxyWithoutPodGetsInboundFromMetadata(t *testing.T) {
	e := newEnv(t)
	c := e.sotw(node("sidecar~192.0.2.1~echo-vm.default~default.svc.cluster.local",
		map[string]any{"LABELS": map[string]any{"app": "echo"}, "NAMESPACE": "default"}))
	c.request(translate.ClusterType)
	r := c.expect(translate.ClusterType)
	if !contains(names(r), "inbound|7070||") {
		t.Fatalf("clusters %v lack the inbound cluster selected by metadata labels", names(r))
	}
}

func TestRegistryz(t *testing.T) {
	e := newEnv(t)
	eventually(t, "the first snapshot", func() bool { return e.srv.Snapshot() != nil })
	reg := e.srv.Registry()
	if len(reg) != 1 || reg[0].Hostname != "echo.default.svc.cluster.local" || len(reg[0].Endpoints) != 2 {
		t.Fatalf("registry %+v", reg)
	}
	if fmt.Sprint(reg[0].Ports) != "[{grpc 7070 GRPC}]" {
		t.Fatalf("ports %+v", reg[0].Ports)
	}
}

// TestSidecarScopesConnectedProxy: a Sidecar limiting the default
// namespace's egress to istio-system takes the echo service away from a
// connected sidecar, and deleting it brings the service back.
func TestSidecarScopesConnectedProxy(t *testing.T) {
	e := newEnv(t)
	c := e.sotw(node(sidecarID, map[string]any{"ISTIO_VERSION": "1.28.0"}))
	c.request(translate.ClusterType)
	cds := c.expect(translate.ClusterType)
	if !contains(names(cds), echoCluster) {
		t.Fatalf("clusters %v lack %s", names(cds), echoCluster)
	}
	c.ack(cds)

	sc := &istionet.Sidecar{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "default"},
		Spec:       networkingv1.Sidecar{Egress: []*networkingv1.IstioEgressListener{{Hosts: []string{"istio-system/*"}}}},
	}
	put(t, e.st, schema.Sidecar, sc)
	cds = c.expect(translate.ClusterType)
	if contains(names(cds), echoCluster) {
		t.Fatalf("clusters %v still hold %s after a Sidecar scoped it out", names(cds), echoCluster)
	}
	c.ack(cds)

	remove(t, e.st, schema.Sidecar, sc)
	cds = c.expect(translate.ClusterType)
	if !contains(names(cds), echoCluster) {
		t.Fatalf("clusters %v lack %s after the Sidecar was deleted", names(cds), echoCluster)
	}
}

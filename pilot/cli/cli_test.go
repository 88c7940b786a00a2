package cli_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/meshd/meshd/pilot/translate"
	"github.com/meshd/meshd/pilot/xds"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

// startServer runs pilot's ADS server over a store holding one service.
func startServer(t *testing.T) (string, *xds.Server) {
	st := store.NewMemory()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
	if err := st.Indexer(schema.Service).Add(svc); err != nil {
		t.Fatal(err)
	}
	st.MarkSynced()
	srv := xds.New(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), st, nil, xds.Options{InstanceID: "meshd-0"})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = srv.Start(ctx) }()
	t.Cleanup(func() { cancel(); g.Stop() })
	return lis.Addr().String(), srv
}

// connectSidecar connects a scripted sidecar that ACKs CDS, LDS and RDS.
func connectSidecar(t *testing.T, addr string) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := structpb.NewStruct(map[string]any{"ISTIO_VERSION": "1.28.0", "CLUSTER_ID": "Kubernetes"})
	n := &core.Node{Id: "sidecar~10.1.0.9~client-1.default~default.svc.cluster.local", Metadata: meta}
	for _, typ := range []string{translate.ClusterType, translate.ListenerType, translate.RouteType} {
		req := &discovery.DiscoveryRequest{Node: n, TypeUrl: typ}
		if typ == translate.RouteType {
			req.ResourceNames = []string{"80"}
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: typ, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce, ResourceNames: req.ResourceNames}); err != nil {
			t.Fatal(err)
		}
		n = nil
	}
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("meshctl %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestProxyStatusAndConfig(t *testing.T) {
	addr, _ := startServer(t)
	connectSidecar(t, addr)

	var out string
	deadline := time.Now().Add(10 * time.Second)
	for {
		out = run(t, "ps", "--xds-address", addr)
		if strings.Contains(out, "SYNCED   SYNCED") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("proxy-status:\n%s", out)
	}
	f := strings.Fields(lines[1])
	// NAME CLUSTER CDS LDS EDS RDS ISTIOD VERSION, with "NOT SENT" as two words.
	if f[0] != "client-1.default" || f[1] != "Kubernetes" || f[2] != "SYNCED" || f[3] != "SYNCED" || !strings.Contains(lines[1], "NOT SENT") ||
		f[len(f)-2] != "meshd-0" || f[len(f)-1] != "1.28.0" {
		t.Fatalf("proxy-status row: %q", lines[1])
	}

	clusters := run(t, "proxy-config", "clusters", "client-1.default", "--xds-address", addr)
	if !strings.Contains(clusters, "echo.default.svc.cluster.local") || !strings.Contains(clusters, "outbound") {
		t.Fatalf("proxy-config clusters:\n%s", clusters)
	}
	listeners := run(t, "pc", "listeners", "client-1.default", "--xds-address", addr)
	if !strings.Contains(listeners, "0.0.0.0_80") || !strings.Contains(listeners, "Route: 80") {
		t.Fatalf("proxy-config listeners:\n%s", listeners)
	}
	routes := run(t, "proxy-config", "routes", "client-1.default", "--xds-address", addr, "-o", "json")
	if !strings.Contains(routes, `"echo.default.svc.cluster.local:80"`) {
		t.Fatalf("proxy-config routes -o json:\n%s", routes)
	}
	yamlOut := run(t, "proxy-config", "clusters", "client-1.default", "--xds-address", addr, "-o", "yaml")
	if !strings.Contains(yamlOut, "name: outbound|80||echo.default.svc.cluster.local") {
		t.Fatalf("proxy-config clusters -o yaml:\n%s", yamlOut)
	}
}

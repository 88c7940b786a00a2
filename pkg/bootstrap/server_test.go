package bootstrap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshd/meshd/citadel/token"
)

// fileModeServer runs a whole meshd on Bookinfo in file mode, on loopback.
func fileModeServer(t *testing.T) (*Server, string) {
	t.Helper()
	caDir := t.TempDir()
	opts := Options{
		ConfigDir: "../../examples/bookinfo", CADir: caDir, TrustDomain: "cluster.local", Namespace: "istio-system",
		GRPCAddr: "127.0.0.1:0", SecureGRPCAddr: "127.0.0.1:0", WebhookAddr: "127.0.0.1:0",
		MonitoringAddr: "127.0.0.1:0", DebugAddr: "127.0.0.1:0",
		DebounceAfter: 10 * time.Millisecond, DebounceMax: time.Second, DrainTimeout: 5 * time.Second,
		LogLevel: "info", LogFormat: "text",
	}
	srv, err := New(opts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for srv.Ready.Check() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", srv.Ready.Check())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return srv, caDir
}

// TestSecureXDSNeedsAnIdentity: on 15012, xDS without a mesh certificate or
// token is refused; with a token from the file-mode CA key it is served, and
// meshd's certificate verifies against the mesh root.
func TestSecureXDSNeedsAnIdentity(t *testing.T) {
	srv, caDir := fileModeServer(t)
	rootPEM, err := srv.certs.rootPEM()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		t.Fatal("no mesh root")
	}
	conn, err := grpc.NewClient(srv.Addr("secure-grpc"), grpc.WithTransportCredentials(
		credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "istiod.istio-system.svc"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ads := discovery.NewAggregatedDiscoveryServiceClient(conn)
	fetch := func(ctx context.Context) (*discovery.DiscoveryResponse, error) {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		stream, err := ads.StreamAggregatedResources(ctx)
		if err != nil {
			return nil, err
		}
		// A refused stream may end before Send: the status then comes
		// with Recv, as gRPC defines.
		if err := stream.Send(&discovery.DiscoveryRequest{
			Node:    &core.Node{Id: "sidecar~192.0.2.12~reviews-v1.default~default.svc.cluster.local"},
			TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
		}); err != nil && err != io.EOF {
			return nil, err
		}
		return stream.Recv()
	}

	_, err = fetch(context.Background())
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("xDS without identity: %v, want Unauthenticated", err)
	}

	key, err := token.LoadKey(token.KeyPath(caDir))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := token.Mint(key, "default", "bookinfo-reviews", nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := fetch(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok))
	if err != nil {
		t.Fatalf("xDS with a token: %v", err)
	}
	if len(resp.Resources) == 0 {
		t.Fatal("no clusters for an authenticated sidecar")
	}
}

// TestMetricsNamesAreIstios: once a proxy is connected and a review served,
// the control-plane metrics a dashboard built for istiod reads are on
// /metrics under Istio's names.
func TestMetricsNamesAreIstios(t *testing.T) {
	srv, _ := fileModeServer(t)
	conn, err := grpc.NewClient(srv.Addr("grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{
		Node:    &core.Node{Id: "sidecar~192.0.2.12~reviews-v1.default~default.svc.cluster.local"},
		TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"group":"networking.istio.io","version":"v1","kind":"VirtualService"},"resource":{"group":"networking.istio.io","version":"v1","resource":"virtualservices"},"operation":"CREATE","object":{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"r","namespace":"default"},"spec":{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews"}}]}]}}}}`
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	wresp, err := hc.Post("https://"+srv.Addr("webhook")+"/validate", "application/json", strings.NewReader(review))
	if err != nil {
		t.Fatal(err)
	}
	wresp.Body.Close()

	resp, err := http.Get("http://" + srv.Addr("monitoring") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, name := range []string{"pilot_xds", "pilot_xds_pushes", "pilot_services", "citadel_server_root_cert_expiry_timestamp",
		"galley_validation_passed", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(string(body), "# TYPE "+name+" ") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

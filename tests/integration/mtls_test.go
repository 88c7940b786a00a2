//go:build integration

package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apinetworking "istio.io/api/networking/v1alpha3"
	pb "istio.io/api/security/v1alpha1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/meshd/meshd/tests/integration/framework"
)

// workloadCert gets a key and certificate chain for ns/sa from meshd's CA,
// as istio-agent would, and writes them as the files Istio's proxyless
// bootstrap points grpc-go's file_watcher certificate provider at.
func workloadCert(t *testing.T, c *framework.Cluster, caAddr, ns, sa, dir string) tls.Certificate {
	t.Helper()
	ctx := context.Background()
	if _, err := c.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	tr, err := c.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"istio-ca"}, ExpirationSeconds: ptrTo[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := url.Parse(fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", ns, sa))
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(caAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var resp *pb.IstioCertificateResponse
	framework.Eventually(t, time.Minute, func() error {
		resp, err = pb.NewIstioCertificateServiceClient(conn).CreateCertificate(bearer(t, tr.Status.Token), &pb.IstioCertificateRequest{
			Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), ValidityDuration: 3600,
		})
		return err
	})
	chain := resp.CertChain
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	certPEM := strings.Join(chain[:len(chain)-1], "")
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cert-chain.pem", certPEM)
	write("key.pem", string(keyPEM))
	write("root-cert.pem", chain[len(chain)-1])
	cert, err := tls.X509KeyPair([]byte(certPEM), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestIstioMutualWithProxylessGRPC: a grpc-go client using xDS credentials
// talks mTLS to a backend when a DestinationRule says ISTIO_MUTUAL, with
// certificates from meshd's CA on both sides; the backend sees the client's
// SPIFFE identity.
func TestIstioMutualWithProxylessGRPC(t *testing.T) {
	c := framework.Start(t)
	m := startMeshd(t, c)
	ns := c.NewNamespace(t, "mtls")
	ctx := context.Background()

	serverDir, clientDir := t.TempDir(), t.TempDir()
	serverCert := workloadCert(t, c, m.Addr("grpc"), ns, "echo", serverDir)
	workloadCert(t, c, m.Addr("grpc"), ns, "client", clientDir)
	rootPEM, err := os.ReadFile(filepath.Join(serverDir, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)

	// The backend demands a client certificate from the mesh root and
	// remembers whose it was.
	var mu sync.Mutex
	var callers []string
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots,
	})), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		var in emptypb.Empty
		if err := stream.RecvMsg(&in); err != nil {
			return err
		}
		if p, ok := peer.FromContext(stream.Context()); ok {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 && len(ti.State.PeerCertificates[0].URIs) > 0 {
				mu.Lock()
				callers = append(callers, ti.State.PeerCertificates[0].URIs[0].String())
				mu.Unlock()
			}
		}
		return stream.SendMsg(wrapperspb.String("echo-mtls"))
	}))
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)

	e := &pilotEnv{t: t, cluster: c, ns: ns, xdsAddr: m.Addr("grpc"),
		backends: map[string]string{"192.0.2.1:7070": lis.Addr().String()}, names: map[string]string{}}
	e.createEcho("192.0.2.1")
	if _, err := c.Istio.NetworkingV1().DestinationRules(ns).Create(ctx, &networkingv1.DestinationRule{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: apinetworking.DestinationRule{Host: "echo", TrafficPolicy: &apinetworking.TrafficPolicy{
			Tls: &apinetworking.ClientTLSSettings{Mode: apinetworking.ClientTLSSettings_ISTIO_MUTUAL},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	bootstrap := fmt.Sprintf(`{
	  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
	  "node": {
	    "id": "sidecar~192.0.2.100~client.%s~%s.svc.cluster.local",
	    "metadata": {"GENERATOR": "grpc", "NAMESPACE": %q, "SERVICE_ACCOUNT": "client", "CLUSTER_ID": "Kubernetes"},
	    "locality": {}
	  },
	  "certificate_providers": {
	    "default": {"plugin_name": "file_watcher", "config": {
	      "certificate_file": %q, "private_key_file": %q, "ca_certificate_file": %q, "refresh_interval": "900s"}}
	  }
	}`, e.xdsAddr, ns, ns, ns, filepath.Join(clientDir, "cert-chain.pem"), filepath.Join(clientDir, "key.pem"), filepath.Join(clientDir, "root-cert.pem"))
	resolver, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///"+e.host()+":7070", grpc.WithResolvers(resolver),
		grpc.WithTransportCredentials(creds), grpc.WithContextDialer(e.dial))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })

	framework.Eventually(t, time.Minute, func() error {
		name, err := call(ctx, cc)
		if err == nil && name != "echo-mtls" {
			err = fmt.Errorf("answered by %q", name)
		}
		return err
	})
	mu.Lock()
	defer mu.Unlock()
	want := "spiffe://cluster.local/ns/" + ns + "/sa/client"
	if len(callers) == 0 || callers[len(callers)-1] != want {
		t.Fatalf("backend saw client identities %v, want %s", callers, want)
	}
}

//go:build integration

package integration

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	pb "istio.io/api/security/v1alpha1"

	"github.com/meshd/meshd/citadel/ca"
	"github.com/meshd/meshd/citadel/cli"
	"github.com/meshd/meshd/citadel/server"
	"github.com/meshd/meshd/citadel/servingcert"
	"github.com/meshd/meshd/citadel/spiffe"
	"github.com/meshd/meshd/citadel/token"
	"github.com/meshd/meshd/citadel/trustbundle"
	"github.com/meshd/meshd/pkg/source/kube"
	"github.com/meshd/meshd/tests/integration/framework"
)

// citadelEnv is meshd's CA wired as bootstrap wires it (kube source, CA over
// Secrets, CA server on a TLS gRPC listener with the CA-issued serving
// certificate, trust-bundle publisher), against a real API server.
type citadelEnv struct {
	t       *testing.T
	cluster *framework.Cluster
	meshNS  string // meshd's namespace: istio-ca-secret lives here
	ca      *ca.CA
	addr    string // TLS gRPC, 127.0.0.1:PORT
	cancel  context.CancelFunc
}

const citadelTrustedNode = "ztunnel"

// startCitadel runs one meshd CA "replica" in meshNS until the test ends or
// its cancel is called.
func startCitadel(t *testing.T, c *framework.Cluster, meshNS string) *citadelEnv {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("meshd", meshNS)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	src, err := kube.New(log.With("source", "kube"), c.Kube, c.Istio, meshNS)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = src.Start(ctx) }()
	st := src.Store()

	authority := ca.New(log.With("subsystem", "citadel"), ca.NewSecretStorage(meshNS, st, c.Kube), ca.Options{})
	srv, err := server.New(log.With("subsystem", "citadel"), authority, []server.Authenticator{
		server.CertAuthenticator(authority),
		server.KubeJWTAuthenticator(c.Kube, authority.TrustDomain(), "Kubernetes"),
	}, st, prometheus.NewRegistry(), server.Options{TrustedNodeAccounts: []string{meshNS + "/" + citadelTrustedNode}})
	if err != nil {
		t.Fatal(err)
	}
	serving := servingcert.New(log, authority, servingcert.Options{Namespace: meshNS, ExtraHosts: []string{"127.0.0.1"}})
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(serving.GRPCServerConfig())))
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	go func() { _ = authority.Start(ctx) }()
	go func() { _ = serving.Start(ctx) }()
	go func() { _ = trustbundle.New(log, st, c.Kube, authority).Start(ctx) }()

	select {
	case <-serving.Ready():
	case <-time.After(time.Minute):
		t.Fatal("CA and serving certificate not ready within a minute")
	}
	return &citadelEnv{t: t, cluster: c, meshNS: meshNS, ca: authority, addr: lis.Addr().String(), cancel: cancel}
}

// rootFromConfigMap waits for istio-ca-root-cert in ns and returns its root-cert.pem.
func (e *citadelEnv) rootFromConfigMap(ns string) []byte {
	e.t.Helper()
	var root []byte
	framework.Eventually(e.t, time.Minute, func() error {
		cm, err := e.cluster.Kube.CoreV1().ConfigMaps(ns).Get(context.Background(), trustbundle.ConfigMapName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data[trustbundle.DataKey] == "" {
			return fmt.Errorf("configmap %s/%s has no %s", ns, trustbundle.ConfigMapName, trustbundle.DataKey)
		}
		root = []byte(cm.Data[trustbundle.DataKey])
		return nil
	})
	return root
}

func (e *citadelEnv) serviceAccount(ns, name string) {
	e.t.Helper()
	_, err := e.cluster.Kube.CoreV1().ServiceAccounts(ns).Create(context.Background(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
}

// token asks the TokenRequest API for a token of ns/sa.
func (e *citadelEnv) token(ns, sa string, audiences []string, pod *corev1.Pod) string {
	e.t.Helper()
	req := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: ptr.To[int64](600)}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := e.cluster.Kube.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, req, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return tr.Status.Token
}

// client dials the CA over TLS, verifying meshd with root (from the
// ConfigMap, as a sidecar does).
func (e *citadelEnv) client(root []byte) pb.IstioCertificateServiceClient {
	e.t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(root) {
		e.t.Fatal("no root certificate")
	}
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return pb.NewIstioCertificateServiceClient(conn)
}

func citadelCSR(t *testing.T, uri string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func bearer(t *testing.T, tok string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok, "ClusterID", "Kubernetes")
}

// verifyChain checks a cert_chain (leaf first, root last) against root and
// returns the leaf.
func verifyChain(t *testing.T, chain []string, root []byte) *x509.Certificate {
	t.Helper()
	if len(chain) < 2 {
		t.Fatalf("cert_chain has %d entries", len(chain))
	}
	block, _ := pem.Decode([]byte(chain[0]))
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root)
	inter := x509.NewCertPool()
	for _, c := range chain[1 : len(chain)-1] {
		inter.AppendCertsFromPEM([]byte(c))
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("leaf does not verify against istio-ca-root-cert: %v", err)
	}
	return leaf
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Fatalf("got %v, want %v containing %q", err, code, msg)
	}
}

func TestCitadel(t *testing.T) {
	c := framework.Start(t)
	meshNS := c.NewNamespace(t, "meshd")
	e := startCitadel(t, c, meshNS)
	ns := c.NewNamespace(t, "shop")
	e.serviceAccount(ns, "cart")
	e.serviceAccount(ns, "admin")
	root := e.rootFromConfigMap(ns)
	cart := spiffe.ID{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: "cart"}
	client := e.client(root)

	t.Run("service account token gets its SPIFFE identity", func(t *testing.T) {
		resp, err := client.CreateCertificate(bearer(t, e.token(ns, "cart", []string{"istio-ca"}, nil)),
			&pb.IstioCertificateRequest{Csr: string(citadelCSR(t, cart.String())), ValidityDuration: 3600})
		if err != nil {
			t.Fatal(err)
		}
		leaf := verifyChain(t, resp.CertChain, root)
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != cart.String() {
			t.Fatalf("leaf URI SANs %v, want %s", leaf.URIs, cart)
		}
		if resp.CertChain[len(resp.CertChain)-1] != string(root) {
			t.Fatal("last cert_chain entry is not the published root")
		}
	})

	t.Run("another service account cannot get this identity", func(t *testing.T) {
		_, err := client.CreateCertificate(bearer(t, e.token(ns, "admin", []string{"istio-ca"}, nil)),
			&pb.IstioCertificateRequest{Csr: string(citadelCSR(t, cart.String()))})
		wantCode(t, err, codes.PermissionDenied, "CSR asks for identity "+cart.String()+" but the caller is spiffe://cluster.local/ns/"+ns+"/sa/admin")
	})

	t.Run("wrong audience refused", func(t *testing.T) {
		_, err := client.CreateCertificate(bearer(t, e.token(ns, "cart", []string{framework.ServiceAccountIssuer}, nil)),
			&pb.IstioCertificateRequest{Csr: string(citadelCSR(t, ""))})
		wantCode(t, err, codes.Unauthenticated, `is invalid for the target audiences ["istio-ca"]`)
	})

	t.Run("expired token refused", func(t *testing.T) {
		sa, err := c.Kube.CoreV1().ServiceAccounts(ns).Get(context.Background(), "cart", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tok := expiredToken(t, c.ServiceAccountKey, ns, sa)
		_, err = client.CreateCertificate(bearer(t, tok), &pb.IstioCertificateRequest{Csr: string(citadelCSR(t, ""))})
		wantCode(t, err, codes.Unauthenticated, "token refused by the API server: [invalid bearer token, service account token has expired]")
	})

	t.Run("impersonation refused for a workload", func(t *testing.T) {
		md, _ := structpb.NewStruct(map[string]any{server.ImpersonatedIdentity: "spiffe://cluster.local/ns/" + ns + "/sa/admin"})
		_, err := client.CreateCertificate(bearer(t, e.token(ns, "cart", []string{"istio-ca"}, nil)),
			&pb.IstioCertificateRequest{Csr: string(citadelCSR(t, "")), Metadata: md})
		wantCode(t, err, codes.PermissionDenied, "ImpersonatedIdentity refused: caller "+cart.String()+" is not a trusted node account")
	})

	t.Run("trusted node account impersonates a workload on its node only", func(t *testing.T) {
		e.serviceAccount(meshNS, citadelTrustedNode)
		node := e.pod(meshNS, "ztunnel-1", citadelTrustedNode, "node-1")
		e.pod(ns, "cart-1", "cart", "node-1")
		e.pod(ns, "admin-1", "admin", "node-2")
		tok := e.token(meshNS, citadelTrustedNode, []string{"istio-ca"}, node)
		impersonate := func(id string) (*pb.IstioCertificateResponse, error) {
			md, _ := structpb.NewStruct(map[string]any{server.ImpersonatedIdentity: id})
			return client.CreateCertificate(bearer(t, tok), &pb.IstioCertificateRequest{Csr: string(citadelCSR(t, "")), Metadata: md})
		}
		var resp *pb.IstioCertificateResponse
		framework.Eventually(t, 30*time.Second, func() error { // the store learns of the pods
			var err error
			resp, err = impersonate(cart.String())
			return err
		})
		if leaf := verifyChain(t, resp.CertChain, root); leaf.URIs[0].String() != cart.String() {
			t.Fatalf("impersonated certificate for %v", leaf.URIs)
		}
		_, err := impersonate("spiffe://cluster.local/ns/" + ns + "/sa/admin")
		wantCode(t, err, codes.PermissionDenied, "no pod of spiffe://cluster.local/ns/"+ns+"/sa/admin runs on node node-1")
	})

	t.Run("Istio pilot-agent gets a workload certificate", func(t *testing.T) {
		runPilotAgent(t, e.addr, e.token(ns, "cart", []string{"istio-ca"}, nil), ns, "cart", root)
	})

	t.Run("restart keeps the root", func(t *testing.T) {
		before := string(e.ca.RootsPEM())
		e.cancel()
		again := startCitadel(t, c, meshNS)
		if got := string(again.ca.RootsPEM()); got != before {
			t.Fatal("restarted CA has a different root")
		}
		sec, err := c.Kube.CoreV1().Secrets(meshNS).Get(context.Background(), ca.SelfSignedSecret, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sec.Type != ca.SecretType || string(sec.Data[ca.RootCertKey]) != before {
			t.Fatalf("istio-ca-secret: type %q, root-cert.pem matches: %v", sec.Type, string(sec.Data[ca.RootCertKey]) == before)
		}
		resp, err := again.client(root).CreateCertificate(bearer(t, e.token(ns, "cart", []string{"istio-ca"}, nil)),
			&pb.IstioCertificateRequest{Csr: string(citadelCSR(t, ""))})
		if err != nil {
			t.Fatal(err)
		}
		verifyChain(t, resp.CertChain, root)
	})
}

// TestCitadelFileMode runs the CA as file mode does: root in a directory,
// callers authenticated by tokens from meshd's own key (meshctl token), and
// Istio's pilot-agent as the client.
func TestCitadelFileMode(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	caDir := filepath.Join(dir, "ca")
	authority := ca.New(log, ca.NewDirStorage(caDir, ""), ca.Options{})
	key, err := token.LoadOrCreateKey(token.KeyPath(caDir))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(log, authority, []server.Authenticator{
		server.CertAuthenticator(authority),
		server.LocalJWTAuthenticator(token.NewVerifier(&key.PublicKey, nil), authority.TrustDomain()),
	}, nil, prometheus.NewRegistry(), server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	serving := servingcert.New(log, authority, servingcert.Options{Namespace: "istio-system", ExtraHosts: []string{"127.0.0.1"}})
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(serving.GRPCServerConfig())))
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	go func() { _ = authority.Start(ctx) }()
	go func() { _ = serving.Start(ctx) }()
	select {
	case <-serving.Ready():
	case <-time.After(time.Minute):
		t.Fatal("serving certificate not ready")
	}

	// The token as meshctl token prints it.
	var out strings.Builder
	cmd := cli.NewTokenCommand()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--namespace", "shop", "--service-account", "cart", "--ca-dir", caDir})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	runPilotAgent(t, lis.Addr().String(), strings.TrimSpace(out.String()), "shop", "cart", authority.RootsPEM())
}

func mustParseCerts(t *testing.T, pemBytes []byte) []*x509.Certificate {
	t.Helper()
	certs, err := ca.ParseCerts(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// pod creates a pod scheduled (by name) on node, as a kubelet-less cluster allows.
func (e *citadelEnv) pod(ns, name, sa, node string) *corev1.Pod {
	e.t.Helper()
	p, err := e.cluster.Kube.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{ServiceAccountName: sa, NodeName: node,
			Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// expiredToken signs, with the API server's service-account key, a token of
// sa that expired an hour ago: the TokenRequest API cannot issue one.
func expiredToken(t *testing.T, key *rsa.PrivateKey, ns string, sa *corev1.ServiceAccount) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{
		"iss": framework.ServiceAccountIssuer, "sub": "system:serviceaccount:" + ns + ":" + sa.Name,
		"aud": []string{"istio-ca"}, "iat": now.Add(-2 * time.Hour).Unix(), "nbf": now.Add(-2 * time.Hour).Unix(),
		"exp":           now.Add(-time.Hour).Unix(),
		"kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": sa.Name, "uid": string(sa.UID)}},
	}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// runPilotAgent runs Istio's own pilot-agent (Envoy disabled) in a working
// directory laid out like a pod, against meshd's CA, and checks the files it
// writes.
func runPilotAgent(t *testing.T, caAddr, token, ns, sa string, root []byte) {
	bin := filepath.Join(framework.ToolsDir(), "pilot-agent")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("pilot-agent not found in %s: run hack/build-tools.sh pilot-agent", framework.ToolsDir())
	}
	pod := t.TempDir()
	out := filepath.Join(pod, "out")
	files := map[string][]byte{
		"var/run/secrets/tokens/istio-token":  []byte(token),
		"var/run/secrets/istio/root-cert.pem": root,
		// Port 0 turns the status server off: it would listen on every interface.
		"etc/istio/pod/annotations": []byte(`status.sidecar.istio.io/port="0"` + "\n"),
	}
	for name, data := range files {
		path := filepath.Join(pod, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{"etc/istio/proxy", "var/run/secrets/workload-spiffe-uds", "var/lib/istio/data", "out"} {
		if err := os.MkdirAll(filepath.Join(pod, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	logFile, err := os.Create(filepath.Join(pod, "pilot-agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "proxy", "sidecar")
	cmd.Dir = pod
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = []string{
		"HOME=" + pod,
		"PATH=" + os.Getenv("PATH"),
		"DISABLE_ENVOY=true",
		"OUTPUT_CERTS=" + out,
		"CA_ADDR=" + caAddr,
		"JWT_POLICY=third-party-jwt",
		"POD_NAME=" + sa + "-agent",
		"POD_NAMESPACE=" + ns,
		"INSTANCE_IP=192.0.2.40",
		"SERVICE_ACCOUNT=" + sa,
		"ISTIO_META_CLUSTER_ID=Kubernetes",
		"TRUST_DOMAIN=cluster.local",
		// xDS goes to meshd's address too, never to a DNS name; with Envoy
		// disabled nothing dials it, but nothing may leave loopback either.
		`PROXY_CONFIG={"discoveryAddress":"` + caAddr + `"}`,
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("pilot-agent log:\n%s", b)
		}
	})

	framework.Eventually(t, 2*time.Minute, func() error {
		for _, f := range []string{"cert-chain.pem", "key.pem", "root-cert.pem"} {
			if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
				return fmt.Errorf("%s not written yet", f)
			}
		}
		return nil
	})
	chainPEM, _ := os.ReadFile(filepath.Join(out, "cert-chain.pem"))
	keyPEM, _ := os.ReadFile(filepath.Join(out, "key.pem"))
	rootPEM, _ := os.ReadFile(filepath.Join(out, "root-cert.pem"))
	if gotRoots, err := ca.ParseCerts(rootPEM); err != nil || !gotRoots[0].Equal(mustParseCerts(t, root)[0]) {
		t.Fatalf("pilot-agent's root-cert.pem is not meshd's root (err %v):\n%s", err, rootPEM)
	}
	certs, err := ca.ParseCerts(chainPEM)
	if err != nil {
		t.Fatal(err)
	}
	var chain []string
	for _, c := range certs {
		chain = append(chain, string(ca.EncodeCert(c)))
	}
	leaf := verifyChain(t, append(chain, string(root)), root)
	want := "spiffe://cluster.local/ns/" + ns + "/sa/" + sa
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
		t.Fatalf("pilot-agent's certificate has URI SANs %v, want %s", leaf.URIs, want)
	}
	if _, err := tls.X509KeyPair(chainPEM, keyPEM); err != nil {
		t.Fatalf("key.pem does not match cert-chain.pem: %v", err)
	}

	// The agent must listen on loopback only (or on unix sockets).
	ss, err := exec.Command("ss", "-Hlntup").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	for _, line := range strings.Split(string(ss), "\n") {
		if !strings.Contains(line, fmt.Sprintf("pid=%d,", cmd.Process.Pid)) {
			continue
		}
		f := strings.Fields(line)
		t.Logf("pilot-agent socket: %s", strings.Join(f[:min(5, len(f))], " "))
		if len(f) < 5 || !(strings.HasPrefix(f[4], "127.0.0.1:") || strings.HasPrefix(f[4], "[::1]:")) {
			t.Errorf("pilot-agent listens beyond loopback: %s", line)
		}
	}
}

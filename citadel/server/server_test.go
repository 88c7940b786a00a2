package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	pb "istio.io/api/security/v1alpha1"

	"github.com/meshd/meshd/citadel/ca"
	"github.com/meshd/meshd/citadel/spiffe"
	"github.com/meshd/meshd/citadel/token"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

const clusterID = "Kubernetes"

var (
	cart  = spiffe.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "cart"}
	admin = spiffe.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "admin"}
	ztun  = spiffe.ID{TrustDomain: "cluster.local", Namespace: "istio-system", ServiceAccount: "ztunnel"}
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// reviewedTokens are the tokens the fake API server knows: token -> status.
var reviewedTokens = map[string]authnv1.TokenReviewStatus{
	"cart-token": {Authenticated: true, Audiences: []string{Audience}, User: authnv1.UserInfo{
		Username: "system:serviceaccount:shop:cart", Groups: []string{"system:serviceaccounts", "system:authenticated"}}},
	"ztunnel-token": {Authenticated: true, Audiences: []string{Audience}, User: authnv1.UserInfo{
		Username: "system:serviceaccount:istio-system:ztunnel", Groups: []string{"system:serviceaccounts"},
		Extra: map[string]authnv1.ExtraValue{extraPodName: {"ztunnel-abc"}, extraPodUID: {"uid-1"}}}},
	"unbound-ztunnel-token": {Authenticated: true, User: authnv1.UserInfo{
		Username: "system:serviceaccount:istio-system:ztunnel", Groups: []string{"system:serviceaccounts"}}},
	"user-token": {Authenticated: true, User: authnv1.UserInfo{Username: "alice", Groups: []string{"system:authenticated"}}},
}

// fakeKube answers TokenReviews from reviewedTokens; unknown tokens and
// other audiences are refused as the API server refuses them.
func fakeKube() *fake.Clientset {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		st, ok := reviewedTokens[tr.Spec.Token]
		switch {
		case tr.Spec.Token == "wrong-audience":
			tr.Status = authnv1.TokenReviewStatus{}
		case !ok:
			tr.Status = authnv1.TokenReviewStatus{Error: "invalid bearer token, token lookup failed"}
		default:
			tr.Status = st
		}
		return true, tr, nil
	})
	return cs
}

type env struct {
	ca      *ca.CA
	reg     *prometheus.Registry
	key     *ecdsa.PrivateKey // local token key
	store   *store.Store
	addr    string // plaintext
	tlsAddr string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	c := ca.New(discard(), ca.NewDirStorage(t.TempDir(), ""), ca.Options{})
	if err := c.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	key, err := token.LoadOrCreateKey(filepath.Join(t.TempDir(), token.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{ca: c, reg: prometheus.NewRegistry(), key: key, store: store.NewMemory()}
	e.store.MarkSynced()
	srv, err := New(discard(), c, []Authenticator{
		CertAuthenticator(c),
		KubeJWTAuthenticator(fakeKube(), c.TrustDomain(), clusterID),
		LocalJWTAuthenticator(token.NewVerifier(&key.PublicKey, nil), c.TrustDomain()),
	}, e.store, e.reg, Options{TrustedNodeAccounts: []string{"istio-system/ztunnel"}})
	if err != nil {
		t.Fatal(err)
	}
	e.addr = serve(t, srv, nil)
	e.tlsAddr = serve(t, srv, e.serverTLS(t))
	return e
}

func serve(t testing.TB, srv *Server, tlsConf *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if tlsConf != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConf)))
	}
	g := grpc.NewServer(opts...)
	srv.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// serverTLS is a listener config asking for (not requiring) client certs.
func (e *env) serverTLS(t testing.TB) *tls.Config {
	key := ecKey(t)
	iss, err := e.ca.SignServing(csrFor(t, key), []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{iss.Leaf.Raw}, PrivateKey: key}},
		ClientAuth:   tls.RequestClientCert,
	}
}

func ecKey(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type csrOpt func(*x509.CertificateRequest)

func withURI(id string) csrOpt {
	return func(r *x509.CertificateRequest) {
		u, _ := url.Parse(id)
		r.URIs = append(r.URIs, u)
	}
}

func csrFor(t testing.TB, key crypto.Signer, opts ...csrOpt) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{"cluster.local"}}}
	for _, o := range opts {
		o(tmpl)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func dial(t testing.TB, addr string, creds credentials.TransportCredentials) pb.IstioCertificateServiceClient {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewIstioCertificateServiceClient(conn)
}

func withToken(tok string, kv ...string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), append([]string{"authorization", "Bearer " + tok}, kv...)...)
}

func (e *env) mint(t testing.TB, ns, sa string, aud []string, ttl time.Duration, now time.Time) string {
	t.Helper()
	tok, err := token.Mint(e.key, ns, sa, aud, ttl, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// leafOf checks that a response is leaf first, bundle last, verifying, and
// returns the leaf's SPIFFE ID.
func leafOf(t testing.TB, e *env, resp *pb.IstioCertificateResponse) string {
	t.Helper()
	chain := resp.GetCertChain()
	if len(chain) != 2 {
		t.Fatalf("cert_chain has %d entries, want leaf and root", len(chain))
	}
	if chain[1] != string(e.ca.RootsPEM()) {
		t.Fatal("last cert_chain entry is not the root bundle")
	}
	block, _ := pem.Decode([]byte(chain[0]))
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(chain[1]))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	if len(leaf.URIs) != 1 {
		t.Fatalf("leaf URIs %v", leaf.URIs)
	}
	return leaf.URIs[0].String()
}

func TestIssuesForKubernetesToken(t *testing.T) {
	e := newEnv(t)
	key := ecKey(t)
	resp, err := dial(t, e.addr, nil).CreateCertificate(withToken("cart-token", "ClusterID", clusterID),
		&pb.IstioCertificateRequest{Csr: string(csrFor(t, key, withURI(cart.String()))), ValidityDuration: 3600})
	if err != nil {
		t.Fatal(err)
	}
	if got := leafOf(t, e, resp); got != cart.String() {
		t.Fatalf("SAN %s, want %s", got, cart)
	}
}

func TestIssuesForLocalToken(t *testing.T) {
	e := newEnv(t)
	tok := e.mint(t, "shop", "cart", nil, time.Hour, time.Now())
	resp, err := dial(t, e.addr, nil).CreateCertificate(withToken(tok),
		&pb.IstioCertificateRequest{Csr: string(csrFor(t, ecKey(t)))})
	if err != nil {
		t.Fatal(err)
	}
	if got := leafOf(t, e, resp); got != cart.String() {
		t.Fatalf("SAN %s, want %s", got, cart)
	}
}

// issue gets a mesh certificate for id, as a workload's first CSR would.
func (e *env) issue(t testing.TB, id spiffe.ID) tls.Certificate {
	t.Helper()
	key := ecKey(t)
	iss, err := e.ca.SignWorkload(csrFor(t, key), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{iss.Leaf.Raw}, PrivateKey: key}
}

func (e *env) tlsClient(certs ...tls.Certificate) credentials.TransportCredentials {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(e.ca.RootsPEM())
	return credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: certs})
}

func TestRenewalWithMeshCertificate(t *testing.T) {
	e := newEnv(t)
	client := dial(t, e.tlsAddr, e.tlsClient(e.issue(t, cart)))
	resp, err := client.CreateCertificate(context.Background(),
		&pb.IstioCertificateRequest{Csr: string(csrFor(t, ecKey(t), withURI(cart.String())))})
	if err != nil {
		t.Fatal(err)
	}
	if got := leafOf(t, e, resp); got != cart.String() {
		t.Fatalf("SAN %s, want %s", got, cart)
	}
	// The certificate's identity, not the CSR, decides.
	_, err = client.CreateCertificate(context.Background(),
		&pb.IstioCertificateRequest{Csr: string(csrFor(t, ecKey(t), withURI(admin.String())))})
	wantStatus(t, err, codes.PermissionDenied, "CSR asks for identity "+admin.String()+" but the caller is "+cart.String())
}

func wantStatus(t testing.TB, err error, code codes.Code, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("request succeeded, want %v %q", code, msg)
	}
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), code, msg)
	}
}

func TestRefusals(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	good := string(csrFor(t, ecKey(t)))
	goodBlock, _ := pem.Decode([]byte(good))
	tampered := append([]byte(nil), goodBlock.Bytes...)
	tampered[len(tampered)-3] ^= 0xff
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	caExt, _ := asn1.Marshal(struct{ IsCA bool }{true})
	foreignKey, _ := token.LoadOrCreateKey(filepath.Join(t.TempDir(), "k.pem"))
	foreign, _ := token.Mint(foreignKey, "shop", "cart", nil, time.Hour, now)
	untrusted := e.issue(t, cart)
	// A certificate from another CA (same identity) is not a mesh certificate.
	otherCA := ca.New(discard(), ca.NewDirStorage(t.TempDir(), ""), ca.Options{})
	if err := otherCA.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	otherKey := ecKey(t)
	otherIss, _ := otherCA.SignWorkload(csrFor(t, otherKey), cart, time.Hour)
	alien := tls.Certificate{Certificate: [][]byte{otherIss.Leaf.Raw}, PrivateKey: otherKey}

	cartToken := e.mint(t, "shop", "cart", nil, time.Hour, now)
	imp := func(id string) *structpb.Struct {
		s, _ := structpb.NewStruct(map[string]any{ImpersonatedIdentity: id})
		return s
	}
	for name, tc := range map[string]struct {
		ctx   context.Context
		creds credentials.TransportCredentials
		req   *pb.IstioCertificateRequest
		code  codes.Code
		msg   string
	}{
		"no credential": {context.Background(), nil, &pb.IstioCertificateRequest{Csr: good},
			codes.Unauthenticated, "authentication failed: no credential"},
		"not bearer": {metadata.AppendToOutgoingContext(context.Background(), "authorization", "Basic abc"), nil,
			&pb.IstioCertificateRequest{Csr: good}, codes.Unauthenticated, `authorization header is not "Bearer TOKEN"`},
		"unknown kubernetes token": {withToken("forged"), nil, &pb.IstioCertificateRequest{Csr: good},
			codes.Unauthenticated, "token refused by the API server: invalid bearer token"},
		"wrong audience (API server)": {withToken("wrong-audience"), nil, &pb.IstioCertificateRequest{Csr: good},
			codes.Unauthenticated, "token refused by the API server: not authenticated"},
		"user, not service account": {withToken("user-token"), nil, &pb.IstioCertificateRequest{Csr: good},
			codes.Unauthenticated, `token of "alice" is not a service-account token`},
		"other cluster": {withToken("cart-token", "ClusterID", "east"), nil, &pb.IstioCertificateRequest{Csr: good},
			codes.Unauthenticated, `token from cluster "east" (ClusterID metadata), but this meshd serves cluster "Kubernetes"`},
		"expired local token": {withToken(e.mint(t, "shop", "cart", nil, time.Hour, now.Add(-2*time.Hour))), nil,
			&pb.IstioCertificateRequest{Csr: good}, codes.Unauthenticated, "token expired at"},
		"wrong audience (local)": {withToken(e.mint(t, "shop", "cart", []string{"kubernetes"}, time.Hour, now)), nil,
			&pb.IstioCertificateRequest{Csr: good}, codes.Unauthenticated, `do not include "istio-ca"`},
		"foreign token key": {withToken(foreign), nil, &pb.IstioCertificateRequest{Csr: good},
			codes.Unauthenticated, "token signature does not verify"},
		"certificate of another CA": {context.Background(), e.tlsClient(alien), &pb.IstioCertificateRequest{Csr: good},
			codes.Unauthenticated, "client certificate: x509: certificate signed by unknown authority"},
		"other identity in CSR": {withToken(cartToken), nil,
			&pb.IstioCertificateRequest{Csr: string(csrFor(t, ecKey(t), withURI(admin.String())))},
			codes.PermissionDenied, "CSR asks for identity " + admin.String() + " but the caller is " + cart.String()},
		"extra SANs": {withToken(cartToken), nil, &pb.IstioCertificateRequest{Csr: string(csrFor(t, ecKey(t), withURI(cart.String()),
			func(r *x509.CertificateRequest) { r.DNSNames = []string{"db.shop.svc"} }))},
			codes.PermissionDenied, "CSR has 1 DNS/IP/email SANs"},
		"CA:TRUE": {withToken(cartToken), nil, &pb.IstioCertificateRequest{Csr: string(csrFor(t, ecKey(t),
			func(r *x509.CertificateRequest) {
				r.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: caExt}}
			}))}, codes.PermissionDenied, "asks for a CA certificate"},
		"bad PEM": {withToken(cartToken), nil, &pb.IstioCertificateRequest{Csr: "not a csr"},
			codes.InvalidArgument, "CSR is not PEM"},
		"bad signature": {withToken(cartToken), nil, &pb.IstioCertificateRequest{Csr: string(pem.EncodeToMemory(
			&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}))}, codes.InvalidArgument, "CSR signature does not verify"},
		"weak RSA": {withToken(cartToken), nil, &pb.IstioCertificateRequest{Csr: string(csrFor(t, weak))},
			codes.InvalidArgument, "CSR has a 1024-bit RSA key"},
		"negative validity": {withToken(cartToken), nil, &pb.IstioCertificateRequest{Csr: good, ValidityDuration: -5},
			codes.InvalidArgument, "validity_duration -5: must not be negative"},
		"cert signer": {withToken(cartToken), nil, &pb.IstioCertificateRequest{Csr: good, Metadata: func() *structpb.Struct {
			s, _ := structpb.NewStruct(map[string]any{CertSigner: "kubernetes.io/kube-apiserver-client"})
			return s
		}()}, codes.InvalidArgument, `CertSigner "kubernetes.io/kube-apiserver-client"`},
		"impersonation by a workload": {withToken(cartToken), nil, &pb.IstioCertificateRequest{Csr: good, Metadata: imp(admin.String())},
			codes.PermissionDenied, "ImpersonatedIdentity refused: caller " + cart.String() + " is not a trusted node account"},
		"impersonation by a workload over mTLS": {context.Background(), e.tlsClient(untrusted), &pb.IstioCertificateRequest{Csr: good, Metadata: imp(admin.String())},
			codes.PermissionDenied, "is not a trusted node account"},
		"impersonation without pod binding": {withToken("unbound-ztunnel-token"), nil, &pb.IstioCertificateRequest{Csr: good, Metadata: imp(admin.String())},
			codes.PermissionDenied, "cannot tell which node caller " + ztun.String() + " runs on"},
		"impersonation of a bad identity": {withToken("ztunnel-token"), nil, &pb.IstioCertificateRequest{Csr: good, Metadata: imp("spiffe://cluster.local/admin")},
			codes.PermissionDenied, "path is not /ns/NAMESPACE/sa/SERVICE_ACCOUNT"},
		"impersonation of a workload on another node": {withToken("ztunnel-token"), nil, &pb.IstioCertificateRequest{Csr: good, Metadata: imp(admin.String())},
			codes.PermissionDenied, "no pod of " + admin.String() + " runs on node node-1"},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(tc.ctx, 10*time.Second)
			defer cancel()
			addr := e.addr
			if tc.creds != nil {
				addr = e.tlsAddr
			}
			e.addPods(t)
			_, err := dial(t, addr, tc.creds).CreateCertificate(ctx, tc.req)
			wantStatus(t, err, tc.code, tc.msg)
		})
	}
}

func pod(ns, name, sa, node, uid string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + uid)},
		Spec:       corev1.PodSpec{ServiceAccountName: sa, NodeName: node},
	}
}

// addPods puts ztunnel on node-1, cart on node-1 and admin on node-2.
func (e *env) addPods(t testing.TB) {
	for _, p := range []*corev1.Pod{
		pod("istio-system", "ztunnel-abc", "ztunnel", "node-1", "1"),
		pod("shop", "cart-1", "cart", "node-1", "2"),
		pod("shop", "admin-1", "admin", "node-2", "3"),
	} {
		if err := e.store.Indexer(schema.Pod).Add(p); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTrustedNodeImpersonatesWorkloadOnItsNode(t *testing.T) {
	e := newEnv(t)
	e.addPods(t)
	md, _ := structpb.NewStruct(map[string]any{ImpersonatedIdentity: cart.String()})
	resp, err := dial(t, e.addr, nil).CreateCertificate(withToken("ztunnel-token"),
		&pb.IstioCertificateRequest{Csr: string(csrFor(t, ecKey(t))), Metadata: md})
	if err != nil {
		t.Fatal(err)
	}
	if got := leafOf(t, e, resp); got != cart.String() {
		t.Fatalf("SAN %s, want %s", got, cart)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	client := dial(t, e.addr, nil)
	tok := e.mint(t, "shop", "cart", nil, time.Hour, time.Now())
	good := string(csrFor(t, ecKey(t)))
	_, _ = client.CreateCertificate(withToken(tok), &pb.IstioCertificateRequest{Csr: good})
	_, _ = client.CreateCertificate(context.Background(), &pb.IstioCertificateRequest{Csr: good})
	_, _ = client.CreateCertificate(withToken(tok), &pb.IstioCertificateRequest{Csr: "junk"})
	expected := `
# HELP citadel_server_authentication_failure_count The number of authentication failures.
# TYPE citadel_server_authentication_failure_count counter
citadel_server_authentication_failure_count 1
# HELP citadel_server_csr_count The number of CSRs received by Citadel server.
# TYPE citadel_server_csr_count counter
citadel_server_csr_count 3
# HELP citadel_server_csr_sign_err_count The number of errors occurred when signing the CSR.
# TYPE citadel_server_csr_sign_err_count counter
citadel_server_csr_sign_err_count{error="CSR_ERROR"} 1
# HELP citadel_server_success_cert_issuance_count The number of certificates issuances that have succeeded.
# TYPE citadel_server_success_cert_issuance_count counter
citadel_server_success_cert_issuance_count 1
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(expected),
		"citadel_server_csr_count", "citadel_server_success_cert_issuance_count",
		"citadel_server_authentication_failure_count", "citadel_server_csr_sign_err_count"); err != nil {
		t.Fatal(err)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "citadel_server_root_cert_expiry_timestamp" {
			if got, want := int64(mf.GetMetric()[0].GetGauge().GetValue()), e.ca.Roots()[0].NotAfter.Unix(); got != want {
				t.Fatalf("root expiry gauge %d, want %d", got, want)
			}
			return
		}
	}
	t.Fatal("citadel_server_root_cert_expiry_timestamp not exported")
}

func TestNotReady(t *testing.T) {
	c := ca.New(discard(), ca.NewDirStorage(t.TempDir(), ""), ca.Options{})
	key, _ := token.LoadOrCreateKey(filepath.Join(t.TempDir(), "k.pem"))
	srv, err := New(discard(), c, []Authenticator{LocalJWTAuthenticator(token.NewVerifier(&key.PublicKey, nil), "cluster.local")},
		nil, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := token.Mint(key, "shop", "cart", nil, time.Hour, time.Now())
	_, err = dial(t, serve(t, srv, nil), nil).CreateCertificate(withToken(tok),
		&pb.IstioCertificateRequest{Csr: string(csrFor(t, ecKey(t)))})
	wantStatus(t, err, codes.Unavailable, "CA not ready")
}

func TestBadTrustedNodeAccounts(t *testing.T) {
	_, err := New(discard(), nil, nil, nil, nil, Options{TrustedNodeAccounts: []string{"ztunnel", "a/b/c"}})
	if err == nil || !strings.Contains(err.Error(), `trusted node account 0 "ztunnel"`) || !strings.Contains(err.Error(), `trusted node account 1 "a/b/c"`) {
		t.Fatalf("err = %v", err)
	}
}

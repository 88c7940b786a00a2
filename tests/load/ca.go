package load

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	pb "istio.io/api/security/v1alpha1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// serverName is the name both control planes' serving certificates carry,
// the one sidecars dial (istiod.istio-system.svc).
const serverName = "istiod.istio-system.svc"

// workloadAccount is the service account the CSR storm's workloads run as.
const workloadAccount = "meshload"

// workloadTokens returns n distinct tokens of ns/meshload with audience
// istio-ca, the credential a starting sidecar presents to the CA, creating
// the account if needed. A storm is many new workloads, so every CSR
// carries a token of its own: a control plane cannot answer from a cache
// of earlier reviews.
func workloadTokens(ctx context.Context, kc kubernetes.Interface, ns string, n int) ([]string, error) {
	_, err := kc.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: workloadAccount, Labels: labels(workloadAccount)}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create serviceaccount %s/%s: %w", ns, workloadAccount, err)
	}
	tokens := make([]string, n)
	errs := make([]error, 16)
	var wg sync.WaitGroup
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n && errs[w] == nil; i += len(errs) {
				tr, err := kc.CoreV1().ServiceAccounts(ns).CreateToken(ctx, workloadAccount, &authnv1.TokenRequest{
					Spec: authnv1.TokenRequestSpec{Audiences: []string{"istio-ca"}, ExpirationSeconds: ptr.To[int64](3600)},
				}, metav1.CreateOptions{})
				if err != nil {
					errs[w] = fmt.Errorf("token for %s/%s: %w", ns, workloadAccount, err)
					continue
				}
				tokens[i] = tr.Status.Token
			}
		}()
	}
	wg.Wait()
	return tokens, errors.Join(errs...)
}

// meshRoot returns the root certificate the control plane publishes in
// ConfigMap istio-ca-root-cert of ns, once it verifies the control plane's
// serving certificate at addr: right after a switch of target the ConfigMap
// may still hold the previous control plane's root.
func meshRoot(ctx context.Context, kc kubernetes.Interface, ns, addr string, d time.Duration) (*x509.CertPool, error) {
	var last error
	var root *x509.CertPool
	ok := waitFor(ctx, nil, "", d, 1, func() int {
		cm, err := kc.CoreV1().ConfigMaps(ns).Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
		if err != nil {
			last = fmt.Errorf("configmap %s/istio-ca-root-cert: %w", ns, err)
			return 0
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(cm.Data["root-cert.pem"])) {
			last = fmt.Errorf("configmap %s/istio-ca-root-cert: no certificate in root-cert.pem", ns)
			return 0
		}
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: serverName})
		if err != nil {
			last = fmt.Errorf("verify %s with the root in %s/istio-ca-root-cert: %w", addr, ns, err)
			return 0
		}
		c.Close()
		last, root = nil, pool
		return 1
	})
	if !ok {
		if last == nil {
			last = ctx.Err()
		}
		return nil, last
	}
	return root, nil
}

// csr is one pre-built certificate signing request: the storm measures the
// CA, so keys are generated before it starts.
type csr struct {
	name string // scenario name
	pem  []byte
}

func newCSR(keyType, trustDomain, ns string) (csr, error) {
	var key crypto.Signer
	var err error
	switch keyType {
	case "ecdsa":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return csr{}, fmt.Errorf("key type %q: want ecdsa or rsa", keyType)
	}
	if err != nil {
		return csr{}, err
	}
	id := &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/ns/" + ns + "/sa/" + workloadAccount}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
	if err != nil {
		return csr{}, err
	}
	name := map[string]string{"ecdsa": "csr ecdsa p256", "rsa": "csr rsa 2048"}[keyType]
	return csr{name: name, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})}, nil
}

// csrStorm sends len(tokens) copies of req to the CA at addr from
// concurrency workloads at once, each on a TLS connection of its own, the
// i-th presenting tokens[i], and returns the latency of each signed
// certificate.
func csrStorm(ctx context.Context, addr string, pool *x509.CertPool, tokens []string, req csr, concurrency int) ([]time.Duration, error) {
	total := len(tokens)
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: serverName})
	conns := make([]*grpc.ClientConn, concurrency)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range conns {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return nil, fmt.Errorf("dial CA %s: %w", addr, err)
		}
		conns[i] = c
	}
	lat := make([]time.Duration, total)
	errs := make([]error, concurrency)
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := pb.NewIstioCertificateServiceClient(conns[w])
			for i := w; i < total; i += concurrency {
				t0 := time.Now()
				rctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tokens[i], "ClusterID", "Kubernetes")
				rctx, cancel := context.WithTimeout(rctx, 30*time.Second)
				resp, err := client.CreateCertificate(rctx, &pb.IstioCertificateRequest{Csr: string(req.pem), ValidityDuration: 3600})
				cancel()
				if err == nil && len(resp.GetCertChain()) == 0 {
					err = errors.New("empty certificate chain")
				}
				if err != nil {
					if errs[w] == nil {
						errs[w] = err
					}
					lat[i] = -1
					continue
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	ok := lat[:0]
	for _, d := range lat {
		if d >= 0 {
			ok = append(ok, d)
		}
	}
	return ok, errors.Join(errs...)
}

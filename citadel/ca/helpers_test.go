package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/meshd/meshd/citadel/spiffe"
)

var testID = spiffe.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "cart"}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// csrSpec describes a CSR a test wants.
type csrSpec struct {
	key  crypto.Signer
	uris []string
	dns  []string
	isCA bool
}

func ecKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func makeCSR(t testing.TB, s csrSpec) []byte {
	t.Helper()
	if s.key == nil {
		s.key = ecKey(t)
	}
	tmpl := &x509.CertificateRequest{DNSNames: s.dns}
	for _, u := range s.uris {
		p, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, p)
	}
	if s.isCA {
		v, err := asn1.Marshal(struct{ IsCA bool }{true})
		if err != nil {
			t.Fatal(err)
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidBasicConstraints, Critical: true, Value: v})
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, s.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// newTestCA returns a ready CA storing its root in a temporary directory.
func newTestCA(t testing.TB, opts Options) (*CA, *DirStorage) {
	t.Helper()
	st := NewDirStorage(t.TempDir(), "")
	c := New(discard(), st, opts)
	if err := c.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, st
}

// verify checks a chain (leaf first, bundle last) against its own bundle,
// as a workload would.
func verify(t testing.TB, chain []string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	leaf, err := ParseCerts([]byte(chain[0]))
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1 : len(chain)-1] {
		inter.AppendCertsFromPEM([]byte(c))
	}
	if _, err := leaf[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Fatalf("leaf does not verify: %v", err)
	}
	return leaf[0]
}

func poolOf(t testing.TB, pemBytes string) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM([]byte(pemBytes)) {
		t.Fatal("no certificates in bundle")
	}
	return p
}

// makeCA builds a CA certificate signed by parent (self-signed when nil).
func makeCA(t testing.TB, name string, parent *x509.Certificate, parentKey crypto.Signer, ttl time.Duration) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := ecKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(ttl),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func rsaKey(t testing.TB, bits int) crypto.Signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

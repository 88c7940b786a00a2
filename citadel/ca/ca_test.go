package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSignWorkloadCertificate(t *testing.T) {
	c, _ := newTestCA(t, Options{})
	iss, err := c.SignWorkload(makeCSR(t, csrSpec{uris: []string{testID.String()}}), testID, 0)
	if err != nil {
		t.Fatal(err)
	}
	chain := iss.CertChain()
	if len(chain) != 2 {
		t.Fatalf("chain has %d entries, want leaf + root", len(chain))
	}
	if chain[1] != string(c.RootsPEM()) {
		t.Fatal("last chain entry is not the trust bundle")
	}
	leaf := verify(t, chain, c.RootPool())
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != testID.String() {
		t.Fatalf("URI SANs = %v, want [%s]", leaf.URIs, testID)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Fatalf("unexpected SANs: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if leaf.IsCA {
		t.Fatal("workload certificate is a CA")
	}
	if want := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment; leaf.KeyUsage != want {
		t.Fatalf("key usage = %v, want %v", leaf.KeyUsage, want)
	}
	eku := map[x509.ExtKeyUsage]bool{}
	for _, u := range leaf.ExtKeyUsage {
		eku[u] = true
	}
	if !eku[x509.ExtKeyUsageClientAuth] || !eku[x509.ExtKeyUsageServerAuth] || len(eku) != 2 {
		t.Fatalf("ext key usage = %v, want client+server auth", leaf.ExtKeyUsage)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 24*time.Hour || life > 24*time.Hour+2*clockSkew {
		t.Fatalf("default lifetime = %s, want about 24h", life)
	}
	root := c.Roots()[0]
	if !root.IsCA || root.NotAfter.Sub(root.NotBefore) < 10*365*24*time.Hour {
		t.Fatalf("root: CA=%v lifetime %s, want a 10-year CA", root.IsCA, root.NotAfter.Sub(root.NotBefore))
	}
	if _, ok := root.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatalf("default root key is %T, want ECDSA", root.PublicKey)
	}
}

func TestSignWithoutSANSetsCallerIdentity(t *testing.T) {
	c, _ := newTestCA(t, Options{})
	iss, err := c.SignWorkload(makeCSR(t, csrSpec{}), testID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := iss.Leaf.URIs; len(got) != 1 || got[0].String() != testID.String() {
		t.Fatalf("URI SANs = %v, want [%s]", got, testID)
	}
}

func TestTTL(t *testing.T) {
	c, _ := newTestCA(t, Options{MaxTTL: 48 * time.Hour})
	csr := makeCSR(t, csrSpec{})
	for name, tc := range map[string]struct{ ask, want time.Duration }{
		"asked":  {time.Hour, time.Hour},
		"capped": {1000 * time.Hour, 48 * time.Hour},
	} {
		iss, err := c.SignWorkload(csr, testID, tc.ask)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if life := iss.Leaf.NotAfter.Sub(iss.Leaf.NotBefore) - clockSkew; life < tc.want-time.Second || life > tc.want+time.Second {
			t.Errorf("%s: lifetime %s, want %s", name, life, tc.want)
		}
	}
	_, err := c.SignWorkload(csr, testID, -time.Second)
	if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), "negative validity") {
		t.Fatalf("negative TTL: err = %v", err)
	}
}

func TestCSRRefusals(t *testing.T) {
	c, _ := newTestCA(t, Options{})
	good := makeCSR(t, csrSpec{})
	block, _ := pem.Decode(good)
	tampered := append([]byte(nil), block.Bytes...)
	tampered[len(tampered)-5] ^= 0xff // inside the signature
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	other := testID
	other.ServiceAccount = "admin"

	for name, tc := range map[string]struct {
		csr  []byte
		kind error
		msg  string
	}{
		"not PEM":        {[]byte("hello"), ErrInvalidRequest, "CSR is not PEM"},
		"wrong block":    {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}), ErrInvalidRequest, `PEM block is "CERTIFICATE"`},
		"garbage DER":    {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1, 2, 3}}), ErrInvalidRequest, "parsing CSR"},
		"bad signature":  {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}), ErrInvalidRequest, "signature does not verify"},
		"RSA 1024":       {makeCSR(t, csrSpec{key: rsaKey(t, 1024)}), ErrInvalidRequest, "1024-bit RSA key"},
		"ECDSA P-521":    {makeCSR(t, csrSpec{key: p521}), ErrInvalidRequest, "ECDSA key on P-521"},
		"Ed25519":        {makeCSR(t, csrSpec{key: edKey}), ErrInvalidRequest, "key type ed25519.PublicKey is not accepted"},
		"other identity": {makeCSR(t, csrSpec{uris: []string{other.String()}}), ErrNotPermitted, "asks for identity " + other.String() + " but the caller is " + testID.String()},
		"extra DNS SAN":  {makeCSR(t, csrSpec{uris: []string{testID.String()}, dns: []string{"evil.example"}}), ErrNotPermitted, "1 DNS/IP/email SANs"},
		"two URIs":       {makeCSR(t, csrSpec{uris: []string{testID.String(), other.String()}}), ErrNotPermitted, "2 URI SANs"},
		"CA:TRUE":        {makeCSR(t, csrSpec{isCA: true}), ErrNotPermitted, "asks for a CA certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			iss, err := c.SignWorkload(tc.csr, testID, 0)
			if err == nil {
				t.Fatalf("signed %v, want refusal", iss.Leaf.URIs)
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("error %q is not %v", err, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}

func TestAcceptedKeys(t *testing.T) {
	c, _ := newTestCA(t, Options{})
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, csr := range map[string][]byte{
		"RSA 2048":    makeCSR(t, csrSpec{key: rsaKey(t, 2048)}),
		"ECDSA P-256": makeCSR(t, csrSpec{}),
		"ECDSA P-384": makeCSR(t, csrSpec{key: p384}),
	} {
		if _, err := c.SignWorkload(csr, testID, 0); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestOtherTrustDomainRefused(t *testing.T) {
	c, _ := newTestCA(t, Options{TrustDomain: "corp.example"})
	_, err := c.SignWorkload(makeCSR(t, csrSpec{}), testID, 0)
	if !errors.Is(err, ErrNotPermitted) || !strings.Contains(err.Error(), "outside trust domain corp.example") {
		t.Fatalf("err = %v", err)
	}
}

func TestRSARoot(t *testing.T) {
	c, _ := newTestCA(t, Options{KeyAlgorithm: RSA})
	if _, ok := c.Roots()[0].PublicKey.(interface{ Size() int }); !ok {
		t.Fatalf("root key is %T", c.Roots()[0].PublicKey)
	}
	iss, err := c.SignWorkload(makeCSR(t, csrSpec{}), testID, 0)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, iss.CertChain(), c.RootPool())
	if iss.Leaf.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Fatalf("signature algorithm %v", iss.Leaf.SignatureAlgorithm)
	}
}

func TestRestartKeepsRoot(t *testing.T) {
	dir := t.TempDir()
	first := New(discard(), NewDirStorage(dir, ""), Options{})
	if err := first.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := New(discard(), NewDirStorage(dir, ""), Options{})
	if err := second.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if string(first.RootsPEM()) != string(second.RootsPEM()) {
		t.Fatal("restarted CA made a new root")
	}
	if fi, err := os.Stat(filepath.Join(dir, CAKeyKey)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, fi.Mode())
	}
}

func TestNotReady(t *testing.T) {
	c := New(discard(), NewDirStorage(t.TempDir(), ""), Options{})
	if _, err := c.SignWorkload(makeCSR(t, csrSpec{}), testID, 0); !errors.Is(err, ErrNotReady) {
		t.Fatalf("err = %v, want ErrNotReady", err)
	}
}

func TestRotationKeepsOldRoot(t *testing.T) {
	c, st := newTestCA(t, Options{})
	oldLeaf, err := c.SignWorkload(makeCSR(t, csrSpec{}), testID, 0)
	if err != nil {
		t.Fatal(err)
	}
	oldRoot := c.Roots()[0]
	changed := c.Changed()
	if err := c.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed not signalled on rotation")
	}
	roots := c.Roots()
	if len(roots) != 2 || roots[0].Equal(oldRoot) || !roots[1].Equal(oldRoot) {
		t.Fatalf("bundle after rotation: %d roots, want new then old", len(roots))
	}
	verify(t, oldLeaf.CertChain(), c.RootPool()) // old workloads keep working
	newLeaf, err := c.SignWorkload(makeCSR(t, csrSpec{}), testID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := newLeaf.Leaf.CheckSignatureFrom(roots[0]); err != nil {
		t.Fatalf("new leaf not signed by the new root: %v", err)
	}
	verify(t, newLeaf.CertChain(), poolOf(t, oldLeaf.RootsPEM+newLeaf.RootsPEM))

	// A restart loads the rotated bundle.
	again := New(discard(), NewDirStorage(st.Dir, ""), Options{})
	if err := again.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if string(again.RootsPEM()) != string(c.RootsPEM()) {
		t.Fatal("rotated bundle not persisted")
	}
}

func TestAutomaticRotationNearExpiry(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	c, _ := newTestCA(t, Options{RootTTL: 100 * time.Hour, Now: func() time.Time { return clock() }})
	first := c.Roots()[0]
	if err := c.Sync(context.Background()); err != nil || !c.Roots()[0].Equal(first) {
		t.Fatalf("young root rotated (err %v)", err)
	}
	later := now.Add(85 * time.Hour) // 15% of the lifetime left
	clock = func() time.Time { return later }
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.Roots()[0].Equal(first) || len(c.Roots()) != 2 {
		t.Fatalf("root not rotated near expiry: %d roots", len(c.Roots()))
	}
	// Once the old root expires it leaves the bundle.
	expired := now.Add(101 * time.Hour)
	clock = func() time.Time { return expired }
	again := New(discard(), c.storage, Options{RootTTL: 100 * time.Hour, Now: clock})
	if err := again.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(again.Roots()) != 1 {
		t.Fatalf("expired root still trusted: %d roots", len(again.Roots()))
	}
}

func TestSignServing(t *testing.T) {
	c, _ := newTestCA(t, Options{})
	iss, err := c.SignServing(makeCSR(t, csrSpec{}), []string{"istiod.istio-system.svc", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(iss.Leaf.DNSNames) != 1 || iss.Leaf.DNSNames[0] != "istiod.istio-system.svc" ||
		len(iss.Leaf.IPAddresses) != 1 || iss.Leaf.IPAddresses[0].String() != "127.0.0.1" || len(iss.Leaf.URIs) != 0 {
		t.Fatalf("SANs: %v %v %v", iss.Leaf.DNSNames, iss.Leaf.IPAddresses, iss.Leaf.URIs)
	}
	if _, err := iss.Leaf.Verify(x509.VerifyOptions{Roots: c.RootPool(), DNSName: "istiod.istio-system.svc"}); err != nil {
		t.Fatal(err)
	}
}

package ca

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/hashicorp/go-multierror"
)

// File and Secret data keys, as Istio names them in both cacerts and
// istio-ca-secret.
const (
	CACertKey    = "ca-cert.pem"
	CAKeyKey     = "ca-key.pem"
	CertChainKey = "cert-chain.pem"
	RootCertKey  = "root-cert.pem"
)

// Material is a CA as it is stored: the PEM files of Istio's cacerts and
// istio-ca-secret.
type Material struct {
	// CertPEM is the signing certificate (ca-cert.pem).
	CertPEM []byte
	// KeyPEM is its private key (ca-key.pem).
	KeyPEM []byte
	// ChainPEM is the chain from the signing certificate towards the root
	// (cert-chain.pem); empty when the signing certificate is the root.
	ChainPEM []byte
	// RootPEM is the trust bundle (root-cert.pem), newest root first; empty
	// means the signing certificate alone.
	RootPEM []byte
	// Plugin is true for an operator's plug-in CA (cacerts), which meshd
	// never writes or rotates.
	Plugin bool
	// Source names where the material was read, for messages.
	Source string
	// Version is the storage's opaque revision, for optimistic updates.
	Version string
}

// sameContent reports whether two materials hold the same CA.
func (m *Material) sameContent(o *Material) bool {
	return m != nil && o != nil && m.Plugin == o.Plugin &&
		bytes.Equal(m.CertPEM, o.CertPEM) && bytes.Equal(m.KeyPEM, o.KeyPEM) &&
		bytes.Equal(m.ChainPEM, o.ChainPEM) && bytes.Equal(m.RootPEM, o.RootPEM)
}

// authority is a parsed, checked Material: what signing needs.
type authority struct {
	material *Material
	cert     *x509.Certificate
	key      crypto.Signer
	// chain holds the signing certificate and intermediates up to (not
	// including) a root, one PEM each; empty when cert is a root.
	chain []string
	roots []*x509.Certificate
	// rootsPEM is the whole trust bundle, newest root first.
	rootsPEM string
	pool     *x509.CertPool
}

// parseMaterial checks a Material and builds the authority from it. Every
// problem is reported at once, each naming the file it is about.
func parseMaterial(m *Material, now time.Time) (*authority, error) {
	var errs *multierror.Error
	fail := func(key, format string, args ...any) {
		errs = multierror.Append(errs, fmt.Errorf("%s: %s: %s", m.Source, key, fmt.Sprintf(format, args...)))
	}
	a := &authority{material: m, pool: x509.NewCertPool()}

	certs, err := ParseCerts(m.CertPEM)
	switch {
	case err != nil:
		fail(CACertKey, "%v", err)
	case len(certs) != 1:
		fail(CACertKey, "holds %d certificates, want exactly one", len(certs))
	default:
		a.cert = certs[0]
		if !a.cert.IsCA || a.cert.KeyUsage&x509.KeyUsageCertSign == 0 {
			fail(CACertKey, "is not a CA certificate (needs CA:TRUE and keyCertSign)")
		}
		if now.After(a.cert.NotAfter) {
			fail(CACertKey, "expired at %s", a.cert.NotAfter.UTC().Format(time.RFC3339))
		}
	}

	if key, err := ParseKey(m.KeyPEM); err != nil {
		fail(CAKeyKey, "%v", err)
	} else {
		a.key = key
		if a.cert != nil && !samePublicKey(key, a.cert) {
			fail(CAKeyKey, "does not belong to the certificate in %s", CACertKey)
		}
	}

	rootPEM := m.RootPEM
	if len(bytes.TrimSpace(rootPEM)) == 0 {
		rootPEM = m.CertPEM
	}
	if roots, err := ParseCerts(rootPEM); err != nil {
		fail(RootCertKey, "%v", err)
	} else {
		var bundle bytes.Buffer
		for i, r := range roots {
			if !r.IsCA {
				fail(RootCertKey, "certificate %d is not a CA", i+1)
				continue
			}
			// Roots that have expired verify nothing; drop them rather
			// than refuse the bundle, since rotation leaves them behind.
			if now.After(r.NotAfter) && i > 0 {
				continue
			}
			a.roots = append(a.roots, r)
			a.pool.AddCert(r)
			bundle.Write(EncodeCert(r))
		}
		a.rootsPEM = bundle.String()
	}

	if errs.ErrorOrNil() != nil {
		return nil, errs
	}

	// The chain: cert-chain.pem, less anything that is a root in the bundle.
	isRoot := func(c *x509.Certificate) bool {
		for _, r := range a.roots {
			if r.Equal(c) {
				return true
			}
		}
		return false
	}
	inter := x509.NewCertPool()
	if !isRoot(a.cert) {
		a.chain = append(a.chain, string(EncodeCert(a.cert)))
		if len(bytes.TrimSpace(m.ChainPEM)) > 0 {
			chain, err := ParseCerts(m.ChainPEM)
			if err != nil {
				fail(CertChainKey, "%v", err)
			}
			for _, c := range chain {
				if c.Equal(a.cert) || isRoot(c) || c.CheckSignatureFrom(c) == nil {
					continue
				}
				a.chain = append(a.chain, string(EncodeCert(c)))
				inter.AddCert(c)
			}
		}
	}
	// The signing certificate must lead to a root of the bundle, or every
	// workload certificate it signs would be useless.
	if _, err := a.cert.Verify(x509.VerifyOptions{
		Roots: a.pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		fail(CACertKey, "does not chain to %s through %s: %v", RootCertKey, CertChainKey, err)
	}
	if errs.ErrorOrNil() != nil {
		return nil, errs
	}
	return a, nil
}

package ca

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"

	"github.com/cloudflare/cfssl/signer"
)

// newSelfSigned makes a root CA: a fresh key and a self-signed certificate
// valid for ttl, named after the trust domain as Istio names its root.
func newSelfSigned(trustDomain string, alg KeyAlgorithm, bits int, ttl time.Duration, now time.Time) (*Material, error) {
	key, err := GenerateKey(alg, bits)
	if err != nil {
		return nil, fmt.Errorf("creating root key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159))
	if err != nil {
		return nil, fmt.Errorf("creating root serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{trustDomain}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		PublicKey:             key.Public(),
	}
	if tmpl.SubjectKeyId, err = signer.ComputeSKI(tmpl); err != nil {
		return nil, fmt.Errorf("creating root key id: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("signing root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing new root: %w", err)
	}
	keyPEM, err := EncodeKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := EncodeCert(cert)
	return &Material{CertPEM: certPEM, KeyPEM: keyPEM, RootPEM: certPEM}, nil
}

package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/cloudflare/cfssl/helpers"
)

// KeyAlgorithm names the kind of key a new root is made with.
type KeyAlgorithm string

// The key algorithms a self-signed root can use.
const (
	// ECDSA is ECDSA on P-256, the default.
	ECDSA KeyAlgorithm = "ECDSA"
	// RSA is RSA with Options.RSAKeyBits bits.
	RSA KeyAlgorithm = "RSA"
)

// GenerateKey makes a new private key. bits is used for RSA only.
func GenerateKey(alg KeyAlgorithm, bits int) (crypto.Signer, error) {
	switch alg {
	case ECDSA, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA:
		if bits < 2048 {
			return nil, fmt.Errorf("rsa key size %d: must be at least 2048", bits)
		}
		return rsa.GenerateKey(rand.Reader, bits)
	}
	return nil, fmt.Errorf("key algorithm %q: must be %s or %s", alg, ECDSA, RSA)
}

// EncodeKey renders a private key as a PKCS#8 PEM block.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey reads a PEM private key in any of the encodings Istio's cacerts
// use (PKCS#1, SEC 1, PKCS#8).
func ParseKey(pemBytes []byte) (crypto.Signer, error) {
	return helpers.ParsePrivateKeyPEM(pemBytes)
}

// EncodeCert renders one certificate as a PEM block.
func EncodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// ParseCerts reads every CERTIFICATE block of a PEM bundle, refusing other
// block types and trailing garbage so that a mangled file is noticed.
func ParseCerts(pemBytes []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no PEM certificate found")
	}
	for _, b := range rest {
		if b != ' ' && b != '\n' && b != '\r' && b != '\t' {
			return nil, fmt.Errorf("data after the last PEM certificate")
		}
	}
	return out, nil
}

// samePublicKey reports whether a private key belongs to a certificate.
func samePublicKey(key crypto.Signer, cert *x509.Certificate) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	return ok && pub.Equal(cert.PublicKey)
}

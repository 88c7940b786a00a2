package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/meshd/meshd/citadel/spiffe"
)

// Error kinds callers map to their own status codes (gRPC codes in the
// server); test with errors.Is.
var (
	// ErrInvalidRequest: the request is malformed (bad PEM, bad signature,
	// unsupported key, bad TTL).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrNotPermitted: the request is well formed but asks for something the
	// caller may not have (another identity, extra names, a CA certificate).
	ErrNotPermitted = errors.New("not permitted")
	// ErrNotReady: the CA has not loaded its root yet.
	ErrNotReady = errors.New("CA not ready")
)

// RSA keys above this size are refused so that one request cannot cost
// seconds of CPU; nobody issues workload keys that large.
const maxRSABits = 8192

var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

// CheckCSR parses a PEM CSR and checks that it may be signed for id: a valid
// self-signature, an RSA (>= 2048 bits) or ECDSA P-256/P-384 key, no CA
// request, and no SAN but id's SPIFFE URI (or none at all, in which case the
// CA sets it). Errors wrap ErrInvalidRequest or ErrNotPermitted and say why.
func CheckCSR(csrPEM []byte, id spiffe.ID) (*x509.CertificateRequest, error) {
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	if n := len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.EmailAddresses); n > 0 {
		return nil, fmt.Errorf("%w: CSR has %d DNS/IP/email SANs; only the caller's identity %s may be requested",
			ErrNotPermitted, n, id)
	}
	switch len(csr.URIs) {
	case 0:
	case 1:
		if got := csr.URIs[0].String(); got != id.String() {
			return nil, fmt.Errorf("%w: CSR asks for identity %s but the caller is %s", ErrNotPermitted, got, id)
		}
	default:
		return nil, fmt.Errorf("%w: CSR has %d URI SANs; only the caller's identity %s may be requested",
			ErrNotPermitted, len(csr.URIs), id)
	}
	return csr, nil
}

// parseCSR decodes and checks the parts of a CSR that do not depend on who
// asks: encoding, signature, key type, basic constraints.
func parseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil {
		return nil, fmt.Errorf("%w: CSR is not PEM", ErrInvalidRequest)
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: CSR PEM block is %q, want CERTIFICATE REQUEST", ErrInvalidRequest, block.Type)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing CSR: %v", ErrInvalidRequest, err)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: CSR signature does not verify: %v", ErrInvalidRequest, err)
	}
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidBasicConstraints) {
			continue
		}
		var bc struct {
			IsCA       bool `asn1:"optional"`
			MaxPathLen int  `asn1:"optional,default:-1"`
		}
		if rest, err := asn1.Unmarshal(ext.Value, &bc); err != nil || len(rest) > 0 {
			return nil, fmt.Errorf("%w: CSR basic constraints extension is malformed", ErrInvalidRequest)
		}
		if bc.IsCA {
			return nil, fmt.Errorf("%w: CSR asks for a CA certificate (basicConstraints CA:TRUE)", ErrNotPermitted)
		}
	}
	return csr, nil
}

func checkKey(pub any) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < 2048 || bits > maxRSABits {
			return fmt.Errorf("%w: CSR has a %d-bit RSA key; RSA keys must have 2048 to %d bits",
				ErrInvalidRequest, bits, maxRSABits)
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("%w: CSR has an ECDSA key on %s; only P-256 and P-384 are accepted",
				ErrInvalidRequest, k.Curve.Params().Name)
		}
	default:
		return fmt.Errorf("%w: CSR key type %T is not accepted; use RSA (>= 2048 bits) or ECDSA P-256/P-384",
			ErrInvalidRequest, pub)
	}
	return nil
}

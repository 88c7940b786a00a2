package bootstrap

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sync/atomic"
	"time"
)

// servingCert is the certificate 15012 and 15017 present. Until citadel
// supplies a CA-issued one it is self-signed, made at start, so that the
// TLS ports work in tests and on a laptop.
type servingCert struct {
	get  atomic.Pointer[func(*tls.ClientHelloInfo) (*tls.Certificate, error)]
	root atomic.Pointer[func() ([]byte, error)]
	// clientRoots verify the mesh certificates clients of 15012 present.
	clientRoots atomic.Pointer[func() *x509.CertPool]
}

func newServingCert(namespace string) (*servingCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("serving key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "meshd"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"istiod." + namespace + ".svc", "meshd." + namespace + ".svc", "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	c := &servingCert{}
	c.set(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil },
		func() ([]byte, error) { return certPEM, nil })
	return c, nil
}

func (c *servingCert) set(get func(*tls.ClientHelloInfo) (*tls.Certificate, error), root func() ([]byte, error)) {
	c.get.Store(&get)
	c.root.Store(&root)
}

// rootPEM returns the PEM of the root that verifies the serving
// certificate: what the webhook configuration's caBundle must hold.
func (c *servingCert) rootPEM() ([]byte, error) { return (*c.root.Load())() }

// serverTLS returns a config that asks for the current certificate on every
// handshake, so a rotated certificate is used without a restart and without
// dropping established connections.
func (c *servingCert) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return (*c.get.Load())(hello)
		},
	}
}

func (c *servingCert) setClientRoots(f func() *x509.CertPool) { c.clientRoots.Store(&f) }

// grpcTLS is serverTLS plus optional client certificates: a workload may
// present its mesh certificate on 15012 (it is checked against the mesh
// roots of the moment) or authenticate with a JWT instead.
func (c *servingCert) grpcTLS() *tls.Config {
	base := c.serverTLS()
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cfg := c.serverTLS()
		if f := c.clientRoots.Load(); f != nil {
			if pool := (*f)(); pool != nil {
				cfg.ClientAuth, cfg.ClientCAs = tls.VerifyClientCertIfGiven, pool
			}
		}
		return cfg, nil
	}
	return base
}

package bootstrap

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync/atomic"
)

// servingCert is the certificate 15012 and 15017 present: citadel's
// CA-issued one, installed by SetServingCertificate during wiring and rotated
// by citadel without a restart.
type servingCert struct {
	get  atomic.Pointer[func(*tls.ClientHelloInfo) (*tls.Certificate, error)]
	root atomic.Pointer[func() ([]byte, error)]
	// clientRoots verify the mesh certificates clients of 15012 present.
	clientRoots atomic.Pointer[func() *x509.CertPool]
}

var errNoServingCert = errors.New("no serving certificate yet")

func (c *servingCert) set(get func(*tls.ClientHelloInfo) (*tls.Certificate, error), root func() ([]byte, error)) {
	c.get.Store(&get)
	c.root.Store(&root)
}

// rootPEM returns the PEM of the root that verifies the serving
// certificate: what the webhook configuration's caBundle must hold.
func (c *servingCert) rootPEM() ([]byte, error) {
	if f := c.root.Load(); f != nil {
		return (*f)()
	}
	return nil, errNoServingCert
}

// serverTLS returns a config that asks for the current certificate on every
// handshake, so a rotated certificate is used without a restart and without
// dropping established connections.
func (c *servingCert) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if f := c.get.Load(); f != nil {
				return (*f)(hello)
			}
			return nil, errNoServingCert
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

// Package servingcert keeps meshd's own TLS serving certificate (for the
// xDS/CA port 15012 and the webhook port 15017) issued by meshd's CA, and
// renews it before expiry without touching open connections: servers read
// it per handshake through GetCertificate.
package servingcert

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshd/meshd/citadel/ca"
	"github.com/meshd/meshd/pkg/component"
)

// DefaultTTL is the serving certificate's lifetime; it is renewed at half.
const DefaultTTL = 24 * time.Hour

// Options configure the serving certificate.
type Options struct {
	// Namespace is meshd's namespace: the certificate names
	// istiod.NAMESPACE.svc and meshd.NAMESPACE.svc.
	Namespace string
	// ExtraHosts are more DNS names and IP addresses (Istio's
	// ISTIOD_CUSTOM_HOST), e.g. 127.0.0.1 for local clients.
	ExtraHosts []string
	// TTL is the certificate's lifetime (default DefaultTTL).
	TTL time.Duration
	// Now is the clock; tests set it.
	Now func() time.Time
}

// Cert is meshd's serving certificate.
type Cert struct {
	log   *slog.Logger
	ca    *ca.CA
	opts  Options
	hosts []string

	cur       atomic.Pointer[tls.Certificate]
	ready     chan struct{}
	readyOnce sync.Once
}

var _ component.Component = (*Cert)(nil)

// New returns the serving certificate of meshd in opts.Namespace. It does
// no I/O; Start issues it.
func New(log *slog.Logger, c *ca.CA, opts Options) *Cert {
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	hosts := []string{"istiod." + opts.Namespace + ".svc", "meshd." + opts.Namespace + ".svc"}
	seen := map[string]bool{hosts[0]: true, hosts[1]: true}
	for _, h := range opts.ExtraHosts {
		if h != "" && !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	return &Cert{log: log, ca: c, opts: opts, hosts: hosts, ready: make(chan struct{})}
}

// Hosts are the names and addresses the certificate carries.
func (s *Cert) Hosts() []string { return s.hosts }

// Ready is closed once a certificate has been issued.
func (s *Cert) Ready() <-chan struct{} { return s.ready }

// GetCertificate returns the current certificate, for tls.Config.
func (s *Cert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.cur.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("meshd serving certificate not issued yet: the CA is loading")
}

// RootPool is the trust bundle for verifying mesh client certificates.
func (s *Cert) RootPool() *x509.CertPool { return s.ca.RootPool() }

// GRPCServerConfig is the TLS configuration of port 15012: meshd's
// certificate, and a client certificate verified against the current trust
// bundle when the client sends one (a renewing workload, an xDS client);
// clients without one authenticate with a token instead, as with istiod.
func (s *Cert) GRPCServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return &tls.Config{
				MinVersion:     tls.VersionTLS12,
				GetCertificate: s.GetCertificate,
				ClientAuth:     tls.VerifyClientCertIfGiven,
				ClientCAs:      s.ca.RootPool(),
				NextProtos:     []string{"h2"},
			}, nil
		},
	}
}

// HTTPSServerConfig is the TLS configuration of the webhook port 15017:
// meshd's certificate, no client certificates.
func (s *Cert) HTTPSServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

// NeedLeaderElection is false: every replica serves.
func (s *Cert) NeedLeaderElection() bool { return false }

// Start issues the certificate once the CA is ready, then renews it at half
// its lifetime and whenever the CA changes, until ctx ends. A failed
// renewal is retried while the current certificate keeps serving.
func (s *Cert) Start(ctx context.Context) error {
	select {
	case <-s.ca.Ready():
	case <-ctx.Done():
		return nil
	}
	retry := time.Second
	for {
		changed := s.ca.Changed()
		var wait time.Duration
		if err := s.renew(); err != nil {
			s.log.Error("serving certificate: renewal failed", "error", err, "retry_in", retry)
			wait, retry = retry, min(2*retry, time.Minute)
		} else {
			retry = time.Second
			leaf := s.cur.Load().Leaf
			half := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
			wait = max(half.Sub(s.opts.Now()), time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// renew issues a new key and certificate and swaps them in.
func (s *Cert) renew() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("serving key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return fmt.Errorf("serving CSR: %w", err)
	}
	iss, err := s.ca.SignServing(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), s.hosts, s.opts.TTL)
	if err != nil {
		return fmt.Errorf("signing serving certificate: %w", err)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: iss.Leaf}
	for _, p := range iss.Chain {
		block, _ := pem.Decode([]byte(p))
		if block == nil {
			return errors.New("serving certificate chain is not PEM")
		}
		cert.Certificate = append(cert.Certificate, block.Bytes)
	}
	s.cur.Store(cert)
	s.readyOnce.Do(func() { close(s.ready) })
	s.log.Info("serving certificate issued", "hosts", s.hosts, "expires", iss.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

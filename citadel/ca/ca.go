// Package ca is meshd's certificate authority: it holds the root (self-signed
// or an operator's plug-in CA), checks certificate signing requests against
// the caller's identity, and signs SPIFFE workload certificates and meshd's
// own serving certificates with cfssl's local signer.
package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	cfconfig "github.com/cloudflare/cfssl/config"
	cflog "github.com/cloudflare/cfssl/log"
	"github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"

	"github.com/meshd/meshd/citadel/spiffe"
)

func init() {
	// cfssl logs every signature at info level through its own global
	// logger; meshd counts signatures in metrics instead.
	cflog.Level = cflog.LevelError
}

// Defaults, as Istio has them.
const (
	DefaultTrustDomain = "cluster.local"
	DefaultRootTTL     = 10 * 365 * 24 * time.Hour
	DefaultWorkloadTTL = 24 * time.Hour
	DefaultMaxTTL      = 90 * 24 * time.Hour
	// DefaultRotateFraction: a self-signed root is replaced when less than
	// this fraction of its lifetime remains (Istio's 20% grace period).
	DefaultRotateFraction = 0.2
	// DefaultCheckInterval is how often the stored CA is re-read and the
	// root's age checked.
	DefaultCheckInterval = time.Hour
	// clockSkew backdates certificates so that peers with slightly slow
	// clocks accept them at once.
	clockSkew = time.Minute
)

// Signing profile names.
const (
	profileWorkload = "workload"
	profileServing  = "serving"
)

// Options configure a CA. Zero values take the defaults above.
type Options struct {
	// TrustDomain is the SPIFFE trust domain of issued identities.
	TrustDomain string
	// KeyAlgorithm and RSAKeyBits choose the key of a new self-signed root.
	KeyAlgorithm KeyAlgorithm
	RSAKeyBits   int
	// RootTTL is the lifetime of a new self-signed root.
	RootTTL time.Duration
	// DefaultTTL is a workload certificate's lifetime when the request names none.
	DefaultTTL time.Duration
	// MaxTTL caps the lifetime a request may ask for.
	MaxTTL time.Duration
	// RotateFraction: rotate the self-signed root when less than this
	// fraction of its lifetime remains.
	RotateFraction float64
	// CheckInterval is how often the stored CA is re-read and the root checked.
	CheckInterval time.Duration
	// Now is the clock; tests set it.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	if o.KeyAlgorithm == "" {
		o.KeyAlgorithm = ECDSA
	}
	if o.RSAKeyBits == 0 {
		o.RSAKeyBits = 2048
	}
	if o.RootTTL == 0 {
		o.RootTTL = DefaultRootTTL
	}
	if o.DefaultTTL == 0 {
		o.DefaultTTL = DefaultWorkloadTTL
	}
	if o.MaxTTL == 0 {
		o.MaxTTL = DefaultMaxTTL
	}
	if o.DefaultTTL > o.MaxTTL {
		o.DefaultTTL = o.MaxTTL
	}
	if o.RotateFraction == 0 {
		o.RotateFraction = DefaultRotateFraction
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// CA signs certificates with the root it keeps in a Storage. It is safe for
// concurrent use; the root is swapped atomically on rotation or reload.
type CA struct {
	log     *slog.Logger
	opts    Options
	storage Storage

	state   atomic.Pointer[state]
	ready   chan struct{}
	readyMu sync.Once
	// mu serialises loading, creating and rotating.
	mu sync.Mutex
}

// state is one generation of the CA; changed is closed when it is replaced.
type state struct {
	auth    *authority
	signer  *local.Signer
	changed chan struct{}
}

// New returns a CA over storage. It does no I/O: Start loads or creates the
// root. A zero Options gives Istio's defaults.
func New(log *slog.Logger, storage Storage, opts Options) *CA {
	opts.setDefaults()
	c := &CA{log: log, opts: opts, storage: storage, ready: make(chan struct{})}
	c.state.Store(&state{changed: make(chan struct{})})
	return c
}

// TrustDomain is the trust domain of the identities this CA issues.
func (c *CA) TrustDomain() string { return c.opts.TrustDomain }

// Ready is closed once the root is loaded and the CA can sign.
func (c *CA) Ready() <-chan struct{} { return c.ready }

// Changed returns a channel closed the next time the CA's material changes
// (rotation, plug-in CA replaced). Take it before reading the state you
// derive from, so that no change is missed.
func (c *CA) Changed() <-chan struct{} { return c.state.Load().changed }

// RootsPEM is the trust bundle, newest root first; nil before Ready.
func (c *CA) RootsPEM() []byte {
	if a := c.state.Load().auth; a != nil {
		return []byte(a.rootsPEM)
	}
	return nil
}

// Roots returns the trusted roots, newest first; nil before Ready.
func (c *CA) Roots() []*x509.Certificate {
	if a := c.state.Load().auth; a != nil {
		return a.roots
	}
	return nil
}

// RootPool is the trust bundle as a pool, for verifying mesh certificates;
// nil before Ready. The pool must not be modified.
func (c *CA) RootPool() *x509.CertPool {
	if a := c.state.Load().auth; a != nil {
		return a.pool
	}
	return nil
}

// Intermediates returns the certificates between a leaf and the roots, for
// verifying peers that send only their leaf.
func (c *CA) Intermediates() *x509.CertPool {
	p := x509.NewCertPool()
	if a := c.state.Load().auth; a != nil {
		for _, s := range a.chain {
			p.AppendCertsFromPEM([]byte(s))
		}
	}
	return p
}

// Issued is a signed certificate with what a client needs to use it.
type Issued struct {
	// Chain is the leaf then any intermediates, one PEM certificate each.
	Chain []string
	// RootsPEM is the trust bundle.
	RootsPEM string
	// Leaf is the parsed leaf.
	Leaf *x509.Certificate
}

// CertChain is the chain in Istio's wire order: leaf first, then
// intermediates, the trust bundle last.
func (i *Issued) CertChain() []string {
	out := make([]string, 0, len(i.Chain)+1)
	out = append(out, i.Chain...)
	return append(out, i.RootsPEM)
}

// SignWorkload checks a CSR against the authenticated identity id (see
// CheckCSR) and signs it with id as the only SAN. ttl 0 means the default;
// longer than the maximum is cut to the maximum.
func (c *CA) SignWorkload(csrPEM []byte, id spiffe.ID, ttl time.Duration) (*Issued, error) {
	if id.TrustDomain != c.opts.TrustDomain {
		return nil, fmt.Errorf("%w: identity %s is outside trust domain %s", ErrNotPermitted, id, c.opts.TrustDomain)
	}
	if _, err := CheckCSR(csrPEM, id); err != nil {
		return nil, err
	}
	return c.sign(csrPEM, profileWorkload, []string{id.String()}, ttl)
}

// SignServing signs a CSR for meshd's own TLS servers with the given DNS
// names and IP addresses. It trusts its caller: it is not reachable from
// the network.
func (c *CA) SignServing(csrPEM []byte, hosts []string, ttl time.Duration) (*Issued, error) {
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%w: serving certificate needs at least one host", ErrInvalidRequest)
	}
	if _, err := parseCSR(csrPEM); err != nil {
		return nil, err
	}
	return c.sign(csrPEM, profileServing, hosts, ttl)
}

func (c *CA) sign(csrPEM []byte, profile string, hosts []string, ttl time.Duration) (*Issued, error) {
	st := c.state.Load()
	if st.auth == nil {
		return nil, ErrNotReady
	}
	switch {
	case ttl < 0:
		return nil, fmt.Errorf("%w: negative validity %s", ErrInvalidRequest, ttl)
	case ttl == 0:
		ttl = c.opts.DefaultTTL
	case ttl > c.opts.MaxTTL:
		ttl = c.opts.MaxTTL
	}
	now := c.opts.Now()
	notAfter := now.Add(ttl)
	// A certificate cannot usefully outlive the one that signed it.
	if na := st.auth.cert.NotAfter; notAfter.After(na) {
		notAfter = na
	}
	pemCert, err := st.signer.Sign(signer.SignRequest{
		Request:   string(csrPEM),
		Hosts:     hosts,
		Profile:   profile,
		NotBefore: now.Add(-clockSkew),
		NotAfter:  notAfter,
	})
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	certs, err := ParseCerts(pemCert)
	if err != nil {
		return nil, fmt.Errorf("parsing signed certificate: %w", err)
	}
	chain := append([]string{string(pemCert)}, st.auth.chain...)
	return &Issued{Chain: chain, RootsPEM: st.auth.rootsPEM, Leaf: certs[0]}, nil
}

// signingPolicy is the cfssl policy: the workload profile of Istio's
// workload certificates, and a serving profile for meshd's own servers.
// Neither copies anything but the public key from the CSR: names come from
// the request's Hosts, which the CA sets from the authenticated identity.
func signingPolicy(defaultTTL time.Duration) *cfconfig.Signing {
	whitelist := &cfconfig.CSRWhitelist{PublicKey: true, PublicKeyAlgorithm: true, SignatureAlgorithm: true}
	workload := &cfconfig.SigningProfile{
		Usage:        []string{"digital signature", "key encipherment", "client auth", "server auth"},
		Expiry:       defaultTTL,
		ExpiryString: defaultTTL.String(),
		CSRWhitelist: whitelist,
	}
	serving := &cfconfig.SigningProfile{
		Usage:        []string{"digital signature", "key encipherment", "server auth", "client auth"},
		Expiry:       defaultTTL,
		ExpiryString: defaultTTL.String(),
		CSRWhitelist: whitelist,
	}
	return &cfconfig.Signing{
		Profiles: map[string]*cfconfig.SigningProfile{profileWorkload: workload, profileServing: serving},
		Default:  workload,
	}
}

// install parses m and makes it the current state.
func (c *CA) install(m *Material) error {
	a, err := parseMaterial(m, c.opts.Now())
	if err != nil {
		return err
	}
	s, err := local.NewSigner(a.key, a.cert, signer.DefaultSigAlgo(a.key), signingPolicy(c.opts.DefaultTTL))
	if err != nil {
		return fmt.Errorf("%s: building signer: %w", m.Source, err)
	}
	old := c.state.Swap(&state{auth: a, signer: s, changed: make(chan struct{})})
	close(old.changed)
	c.readyMu.Do(func() { close(c.ready) })
	return nil
}

// current returns the installed material, nil before Ready.
func (c *CA) current() *Material {
	if a := c.state.Load().auth; a != nil {
		return a.material
	}
	return nil
}

// Start loads the root (creating a self-signed one on first start), then
// keeps it current until ctx ends: it re-reads the storage when it changes
// and every CheckInterval, and rotates a self-signed root nearing expiry.
// It runs on every replica; concurrent writers are resolved by the
// storage's optimistic updates.
func (c *CA) Start(ctx context.Context) error {
	// Until the root is loaded the CA refuses CSRs as not ready; a failure
	// here (API server unreachable, RBAC) is retried rather than fatal.
	for retry := time.Second; ; retry = min(2*retry, time.Minute) {
		err := c.Init(ctx)
		if err == nil {
			break
		}
		c.log.Error("CA: cannot load or create the root; retrying", "error", err, "retry_in", retry)
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	changed := make(chan struct{}, 1)
	c.storage.Watch(ctx, func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	t := time.NewTicker(c.opts.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-t.C:
		}
		if err := c.Sync(ctx); err != nil {
			// Keep signing with the CA we have; the next change or tick retries.
			c.log.Error("CA: keeping the current root", "error", err)
		}
	}
}

// NeedLeaderElection is false: every replica signs, so every replica loads.
func (c *CA) NeedLeaderElection() bool { return false }

// Init loads the stored CA, creating and storing a self-signed root when
// there is none. It returns once the CA can sign.
func (c *CA) Init(ctx context.Context) error {
	if c.current() != nil {
		return nil
	}
	return c.Sync(ctx)
}

// Sync re-reads the storage, installs what changed, restores or creates the
// stored CA when it is missing, and rotates a self-signed root that is
// nearing expiry.
func (c *CA) Sync(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.storage.Load(ctx)
	if err != nil {
		return fmt.Errorf("loading CA: %w", err)
	}
	cur := c.current()
	if m == nil {
		if m, err = c.createStored(ctx, cur); err != nil {
			return err
		}
	}
	if !m.sameContent(cur) {
		if err := c.install(m); err != nil {
			return fmt.Errorf("loading CA: %w", err)
		}
		c.log.Info("CA loaded", "source", m.Source, "plugin", m.Plugin,
			"root_expires", c.Roots()[0].NotAfter.UTC().Format(time.RFC3339), "roots", len(c.Roots()))
	} else {
		// Same CA; keep the newest storage version for the next update
		// (Version is only read and written under c.mu).
		c.state.Load().auth.material.Version = m.Version
	}
	if m.Plugin || !c.needsRotation() {
		return nil
	}
	return c.rotateLocked(ctx)
}

// createStored stores the current self-signed CA again (someone deleted it)
// or a new one (first start). Another replica may win the race; then its
// CA is loaded instead.
func (c *CA) createStored(ctx context.Context, cur *Material) (*Material, error) {
	var m *Material
	if cur != nil && !cur.Plugin {
		c.log.Warn("CA: stored root is missing; storing the current one again")
		cp := *cur
		m = &cp
	} else {
		var err error
		if m, err = newSelfSigned(c.opts.TrustDomain, c.opts.KeyAlgorithm, c.opts.RSAKeyBits, c.opts.RootTTL, c.opts.Now()); err != nil {
			return nil, err
		}
		c.log.Info("CA: created a self-signed root", "algorithm", c.opts.KeyAlgorithm, "ttl", c.opts.RootTTL)
	}
	stored, err := c.storage.Create(ctx, m)
	if errors.Is(err, ErrExists) {
		if stored, err = c.storage.Load(ctx); err == nil && stored == nil {
			err = fmt.Errorf("stored CA exists but cannot be read")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("storing CA: %w", err)
	}
	return stored, nil
}

func (c *CA) needsRotation() bool {
	a := c.state.Load().auth
	root := a.roots[0]
	life := root.NotAfter.Sub(root.NotBefore)
	left := root.NotAfter.Sub(c.opts.Now())
	return float64(left) < c.opts.RotateFraction*float64(life)
}

// Rotate replaces a self-signed root with a new one now, keeping the old
// roots in the trust bundle until they expire so that certificates they
// signed keep verifying. A plug-in CA is never rotated by meshd.
func (c *CA) Rotate(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.current()
	if cur == nil {
		return ErrNotReady
	}
	if cur.Plugin {
		return fmt.Errorf("%s: a plug-in CA is rotated by its operator, not by meshd", cur.Source)
	}
	return c.rotateLocked(ctx)
}

func (c *CA) rotateLocked(ctx context.Context) error {
	cur := c.current()
	next, err := newSelfSigned(c.opts.TrustDomain, c.opts.KeyAlgorithm, c.opts.RSAKeyBits, c.opts.RootTTL, c.opts.Now())
	if err != nil {
		return err
	}
	for _, r := range c.Roots() {
		next.RootPEM = append(next.RootPEM, EncodeCert(r)...)
	}
	stored, err := c.storage.Update(ctx, cur, next)
	if err != nil {
		// ErrConflict: another replica rotated first; the next Sync loads its root.
		return fmt.Errorf("storing rotated root: %w", err)
	}
	if err := c.install(stored); err != nil {
		return fmt.Errorf("loading rotated root: %w", err)
	}
	c.log.Info("CA: rotated the self-signed root", "roots", len(c.Roots()),
		"root_expires", c.Roots()[0].NotAfter.UTC().Format(time.RFC3339))
	return nil
}

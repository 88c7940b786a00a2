// Package token mints and verifies the service-account tokens meshd's CA
// accepts in file mode, where there is no API server to run a TokenReview:
// ES256 JWTs shaped like Kubernetes' projected tokens, signed by a key
// meshd keeps on disk.
package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Issuer is the iss claim of tokens meshd mints.
const Issuer = "meshd"

// DefaultAudience is the audience the CA requires, as Istio's.
const DefaultAudience = "istio-ca"

// KeyFile is the key's file name; it lives beside the CA's directory.
const KeyFile = "token-signing-key.pem"

// KeyPath is where file mode keeps the token key for a CA directory:
// beside it, not in it, so that the CA directory holds only cacerts files.
func KeyPath(caDir string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(caDir)), KeyFile)
}

// LoadOrCreateKey reads the P-256 signing key at path, creating it (mode
// 0600) when the file does not exist.
func LoadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	return parseKey(path, b)
}

// LoadKey reads the signing key at path; it does not create one.
func LoadKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	return parseKey(path, b)
}

func parseKey(path string, b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("token key %s: not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("token key %s: %w", path, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("token key %s: want an ECDSA P-256 key, have %T", path, k)
	}
	return ec, nil
}

func createKey(path string) (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	// O_EXCL: if another process created it meanwhile, use theirs.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("token key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("token key %s: %w", path, err)
	}
	return k, nil
}

// Claims are the JWT claims meshd reads and writes; the kubernetes.io claim
// is the one Kubernetes puts in projected service-account tokens.
type Claims struct {
	Issuer     string   `json:"iss"`
	Subject    string   `json:"sub"`
	Audience   []string `json:"aud"`
	Expiry     int64    `json:"exp"`
	IssuedAt   int64    `json:"iat"`
	NotBefore  int64    `json:"nbf"`
	Kubernetes struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
		} `json:"serviceaccount"`
	} `json:"kubernetes.io"`
}

type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ,omitempty"`
	Kid string `json:"kid,omitempty"`
}

func keyID(pub *ecdsa.PublicKey) string {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

var b64 = base64.RawURLEncoding

// Mint returns a token for namespace/serviceAccount, valid for ttl from now.
func Mint(key *ecdsa.PrivateKey, namespace, serviceAccount string, audiences []string, ttl time.Duration, now time.Time) (string, error) {
	if namespace == "" || serviceAccount == "" {
		return "", errors.New("token: namespace and service account are required")
	}
	if len(audiences) == 0 {
		audiences = []string{DefaultAudience}
	}
	c := Claims{
		Issuer:    Issuer,
		Subject:   "system:serviceaccount:" + namespace + ":" + serviceAccount,
		Audience:  audiences,
		IssuedAt:  now.Unix(),
		NotBefore: now.Unix(),
		Expiry:    now.Add(ttl).Unix(),
	}
	c.Kubernetes.Namespace = namespace
	c.Kubernetes.ServiceAccount.Name = serviceAccount
	h, err := json.Marshal(header{Alg: "ES256", Typ: "JWT", Kid: keyID(&key.PublicKey)})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signing := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		return "", fmt.Errorf("token: signing: %w", err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + b64.EncodeToString(sig), nil
}

// Verifier checks tokens signed by one key.
type Verifier struct {
	pub *ecdsa.PublicKey
	now func() time.Time
}

// NewVerifier returns a Verifier for tokens signed by the key of pub; now
// is the clock (nil: time.Now).
func NewVerifier(pub *ecdsa.PublicKey, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{pub: pub, now: now}
}

// leeway tolerates clock differences between minting and checking.
const leeway = time.Minute

// Verify checks the signature, issuer, audience and validity window of a
// token and returns the namespace and service account it names.
func (v *Verifier) Verify(tok, audience string) (namespace, serviceAccount string, err error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", "", errors.New("token is not a JWT")
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return "", "", errors.New("token header is not base64url")
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil || h.Alg != "ES256" {
		return "", "", fmt.Errorf("token algorithm %q is not ES256", h.Alg)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return "", "", errors.New("token signature is malformed")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(v.pub, sum[:], r, s) {
		return "", "", errors.New("token signature does not verify with meshd's token key")
	}
	pb, err := b64.DecodeString(parts[1])
	if err != nil {
		return "", "", errors.New("token payload is not base64url")
	}
	var c Claims
	if err := json.Unmarshal(pb, &c); err != nil {
		return "", "", fmt.Errorf("token claims: %w", err)
	}
	now := v.now()
	switch {
	case c.Issuer != Issuer:
		return "", "", fmt.Errorf("token issuer %q is not %q", c.Issuer, Issuer)
	case !slices.Contains(c.Audience, audience):
		return "", "", fmt.Errorf("token audiences %v do not include %q", c.Audience, audience)
	case now.After(time.Unix(c.Expiry, 0).Add(leeway)):
		return "", "", fmt.Errorf("token expired at %s", time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	case now.Add(leeway).Before(time.Unix(c.NotBefore, 0)):
		return "", "", errors.New("token is not valid yet")
	}
	ns, sa := c.Kubernetes.Namespace, c.Kubernetes.ServiceAccount.Name
	if ns == "" || sa == "" || c.Subject != "system:serviceaccount:"+ns+":"+sa {
		return "", "", fmt.Errorf("token subject %q does not name a service account", c.Subject)
	}
	return ns, sa, nil
}

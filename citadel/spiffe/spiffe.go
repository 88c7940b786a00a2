// Package spiffe holds the workload identity meshd's CA certifies: the SPIFFE
// ID spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT, as Istio spells it.
package spiffe

import (
	"fmt"
	"net/url"
	"strings"
)

// Scheme is the URI scheme of every SPIFFE ID.
const Scheme = "spiffe"

// ID is one workload identity.
type ID struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// String renders the ID as a SPIFFE URI.
func (id ID) String() string {
	return Scheme + "://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL renders the ID as a URL, as it goes into a certificate's URI SAN.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: Scheme, Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// Validate checks that every part is present and free of separators, so
// that String and Parse round-trip.
func (id ID) Validate() error {
	for _, p := range []struct{ name, v string }{
		{"trust domain", id.TrustDomain}, {"namespace", id.Namespace}, {"service account", id.ServiceAccount},
	} {
		if p.v == "" {
			return fmt.Errorf("spiffe id: empty %s", p.name)
		}
		if strings.ContainsAny(p.v, "/?#:@ ") {
			return fmt.Errorf("spiffe id: %s %q has a reserved character", p.name, p.v)
		}
	}
	return nil
}

// Parse reads a SPIFFE URI of Istio's form spiffe://TD/ns/NS/sa/SA.
func Parse(s string) (ID, error) {
	u, err := url.Parse(s)
	if err != nil {
		return ID{}, fmt.Errorf("spiffe id %q: %w", s, err)
	}
	return FromURL(u)
}

// FromURL reads a SPIFFE ID from a parsed URI (such as a certificate's URI SAN).
func FromURL(u *url.URL) (ID, error) {
	if u.Scheme != Scheme {
		return ID{}, fmt.Errorf("spiffe id %q: scheme is not %s", u.String(), Scheme)
	}
	if u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return ID{}, fmt.Errorf("spiffe id %q: only trust domain and path are allowed", u.String())
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return ID{}, fmt.Errorf("spiffe id %q: path is not /ns/NAMESPACE/sa/SERVICE_ACCOUNT", u.String())
	}
	id := ID{TrustDomain: u.Host, Namespace: parts[1], ServiceAccount: parts[3]}
	if err := id.Validate(); err != nil {
		return ID{}, fmt.Errorf("spiffe id %q: %w", u.String(), err)
	}
	return id, nil
}

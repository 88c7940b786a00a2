//lint:file-ignore SA1019 deprecated fields are still accepted, so their rules still apply, as in istiod

package validation

import (
	"fmt"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

func validateGateway(r *report, p path, name string, gw *networking.Gateway) {
	// The name becomes part of Envoy resource names, so it must be a label.
	if name != "" && !isDNSLabel(name) {
		r.errorf("metadata.name", "invalid gateway name: %q", name)
	}
	if len(gw.Servers) == 0 {
		r.errorf(p.f("servers"), "gateway must have at least one server")
	}
	portNames := map[string]bool{}
	for i, s := range gw.Servers {
		sp := p.f("servers").i(i)
		if s == nil {
			r.errorf(sp, "server may not be nil")
			continue
		}
		r.server(sp, s)
		if s.Port != nil {
			if portNames[s.Port.Name] {
				r.errorf(sp.f("port").f("name"), "port names in servers must be unique: duplicate name %s", s.Port.Name)
			}
			portNames[s.Port.Name] = true
			if !isHTTPProtocol(s.Port.Protocol) && s.GetTls().GetHttpsRedirect() {
				r.warnf(sp.f("tls").f("httpsRedirect"), "tls.httpsRedirect should only be used with http servers")
			}
		}
	}
}

func (r *report) server(p path, s *networking.Server) {
	if len(s.Hosts) == 0 {
		r.errorf(p.f("hosts"), "server config must contain at least one host")
	}
	for i, h := range s.Hosts {
		r.err(p.f("hosts").i(i), checkNamespacedHost(h, true))
	}
	portOK := r.serverPort(p.f("port"), s.Port, s.Bind)
	if rest, ok := strings.CutPrefix(s.Bind, unixPrefix); ok {
		r.err(p.f("bind"), checkUnixAddress(rest))
		if s.Port != nil && s.Port.Number != 0 {
			r.errorf(p.f("port").f("number"), "port number must be 0 for unix domain socket: %v", s.Port.Number)
		}
	} else if s.Bind != "" {
		r.err(p.f("bind"), checkIP(s.Bind))
	}
	r.serverTLS(p.f("tls"), s.Tls)

	if !portOK {
		return
	}
	proto := s.Port.Protocol
	switch {
	case isTLSProtocol(proto) && s.Tls == nil:
		r.errorf(p.f("tls"), "server must have TLS settings for HTTPS/TLS protocols")
	case !isTLSProtocol(proto) && s.Tls != nil:
		if !isHTTPProtocol(proto) {
			r.errorf(p.f("tls"), "server cannot have TLS settings for non HTTPS/TLS ports")
			break
		}
		// A plain HTTP server may carry TLS settings only to redirect to HTTPS.
		passthrough := s.Tls.Mode == networking.ServerTLSSettings_PASSTHROUGH || s.Tls.Mode == networking.ServerTLSSettings_AUTO_PASSTHROUGH
		if !passthrough || s.Tls.CaCertificates != "" || s.Tls.PrivateKey != "" || s.Tls.ServerCertificate != "" {
			r.errorf(p.f("tls"), "server cannot have TLS settings for plain text HTTP ports")
		}
	}
}

// serverPort checks a Gateway server's port and reports whether it is usable.
func (r *report) serverPort(p path, port *networking.Port, bind string) bool {
	if port == nil {
		r.errorf(p, "port is required")
		return false
	}
	ok := true
	if !knownProtocol(port.Protocol) {
		r.errorf(p.f("protocol"), "invalid protocol %q, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP", port.Protocol)
		ok = false
	}
	if port.Number > 0 || !strings.HasPrefix(bind, unixPrefix) {
		if err := checkPort(int64(port.Number)); err != nil {
			r.err(p.f("number"), err)
			ok = false
		}
	}
	if port.TargetPort > 0 {
		r.errorf(p.f("targetPort"), "targetPort has no impact on Gateways")
		ok = false
	}
	if port.Name == "" {
		r.errorf(p.f("name"), "port name must be set")
		ok = false
	}
	return ok
}

// Cipher suites Envoy (BoringSSL) knows.
var cipherSuites = map[string]bool{
	"ECDHE-ECDSA-AES128-GCM-SHA256": true, "ECDHE-RSA-AES128-GCM-SHA256": true,
	"ECDHE-ECDSA-AES256-GCM-SHA384": true, "ECDHE-RSA-AES256-GCM-SHA384": true,
	"ECDHE-ECDSA-CHACHA20-POLY1305": true, "ECDHE-RSA-CHACHA20-POLY1305": true,
	"ECDHE-ECDSA-AES128-SHA": true, "ECDHE-RSA-AES128-SHA": true,
	"ECDHE-ECDSA-AES256-SHA": true, "ECDHE-RSA-AES256-SHA": true,
	"AES128-GCM-SHA256": true, "AES256-GCM-SHA384": true, "AES128-SHA": true, "AES256-SHA": true,
	"DES-CBC3-SHA": true,
}

func validCipherSuite(cs string) bool {
	if cs == "" || cs == "ALL" {
		return true
	}
	// Expressions such as "-AES128-SHA" or "[A|B]" are passed to BoringSSL as is.
	c := cs[0]
	if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
		return true
	}
	return cipherSuites[cs]
}

// serverTLS checks a Gateway server's (or Sidecar ingress's) TLS settings:
// the mode decides which certificate sources are needed and allowed.
func (r *report) serverTLS(p path, t *networking.ServerTLSSettings) {
	if t == nil {
		return
	}
	if (t.MinProtocolVersion == networking.ServerTLSSettings_TLSV1_0 || t.MinProtocolVersion == networking.ServerTLSSettings_TLSV1_1) && len(t.CipherSuites) == 0 {
		r.warnf(p.f("minProtocolVersion"), "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include compatible ciphers")
	}
	invalid, dup, seen := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, cs := range t.CipherSuites {
		switch {
		case !validCipherSuite(cs):
			invalid[cs] = true
		case seen[cs]:
			dup[cs] = true
		}
		seen[cs] = true
	}
	if len(invalid) > 0 {
		r.warnf(p.f("cipherSuites"), "ignoring invalid cipher suites: %v", setList(invalid))
	}
	if len(dup) > 0 {
		r.warnf(p.f("cipherSuites"), "ignoring duplicate cipher suites: %v", setList(dup))
	}

	if t.Mode == networking.ServerTLSSettings_ISTIO_MUTUAL {
		// The mesh certificates are used; any other source conflicts.
		for _, f := range []struct {
			name string
			set  bool
			what string
		}{
			{"serverCertificate", t.ServerCertificate != "", "server certificate"},
			{"privateKey", t.PrivateKey != "", "private key"},
			{"caCertificates", t.CaCertificates != "", "CA bundle"},
			{"tlsCertificates", len(t.TlsCertificates) > 0, "tlsCertificates"},
			{"credentialName", t.CredentialName != "", "credentialName"},
			{"credentialNames", len(t.CredentialNames) > 0, "credentialNames"},
		} {
			if f.set {
				r.errorf(p.f(f.name), "ISTIO_MUTUAL TLS cannot have associated %s", f.what)
			}
		}
		return
	}
	if t.Mode == networking.ServerTLSSettings_PASSTHROUGH || t.Mode == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
		if t.CaCrl != "" || t.ServerCertificate != "" || t.PrivateKey != "" || t.CaCertificates != "" ||
			len(t.TlsCertificates) > 0 || t.CredentialName != "" || len(t.CredentialNames) > 0 {
			r.warnf(p, "%v mode does not use certificates, they will be ignored", t.Mode)
		}
	}
	sources := 0
	for _, set := range []bool{t.ServerCertificate != "" && t.PrivateKey != "", t.CredentialName != "", len(t.CredentialNames) > 0, len(t.TlsCertificates) > 0} {
		if set {
			sources++
		}
	}
	if sources > 1 {
		r.errorf(p, "only one of credentialName, credentialNames, serverCertificate/privateKey, tlsCertificates should be specified")
	}
	terminating := t.Mode == networking.ServerTLSSettings_SIMPLE || t.Mode == networking.ServerTLSSettings_MUTUAL || t.Mode == networking.ServerTLSSettings_OPTIONAL_MUTUAL
	if terminating && (t.CredentialName != "" || len(t.CredentialNames) > 0) {
		// Certificates come from the named Secret(s).
		return
	}
	if terminating {
		prefix := "SIMPLE TLS"
		if t.Mode != networking.ServerTLSSettings_SIMPLE {
			prefix = "MUTUAL TLS"
			if t.CaCertificates == "" {
				r.errorf(p.f("caCertificates"), "%s requires a client CA bundle", prefix)
			}
		}
		if len(t.TlsCertificates) > 2 {
			r.warnf(p.f("tlsCertificates"), "%s can support up to 2 server certificates", prefix)
		}
		if len(t.TlsCertificates) > 0 {
			for i, c := range t.TlsCertificates {
				cp := p.f("tlsCertificates").i(i)
				if c.GetServerCertificate() == "" {
					r.errorf(cp.f("serverCertificate"), "%s requires a server certificate", prefix)
				}
				if c.GetPrivateKey() == "" {
					r.errorf(cp.f("privateKey"), "%s requires a private key", prefix)
				}
			}
		} else {
			if t.ServerCertificate == "" {
				r.errorf(p.f("serverCertificate"), "%s requires a server certificate (or a credentialName)", prefix)
			}
			if t.PrivateKey == "" {
				r.errorf(p.f("privateKey"), "%s requires a private key (or a credentialName)", prefix)
			}
		}
	}
	if t.CaCrl != "" {
		if t.CredentialName != "" {
			r.errorf(p.f("caCrl"), "CRL is not supported with credentialName. CRL has to be specified in the credential")
		}
		if t.Mode == networking.ServerTLSSettings_SIMPLE {
			r.errorf(p.f("caCrl"), "CRL is not supported with SIMPLE TLS")
		}
	}
}

func setList(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkNamespacedHost checks a `namespace/host` entry of a Gateway server
// (where the namespace part is optional) or a Sidecar egress listener.
func checkNamespacedHost(h string, gateway bool) error {
	ns, host, ok := strings.Cut(h, "/")
	if !ok {
		if gateway {
			return checkScopedHostPart(h, true)
		}
		return fmt.Errorf("host must be of form namespace/dnsName")
	}
	if ns == "" || host == "" {
		return fmt.Errorf("config namespace and dnsName in host entry cannot be empty")
	}
	if gateway {
		if ns != "*" && ns != "." && !isDNSLabel(ns) {
			return fmt.Errorf("invalid namespace value %q in gateway", ns)
		}
	} else if n := strings.TrimPrefix(ns, "~"); n != "" && n != "*" && n != "." && !isDNSLabel(n) {
		return fmt.Errorf("invalid namespace value %q in sidecar", ns)
	}
	return checkScopedHostPart(host, gateway)
}

// checkScopedHostPart checks the host of a namespace/host entry: a full name
// (short names are ambiguous here), optionally with a leading `*.`; Gateways
// also accept an IP.
func checkScopedHostPart(h string, gateway bool) error {
	if h != "*" && !strings.Contains(h, ".") {
		return fmt.Errorf("short names (non FQDN) are not allowed, got %q", h)
	}
	if err := checkWildcardDomain(h); err != nil && !(gateway && isIP(h)) {
		return err
	}
	return checkPartialWildcard(h)
}

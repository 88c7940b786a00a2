package validation

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// Checks of single values shared by every kind. Each returns an error whose
// message does not repeat the field path; the caller records it against one.

var (
	// A DNS-1123 label as istiod accepts it (upper case included, for
	// backward compatibility with objects it has always accepted).
	dnsLabelRe = regexp.MustCompile(`^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$`)
	// The first label of a host may be `*`, or a label prefixed by `*` or `*-`.
	wildcardLabelRe = regexp.MustCompile(`^(?:\*|(?:\*|\*-)?[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)$`)

	// Kubernetes label keys: an optional DNS-name prefix and a qualified name.
	labelKeyRe   = regexp.MustCompile(`^(?:([a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)*)/)?((?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$`)
	labelValueRe = regexp.MustCompile(`^(?:(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)

	// RFC 7230 token characters, the alphabet of an HTTP header name, plus
	// the comma, which istiod has always accepted.
	headerNameRe = regexp.MustCompile("^[!#$%&'*+,\\-.^_`|~A-Za-z0-9]+$")
	// Header names that end up in Envoy config keys are held to a narrower alphabet.
	strictHeaderNameRe = regexp.MustCompile(`^[-_A-Za-z0-9]+$`)
	probeHeaderNameRe  = regexp.MustCompile(`^[-A-Za-z0-9]+$`)
	// Header values may not hold control characters other than tab.
	headerValueRe = regexp.MustCompile("^[^\u0000-\u0008\u000A-\u001F\u007F]*$")
)

const maxLabelLen = 63

func isDNSLabel(s string) bool { return len(s) <= maxLabelLen && dnsLabelRe.MatchString(s) }

func checkDNSPreconditions(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("domain name %q too long (max 255)", name)
	}
	if name == "" {
		return errors.New("empty domain name not allowed")
	}
	return nil
}

// checkDNSLabels checks the dot-separated labels of a domain; a trailing dot
// is allowed (`istio.io.`), an all-numeric top-level label is not.
func checkDNSLabels(domain string) error {
	parts := strings.Split(domain, ".")
	if tld := parts[len(parts)-1]; tld != "" {
		if _, err := strconv.Atoi(tld); err == nil {
			return fmt.Errorf("domain name %q invalid (top level domain %q cannot be all-numeric)", domain, tld)
		}
	}
	for i, l := range parts {
		if i == len(parts)-1 && l == "" {
			return nil
		}
		if !isDNSLabel(l) {
			return fmt.Errorf("domain name %q invalid (label %q invalid)", domain, l)
		}
	}
	return nil
}

// checkFQDN checks a domain name with no wildcard.
func checkFQDN(name string) error {
	if err := checkDNSPreconditions(name); err != nil {
		return err
	}
	return checkDNSLabels(name)
}

// checkWildcardDomain checks a domain name whose first label may be a wildcard.
func checkWildcardDomain(name string) error {
	if err := checkDNSPreconditions(name); err != nil {
		return err
	}
	first, rest, dotted := strings.Cut(name, ".")
	if len(first) > maxLabelLen || !wildcardLabelRe.MatchString(first) {
		return fmt.Errorf("domain name %q invalid (label %q invalid)", name, first)
	}
	if dotted {
		return checkDNSLabels(rest)
	}
	return nil
}

// checkGatewayBoundHost is checkWildcardDomain, plus the SNI names Envoy
// generates for AUTO_PASSTHROUGH (`outbound_.PORT_._.HOST`).
func checkGatewayBoundHost(sni bool, name string) error {
	if err := checkDNSPreconditions(name); err != nil {
		return err
	}
	if sni && strings.HasPrefix(name, "outbound_") {
		parts := strings.Split(name, "_")
		const want = "outbound_.<PORT>_._.<HOSTNAME>"
		if len(parts) < 4 {
			return fmt.Errorf("domain name %s invalid, should follow '%s' format", name, want)
		}
		port, host := strings.Trim(parts[1], "."), strings.Trim(parts[3], ".")
		if !strings.ContainsAny(port, "0123456789") {
			return fmt.Errorf("domain name %q invalid (label %q invalid); should follow %s format", name, port, want)
		}
		if !hasLetter(host) {
			return fmt.Errorf("domain name %q invalid (label %q invalid); should follow %s format", name, host, want)
		}
		return nil
	}
	return checkWildcardDomain(name)
}

func hasLetter(s string) bool {
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}

// checkPartialWildcard refuses wildcards other than `*` and a leading `*.`.
func checkPartialWildcard(host string) error {
	if strings.Contains(host, "*") && host != "*" && !strings.HasPrefix(host, "*.") {
		return fmt.Errorf("partial wildcard %q not allowed", host)
	}
	return nil
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func checkIP(s string) error {
	if !isIP(s) {
		return fmt.Errorf("%v is not a valid IP", s)
	}
	return nil
}

// checkIPOrCIDR accepts an address or a CIDR block.
func checkIPOrCIDR(s string) error {
	if strings.Count(s, "/") == 1 {
		if _, err := netip.ParsePrefix(s); err != nil {
			return fmt.Errorf("%v is not a valid CIDR block", s)
		}
		return nil
	}
	return checkIP(s)
}

func checkPort(port int64) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("port number %d must be in the range 1..65535", port)
	}
	return nil
}

func checkPortName(name string) error {
	if !isDNSLabel(name) {
		return fmt.Errorf("invalid port name: %q", name)
	}
	return nil
}

// Protocols as Istio names them (matched case-insensitively).
var protocols = map[string]bool{
	"tcp": true, "udp": true, "grpc": true, "grpc-web": true, "http": true, "http_proxy": true,
	"http2": true, "https": true, "tls": true, "mongo": true, "redis": true, "mysql": true,
}

func knownProtocol(p string) bool { return protocols[strings.ToLower(p)] }

func isHTTPProtocol(p string) bool {
	switch strings.ToLower(p) {
	case "http", "http2", "http_proxy", "grpc", "grpc-web":
		return true
	}
	return false
}

func isTLSProtocol(p string) bool {
	switch strings.ToLower(p) {
	case "https", "tls":
		return true
	}
	return false
}

func isTCPProtocol(p string) bool {
	switch strings.ToLower(p) {
	case "tcp", "https", "tls", "mongo", "redis", "mysql":
		return true
	}
	return false
}

// checkProtocol accepts the empty protocol (sniffed) and the known ones.
func checkProtocol(p string) error {
	if p != "" && !knownProtocol(p) {
		return fmt.Errorf("unsupported protocol: %s", p)
	}
	return nil
}

// checkDuration is the rule Envoy needs for most timeouts: at least 1ms, and
// whole milliseconds.
func checkDuration(d *durationpb.Duration) error {
	dur := d.AsDuration()
	if dur < time.Millisecond {
		return fmt.Errorf("duration must be at least 1ms, got %v", dur)
	}
	if dur%time.Millisecond != 0 {
		return fmt.Errorf("only durations to ms precision are supported, got %v", dur)
	}
	return nil
}

func (r *report) duration(p path, d *durationpb.Duration) {
	if d != nil {
		r.err(p, checkDuration(d))
	}
}

// checkLabels checks a map of Kubernetes labels.
func (r *report) labels(p path, l map[string]string) {
	for _, k := range sortedKeys(l) {
		if err := checkLabelKey(k); err != nil {
			r.err(p.k(k), err)
		}
		if !labelValueRe.MatchString(l[k]) {
			r.errorf(p.k(k), "invalid label value: %q", l[k])
		}
	}
}

func checkLabelKey(k string) error {
	m := labelKeyRe.FindStringSubmatch(k)
	switch {
	case m == nil:
		return fmt.Errorf("invalid label key: %q", k)
	case len(m[1]) > 253:
		return fmt.Errorf("invalid label key: %q (DNS prefix is too long)", k)
	case len(m[2]) > maxLabelLen:
		return fmt.Errorf("invalid label key: %q (name is too long)", k)
	}
	return nil
}

func checkPercent(v int32) error {
	if v < 0 || v > 100 {
		return fmt.Errorf("percentage %v is not in range 0..100", v)
	}
	return nil
}

// checkFractionalPercent is Envoy's rule: 0, or within [0.0001, 100].
func checkFractionalPercent(p *networking.Percent) error {
	if p == nil {
		return nil
	}
	if v := p.Value; v < 0 || v > 100 || (v > 0 && v < 0.0001) {
		return fmt.Errorf("percentage %v is neither 0.0, nor in range [0.0001, 100.0]", v)
	}
	return nil
}

// checkRegex checks a regular expression as Envoy will compile it (RE2).
func checkRegex(re string) error {
	if re == "" {
		return errors.New("regex string match should not be empty")
	}
	// Envoy caps the RE2 program size; length is a lower bound of it.
	if len(re) > 1024 {
		return errors.New("regex is too large, max length allowed is 1024")
	}
	if _, err := regexp.Compile(re); err != nil {
		return fmt.Errorf("%w; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)", err)
	}
	return nil
}

// stringMatch checks a StringMatch; allowEmptyPrefix is true for URIs, where
// Envoy accepts an empty prefix (it matches everything).
func (r *report) stringMatch(p path, m *networking.StringMatch, allowEmptyPrefix bool) {
	switch t := m.GetMatchType().(type) {
	case *networking.StringMatch_Prefix:
		if t.Prefix == "" && !allowEmptyPrefix {
			r.errorf(p.f("prefix"), "prefix string match should not be empty")
		}
	case *networking.StringMatch_Regex:
		r.err(p.f("regex"), checkRegex(t.Regex))
	}
}

func checkHeaderName(name string) error {
	if name == "" {
		return errors.New("header name cannot be empty")
	}
	if !headerNameRe.MatchString(name) {
		return fmt.Errorf("header name %s is not a valid header name", name)
	}
	return nil
}

func checkStrictHeaderName(name string) error {
	if name == "" {
		return errors.New("header name cannot be empty")
	}
	if !strictHeaderNameRe.MatchString(name) {
		return fmt.Errorf("header name %s is not a valid header name", name)
	}
	return nil
}

// isJWTClaimHeader reports whether a header match key names a JWT claim
// (`@request.auth.claims.NAME` or `@request.auth.claims[NAME]`).
func isJWTClaimHeader(name string) bool {
	const prefix = "@request.auth.claims"
	if !strings.HasPrefix(strings.ToLower(name), prefix) {
		return false
	}
	rest := name[len(prefix):]
	return strings.HasPrefix(rest, ".") && len(rest) > 1 ||
		strings.HasPrefix(rest, "[") && strings.HasSuffix(rest, "]") && len(rest) > 2
}

// checkMatchHeaderName checks the name of a header to match on: a token, an
// HTTP/2 pseudo-header, or a JWT claim.
func checkMatchHeaderName(name string) error {
	if name == "" {
		return errors.New("header name cannot be empty")
	}
	if isJWTClaimHeader(name) {
		return nil
	}
	switch name {
	case ":method", ":scheme", ":authority", ":path", ":status":
		return nil
	}
	return checkHeaderName(name)
}

func isPseudoOrHost(name string) bool {
	return strings.HasPrefix(name, ":") || strings.EqualFold(name, "host")
}

func isAuthorityHeader(name string) bool {
	return strings.EqualFold(name, ":authority") || strings.EqualFold(name, "host")
}

// checkSetRequestHeaderName: request headers may be set or added, including
// the authority (Host), but no other pseudo-header.
func checkSetRequestHeaderName(name string) error {
	if name == "" {
		return errors.New("header name cannot be empty")
	}
	if isPseudoOrHost(name) && !isAuthorityHeader(name) {
		return fmt.Errorf("invalid header %q: header cannot have \":\" prefix", name)
	}
	return nil
}

// checkHeaderOperationName: for removals and response headers, neither Host
// nor pseudo-headers may be touched.
func checkHeaderOperationName(name string) error {
	if name == "" {
		return errors.New("header name cannot be empty")
	}
	if strings.EqualFold(name, "host") {
		return fmt.Errorf("invalid header %q: cannot set Host header", name)
	}
	if strings.HasPrefix(name, ":") {
		return fmt.Errorf("invalid header %q: header cannot have \":\" prefix", name)
	}
	return nil
}

// checkHeaderValue checks a header value as Envoy's header formatter parses
// it: `%VAR%` and `%VAR(args)%` substitutions, `%%` for a literal percent.
func checkHeaderValue(v string) error {
	if !headerValueRe.MatchString(v) {
		return fmt.Errorf("header value %q holds control characters", v)
	}
	if err := parseHeaderFormat(v); err != nil {
		return fmt.Errorf("header value %q: %w", v, err)
	}
	return nil
}

// parseHeaderFormat follows the grammar of Envoy's header_parser: it only
// checks the structure of substitutions, not the variable names.
func parseHeaderFormat(v string) error {
	const (
		literal = iota
		varName
		wantArray
		wantString
		inString
		wantDelimOrEnd
		wantArgsEnd
		wantVarEnd
	)
	state := literal
	for i := 0; i < len(v); i++ {
		c := v[i]
		more := i+1 < len(v)
		switch state {
		case literal:
			if c != '%' {
				continue
			}
			if !more {
				return errors.New("un-escaped % at the end")
			}
			if v[i+1] == '%' {
				i++
				continue
			}
			state = varName
		case varName:
			switch c {
			case '%':
				state = literal
			case '(':
				state = wantArray
			}
		case wantArray:
			if c == '[' {
				state = wantString
			} else if c != ' ' {
				state = inString
			}
		case wantDelimOrEnd:
			switch {
			case c == ',':
				state = wantString
			case c == ']':
				state = wantArgsEnd
			case c != ' ':
				return errors.New("expecting ',', ']', or whitespace in the argument list")
			}
		case wantString:
			if c == '"' {
				state = inString
			} else if c != ' ' {
				return errors.New("expecting '\"' to start an argument")
			}
		case inString:
			switch c {
			case '\\':
				if !more {
					return errors.New("un-terminated backslash in argument")
				}
				i++
			case ')':
				state = wantVarEnd
			case '"':
				state = wantDelimOrEnd
			}
		case wantArgsEnd:
			if c == ')' {
				state = wantVarEnd
			} else if c != ' ' {
				return errors.New("expecting ')' or whitespace after the argument list")
			}
		case wantVarEnd:
			if c == '%' {
				state = literal
			} else if c != ' ' {
				return errors.New("expecting '%' or whitespace to close the variable")
			}
		}
	}
	if state != literal {
		return errors.New("un-terminated variable expression")
	}
	return nil
}

// workloadSelector checks a security/telemetry selector (matchLabels).
func (r *report) workloadSelector(p path, sel *typev1beta1.WorkloadSelector) {
	if sel == nil {
		return
	}
	r.selectorLabels(p.f("matchLabels"), sel.MatchLabels)
	if len(sel.MatchLabels) == 0 {
		r.warnf(p, "workload selector specified without labels, it selects every workload in the namespace")
	}
}

// networkingSelector checks the selector of Sidecar and ServiceEntry (labels).
func (r *report) networkingSelector(p path, sel *networking.WorkloadSelector) {
	if sel == nil {
		return
	}
	r.selectorLabels(p.f("labels"), sel.Labels)
	if len(sel.Labels) == 0 {
		r.warnf(p, "workload selector specified without labels, it selects every workload in the namespace")
	}
}

func (r *report) selectorLabels(p path, l map[string]string) {
	for _, k := range sortedKeys(l) {
		if k == "" {
			r.errorf(p.k(k), "empty key is not supported in selector: %q", k+"="+l[k])
		}
		if strings.Contains(k, "*") || strings.Contains(l[k], "*") {
			r.errorf(p.k(k), "wildcard is not supported in selector: %q", k+"="+l[k])
		}
	}
}

// targetRefs checks policy target references: only a Service, a
// ServiceEntry, a Gateway API Gateway or GatewayClass, in the policy's own
// namespace.
func (r *report) targetRef(p path, ref *typev1beta1.PolicyTargetReference) {
	if ref == nil {
		return
	}
	if ref.Name == "" {
		r.errorf(p.f("name"), "targetRef name must be set")
	}
	if ref.Namespace != "" {
		r.errorf(p.f("namespace"), "targetRef namespace must not be set; cross namespace referencing is not supported")
	}
	group := ref.Group
	ok := false
	switch ref.Kind {
	case "Service":
		ok = group == "" || group == "core"
	case "ServiceEntry":
		ok = group == "networking.istio.io"
	case "Gateway", "GatewayClass":
		ok = group == "gateway.networking.k8s.io"
	}
	if !ok {
		r.errorf(p, "targetRef must be to a core/Service, networking.istio.io/ServiceEntry, gateway.networking.k8s.io/Gateway or gateway.networking.k8s.io/GatewayClass, but was %s/%s", ref.Group, ref.Kind)
	}
}

// policySelection checks the ways a policy picks its workloads: a selector,
// a targetRef or targetRefs, at most one of them.
func (r *report) policySelection(p path, sel *typev1beta1.WorkloadSelector, ref *typev1beta1.PolicyTargetReference, refs []*typev1beta1.PolicyTargetReference) {
	n := 0
	if sel != nil {
		n++
	}
	if ref != nil {
		n++
	}
	if len(refs) > 0 {
		n++
	}
	if n > 1 {
		r.errorf(p, "only one of targetRefs or workloadSelector can be set")
	}
	r.workloadSelector(p.f("selector"), sel)
	r.targetRef(p.f("targetRef"), ref)
	for i, t := range refs {
		r.targetRef(p.f("targetRefs").i(i), t)
	}
}

// exportTo checks an exportTo list. `~` (visible to no one) is only for
// ServiceEntries; a DestinationRule with a workload selector may only be
// exported to its own namespace.
func (r *report) exportTo(p path, namespace string, exportTo []string, serviceEntry, drWithSelector bool) {
	if len(exportTo) == 0 {
		return
	}
	seen := map[string]bool{}
	for i, e := range exportTo {
		key := e
		if e == "." {
			key = namespace // so that `.` and the namespace itself count as duplicates
		}
		if seen[key] {
			if key != e {
				r.errorf(p.i(i), "duplicate entries in exportTo: . and current namespace %s", namespace)
			} else {
				r.errorf(p.i(i), "duplicate entries in exportTo for entry %s", e)
			}
			continue
		}
		switch {
		case e == "~" && serviceEntry, e == "." || e == "*":
			seen[key] = true
		case e == "~":
			r.errorf(p.i(i), "exportTo ~ (none) is not allowed for Istio configuration objects")
		case !isDNSLabel(e):
			r.errorf(p.i(i), "only ., *, or a valid DNS 1123 label is allowed as exportTo entry, got %q", e)
		default:
			seen[key] = true
		}
	}
	if drWithSelector && len(seen) > 0 {
		if !seen[namespace] {
			r.errorf(p, "destination rule with workload selector cannot have exportTo beyond current namespace")
		} else if len(seen) > 1 {
			r.errorf(p, "destination rule with workload selector cannot have multiple entries in exportTo")
		}
	}
	if seen["*"] && len(exportTo) > 1 {
		r.errorf(p, "cannot have both public (*) and non-public exportTo values for a resource")
	}
	if seen["~"] && len(exportTo) > 1 {
		r.errorf(p, "cannot export service entry to no one (~) and someone")
	}
}

// checkUnixAddress checks the path of a unix:// address.
func checkUnixAddress(addr string) error {
	if addr == "" {
		return errors.New("unix address must not be empty")
	}
	if strings.HasPrefix(addr, "@") { // abstract socket
		return nil
	}
	if !strings.HasPrefix(addr, "/") || strings.HasSuffix(addr, "/") {
		return fmt.Errorf("%s is not an absolute path to a file", addr)
	}
	return nil
}

const unixPrefix = "unix://"

func fmtErr(format string, args ...any) error { return fmt.Errorf(format, args...) }

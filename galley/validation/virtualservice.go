//lint:file-ignore SA1019 deprecated fields are still accepted, so their rules still apply, as in istiod

package validation

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

// meshGateway is the reserved gateway name meaning "every sidecar".
const meshGateway = "mesh"

func validateVirtualService(r *report, p path, namespace string, vs *networking.VirtualService) {
	// A VirtualService without hosts is a delegate: it is only reached
	// through another VirtualService's http route.
	delegate := len(vs.Hosts) == 0
	if delegate {
		if len(vs.Gateways) != 0 {
			r.errorf(p.f("gateways"), "delegate virtual service must have no gateways specified")
		}
		if len(vs.Tls) != 0 {
			r.errorf(p.f("tls"), "delegate virtual service must have no tls route specified")
		}
		if len(vs.Tcp) != 0 {
			r.errorf(p.f("tcp"), "delegate virtual service must have no tcp route specified")
		}
	}

	// Bound to gateways only when gateways are listed and `mesh` is not
	// among them; otherwise the sidecars apply it too.
	toGateway := len(vs.Gateways) > 0 && !slices.Contains(vs.Gateways, meshGateway)
	toMesh := !toGateway
	r.gatewayNames(p.f("gateways"), vs.Gateways)

	if !toGateway {
		for i, h := range vs.Http {
			for j, m := range h.GetMatch() {
				mp := p.f("http").i(i).f("match").i(j)
				for _, field := range []struct {
					name string
					m    map[string]*networking.StringMatch
				}{{"headers", m.GetHeaders()}, {"withoutHeaders", m.GetWithoutHeaders()}} {
					for _, k := range sortedKeys(field.m) {
						if isJWTClaimHeader(k) {
							r.errorf(mp.f(field.name).k(k), "JWT claim based routing is only supported for virtual services bound to gateways, found gateways %v", vs.Gateways)
						}
					}
				}
			}
		}
	}

	sni := false
	for _, t := range vs.Tls {
		for _, m := range t.GetMatch() {
			sni = sni || len(m.GetSniHosts()) > 0
		}
	}
	hostsValid := true
	for i, h := range vs.Hosts {
		hp := p.f("hosts").i(i)
		var err error
		if toGateway {
			err = checkGatewayBoundHost(sni, h)
		} else {
			err = checkWildcardDomain(h)
		}
		switch {
		case err != nil && !isIP(h):
			r.err(hp, err)
			hostsValid = false
		case err == nil && toMesh && h == "*":
			r.errorf(hp, "wildcard host * is not allowed for virtual services bound to the mesh gateway")
			hostsValid = false
		}
	}
	if hostsValid {
		for i := range vs.Hosts {
			for j := i + 1; j < len(vs.Hosts); j++ {
				if HostsOverlap(vs.Hosts[i], vs.Hosts[j]) {
					r.errorf(p.f("hosts").i(j), "duplicate hosts in virtual service: %s & %s", vs.Hosts[i], vs.Hosts[j])
				}
			}
		}
	}

	if len(vs.Http) == 0 && len(vs.Tcp) == 0 && len(vs.Tls) == 0 {
		r.errorf(p, "http, tcp or tls must be provided in virtual service")
	}
	for i, h := range vs.Http {
		if h == nil {
			r.errorf(p.f("http").i(i), "http route may not be null")
			continue
		}
		r.httpRoute(p.f("http").i(i), h, delegate)
	}
	for i, t := range vs.Tls {
		r.tlsRoute(p.f("tls").i(i), t, vs, toGateway)
	}
	for i, t := range vs.Tcp {
		r.tcpRoute(p.f("tcp").i(i), t)
	}
	r.exportTo(p.f("exportTo"), namespace, vs.ExportTo, false, false)

	r.unreachableRules(p.f("http"), len(vs.Http), func(i int) ([]string, bool) {
		h := vs.Http[i]
		if h == nil {
			return nil, false
		}
		keys := make([]string, len(h.Match))
		for j, m := range h.Match {
			if m != nil && m.Name != "" {
				m = proto.Clone(m).(*networking.HTTPMatchRequest)
				m.Name = "" // names do not change what a match matches
			}
			keys[j] = matchKey(m)
		}
		return keys, true
	})
	r.unreachableRules(p.f("tcp"), len(vs.Tcp), func(i int) ([]string, bool) {
		if vs.Tcp[i] == nil {
			return nil, false
		}
		keys := make([]string, len(vs.Tcp[i].Match))
		for j, m := range vs.Tcp[i].Match {
			keys[j] = matchKey(m)
		}
		return keys, true
	})
	r.unreachableRules(p.f("tls"), len(vs.Tls), func(i int) ([]string, bool) {
		if vs.Tls[i] == nil {
			return nil, false
		}
		keys := make([]string, len(vs.Tls[i].Match))
		for j, m := range vs.Tls[i].Match {
			keys[j] = matchKey(m)
		}
		return keys, true
	})
}

// HostsOverlap reports whether two hosts (either possibly a `*` wildcard,
// which covers any suffix) can match the same name.
func HostsOverlap(a, b string) bool {
	aw, bw := strings.HasPrefix(a, "*"), strings.HasPrefix(b, "*")
	switch {
	case aw && bw:
		if len(a) < len(b) {
			return strings.HasSuffix(b[1:], a[1:])
		}
		return strings.HasSuffix(a[1:], b[1:])
	case aw:
		return strings.HasSuffix(b, a[1:])
	case bw:
		return strings.HasSuffix(a, b[1:])
	}
	return a == b
}

// HostSubsetOf reports whether every name host a matches is matched by b.
func HostSubsetOf(a, b string) bool {
	aw, bw := strings.HasPrefix(a, "*"), strings.HasPrefix(b, "*")
	switch {
	case aw && bw:
		return len(a) >= len(b) && strings.HasSuffix(a[1:], b[1:])
	case aw:
		return false
	case bw:
		return strings.HasSuffix(a, b[1:])
	}
	return a == b
}

func matchKey(m proto.Message) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// unreachableRules warns about rules that can never be selected: after a
// rule without matches (it takes everything), or whose every match repeats
// an earlier rule's. istiod warns about the same.
func (r *report) unreachableRules(p path, n int, matches func(i int) (keys []string, ok bool)) {
	seen := map[string]int{}
	catchAll := -1
	for i := 0; i < n; i++ {
		keys, ok := matches(i)
		if !ok {
			continue
		}
		if len(keys) == 0 {
			if catchAll >= 0 {
				r.warnf(p.i(i), "rule is never used: only the last rule can have no matches (rule %d has none)", catchAll)
			}
			catchAll = i
			continue
		}
		if catchAll >= 0 {
			r.warnf(p.i(i), "rule is never used: rule %d before it has no matches and takes all traffic", catchAll)
			continue
		}
		dups := 0
		for j, k := range keys {
			if first, ok := seen[k]; ok {
				r.warnf(p.i(i).f("match").i(j), "match is never used: rule %d has the same match", first)
				dups++
				continue
			}
			seen[k] = i
		}
		if dups == len(keys) {
			r.warnf(p.i(i), "rule is never used: all its matches are used by earlier rules")
		}
	}
}

// gatewayNames checks references to Gateways: `namespace/name`, a name in
// the VirtualService's namespace, or `mesh`.
func (r *report) gatewayNames(p path, names []string) {
	// istiod stops checking the list after the first name written without a
	// namespace, so what follows it has always been accepted: for those
	// entries our findings are warnings.
	lenient := false
	for i, g := range names {
		gp := p.i(i)
		problem := r.errorf
		if lenient {
			problem = r.warnf
		}
		ns, name, ok := strings.Cut(g, "/")
		if !ok {
			if strings.Contains(g, ".") {
				parts := strings.Split(g, ".")
				r.warnf(gp, "using legacy gatewayName format %q; prefer the <namespace>/<name> format: %q", g, parts[1]+"/"+parts[0])
			}
			if err := checkFQDN(g); err != nil {
				problem(gp, "%v", err)
			}
			lenient = true
			continue
		}
		if ns == "" || name == "" {
			problem(gp, "config namespace and gateway name cannot be empty")
		}
		if !isDNSLabel(ns) {
			problem(gp, "invalid value for namespace: %q", ns)
		}
		if !isDNSLabel(name) {
			problem(gp, "invalid value for gateway name: %q", name)
		}
	}
}

func (r *report) httpRoute(p path, h *networking.HTTPRoute, delegate bool) {
	r.httpRouteConflicts(p, h, delegate)
	r.httpMatches(p.f("match"), h.Match)
	r.headerOperations(p.f("headers"), h.Headers)
	r.cors(p.f("corsPolicy"), h.CorsPolicy)
	r.fault(p.f("fault"), h.Fault)
	if mp := h.MirrorPercent; mp != nil {
		if mp.GetValue() > 100 {
			r.errorf(p.f("mirrorPercent"), "mirror_percent must have a max value of 100 (it has %d)", mp.GetValue())
		}
		r.warnf(p.f("mirrorPercent"), `using deprecated setting "mirrorPercent", use "mirrorPercentage" instead`)
	}
	if mp := h.MirrorPercentage; mp != nil {
		if v := mp.GetValue(); v > 100 {
			r.errorf(p.f("mirrorPercentage"), "mirror_percentage must have a max value of 100 (it has %f)", v)
		} else if v < 0 {
			r.errorf(p.f("mirrorPercentage"), "mirror_percentage must have a min value of 0 (it has %f)", v)
		}
	}
	r.destination(p.f("mirror"), h.Mirror)
	for i, m := range h.Mirrors {
		mp := p.f("mirrors").i(i)
		switch {
		case m == nil:
			r.errorf(mp, "mirror cannot be null")
		case m.Destination == nil:
			r.errorf(mp.f("destination"), "destination is required for mirrors")
		default:
			r.destination(mp.f("destination"), m.Destination)
			if v := m.Percentage.GetValue(); v > 100 {
				r.errorf(mp.f("percentage"), "mirror percentage must have a max value of 100 (it has %f)", v)
			} else if v < 0 {
				r.errorf(mp.f("percentage"), "mirror percentage must have a min value of 0 (it has %f)", v)
			}
		}
	}
	r.redirect(p.f("redirect"), h.Redirect, h.Match)
	r.directResponse(p.f("directResponse"), h.DirectResponse)
	r.retries(p.f("retries"), h.Retries)
	r.rewrite(p.f("rewrite"), h.Rewrite)
	r.authorityRewrite(p, h.Rewrite, h.Headers)
	r.httpRouteDestinations(p.f("route"), h.Route)
	if h.Timeout != nil {
		r.duration(p.f("timeout"), h.Timeout)
		// A retry that may take longer than the whole request is cut short:
		// a stricter opinion than istiod's, so a warning.
		if pt := h.Retries.GetPerTryTimeout(); pt != nil && h.Timeout.AsDuration() > 0 && pt.AsDuration() > h.Timeout.AsDuration() {
			r.warnf(p.f("retries").f("perTryTimeout"), "perTryTimeout %v is longer than the route timeout %v, so a retry never gets its full time", pt.AsDuration(), h.Timeout.AsDuration())
		}
	}
}

func (r *report) httpRouteConflicts(p path, h *networking.HTTPRoute, delegate bool) {
	if !delegate && h.Delegate != nil {
		// A root route hands the request to the delegate, which does the routing.
		if h.Redirect != nil {
			r.errorf(p.f("redirect"), "root HTTP route %s must not specify redirect", h.Name)
		}
		if h.Route != nil {
			r.errorf(p.f("route"), "root HTTP route %s must not specify route", h.Name)
		}
		return
	}
	if delegate && h.Delegate != nil {
		r.errorf(p.f("delegate"), "delegate HTTP route cannot contain delegate")
	}
	switch {
	case h.Redirect != nil:
		if len(h.Route) > 0 {
			r.errorf(p, "HTTP route cannot contain both route and redirect")
		}
		if h.Fault != nil {
			r.errorf(p, "HTTP route cannot contain both fault and redirect")
		}
		if h.Rewrite != nil {
			r.errorf(p, "HTTP route rule cannot contain both rewrite and redirect")
		}
		if h.DirectResponse != nil {
			r.errorf(p, "HTTP route rule cannot contain both direct_response and redirect")
		}
	case h.DirectResponse != nil:
		if len(h.Route) > 0 {
			r.errorf(p, "HTTP route cannot contain both route and direct_response")
		}
		if h.Fault != nil {
			r.errorf(p, "HTTP route cannot contain both fault and direct_response")
		}
		if h.Rewrite != nil {
			r.errorf(p, "HTTP route rule cannot contain both rewrite and direct_response")
		}
	case len(h.Route) == 0:
		r.errorf(p, "HTTP route, redirect or direct_response is required")
	}
	if h.Mirror != nil && len(h.Mirrors) > 0 {
		r.errorf(p, "HTTP route cannot contain both mirror and mirrors")
	}
}

func (r *report) httpMatches(p path, matches []*networking.HTTPMatchRequest) {
	for i, m := range matches {
		if m == nil {
			continue
		}
		mp := p.i(i)
		for _, name := range sortedKeys(m.Headers) {
			hp := mp.f("headers").k(name)
			if m.Headers[name] == nil {
				r.errorf(hp, "header match %v cannot be null", name)
			}
			r.err(hp, checkMatchHeaderName(name))
			r.stringMatch(hp, m.Headers[name], false)
		}
		for _, name := range sortedKeys(m.WithoutHeaders) {
			hp := mp.f("withoutHeaders").k(name)
			r.err(hp, checkMatchHeaderName(name))
			// `*` is not a regex here: it means "the header is present".
			if h := m.WithoutHeaders[name]; h != nil && h.GetRegex() != "*" {
				r.stringMatch(hp, h, false)
			}
		}
		// Envoy accepts an empty URI prefix (everything), but not an
		// empty scheme, method or authority prefix.
		r.stringMatch(mp.f("uri"), m.Uri, true)
		r.stringMatch(mp.f("scheme"), m.Scheme, false)
		r.stringMatch(mp.f("method"), m.Method, false)
		r.stringMatch(mp.f("authority"), m.Authority, false)
		for _, name := range sortedKeys(m.QueryParams) {
			r.stringMatch(mp.f("queryParams").k(name), m.QueryParams[name], false)
		}
		if m.Port != 0 {
			r.err(mp.f("port"), checkPort(int64(m.Port)))
		}
		r.labels(mp.f("sourceLabels"), m.SourceLabels)
		r.gatewayNames(mp.f("gateways"), m.Gateways)
		if m.SourceNamespace != "" && !isDNSLabel(m.SourceNamespace) {
			r.errorf(mp.f("sourceNamespace"), "sourceNamespace match %s is invalid", m.SourceNamespace)
		}
	}
}

// headerOperations checks header manipulations: requests may set the
// authority but no other pseudo-header; removals and response headers may
// touch neither.
func (r *report) headerOperations(p path, h *networking.Headers) {
	if h == nil {
		return
	}
	req, resp := h.GetRequest(), h.GetResponse()
	for _, op := range []struct {
		p path
		m map[string]string
	}{{p.f("request").f("set"), req.GetSet()}, {p.f("request").f("add"), req.GetAdd()}} {
		for _, name := range sortedKeys(op.m) {
			r.err(op.p.k(name), checkSetRequestHeaderName(name))
			r.err(op.p.k(name), checkHeaderValue(op.m[name]))
		}
	}
	for _, op := range []struct {
		p path
		m map[string]string
	}{{p.f("response").f("set"), resp.GetSet()}, {p.f("response").f("add"), resp.GetAdd()}} {
		for _, name := range sortedKeys(op.m) {
			r.err(op.p.k(name), checkHeaderOperationName(name))
			r.err(op.p.k(name), checkHeaderValue(op.m[name]))
		}
	}
	for i, name := range req.GetRemove() {
		r.err(p.f("request").f("remove").i(i), checkHeaderOperationName(name))
	}
	for i, name := range resp.GetRemove() {
		r.err(p.f("response").f("remove").i(i), checkHeaderOperationName(name))
	}
}

var corsMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodConnect: true,
	http.MethodOptions: true, http.MethodTrace: true, "*": true,
}

func (r *report) cors(p path, c *networking.CorsPolicy) {
	if c == nil {
		return
	}
	for i, o := range c.AllowOrigins {
		op := p.f("allowOrigins").i(i)
		var s string
		switch t := o.GetMatchType().(type) {
		case *networking.StringMatch_Exact:
			s = t.Exact
		case *networking.StringMatch_Prefix:
			s = t.Prefix
		case *networking.StringMatch_Regex:
			s = t.Regex
		}
		if s == "" {
			r.errorf(op, "'' is not a valid match type for CORS allow origins")
			continue
		}
		if re, ok := o.GetMatchType().(*networking.StringMatch_Regex); ok {
			r.err(op.f("regex"), checkRegex(re.Regex))
		}
	}
	if len(c.AllowOrigin) > 0 {
		r.warnf(p.f("allowOrigin"), `using deprecated setting "allowOrigin", use "allowOrigins" instead`)
	}
	for i, m := range c.AllowMethods {
		if !corsMethods[m] {
			r.errorf(p.f("allowMethods").i(i), "%q is not a supported HTTP method", m)
		}
	}
	for _, f := range []struct {
		name string
		l    []string
	}{{"allowHeaders", c.AllowHeaders}, {"exposeHeaders", c.ExposeHeaders}} {
		for i, h := range f.l {
			if h == "*" {
				continue
			}
			r.err(p.f(f.name).i(i), checkHeaderName(h))
		}
	}
	if c.MaxAge != nil {
		r.duration(p.f("maxAge"), c.MaxAge)
		if c.MaxAge.Nanos > 0 {
			r.errorf(p.f("maxAge"), "max_age duration is accurate only to seconds precision")
		}
	}
}

// grpcStatuses are the status names fault injection may abort with.
var grpcStatuses = map[string]bool{
	"OK": true, "CANCELLED": true, "UNKNOWN": true, "INVALID_ARGUMENT": true, "DEADLINE_EXCEEDED": true,
	"NOT_FOUND": true, "ALREADY_EXISTS": true, "PERMISSION_DENIED": true, "RESOURCE_EXHAUSTED": true,
	"FAILED_PRECONDITION": true, "ABORTED": true, "OUT_OF_RANGE": true, "UNIMPLEMENTED": true,
	"INTERNAL": true, "UNAVAILABLE": true, "DATA_LOSS": true, "UNAUTHENTICATED": true,
}

func checkHTTPStatus(status int64) error {
	// istiod accepts 600 too; so do we.
	if status < 200 || status > 600 {
		return fmt.Errorf("HTTP status %d is not in range 200-599", status)
	}
	return nil
}

func (r *report) fault(p path, f *networking.HTTPFaultInjection) {
	if f == nil {
		return
	}
	if f.Abort == nil && f.Delay == nil {
		r.errorf(p, "HTTP fault injection must have an abort and/or a delay")
	}
	if a := f.Abort; a != nil {
		ap := p.f("abort")
		r.err(ap.f("percentage"), checkFractionalPercent(a.Percentage))
		switch t := a.ErrorType.(type) {
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			if !grpcStatuses[t.GrpcStatus] {
				r.errorf(ap.f("grpcStatus"), "gRPC status %q is not supported; use a name from https://github.com/grpc/grpc/blob/master/doc/statuscodes.md such as NOT_FOUND", t.GrpcStatus)
			}
		case *networking.HTTPFaultInjection_Abort_Http2Error:
			r.errorf(ap.f("http2Error"), "HTTP/2 abort fault injection not supported yet")
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			r.err(ap.f("httpStatus"), checkHTTPStatus(int64(t.HttpStatus)))
		default:
			r.warnf(ap, "abort configured, but error type not set")
		}
	}
	if d := f.Delay; d != nil {
		dp := p.f("delay")
		r.err(dp.f("percentage"), checkFractionalPercent(d.Percentage))
		if d.Percent != 0 {
			if err := checkPercent(d.Percent); err != nil {
				r.warnf(dp.f("percent"), "%v; the field is deprecated, use percentage", err)
			} else {
				r.warnf(dp.f("percent"), `using deprecated setting "percent", use "percentage" instead`)
			}
		}
		switch t := d.HttpDelayType.(type) {
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
			r.duration(dp.f("fixedDelay"), t.FixedDelay)
		case *networking.HTTPFaultInjection_Delay_ExponentialDelay:
			r.duration(dp.f("exponentialDelay"), t.ExponentialDelay)
			r.errorf(dp.f("exponentialDelay"), "exponentialDelay not supported yet")
		default:
			r.warnf(dp, "delay configured without fixedDelay, so no request is delayed")
		}
	}
}

// destination checks where traffic is sent: a host (never `*`), an optional
// subset and port.
func (r *report) destination(p path, d *networking.Destination) {
	if d == nil {
		return
	}
	if d.Host == "*" {
		r.errorf(p.f("host"), "invalid destination host %s", d.Host)
	} else {
		r.err(p.f("host"), checkWildcardDomain(d.Host))
	}
	if d.Subset != "" {
		r.err(p.f("subset"), checkSubsetName(d.Subset))
	}
	if d.Port != nil {
		r.err(p.f("port").f("number"), checkPort(int64(d.Port.GetNumber())))
	}
}

func checkSubsetName(name string) error {
	if name == "" {
		return fmt.Errorf("subset name cannot be empty")
	}
	if !isDNSLabel(name) {
		return fmt.Errorf("subset name is invalid: %s", name)
	}
	return nil
}

func (r *report) redirect(p path, rd *networking.HTTPRedirect, matches []*networking.HTTPMatchRequest) {
	if rd == nil {
		return
	}
	if rd.Uri != "" && rd.PrefixRewrite != "" {
		r.errorf(p, "redirect may only specify one of uri or prefixRewrite")
	}
	if rd.PrefixRewrite != "" {
		for i, m := range matches {
			if _, prefix := m.GetUri().GetMatchType().(*networking.StringMatch_Prefix); m.GetUri() != nil && !prefix {
				r.errorf(p.f("prefixRewrite"), "redirect prefixRewrite requires all URI matches to use prefix match type (match %d does not)", i)
			}
		}
	}
	if rd.Uri == "" && rd.PrefixRewrite == "" && rd.Authority == "" && rd.RedirectPort == nil && rd.Scheme == "" {
		r.errorf(p, "redirect must specify URI, authority, scheme, or port")
	}
	if rd.RedirectCode != 0 && (rd.RedirectCode < 300 || rd.RedirectCode > 399) {
		r.errorf(p.f("redirectCode"), "%d is not a valid redirect code, must be 3xx", rd.RedirectCode)
	}
	if rd.Scheme != "" && rd.Scheme != "http" && rd.Scheme != "https" {
		r.errorf(p.f("scheme"), `invalid redirect scheme, must be "http" or "https"`)
	}
	if rd.GetPort() > 0 {
		r.err(p.f("port"), checkPort(int64(rd.GetPort())))
	}
}

func (r *report) directResponse(p path, d *networking.HTTPDirectResponse) {
	if d == nil {
		return
	}
	if d.Body != nil {
		size := 0
		switch b := d.Body.Specifier.(type) {
		case *networking.HTTPBody_String_:
			size = len(b.String_)
		case *networking.HTTPBody_Bytes:
			size = len(b.Bytes)
		}
		// Every proxy holds a copy of the body: keep it small.
		switch {
		case size > 1<<20:
			r.errorf(p.f("body"), "large direct_responses may impact control plane performance, must be less than 1MB")
		case size > 100<<10:
			r.warnf(p.f("body"), "large direct_responses may impact control plane performance")
		}
	}
	r.err(p.f("status"), checkHTTPStatus(int64(d.Status)))
}

// retryOnPolicies are the conditions Envoy can retry on (x-envoy-retry-on
// and x-envoy-retry-grpc-on).
var retryOnPolicies = map[string]bool{
	"5xx": true, "gateway-error": true, "reset": true, "reset-before-request": true, "connect-failure": true,
	"retriable-4xx": true, "refused-stream": true, "retriable-status-codes": true, "retriable-headers": true,
	"envoy-ratelimited": true, "http3-post-connect-failure": true,
	"cancelled": true, "deadline-exceeded": true, "internal": true, "resource-exhausted": true, "unavailable": true,
}

func (r *report) retries(p path, rt *networking.HTTPRetry) {
	if rt == nil {
		return
	}
	if rt.Attempts < 0 {
		r.errorf(p.f("attempts"), "attempts cannot be negative")
	}
	if rt.Attempts == 0 && (rt.PerTryTimeout != nil || rt.RetryOn != "" || rt.RetryRemoteLocalities != nil) {
		r.errorf(p.f("attempts"), "http retry policy configured when attempts are set to 0 (disabled)")
	}
	r.duration(p.f("perTryTimeout"), rt.PerTryTimeout)
	if rt.RetryOn != "" {
		for _, policy := range strings.Split(rt.RetryOn, ",") {
			code, _ := strconv.Atoi(policy)
			if http.StatusText(code) == "" && !retryOnPolicies[policy] {
				r.errorf(p.f("retryOn"), "%q is not a valid retryOn policy", policy)
			}
		}
	}
	r.duration(p.f("backoff"), rt.Backoff)
}

func (r *report) rewrite(p path, rw *networking.HTTPRewrite) {
	if rw == nil {
		return
	}
	if rw.Uri != "" && rw.UriRegexRewrite != nil {
		r.errorf(p, "rewrite may only contain one of uri or uriRegexRewrite")
	}
	if rw.Uri == "" && rw.UriRegexRewrite == nil && rw.Authority == "" {
		r.errorf(p, "rewrite must specify at least one of uri, uriRegexRewrite, or authority")
	}
	if re := rw.UriRegexRewrite; re != nil {
		if re.Match == "" || re.Rewrite == "" {
			r.errorf(p.f("uriRegexRewrite"), "uriRegexRewrite requires both rewrite and match fields to be specified")
		} else {
			r.err(p.f("uriRegexRewrite").f("match"), checkRegex(re.Match))
		}
	}
}

// authorityRewrite refuses rewriting the authority in two places at once.
func (r *report) authorityRewrite(p path, rw *networking.HTTPRewrite, h *networking.Headers) {
	current := rw.GetAuthority()
	req := h.GetRequest()
	for _, op := range []struct {
		p path
		m map[string]string
	}{{p.f("headers").f("request").f("set"), req.GetSet()}, {p.f("headers").f("request").f("add"), req.GetAdd()}} {
		for _, k := range sortedKeys(op.m) {
			if !isAuthorityHeader(k) {
				continue
			}
			if current != "" {
				r.errorf(op.p.k(k), "authority header cannot be set multiple times: have %q, attempting to set %q", current, op.m[k])
				return
			}
			current = op.m[k]
		}
	}
}

// httpRouteDestinations checks the weighted destinations of an HTTP route.
// Weights are relative, as in istiod: only a zero total is an error; a total
// other than 100 is legal and only warned about.
func (r *report) httpRouteDestinations(p path, dests []*networking.HTTPRouteDestination) {
	var total int64
	for i, d := range dests {
		dp := p.i(i)
		if d == nil {
			r.errorf(dp, "weight may not be nil")
			continue
		}
		if d.Destination == nil {
			r.errorf(dp.f("destination"), "destination is required")
		}
		r.headerOperations(dp.f("headers"), d.Headers)
		r.destination(dp.f("destination"), d.Destination)
		if d.Weight < 0 {
			r.errorf(dp.f("weight"), "weight %d < 0", d.Weight)
		}
		total += int64(d.Weight)
	}
	r.weightTotal(p, len(dests), total, func(i int) int32 { return dests[i].GetWeight() })
}

func (r *report) weightTotal(p path, n int, total int64, weight func(int) int32) {
	switch {
	case n > 1 && total == 0:
		r.errorf(p, "total destination weight = 0")
	case total > math.MaxUint32:
		r.errorf(p, "total destination weight %d is too large (max %d)", total, uint32(math.MaxUint32))
	case n == 1 && weight(0) == 0:
		// A single destination with no weight gets all the traffic.
	case n > 0 && total != 100:
		r.warnf(p, "weights sum to %d, not 100; they are relative, so destination i gets weight[i]/%d of the traffic", total, total)
	}
}

func (r *report) tlsRoute(p path, t *networking.TLSRoute, vs *networking.VirtualService, toGateway bool) {
	if t == nil {
		return
	}
	if len(t.Match) == 0 {
		r.errorf(p.f("match"), "TLS route must have at least one match condition")
	}
	for i, m := range t.Match {
		mp := p.f("match").i(i)
		if m == nil {
			r.errorf(mp, "TLS match may not be null")
			continue
		}
		if len(m.SniHosts) == 0 {
			r.errorf(mp.f("sniHosts"), "TLS match must have at least one SNI host")
		}
		for j, h := range m.SniHosts {
			r.sniHost(mp.f("sniHosts").i(j), h, vs, toGateway)
		}
		for j, s := range m.DestinationSubnets {
			r.err(mp.f("destinationSubnets").i(j), checkIPOrCIDR(s))
		}
		if m.Port != 0 {
			r.err(mp.f("port"), checkPort(int64(m.Port)))
		}
		r.labels(mp.f("sourceLabels"), m.SourceLabels)
		r.gatewayNames(mp.f("gateways"), m.Gateways)
	}
	if len(t.Route) == 0 {
		r.errorf(p.f("route"), "TLS route is required")
	}
	r.routeDestinations(p.f("route"), t.Route)
}

func (r *report) sniHost(p path, h string, vs *networking.VirtualService, toGateway bool) {
	var err error
	if toGateway {
		err = checkGatewayBoundHost(true, h)
	} else {
		err = checkWildcardDomain(h)
	}
	if err != nil {
		if isIP(h) {
			r.warnf(p, "using an IP address (%q) goes against SNI spec and most clients do not support this", h)
			return
		}
		r.err(p, err)
		return
	}
	for _, vh := range vs.Hosts {
		if HostSubsetOf(h, vh) {
			return
		}
	}
	r.errorf(p, "SNI host %q is not a compatible subset of any of the virtual service hosts: [%s]", h, strings.Join(vs.Hosts, ", "))
}

func (r *report) tcpRoute(p path, t *networking.TCPRoute) {
	if t == nil {
		return
	}
	for i, m := range t.Match {
		mp := p.f("match").i(i)
		if m == nil {
			r.errorf(mp, "tcp match may not be nil")
			continue
		}
		for j, s := range m.DestinationSubnets {
			r.err(mp.f("destinationSubnets").i(j), checkIPOrCIDR(s))
		}
		if m.Port != 0 {
			r.err(mp.f("port"), checkPort(int64(m.Port)))
		}
		r.labels(mp.f("sourceLabels"), m.SourceLabels)
		r.gatewayNames(mp.f("gateways"), m.Gateways)
	}
	if len(t.Route) == 0 {
		r.errorf(p.f("route"), "TCP route is required")
	}
	r.routeDestinations(p.f("route"), t.Route)
}

// routeDestinations checks the weighted destinations of a TCP or TLS route.
func (r *report) routeDestinations(p path, dests []*networking.RouteDestination) {
	var total int64
	for i, d := range dests {
		dp := p.i(i)
		if d == nil {
			r.errorf(dp, "weight may not be nil")
			continue
		}
		if d.Destination == nil {
			r.errorf(dp.f("destination"), "destination is required")
		}
		r.destination(dp.f("destination"), d.Destination)
		if d.Weight < 0 {
			r.errorf(dp.f("weight"), "weight %d < 0", d.Weight)
		}
		total += int64(d.Weight)
	}
	r.weightTotal(p, len(dests), total, func(i int) int32 { return dests[i].GetWeight() })
}

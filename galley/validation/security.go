package validation

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/cel-go/common"
	"github.com/google/cel-go/parser"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
)

func validatePeerAuthentication(r *report, p path, pa *security.PeerAuthentication) {
	emptySelector := pa.Selector == nil || len(pa.Selector.MatchLabels) == 0
	if emptySelector && len(pa.PortLevelMtls) != 0 {
		r.errorf(p.f("portLevelMtls"), "mesh/namespace peer authentication cannot have port level mTLS")
	}
	if pa.PortLevelMtls != nil && len(pa.PortLevelMtls) == 0 {
		r.errorf(p.f("portLevelMtls"), "port level mTLS, if defined, must have at least one element")
	}
	for port := range pa.PortLevelMtls {
		if port == 0 || port > 65535 {
			r.errorf(p.f("portLevelMtls").k(strconv.FormatUint(uint64(port), 10)), "port must be in range 1..65535")
		}
	}
	r.workloadSelector(p.f("selector"), pa.Selector)
}

func validateAuthorizationPolicy(r *report, p path, ap *security.AuthorizationPolicy) {
	r.policySelection(p, ap.Selector, ap.TargetRef, ap.TargetRefs)
	if ap.Action == security.AuthorizationPolicy_CUSTOM {
		if ap.Rules == nil {
			r.errorf(p.f("rules"), "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request")
		} else if ap.GetProvider().GetName() == "" {
			r.errorf(p.f("provider").f("name"), "`provider.name` must not be empty")
		}
		r.customActionLimits(p.f("rules"), ap.Rules)
	}
	if ap.GetProvider() != nil && ap.Action != security.AuthorizationPolicy_CUSTOM {
		r.errorf(p.f("provider"), "`provider` must not be with non CUSTOM action, found %s", ap.Action)
	}
	if ap.Action == security.AuthorizationPolicy_DENY && ap.Rules == nil {
		r.errorf(p.f("rules"), "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request")
	}
	for i, rule := range ap.Rules {
		rp := p.f("rules").i(i)
		if rule == nil {
			r.errorf(rp, "`rule` must not be nil, found at rule %d", i)
			continue
		}
		if rule.From != nil && len(rule.From) == 0 {
			r.errorf(rp.f("from"), "`from` must not be empty, found at rule %d", i)
		}
		tcpFrom, tcpTo, hasFrom, hasTo := false, false, false, false
		for j, from := range rule.From {
			fp := rp.f("from").i(j)
			if from == nil {
				r.errorf(fp, "`from` must not be nil, found at rule %d", i)
				continue
			}
			if from.Source == nil {
				r.errorf(fp.f("source"), "`from.source` must not be nil, found at rule %d", i)
				continue
			}
			hasFrom = true
			tcpFrom = r.source(fp.f("source"), i, from.Source) || tcpFrom
		}
		if rule.To != nil && len(rule.To) == 0 {
			r.errorf(rp.f("to"), "`to` must not be empty, found at rule %d", i)
		}
		for j, to := range rule.To {
			tp := rp.f("to").i(j)
			if to == nil {
				r.errorf(tp, "`to` must not be nil, found at rule %d", i)
				continue
			}
			if to.Operation == nil {
				r.errorf(tp.f("operation"), "`to.operation` must not be nil, found at rule %d", i)
				continue
			}
			hasTo = true
			tcpTo = r.operation(tp.f("operation"), i, to.Operation) || tcpTo
		}
		for j, c := range rule.When {
			cp := rp.f("when").i(j)
			switch {
			case c.GetKey() == "":
				r.errorf(cp.f("key"), "`key` must not be empty")
			case len(c.GetValues()) == 0 && len(c.GetNotValues()) == 0:
				r.errorf(cp, "at least one of `values` or `notValues` must be set for key %s", c.GetKey())
			default:
				if err := checkAttribute(c.GetKey(), c.GetValues()); err != nil && len(c.GetValues()) > 0 {
					r.errorf(cp.f("values"), "invalid `value` for `key` %s: %v", c.GetKey(), err)
				}
				if err := checkAttribute(c.GetKey(), c.GetNotValues()); err != nil && len(c.GetNotValues()) > 0 {
					r.errorf(cp.f("notValues"), "invalid `notValue` for `key` %s: %v", c.GetKey(), err)
				}
			}
		}
		// A DENY rule with only HTTP attributes cannot be evaluated on TCP
		// traffic, so Envoy denies all TCP traffic it covers.
		if ap.Action == security.AuthorizationPolicy_DENY && (hasFrom && !hasTo && !tcpFrom || hasTo && !tcpTo) {
			r.warnf(rp, "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port")
		}
	}
}

// source checks a rule's `from.source` and reports whether it uses
// attributes that also apply to TCP traffic.
func (r *report) source(p path, rule int, s *security.Source) (tcp bool) {
	if (len(s.Principals)+len(s.NotPrincipals)+len(s.Namespaces)+len(s.NotNamespaces) > 0) &&
		len(s.ServiceAccounts)+len(s.NotServiceAccounts) > 0 {
		r.errorf(p, "cannot set serviceAccounts with namespaces or principals, found at rule %d", rule)
	}
	lists := []struct {
		name   string
		values []string
		check  func(string, []string) error
	}{
		{"principals", s.Principals, checkNonEmpty},
		{"requestPrincipals", s.RequestPrincipals, checkNonEmpty},
		{"namespaces", s.Namespaces, checkNonEmpty},
		{"serviceAccounts", s.ServiceAccounts, checkServiceAccounts},
		{"trustDomains", s.TrustDomains, checkTrustDomains},
		{"ipBlocks", s.IpBlocks, checkIPBlocks},
		{"remoteIpBlocks", s.RemoteIpBlocks, checkIPBlocks},
		{"notPrincipals", s.NotPrincipals, checkNonEmpty},
		{"notRequestPrincipals", s.NotRequestPrincipals, checkNonEmpty},
		{"notNamespaces", s.NotNamespaces, checkNonEmpty},
		{"notServiceAccounts", s.NotServiceAccounts, checkServiceAccounts},
		{"notTrustDomains", s.NotTrustDomains, checkTrustDomains},
		{"notIpBlocks", s.NotIpBlocks, checkIPBlocks},
		{"notRemoteIpBlocks", s.NotRemoteIpBlocks, checkIPBlocks},
	}
	empty := true
	for _, l := range lists {
		if len(l.values) > 0 {
			empty = false
		}
		r.err(p.f(l.name), l.check(l.name, l.values))
	}
	if empty {
		r.errorf(p, "`from.source` must not be empty, found at rule %d", rule)
	}
	return s.Principals != nil || s.NotPrincipals != nil || s.IpBlocks != nil || s.NotIpBlocks != nil ||
		s.Namespaces != nil || s.NotNamespaces != nil || s.RemoteIpBlocks != nil || s.NotRemoteIpBlocks != nil ||
		s.ServiceAccounts != nil || s.NotServiceAccounts != nil
}

// operation checks a rule's `to.operation` and reports whether it names
// ports (the only operation attribute that applies to TCP traffic).
func (r *report) operation(p path, rule int, op *security.Operation) (tcp bool) {
	lists := []struct {
		name   string
		values []string
		check  func(string, []string) error
	}{
		{"ports", op.Ports, checkPorts},
		{"methods", op.Methods, checkNonEmpty},
		{"paths", op.Paths, checkPaths},
		{"hosts", op.Hosts, checkNonEmpty},
		{"notPorts", op.NotPorts, checkPorts},
		{"notMethods", op.NotMethods, checkNonEmpty},
		{"notPaths", op.NotPaths, checkPaths},
		{"notHosts", op.NotHosts, checkNonEmpty},
	}
	empty := true
	for _, l := range lists {
		if len(l.values) > 0 {
			empty = false
		}
		r.err(p.f(l.name), l.check(l.name, l.values))
	}
	if empty {
		r.errorf(p, "`to.operation` must not be empty, found at rule %d", rule)
	}
	return op.Ports != nil || op.NotPorts != nil
}

// customActionLimits refuses the attributes the external authorizer of a
// CUSTOM policy cannot be given.
func (r *report) customActionLimits(p path, rules []*security.Rule) {
	for i, rule := range rules {
		for j, from := range rule.GetFrom() {
			s := from.GetSource()
			if s == nil {
				continue
			}
			sp := p.i(i).f("from").i(j).f("source")
			for _, l := range []struct {
				name string
				n    int
			}{
				{"namespaces", len(s.Namespaces)}, {"notNamespaces", len(s.NotNamespaces)},
				{"serviceAccounts", len(s.ServiceAccounts)}, {"notServiceAccounts", len(s.NotServiceAccounts)},
				{"trustDomains", len(s.TrustDomains)}, {"notTrustDomains", len(s.NotTrustDomains)},
				{"principals", len(s.Principals)}, {"notPrincipals", len(s.NotPrincipals)},
				{"requestPrincipals", len(s.RequestPrincipals)}, {"notRequestPrincipals", len(s.NotRequestPrincipals)},
			} {
				if l.n != 0 {
					r.errorf(sp.f(l.name), "from.%s is currently not supported with CUSTOM action", l.name)
				}
			}
		}
		for j, when := range rule.GetWhen() {
			wp := p.i(i).f("when").i(j)
			if when == nil {
				r.errorf(wp, "when field cannot be nil")
				continue
			}
			switch k := when.Key; {
			case k == "source.namespace", k == "source.serviceAccount", k == "source.trustDomain", k == "source.principal",
				strings.HasPrefix(k, "request.auth."):
				r.errorf(wp.f("key"), "%s is currently not supported with CUSTOM action", k)
			}
		}
	}
}

func checkNonEmpty(field string, values []string) error {
	for _, v := range values {
		if v == "" {
			return fmt.Errorf("empty value not allowed, found in %s", field)
		}
	}
	return nil
}

// checkWildcards allows `*` only as the whole value or at either end.
func checkWildcards(field string, values []string) error {
	if err := checkNonEmpty(field, values); err != nil {
		return err
	}
	for _, v := range values {
		switch n := strings.Count(v, "*"); {
		case n > 1:
			return fmt.Errorf("at most one wildcard is allowed, found in %s: %q", field, v)
		case n == 1 && v != "*" && !strings.HasPrefix(v, "*") && !strings.HasSuffix(v, "*"):
			return fmt.Errorf("wildcard is only allowed at the start or end, found in %s: %q", field, v)
		}
	}
	return nil
}

func checkTrustDomains(field string, values []string) error {
	if err := checkWildcards(field, values); err != nil {
		return err
	}
	for _, v := range values {
		if strings.Contains(v, "/") {
			return fmt.Errorf("trust domain must not contain '/', found in %s: %q", field, v)
		}
	}
	return nil
}

func checkServiceAccounts(field string, values []string) error {
	if len(values) > 16 {
		// A bound on config size, as istiod has.
		return fmt.Errorf("may not have more than 16 values in %s", field)
	}
	for _, v := range values {
		if v == "" {
			return fmt.Errorf("empty value not allowed, found in %s", field)
		}
		if strings.Contains(v, "*") {
			return fmt.Errorf("wildcard not allowed, found in %s", field)
		}
		if strings.Count(v, "/") > 1 {
			return fmt.Errorf("expected format 'serviceAccount' or 'namespace/serviceAccount', found %q in %s", v, field)
		}
		if len(v) > 320 {
			return fmt.Errorf("value cannot exceed 320 characters, found %q in %s", v, field)
		}
		if ns, sa, ok := strings.Cut(v, "/"); ok && (ns == "" || sa == "") {
			return fmt.Errorf("expected format 'serviceAccount' or 'namespace/serviceAccount', found %q in %s", v, field)
		}
	}
	return nil
}

func checkIPBlocks(field string, values []string) error {
	if err := checkNonEmpty(field, values); err != nil {
		return err
	}
	var errs []string
	for _, v := range values {
		if strings.Contains(v, "/") {
			if _, err := netip.ParsePrefix(v); err != nil {
				errs = append(errs, fmt.Sprintf("bad CIDR range (%s): %v", v, err))
			}
		} else if !isIP(v) {
			errs = append(errs, fmt.Sprintf("bad IP address (%s)", v))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, ", "))
	}
	return nil
}

func checkPorts(field string, values []string) error {
	if err := checkNonEmpty(field, values); err != nil {
		return err
	}
	var errs []string
	for _, v := range values {
		if n, err := strconv.ParseUint(v, 10, 32); err != nil || n > 65535 {
			errs = append(errs, fmt.Sprintf("bad port (%s)", v))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, ", "))
	}
	return nil
}

// A path segment inside a path template must be a valid RFC 3986 pchar run.
var pathLiteralRe = regexp.MustCompile(`^[a-zA-Z0-9-._~%!$&'()+,;:@=]+$`)

// checkPaths checks operation paths, including the `{*}` (one segment) and
// `{**}` (the rest, last only) templates.
func checkPaths(field string, values []string) error {
	if err := checkNonEmpty(field, values); err != nil {
		return err
	}
	for _, v := range values {
		template := strings.Contains(v, "{*}") || strings.Contains(v, "{**}")
		trimmed := strings.Trim(v, "/")
		sawRest := false
		for _, seg := range strings.Split(trimmed, "/") {
			switch {
			case (seg == "{*}" || seg == "{**}") && sawRest:
				return fmt.Errorf("invalid or unsupported path %s, found in %s. {**} is not the last operator", trimmed, field)
			case seg == "{*}":
				continue
			case seg == "{**}":
				sawRest = true
				continue
			case strings.ContainsAny(seg, "{}"):
				return fmt.Errorf("invalid or unsupported path %s, found in %s. Contains '{' or '}' beyond a supported path template", trimmed, field)
			case template && !pathLiteralRe.MatchString(seg):
				return fmt.Errorf("invalid or unsupported path %s, found in %s. Contains segment %s with invalid string literal", trimmed, field, seg)
			}
		}
	}
	return nil
}

// checkAttribute checks the values of a `when` condition for its key.
func checkAttribute(key string, values []string) error {
	if err := checkNonEmpty(key, values); err != nil {
		return err
	}
	mapKey := func() error {
		open := strings.Index(key, "[")
		if strings.HasSuffix(key, "]") && open > 0 && open < len(key)-2 {
			return nil
		}
		return fmt.Errorf("bad key (%s): should have format a[b]", key)
	}
	switch {
	case strings.HasPrefix(key, "request.headers"):
		return mapKey()
	case key == "source.ip", key == "remote.ip", key == "destination.ip":
		return checkIPBlocks(key, values)
	case key == "source.serviceAccount":
		return checkServiceAccounts(key, values)
	case key == "source.trustDomain":
		return checkWildcards(key, values)
	case key == "source.namespace", key == "source.principal", key == "request.auth.principal",
		key == "request.auth.audiences", key == "request.auth.presenter", key == "connection.sni":
		return nil
	case strings.HasPrefix(key, "request.auth.claims"), strings.HasPrefix(key, "experimental.envoy.filters."):
		return mapKey()
	case key == "destination.port":
		return checkPorts(key, values)
	case key == "destination.namespace":
		return fmt.Errorf("attribute %s is replaced by the metadata.namespace", key)
	case strings.HasPrefix(key, "destination.labels"):
		return fmt.Errorf("attribute %s is replaced by the workload selector", key)
	case key == "destination.name", key == "destination.user":
		return fmt.Errorf("deprecated attribute %s: only supported in v1alpha1", key)
	}
	return fmt.Errorf("unknown attribute: %s", key)
}

func validateRequestAuthentication(r *report, p path, ra *security.RequestAuthentication) {
	r.policySelection(p, ra.Selector, ra.TargetRef, ra.TargetRefs)
	for i, rule := range ra.JwtRules {
		if rule != nil {
			r.jwtRule(p.f("jwtRules").i(i), rule)
		}
	}
}

func (r *report) jwtRule(p path, j *security.JWTRule) {
	for i, a := range j.Audiences {
		if a == "" {
			r.errorf(p.f("audiences").i(i), "audience must be non-empty string")
		}
	}
	if j.Issuer == "" && j.JwksUri == "" {
		r.errorf(p, "issuer or jwksUri must be non-empty string")
	}
	if j.JwksUri != "" {
		u, err := url.Parse(j.JwksUri)
		switch {
		case err != nil:
			r.err(p.f("jwksUri"), err)
		case u.Scheme != "http" && u.Scheme != "https":
			r.errorf(p.f("jwksUri"), "URI scheme %q is not supported", u.Scheme)
		case u.Port() != "":
			if _, err := strconv.Atoi(u.Port()); err != nil {
				r.err(p.f("jwksUri"), err)
			}
		}
	}
	if j.Jwks != "" {
		if err := checkJWKS(j.Jwks); err != nil {
			r.errorf(p.f("jwks"), "jwks parse error: %v", err)
		} else if hasPrivateKey(j.Jwks) {
			r.warnf(p.f("jwks"), "jwks contains private key material; only public keys are used for verification")
		}
	}
	for i, h := range j.FromHeaders {
		hp := p.f("fromHeaders").i(i)
		if h == nil {
			r.errorf(hp, "location header name must be non-null")
			continue
		}
		if h.Name == "" {
			r.errorf(hp.f("name"), "location header name must be non-empty string")
		}
	}
	for i, q := range j.FromParams {
		if q == "" {
			r.errorf(p.f("fromParams").i(i), "location query must be non-empty string")
		}
	}
	for i, c := range j.FromCookies {
		if c == "" {
			r.errorf(p.f("fromCookies").i(i), "cookie name must be non-empty string")
		}
	}
	for i, c := range j.OutputClaimToHeaders {
		cp := p.f("outputClaimToHeaders").i(i)
		switch {
		case c == nil:
			r.errorf(cp, "outputClaimToHeaders must not be null")
		case c.Claim == "" || c.Header == "":
			r.errorf(cp, "outputClaimToHeaders header and claim value must be non-empty string")
		default:
			r.err(cp.f("header"), checkStrictHeaderName(c.Header))
		}
	}
	r.duration(p.f("timeout"), j.Timeout)
}

// checkJWKS checks that an inline JWKS is a JSON Web Key or Key Set: every
// key an object with a key type.
func checkJWKS(s string) error {
	var v map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	keys := []json.RawMessage{}
	if raw, ok := v["keys"]; ok {
		if err := json.Unmarshal(raw, &keys); err != nil {
			return fmt.Errorf("keys: %w", err)
		}
	} else {
		keys = append(keys, []byte(s))
	}
	for i, raw := range keys {
		var k struct {
			Kty string `json:"kty"`
		}
		if err := json.Unmarshal(raw, &k); err != nil {
			return fmt.Errorf("key %d: %w", i, err)
		}
		switch k.Kty {
		case "RSA", "EC", "OKP", "oct":
		case "":
			return fmt.Errorf("key %d: missing kty", i)
		default:
			return fmt.Errorf("key %d: unsupported kty %q", i, k.Kty)
		}
	}
	return nil
}

// hasPrivateKey reports whether a JWKS holds private or symmetric keys.
func hasPrivateKey(s string) bool {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if json.Unmarshal([]byte(s), &set) != nil {
		return false
	}
	for _, k := range set.Keys {
		if k.D != "" || k.Kty == "oct" {
			return true
		}
	}
	return false
}

func validateTelemetry(r *report, p path, t *telemetry.Telemetry) {
	r.policySelection(p, t.Selector, t.TargetRef, t.TargetRefs)
	for i, m := range t.Metrics {
		if m == nil {
			continue
		}
		mp := p.f("metrics").i(i)
		r.providers(mp.f("providers"), m.Providers)
		for j, o := range m.Overrides {
			op := mp.f("overrides").i(j)
			if o == nil {
				r.errorf(op, "tagOverrides may not be null")
				continue
			}
			for _, name := range sortedKeys(o.TagOverrides) {
				tp := op.f("tagOverrides").k(name)
				if name == "" {
					r.warnf(tp, "tagOverrides.name may not be empty")
				}
				to := o.TagOverrides[name]
				if to == nil {
					r.errorf(tp, "tagOverrides may not be null")
					continue
				}
				switch to.Operation {
				case telemetry.MetricsOverrides_TagOverride_UPSERT:
					if to.Value == "" {
						r.errorf(tp.f("value"), "tagOverrides.value must be set when operation is UPSERT")
					}
				case telemetry.MetricsOverrides_TagOverride_REMOVE:
					if to.Value != "" {
						r.errorf(tp.f("value"), "tagOverrides.value may only be set when operation is UPSERT")
					}
				}
			}
			if cm, ok := o.GetMatch().GetMetricMatch().(*telemetry.MetricSelector_CustomMetric); ok && cm.CustomMetric == "" {
				r.errorf(op.f("match").f("customMetric"), "customMetric may not be empty")
			}
		}
	}
	if len(t.Tracing) > 1 {
		r.warnf(p.f("tracing"), "multiple tracing is not currently supported")
	}
	for i, tr := range t.Tracing {
		if tr == nil {
			continue
		}
		tp := p.f("tracing").i(i)
		if len(tr.Providers) > 1 {
			r.warnf(tp.f("providers"), "multiple providers is not currently supported")
		}
		r.providers(tp.f("providers"), tr.Providers)
		if v := tr.RandomSamplingPercentage.GetValue(); v < 0 || v > 100 {
			r.errorf(tp.f("randomSamplingPercentage"), "randomSamplingPercentage must be in range [0.0, 100.0]")
		}
		for _, name := range sortedKeys(tr.CustomTags) {
			cp := tp.f("customTags").k(name)
			if name == "" {
				r.errorf(cp, "tag name may not be empty")
			}
			tag := tr.CustomTags[name]
			if tag == nil {
				r.errorf(cp, "tag '%s' may not have a nil value", name)
				continue
			}
			switch ty := tag.Type.(type) {
			case *telemetry.Tracing_CustomTag_Literal:
				if ty.Literal.GetValue() == "" {
					r.errorf(cp.f("literal").f("value"), "literal tag value may not be empty")
				}
			case *telemetry.Tracing_CustomTag_Header:
				if ty.Header.GetName() == "" {
					r.errorf(cp.f("header").f("name"), "header tag name may not be empty")
				}
			case *telemetry.Tracing_CustomTag_Environment:
				if ty.Environment.GetName() == "" {
					r.errorf(cp.f("environment").f("name"), "environment tag name may not be empty")
				}
			}
		}
	}
	for i, l := range t.AccessLogging {
		if l == nil {
			continue
		}
		lp := p.f("accessLogging").i(i)
		if l.Filter != nil {
			if err := checkCEL(l.Filter.Expression); err != nil {
				r.errorf(lp.f("filter").f("expression"), "must be a valid CEL expression, %v", err)
			}
		}
		r.providers(lp.f("providers"), l.Providers)
	}
}

func (r *report) providers(p path, providers []*telemetry.ProviderRef) {
	for i, pr := range providers {
		if pr.GetName() == "" {
			r.errorf(p.i(i).f("name"), "providers.name may not be empty")
			return
		}
	}
}

var celParser, _ = parser.NewParser()

// checkCEL checks that an access log filter parses as CEL.
func checkCEL(expr string) error {
	_, errs := celParser.Parse(common.NewTextSource(expr))
	if errs != nil && len(errs.GetErrors()) > 0 {
		return errors.New(errs.ToDisplayString())
	}
	return nil
}

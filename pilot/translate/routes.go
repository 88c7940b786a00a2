package translate

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfault "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshd/meshd/pilot/model"
)

// HTTP filter names used per route.
const (
	faultFilter = "envoy.filters.http.fault"
	corsFilter  = "envoy.filters.http.cors"
)

func faultHTTPFilter() *hcm.HttpFilter {
	return &hcm.HttpFilter{Name: faultFilter, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&faultv3.HTTPFault{})}}
}

func corsHTTPFilter() *hcm.HttpFilter {
	return &hcm.HttpFilter{Name: corsFilter, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&corsv3.Cors{})}}
}

// routeEnv is what building the routes of one virtual host reads: the
// config index, and the namespace of the proxies it is for. Everything it
// reads is in trafficIndex.routeKey, which joins the cache keys.
type routeEnv struct {
	log  *slog.Logger
	idx  *trafficIndex
	ns   string
	grpc bool
	// labels are the proxies' labels projected by trafficIndex.labelKey.
	labels map[string]string
	// onDrop, when set, counts each part of a VirtualService dropped.
	onDrop func(what string)
	// als says which listeners log to meshd; only listener builders read it.
	als accessLogs
	// gateways, for a router proxy, are the Gateways selecting it: matches
	// naming gateways apply when they name one of these.
	gateways []*gatewayEntry
	router   bool
	// registryOnly is a Sidecar's outboundTrafficPolicy REGISTRY_ONLY:
	// traffic to hosts outside the registry is refused, not passed through.
	registryOnly bool
}

// drop logs why a part of a VirtualService is left out, and counts it.
func (env *routeEnv) drop(what string, e *vsEntry, args ...any) {
	env.log.Warn("dropping "+what, append([]any{"virtualservice", e.vs.Namespace + "/" + e.vs.Name}, args...)...)
	if env.onDrop != nil {
		env.onDrop(what)
	}
}

// errSkip marks a match that does not apply to these proxies (another
// port, source namespace, gateway): not an error worth a log line.
var errSkip = errors.New("not for these proxies")

// routes returns the routes of a service port's virtual host: those of the
// VirtualServices for its host, first match first, or the default route.
func (env *routeEnv) routes(svc *model.Service, port int32) []*route.Route {
	vss := env.idx.virtualServices(svc.Hostname, env.ns)
	if len(vss) == 0 {
		r := routeToCluster(OutboundClusterName(port, "", svc.Hostname), !env.grpc)
		r.GetRoute().HashPolicy = hashPolicy(policyFor(env.idx.destinationRule(svc, env.ns), nil, port))
		if env.grpc {
			r.GetRoute().HashPolicy = grpcHashPolicy(r.GetRoute().HashPolicy)
		}
		return []*route.Route{r}
	}
	var out []*route.Route
	for _, e := range vss {
		for i, h := range env.idx.expandDelegates(e) {
			rs, err := env.httpRoute(e, h, port)
			if err != nil {
				if !errors.Is(err, errSkip) {
					env.drop("route", e,
						"route", fmt.Sprintf("spec.http[%d]", i), "host", svc.Hostname, "reason", err.Error())
				}
				continue
			}
			out = append(out, rs...)
		}
	}
	return out
}

// httpRoute builds the Envoy routes of one VirtualService http[] entry:
// one per match that applies.
func (env *routeEnv) httpRoute(e *vsEntry, h *networking.HTTPRoute, port int32) ([]*route.Route, error) {
	if env.grpc && (h.Redirect != nil || h.DirectResponse != nil) {
		// grpc-go fails calls on such routes: leave them out.
		return nil, errSkip
	}
	matches := h.Match
	if len(matches) == 0 {
		matches = []*networking.HTTPMatchRequest{nil}
	}
	var out []*route.Route
	for _, m := range matches {
		if env.router && m != nil && !env.gatewayApplies(m.Gateways, e.vs.Namespace) {
			continue
		}
		rm, err := env.routeMatch(m, port)
		if errors.Is(err, errSkip) {
			continue
		}
		if err != nil {
			return nil, err
		}
		r := &route.Route{Name: h.Name, Match: rm}
		if err := env.action(r, e, h, port, m); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func stringMatcher(s *networking.StringMatch, ignoreCase bool) *matcher.StringMatcher {
	switch m := s.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: m.Exact}, IgnoreCase: ignoreCase}
	case *networking.StringMatch_Prefix:
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: m.Prefix}, IgnoreCase: ignoreCase}
	case *networking.StringMatch_Regex:
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: m.Regex}}}
	}
	return nil
}

func headerMatcher(name string, s *networking.StringMatch, invert bool) *route.HeaderMatcher {
	hm := &route.HeaderMatcher{Name: strings.ToLower(name), InvertMatch: invert}
	if sm := stringMatcher(s, false); sm != nil {
		hm.HeaderMatchSpecifier = &route.HeaderMatcher_StringMatch{StringMatch: sm}
	} else {
		hm.HeaderMatchSpecifier = &route.HeaderMatcher_PresentMatch{PresentMatch: true}
	}
	return hm
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// routeMatch translates one HTTPMatchRequest (nil: match everything).
func (env *routeEnv) routeMatch(m *networking.HTTPMatchRequest, port int32) (*route.RouteMatch, error) {
	rm := &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return rm, nil
	}
	if m.Port != 0 && int32(m.Port) != port {
		return nil, errSkip
	}
	if m.SourceNamespace != "" && m.SourceNamespace != env.ns {
		return nil, errSkip
	}
	if len(m.SourceLabels) > 0 && !model.Selects(m.SourceLabels, env.labels) {
		return nil, errSkip
	}
	if len(m.Gateways) > 0 && !env.router && !meshBound(m.Gateways) {
		return nil, errSkip
	}
	if env.grpc && (len(m.QueryParams) > 0 || m.Method != nil || m.Authority != nil || m.Scheme != nil) {
		// grpc-go ignores routes with query matchers and sees no pseudo-headers.
		return nil, errSkip
	}
	switch u := m.Uri.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		rm.PathSpecifier = &route.RouteMatch_Path{Path: u.Exact}
	case *networking.StringMatch_Prefix:
		rm.PathSpecifier = &route.RouteMatch_Prefix{Prefix: u.Prefix}
	case *networking.StringMatch_Regex:
		rm.PathSpecifier = &route.RouteMatch_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: u.Regex}}
	}
	if m.IgnoreUriCase {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	for _, k := range sortedKeys(m.Headers) {
		rm.Headers = append(rm.Headers, headerMatcher(k, m.Headers[k], false))
	}
	for _, k := range sortedKeys(m.WithoutHeaders) {
		rm.Headers = append(rm.Headers, headerMatcher(k, m.WithoutHeaders[k], true))
	}
	if m.Method != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":method", m.Method, false))
	}
	if m.Authority != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":authority", m.Authority, false))
	}
	if m.Scheme != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":scheme", m.Scheme, false))
	}
	for _, k := range sortedKeys(m.QueryParams) {
		qm := &route.QueryParameterMatcher{Name: k}
		if sm := stringMatcher(m.QueryParams[k], false); sm != nil {
			qm.QueryParameterMatchSpecifier = &route.QueryParameterMatcher_StringMatch{StringMatch: sm}
		} else {
			qm.QueryParameterMatchSpecifier = &route.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		}
		rm.QueryParameters = append(rm.QueryParameters, qm)
	}
	return rm, nil
}

// destination resolves a route destination to its cluster, checking that
// the host, port and subset exist.
func (env *routeEnv) destination(e *vsEntry, d *networking.Destination, port int32) (string, *model.Service, error) {
	fq := resolveHost(d.GetHost(), e.vs.Namespace, env.idx.snap.Options.DomainSuffix)
	dst := env.idx.snap.Service(fq, env.ns)
	if dst == nil {
		return "", nil, fmt.Errorf("destination host %q exists nowhere", d.GetHost())
	}
	if env.grpc && dst.Resolution == model.Passthrough && !dst.Headless {
		return "", nil, fmt.Errorf("destination host %q has no cluster for proxyless gRPC", d.GetHost())
	}
	p := int32(d.GetPort().GetNumber())
	switch {
	case p != 0:
	case len(dst.Ports) == 1:
		p = dst.Ports[0].Port
	default:
		p = port
	}
	if _, ok := dst.Port(p); !ok {
		return "", nil, fmt.Errorf("destination host %q has no port %d", d.GetHost(), p)
	}
	if d.Subset != "" && env.idx.destinationRule(dst, env.ns).subset(d.Subset) == nil {
		return "", nil, fmt.Errorf("destination host %q has no subset %q in any DestinationRule", d.GetHost(), d.Subset)
	}
	return OutboundClusterName(p, d.Subset, dst.Hostname), dst, nil
}

// action fills the action of route r from http[] entry h.
func (env *routeEnv) action(r *route.Route, e *vsEntry, h *networking.HTTPRoute, port int32, m *networking.HTTPMatchRequest) error {
	if h.Headers != nil {
		r.RequestHeadersToAdd, r.RequestHeadersToRemove = headerOps(h.Headers.Request)
		r.ResponseHeadersToAdd, r.ResponseHeadersToRemove = headerOps(h.Headers.Response)
	}
	if !env.grpc {
		if cp := corsPolicy(h.CorsPolicy); cp != nil {
			r.TypedPerFilterConfig = map[string]*anypb.Any{corsFilter: mustAny(cp)}
		}
	}
	if f := faultConfig(h.Fault); f != nil {
		if r.TypedPerFilterConfig == nil {
			r.TypedPerFilterConfig = map[string]*anypb.Any{}
		}
		r.TypedPerFilterConfig[faultFilter] = mustAny(f)
	}
	if h.Redirect != nil {
		r.Action = &route.Route_Redirect{Redirect: redirectAction(h.Redirect)}
		return nil
	}
	if dr := h.DirectResponse; dr != nil {
		a := &route.DirectResponseAction{Status: dr.Status}
		switch b := dr.GetBody().GetSpecifier().(type) {
		case *networking.HTTPBody_String_:
			a.Body = &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: b.String_}}
		case *networking.HTTPBody_Bytes:
			a.Body = &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: b.Bytes}}
		}
		r.Action = &route.Route_DirectResponse{DirectResponse: a}
		return nil
	}
	if len(h.Route) == 0 {
		return errors.New("no route, redirect or directResponse")
	}
	a := &route.RouteAction{}
	total := int32(0)
	var first *model.Service
	var firstSubset string
	var wc []*route.WeightedCluster_ClusterWeight
	for i, d := range h.Route {
		name, dst, err := env.destination(e, d.Destination, port)
		if err != nil {
			return fmt.Errorf("route[%d]: %w", i, err)
		}
		if i == 0 {
			first, firstSubset = dst, d.Destination.Subset
		}
		w := d.Weight
		if len(h.Route) == 1 && w == 0 {
			w = 1 // a lone destination takes everything
		}
		total += w
		if w == 0 {
			continue
		}
		cw := &route.WeightedCluster_ClusterWeight{Name: name, Weight: wrapperspb.UInt32(uint32(w))}
		if d.Headers != nil && !env.grpc {
			cw.RequestHeadersToAdd, cw.RequestHeadersToRemove = headerOps(d.Headers.Request)
			cw.ResponseHeadersToAdd, cw.ResponseHeadersToRemove = headerOps(d.Headers.Response)
		}
		wc = append(wc, cw)
	}
	if total <= 0 {
		return errors.New("the weights of its destinations add up to 0")
	}
	// Weights are relative (50 and 30 split 62.5/37.5): Envoy and grpc-go
	// both divide by the sum.
	if len(wc) == 1 && wc[0].RequestHeadersToAdd == nil && wc[0].ResponseHeadersToAdd == nil &&
		wc[0].RequestHeadersToRemove == nil && wc[0].ResponseHeadersToRemove == nil {
		a.ClusterSpecifier = &route.RouteAction_Cluster{Cluster: wc[0].Name}
	} else {
		a.ClusterSpecifier = &route.RouteAction_WeightedClusters{WeightedClusters: &route.WeightedCluster{Clusters: wc}}
	}
	if first != nil {
		dp := port
		if p := int32(h.Route[0].Destination.GetPort().GetNumber()); p != 0 {
			dp = p
		} else if len(first.Ports) == 1 {
			dp = first.Ports[0].Port
		}
		dre := env.idx.destinationRule(first, env.ns)
		a.HashPolicy = hashPolicy(policyFor(dre, dre.subset(firstSubset), dp))
	}
	if env.grpc {
		a.HashPolicy = grpcHashPolicy(a.HashPolicy)
		if h.Timeout != nil {
			a.MaxStreamDuration = &route.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(h.Timeout.AsDuration())}
		}
		a.RetryPolicy = grpcRetryPolicy(h.Retries)
		r.Action = &route.Route_Route{Route: a}
		return nil
	}
	a.Timeout = durationpb.New(0)
	if h.Timeout != nil {
		a.Timeout = durationpb.New(h.Timeout.AsDuration())
	}
	a.MaxStreamDuration = &route.RouteAction_MaxStreamDuration{GrpcTimeoutHeaderMax: durationpb.New(0)}
	a.RetryPolicy = retryPolicy(h.Retries)
	if rw := h.Rewrite; rw != nil {
		if rw.Uri != "" {
			if _, exact := m.GetUri().GetMatchType().(*networking.StringMatch_Exact); exact {
				// A prefix rewrite of an exact match replaces the whole path.
				a.RegexRewrite = &matcher.RegexMatchAndSubstitute{Pattern: &matcher.RegexMatcher{Regex: ".*"}, Substitution: rw.Uri}
			} else {
				a.PrefixRewrite = rw.Uri
			}
		}
		if rr := rw.UriRegexRewrite; rr != nil {
			a.PrefixRewrite = ""
			a.RegexRewrite = &matcher.RegexMatchAndSubstitute{Pattern: &matcher.RegexMatcher{Regex: rr.Match}, Substitution: rr.Rewrite}
		}
		if rw.Authority != "" {
			a.HostRewriteSpecifier = &route.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.Authority}
		}
	}
	mirrors := h.Mirrors
	if h.Mirror != nil {
		mirrors = append([]*networking.HTTPMirrorPolicy{{Destination: h.Mirror, Percentage: h.MirrorPercentage}}, mirrors...)
	}
	for i, mp := range mirrors {
		name, _, err := env.destination(e, mp.Destination, port)
		if err != nil {
			env.drop("mirror", e, "mirror", i, "reason", err.Error())
			continue
		}
		pol := &route.RouteAction_RequestMirrorPolicy{Cluster: name}
		if mp.Percentage != nil {
			pol.RuntimeFraction = &core.RuntimeFractionalPercent{DefaultValue: fractional(mp.Percentage.Value)}
		}
		a.RequestMirrorPolicies = append(a.RequestMirrorPolicies, pol)
	}
	r.Action = &route.Route_Route{Route: a}
	return nil
}

func headerOps(ops *networking.Headers_HeaderOperations) (add []*core.HeaderValueOption, remove []string) {
	if ops == nil {
		return nil, nil
	}
	for _, k := range sortedKeys(ops.Set) {
		add = append(add, &core.HeaderValueOption{Header: &core.HeaderValue{Key: k, Value: ops.Set[k]},
			AppendAction: core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
	}
	for _, k := range sortedKeys(ops.Add) {
		add = append(add, &core.HeaderValueOption{Header: &core.HeaderValue{Key: k, Value: ops.Add[k]},
			AppendAction: core.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD})
	}
	return add, append([]string(nil), ops.Remove...)
}

// fractional converts an Istio percentage (0-100, fractions allowed) to
// Envoy's parts per million.
func fractional(pct float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(pct * 10000), Denominator: typev3.FractionalPercent_MILLION}
}

func faultPercent(p *networking.Percent, legacy int32) *typev3.FractionalPercent {
	switch {
	case p != nil:
		return fractional(p.Value)
	case legacy > 0:
		return fractional(float64(legacy))
	}
	return fractional(100)
}

// grpcCodes maps gRPC status names (as Istio's grpcStatus spells them) to codes.
var grpcCodes = map[string]uint32{
	"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
	"NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
	"FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
	"INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}

func faultConfig(f *networking.HTTPFaultInjection) *faultv3.HTTPFault {
	if f == nil || (f.Delay == nil && f.Abort == nil) {
		return nil
	}
	out := &faultv3.HTTPFault{}
	if d := f.Delay; d != nil && d.GetFixedDelay() != nil {
		out.Delay = &commonfault.FaultDelay{
			FaultDelaySecifier: &commonfault.FaultDelay_FixedDelay{FixedDelay: durationpb.New(d.GetFixedDelay().AsDuration())},
			//lint:ignore SA1019 istiod still applies the deprecated integer percent when percentage is unset.
			Percentage: faultPercent(d.Percentage, d.Percent),
		}
	}
	if a := f.Abort; a != nil {
		fa := &faultv3.FaultAbort{Percentage: faultPercent(a.Percentage, 0)}
		switch e := a.ErrorType.(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			fa.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(e.HttpStatus)}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			code, ok := grpcCodes[strings.ToUpper(e.GrpcStatus)]
			if !ok {
				if n, err := strconv.Atoi(e.GrpcStatus); err == nil {
					code, ok = uint32(n), true
				}
			}
			if ok {
				fa.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: code}
			}
		}
		if fa.ErrorType != nil {
			out.Abort = fa
		}
	}
	if out.Delay == nil && out.Abort == nil {
		return nil
	}
	return out
}

func redirectAction(rd *networking.HTTPRedirect) *route.RedirectAction {
	a := &route.RedirectAction{HostRedirect: rd.Authority}
	if rd.Uri != "" {
		a.PathRewriteSpecifier = &route.RedirectAction_PathRedirect{PathRedirect: rd.Uri}
	}
	if p, ok := rd.RedirectPort.(*networking.HTTPRedirect_Port); ok {
		a.PortRedirect = p.Port
	}
	if rd.Scheme != "" {
		a.SchemeRewriteSpecifier = &route.RedirectAction_SchemeRedirect{SchemeRedirect: rd.Scheme}
	}
	switch rd.RedirectCode {
	case 302:
		a.ResponseCode = route.RedirectAction_FOUND
	case 303:
		a.ResponseCode = route.RedirectAction_SEE_OTHER
	case 307:
		a.ResponseCode = route.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		a.ResponseCode = route.RedirectAction_PERMANENT_REDIRECT
	default:
		a.ResponseCode = route.RedirectAction_MOVED_PERMANENTLY
	}
	return a
}

func corsPolicy(c *networking.CorsPolicy) *corsv3.CorsPolicy {
	if c == nil {
		return nil
	}
	out := &corsv3.CorsPolicy{
		AllowMethods:  strings.Join(c.AllowMethods, ","),
		AllowHeaders:  strings.Join(c.AllowHeaders, ","),
		ExposeHeaders: strings.Join(c.ExposeHeaders, ","),
	}
	for _, o := range c.AllowOrigins {
		if sm := stringMatcher(o, false); sm != nil {
			out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, sm)
		}
	}
	if c.MaxAge != nil {
		out.MaxAge = strconv.FormatInt(int64(c.MaxAge.AsDuration().Seconds()), 10)
	}
	if c.AllowCredentials != nil {
		out.AllowCredentials = wrapperspb.Bool(c.AllowCredentials.Value)
	}
	return out
}

// istioRetryOn is Istio's default retry_on.
const istioRetryOn = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"

func retryPolicy(r *networking.HTTPRetry) *route.RetryPolicy {
	if r == nil {
		return &route.RetryPolicy{RetryOn: istioRetryOn, NumRetries: wrapperspb.UInt32(2), HostSelectionRetryMaxAttempts: 5}
	}
	if r.Attempts <= 0 {
		return nil
	}
	p := &route.RetryPolicy{NumRetries: wrapperspb.UInt32(uint32(r.Attempts)), HostSelectionRetryMaxAttempts: 5}
	if r.PerTryTimeout != nil {
		p.PerTryTimeout = durationpb.New(r.PerTryTimeout.AsDuration())
	}
	on := r.RetryOn
	if on == "" {
		on = istioRetryOn
	}
	var kinds []string
	for _, t := range strings.Split(on, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if n, err := strconv.Atoi(t); err == nil {
			p.RetriableStatusCodes = append(p.RetriableStatusCodes, uint32(n))
			continue
		}
		kinds = append(kinds, t)
	}
	if len(p.RetriableStatusCodes) > 0 && !strings.Contains(on, "retriable-status-codes") {
		kinds = append(kinds, "retriable-status-codes")
	}
	p.RetryOn = strings.Join(kinds, ",")
	return p
}

// grpcRetryOn are the retry conditions grpc-go understands.
var grpcRetryOn = map[string]bool{"cancelled": true, "deadline-exceeded": true, "internal": true, "resource-exhausted": true, "unavailable": true}

func grpcRetryPolicy(r *networking.HTTPRetry) *route.RetryPolicy {
	if r == nil || r.Attempts <= 0 {
		return nil
	}
	var kinds []string
	for _, t := range strings.Split(r.RetryOn, ",") {
		if t = strings.TrimSpace(t); grpcRetryOn[t] {
			kinds = append(kinds, t)
		}
	}
	if r.RetryOn == "" {
		kinds = []string{"unavailable", "cancelled"}
	}
	if len(kinds) == 0 {
		return nil
	}
	return &route.RetryPolicy{RetryOn: strings.Join(kinds, ","), NumRetries: wrapperspb.UInt32(uint32(r.Attempts))}
}

// hashPolicy returns the route hash policy of a consistent-hash policy.
func hashPolicy(pp portPolicy) []*route.RouteAction_HashPolicy {
	ch := pp.consistentHash()
	if ch == nil {
		return nil
	}
	var hp *route.RouteAction_HashPolicy
	switch k := ch.HashKey.(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		hp = &route.RouteAction_HashPolicy{PolicySpecifier: &route.RouteAction_HashPolicy_Header_{Header: &route.RouteAction_HashPolicy_Header{HeaderName: strings.ToLower(k.HttpHeaderName)}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		c := &route.RouteAction_HashPolicy_Cookie{Name: k.HttpCookie.GetName(), Path: k.HttpCookie.GetPath()}
		if k.HttpCookie.GetTtl() != nil {
			c.Ttl = durationpb.New(k.HttpCookie.GetTtl().AsDuration())
		}
		hp = &route.RouteAction_HashPolicy{PolicySpecifier: &route.RouteAction_HashPolicy_Cookie_{Cookie: c}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		hp = &route.RouteAction_HashPolicy{PolicySpecifier: &route.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &route.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		hp = &route.RouteAction_HashPolicy{PolicySpecifier: &route.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &route.RouteAction_HashPolicy_QueryParameter{Name: k.HttpQueryParameterName}}}
	default:
		return nil
	}
	return []*route.RouteAction_HashPolicy{hp}
}

// grpcHashPolicy keeps what grpc-go hashes on: headers (the client's
// channel stands in for its source address).
func grpcHashPolicy(hps []*route.RouteAction_HashPolicy) []*route.RouteAction_HashPolicy {
	var out []*route.RouteAction_HashPolicy
	for _, hp := range hps {
		switch hp.PolicySpecifier.(type) {
		case *route.RouteAction_HashPolicy_Header_:
			out = append(out, hp)
		case *route.RouteAction_HashPolicy_ConnectionProperties_:
			out = append(out, &route.RouteAction_HashPolicy{PolicySpecifier: &route.RouteAction_HashPolicy_FilterState_{
				FilterState: &route.RouteAction_HashPolicy_FilterState{Key: "io.grpc.channel_id"}}})
		}
	}
	return out
}

// tcpFilter returns the tcp_proxy filter for a TCP or TLS service port:
// to the service's own cluster, or where the first tcp[] (tls[] when sni)
// route of its VirtualServices that applies sends it, weights relative.
func (env *routeEnv) tcpFilter(svc *model.Service, port int32, statPrefix string, sni bool) *listener.Filter {
	def := tcpProxyFilterTo(statPrefix, OutboundClusterName(port, "", svc.Hostname))
	if env == nil || env.idx == nil {
		return def
	}
	for _, e := range env.idx.virtualServices(svc.Hostname, env.ns) {
		var routes []*networking.RouteDestination
		matched := false
		if sni {
			for _, r := range e.spec.Tls {
				for _, m := range r.Match {
					if env.l4Applies(m.Port, port, m.SourceLabels, m.SourceNamespace, m.Gateways) && sniMatches(m.SniHosts, svc.Hostname) {
						routes, matched = r.Route, true
						break
					}
				}
				if matched {
					break
				}
			}
		} else {
			for _, r := range e.spec.Tcp {
				ok := len(r.Match) == 0
				for _, m := range r.Match {
					ok = ok || env.l4Applies(m.Port, port, m.SourceLabels, m.SourceNamespace, m.Gateways)
				}
				if ok {
					routes, matched = r.Route, true
					break
				}
			}
		}
		if !matched {
			continue
		}
		var wc []*tcpproxy.TcpProxy_WeightedCluster_ClusterWeight
		total := int32(0)
		for i, rd := range routes {
			name, _, err := env.destination(e, rd.Destination, port)
			if err != nil {
				env.drop("tcp route", e, "destination", i, "reason", err.Error())
				return def
			}
			w := rd.Weight
			if len(routes) == 1 && w == 0 {
				w = 1
			}
			total += w
			if w > 0 {
				wc = append(wc, &tcpproxy.TcpProxy_WeightedCluster_ClusterWeight{Name: name, Weight: uint32(w)})
			}
		}
		if total <= 0 || len(wc) == 0 {
			env.drop("tcp route", e, "reason", "the weights of its destinations add up to 0")
			return def
		}
		if len(wc) == 1 {
			return tcpProxyFilterTo(statPrefix, wc[0].Name)
		}
		return &listener.Filter{Name: tcpProxyFilter, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(&tcpproxy.TcpProxy{
			StatPrefix:       statPrefix,
			ClusterSpecifier: &tcpproxy.TcpProxy_WeightedClusters{WeightedClusters: &tcpproxy.TcpProxy_WeightedCluster{Clusters: wc}},
		})}}
	}
	return def
}

func (env *routeEnv) l4Applies(matchPort uint32, port int32, labels map[string]string, ns string, gateways []string) bool {
	if matchPort != 0 && int32(matchPort) != port {
		return false
	}
	if len(gateways) > 0 && !meshBound(gateways) {
		return false
	}
	if ns != "" && ns != env.ns {
		return false
	}
	if len(labels) > 0 && !model.Selects(labels, env.labels) {
		return false
	}
	return true
}

func sniMatches(hosts []string, host string) bool {
	for _, h := range hosts {
		if h == host || h == "*" || (strings.HasPrefix(h, "*.") && strings.HasSuffix(host, h[1:])) {
			return true
		}
	}
	return false
}

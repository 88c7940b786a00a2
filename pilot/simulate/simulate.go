// Package simulate sends a simulated HTTP request through the Envoy config
// a sidecar was given (listeners, route configurations, clusters) and says
// where it goes, step by step: listener, filter chain, route
// configuration, virtual host, route, and then the clusters with their
// shares, or the redirect or direct response. Tests use it to check the
// generated config by behaviour rather than by shape.
package simulate

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// Config is a proxy's Envoy resources.
type Config struct {
	Listeners []*listener.Listener
	Routes    []*route.RouteConfiguration
	Clusters  []*cluster.Cluster
}

// NewConfig sorts resources by type; other messages are ignored.
func NewConfig(msgs []proto.Message) *Config {
	c := &Config{}
	for _, m := range msgs {
		switch r := m.(type) {
		case *listener.Listener:
			c.Listeners = append(c.Listeners, r)
		case *route.RouteConfiguration:
			c.Routes = append(c.Routes, r)
		case *cluster.Cluster:
			c.Clusters = append(c.Clusters, r)
		}
	}
	return c
}

// Request is what a client in the proxy's pod sends.
type Request struct {
	// Port is the destination port; Address the destination IP ("" for
	// any: the 0.0.0.0 listener).
	Port    int
	Address string
	// Authority is the Host header; Path includes the query string.
	Authority, Path, Method string
	Headers                 map[string]string
}

// WeightedCluster is one destination and its share of the traffic (0-100).
type WeightedCluster struct {
	Name    string
	Percent float64
}

// Result says where a request goes.
type Result struct {
	// Steps names each thing matched, in order, for failure messages.
	Steps []string

	Listener, FilterChain, RouteConfig, VirtualHost, Route string
	// Clusters is where a forwarded request goes (shares sum to 100).
	Clusters []WeightedCluster
	// Redirect is set when the route answers with a redirect.
	Redirect *route.RedirectAction
	// DirectResponse is set when the route answers itself.
	DirectResponse *route.DirectResponseAction
	// Mirrors are the clusters a copy goes to, with their percentages.
	Mirrors []WeightedCluster
	// Fault is the fault injected on the route, CORS its CORS policy.
	Fault *faultv3.HTTPFault
	CORS  *corsv3.CorsPolicy
	// PathRewrite is the path the upstream sees when the route rewrites
	// it; HostRewrite the authority.
	PathRewrite, HostRewrite string
	Timeout                  time.Duration
	Retry                    *route.RetryPolicy
	// RequestHeadersToAdd are set or added on the way up (route level).
	RequestHeadersToAdd map[string]string
}

// Run walks req through the config; the error says at which step nothing
// matched (a 404 or a refused connection for the client).
func (c *Config) Run(req Request) (*Result, error) {
	res := &Result{}
	step := func(format string, args ...any) { res.Steps = append(res.Steps, fmt.Sprintf(format, args...)) }
	if req.Path == "" {
		req.Path = "/"
	}
	if req.Method == "" {
		req.Method = "GET"
	}
	l := c.listener(req)
	if l == nil {
		return res, fmt.Errorf("no listener for port %d", req.Port)
	}
	res.Listener = l.Name
	step("listener %s", l.Name)
	fc := filterChain(l, req)
	if fc == nil {
		return res, fmt.Errorf("listener %s: no filter chain matches", l.Name)
	}
	res.FilterChain = fc.Name
	step("filter chain %q", fc.Name)
	var rc *route.RouteConfiguration
	for _, f := range fc.Filters {
		m := &hcm.HttpConnectionManager{}
		if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(m) != nil {
			continue
		}
		switch rs := m.RouteSpecifier.(type) {
		case *hcm.HttpConnectionManager_Rds:
			rc = c.routeConfig(rs.Rds.RouteConfigName)
			if rc == nil {
				return res, fmt.Errorf("route configuration %q not found", rs.Rds.RouteConfigName)
			}
		case *hcm.HttpConnectionManager_RouteConfig:
			rc = rs.RouteConfig
		}
	}
	if rc == nil {
		return res, fmt.Errorf("filter chain %q: not HTTP", fc.Name)
	}
	res.RouteConfig = rc.Name
	step("route configuration %s", rc.Name)
	vh := virtualHost(rc, req.Authority)
	if vh == nil {
		return res, fmt.Errorf("route configuration %s: no virtual host for %q", rc.Name, req.Authority)
	}
	res.VirtualHost = vh.Name
	step("virtual host %s", vh.Name)
	var r *route.Route
	for _, cand := range vh.Routes {
		if routeMatches(cand.Match, req) {
			r = cand
			break
		}
	}
	if r == nil {
		return res, fmt.Errorf("virtual host %s: no route matches %s %s", vh.Name, req.Method, req.Path)
	}
	res.Route = r.Name
	step("route %q", r.Name)
	if a := r.GetTypedPerFilterConfig()["envoy.filters.http.fault"]; a != nil {
		res.Fault = &faultv3.HTTPFault{}
		_ = a.UnmarshalTo(res.Fault)
	}
	if a := r.GetTypedPerFilterConfig()["envoy.filters.http.cors"]; a != nil {
		res.CORS = &corsv3.CorsPolicy{}
		_ = a.UnmarshalTo(res.CORS)
	}
	if len(r.RequestHeadersToAdd) > 0 {
		res.RequestHeadersToAdd = map[string]string{}
		for _, h := range r.RequestHeadersToAdd {
			res.RequestHeadersToAdd[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
	}
	switch a := r.Action.(type) {
	case *route.Route_Redirect:
		res.Redirect = a.Redirect
		step("redirect")
	case *route.Route_DirectResponse:
		res.DirectResponse = a.DirectResponse
		step("direct response %d", a.DirectResponse.Status)
	case *route.Route_Route:
		ra := a.Route
		switch cs := ra.ClusterSpecifier.(type) {
		case *route.RouteAction_Cluster:
			res.Clusters = []WeightedCluster{{Name: cs.Cluster, Percent: 100}}
		case *route.RouteAction_WeightedClusters:
			total := 0.0
			for _, w := range cs.WeightedClusters.Clusters {
				total += float64(w.GetWeight().GetValue())
			}
			for _, w := range cs.WeightedClusters.Clusters {
				res.Clusters = append(res.Clusters, WeightedCluster{Name: w.Name, Percent: 100 * float64(w.GetWeight().GetValue()) / total})
			}
		}
		for _, wc := range res.Clusters {
			if c.cluster(wc.Name) == nil {
				return res, fmt.Errorf("route %q: cluster %s does not exist", r.Name, wc.Name)
			}
			step("cluster %s %.1f%%", wc.Name, wc.Percent)
		}
		for _, m := range ra.RequestMirrorPolicies {
			pct := 100.0
			if f := m.GetRuntimeFraction().GetDefaultValue(); f != nil {
				pct = percentOf(f)
			}
			res.Mirrors = append(res.Mirrors, WeightedCluster{Name: m.Cluster, Percent: pct})
		}
		res.Timeout = ra.GetTimeout().AsDuration()
		res.Retry = ra.RetryPolicy
		res.PathRewrite = rewrite(ra, r.Match, req.Path)
		res.HostRewrite = ra.GetHostRewriteLiteral()
	}
	return res, nil
}

func percentOf(f *typev3.FractionalPercent) float64 {
	switch f.Denominator {
	case typev3.FractionalPercent_TEN_THOUSAND:
		return float64(f.Numerator) / 100
	case typev3.FractionalPercent_MILLION:
		return float64(f.Numerator) / 10000
	}
	return float64(f.Numerator)
}

func rewrite(ra *route.RouteAction, m *route.RouteMatch, path string) string {
	p, _, _ := strings.Cut(path, "?")
	switch {
	case ra.PrefixRewrite != "":
		return ra.PrefixRewrite + strings.TrimPrefix(p, m.GetPrefix())
	case ra.RegexRewrite != nil:
		re, err := regexp.Compile(ra.RegexRewrite.GetPattern().GetRegex())
		if err != nil {
			return ""
		}
		// Envoy's substitution uses \1 for groups; Go's uses ${1}.
		sub := regexp.MustCompile(`\\(\d)`).ReplaceAllString(ra.RegexRewrite.Substitution, `$${$1}`)
		return re.ReplaceAllString(p, sub)
	}
	return ""
}

func (c *Config) listener(req Request) *listener.Listener {
	var wildcard *listener.Listener
	for _, l := range c.Listeners {
		sa := l.GetAddress().GetSocketAddress()
		if sa == nil || int(sa.GetPortValue()) != req.Port || l.Name == "virtualOutbound" || l.Name == "virtualInbound" {
			continue
		}
		if req.Address != "" && sa.Address == req.Address {
			return l
		}
		if sa.Address == "0.0.0.0" {
			wildcard = l
		}
	}
	return wildcard
}

func filterChain(l *listener.Listener, req Request) *listener.FilterChain {
	for _, fc := range l.FilterChains {
		m := fc.FilterChainMatch
		if m == nil {
			return fc
		}
		if m.DestinationPort != nil && int(m.DestinationPort.Value) != req.Port {
			continue
		}
		if len(m.ServerNames) > 0 || len(m.PrefixRanges) > 0 {
			continue // TLS and addressed chains: not a plaintext HTTP request
		}
		return fc
	}
	return l.DefaultFilterChain
}

func (c *Config) routeConfig(name string) *route.RouteConfiguration {
	for _, r := range c.Routes {
		if r.Name == name {
			return r
		}
	}
	return nil
}

func (c *Config) cluster(name string) *cluster.Cluster {
	for _, cl := range c.Clusters {
		if cl.Name == name {
			return cl
		}
	}
	return nil
}

// virtualHost picks the virtual host as Envoy does: an exact domain, then
// the longest suffix wildcard, then the longest prefix wildcard, then "*".
func virtualHost(rc *route.RouteConfiguration, authority string) *route.VirtualHost {
	host := strings.ToLower(authority)
	type cand struct {
		vh    *route.VirtualHost
		score int
	}
	var best *cand
	for _, vh := range rc.VirtualHosts {
		for _, d := range vh.Domains {
			d = strings.ToLower(d)
			score := -1
			switch {
			case d == host:
				score = 1 << 20
			case d == "*":
				score = 0
			case strings.HasPrefix(d, "*") && strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1:
				score = 1<<16 + len(d)
			case strings.HasSuffix(d, "*") && strings.HasPrefix(host, d[:len(d)-1]) && len(host) > len(d)-1:
				score = 1<<8 + len(d)
			}
			if score >= 0 && (best == nil || score > best.score) {
				best = &cand{vh, score}
			}
		}
	}
	if best == nil {
		return nil
	}
	return best.vh
}

func routeMatches(m *route.RouteMatch, req Request) bool {
	path, query, _ := strings.Cut(req.Path, "?")
	cs := m.GetCaseSensitive() == nil || m.GetCaseSensitive().Value
	cmp := func(a string) string {
		if cs {
			return a
		}
		return strings.ToLower(a)
	}
	switch ps := m.PathSpecifier.(type) {
	case *route.RouteMatch_Prefix:
		if !strings.HasPrefix(cmp(path), cmp(ps.Prefix)) {
			return false
		}
	case *route.RouteMatch_Path:
		if cmp(path) != cmp(ps.Path) {
			return false
		}
	case *route.RouteMatch_SafeRegex:
		re, err := regexp.Compile("^(?:" + ps.SafeRegex.Regex + ")$")
		if err != nil || !re.MatchString(path) {
			return false
		}
	}
	headers := map[string]string{":method": req.Method, ":authority": req.Authority, ":path": req.Path, ":scheme": "http"}
	for k, v := range req.Headers {
		headers[strings.ToLower(k)] = v
	}
	for _, h := range m.Headers {
		v, ok := headers[h.Name]
		match := false
		switch s := h.HeaderMatchSpecifier.(type) {
		case *route.HeaderMatcher_PresentMatch:
			match = ok == s.PresentMatch
		case *route.HeaderMatcher_StringMatch:
			match = ok && stringMatches(s.StringMatch, v)
		}
		if match == h.InvertMatch {
			return false
		}
	}
	q, _ := url.ParseQuery(query)
	for _, qm := range m.QueryParameters {
		vs, ok := q[qm.Name]
		switch s := qm.QueryParameterMatchSpecifier.(type) {
		case *route.QueryParameterMatcher_PresentMatch:
			if ok != s.PresentMatch {
				return false
			}
		case *route.QueryParameterMatcher_StringMatch:
			if !ok || !stringMatches(s.StringMatch, vs[0]) {
				return false
			}
		}
	}
	return true
}

func stringMatches(m *matcher.StringMatcher, v string) bool {
	if m.IgnoreCase {
		v = strings.ToLower(v)
	}
	low := func(s string) string {
		if m.IgnoreCase {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := m.MatchPattern.(type) {
	case *matcher.StringMatcher_Exact:
		return v == low(p.Exact)
	case *matcher.StringMatcher_Prefix:
		return strings.HasPrefix(v, low(p.Prefix))
	case *matcher.StringMatcher_Suffix:
		return strings.HasSuffix(v, low(p.Suffix))
	case *matcher.StringMatcher_Contains:
		return strings.Contains(v, low(p.Contains))
	case *matcher.StringMatcher_SafeRegex:
		re, err := regexp.Compile("^(?:" + p.SafeRegex.Regex + ")$")
		return err == nil && re.MatchString(v)
	}
	return false
}

// String renders the steps, for test failure messages.
func (r *Result) String() string { return strings.Join(r.Steps, " -> ") }

// Ports lists the ports that have listeners, sorted, for diagnostics.
func (c *Config) Ports() []int {
	var out []int
	for _, l := range c.Listeners {
		if sa := l.GetAddress().GetSocketAddress(); sa != nil {
			out = append(out, int(sa.GetPortValue()))
		}
	}
	sort.Ints(out)
	return out
}

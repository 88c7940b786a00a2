package analyze

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshd/meshd/galley/validation"
	"github.com/meshd/meshd/pkg/schema"
)

func invalidConfig(a *analysis) {
	for _, k := range schema.IstioConfig {
		for _, obj := range a.s.List(k, "") {
			_, err := validation.Validate(obj)
			for _, e := range validation.Errors(err) {
				a.report([]Ref{refOf(obj)}, "%v", e)
			}
		}
	}
}

func configWarnings(a *analysis) {
	for _, k := range schema.IstioConfig {
		for _, obj := range a.s.List(k, "") {
			warns, _ := validation.Validate(obj)
			for _, w := range warns {
				a.report([]Ref{refOf(obj)}, "%s", w)
			}
		}
	}
}

// fqdn resolves a host as Istio does: a short name (no dot, no wildcard) is
// a Service in the namespace of the object that names it.
func (a *analysis) fqdn(host, namespace string) string {
	if strings.HasPrefix(host, "*") || strings.Contains(host, ".") {
		return host
	}
	return host + "." + namespace + ".svc." + a.suffix
}

// visible reports whether an object exported with exportTo (in namespace
// ns) can be seen from namespace from.
func visible(exportTo []string, ns, from string) bool {
	if len(exportTo) == 0 {
		return true
	}
	for _, e := range exportTo {
		switch e {
		case "*":
			return true
		case ".":
			if ns == from {
				return true
			}
		default:
			if e == from {
				return true
			}
		}
	}
	return false
}

// hostDefined reports whether a Service or ServiceEntry visible from
// namespace from defines a name host (resolved) could mean.
func (a *analysis) hostDefined(host, from string) bool {
	for _, svc := range a.s.Services.List("") {
		exportTo := splitList(svc.Annotations["networking.istio.io/exportTo"])
		if visible(exportTo, svc.Namespace, from) && validation.HostsOverlap(host, a.fqdn(svc.Name, svc.Namespace)) {
			return true
		}
	}
	for _, se := range a.s.ServiceEntries.List("") {
		if !visible(se.Spec.ExportTo, se.Namespace, from) {
			continue
		}
		for _, h := range se.Spec.Hosts {
			if validation.HostsOverlap(host, h) || validation.HostsOverlap(host, a.fqdn(h, se.Namespace)) {
				return true
			}
		}
	}
	return false
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// destination is one place a VirtualService sends traffic.
type destination struct {
	path string
	d    *networking.Destination
}

func destinations(vs *networking.VirtualService) []destination {
	var out []destination
	for i, h := range vs.Http {
		for j, r := range h.GetRoute() {
			out = append(out, destination{fmt.Sprintf("spec.http[%d].route[%d].destination", i, j), r.GetDestination()})
		}
		if h.GetMirror() != nil {
			out = append(out, destination{fmt.Sprintf("spec.http[%d].mirror", i), h.GetMirror()})
		}
		for j, m := range h.GetMirrors() {
			out = append(out, destination{fmt.Sprintf("spec.http[%d].mirrors[%d].destination", i, j), m.GetDestination()})
		}
	}
	for i, t := range vs.Tcp {
		for j, r := range t.GetRoute() {
			out = append(out, destination{fmt.Sprintf("spec.tcp[%d].route[%d].destination", i, j), r.GetDestination()})
		}
	}
	for i, t := range vs.Tls {
		for j, r := range t.GetRoute() {
			out = append(out, destination{fmt.Sprintf("spec.tls[%d].route[%d].destination", i, j), r.GetDestination()})
		}
	}
	return slices.DeleteFunc(out, func(d destination) bool { return d.d == nil || d.d.Host == "" })
}

func destinationHostNotFound(a *analysis) {
	for _, vs := range a.s.VirtualServices.List("") {
		for _, d := range destinations(&vs.Spec) {
			host := a.fqdn(d.d.Host, vs.Namespace)
			if !a.hostDefined(host, vs.Namespace) {
				a.report([]Ref{refOf(vs)}, "%s.host: %s matches no Service or ServiceEntry%s", d.path, quoteHost(d.d.Host, host), shortNameHint(d.d.Host))
			}
		}
	}
}

func quoteHost(written, resolved string) string {
	if written == resolved {
		return fmt.Sprintf("host %q", written)
	}
	return fmt.Sprintf("host %q (%s)", written, resolved)
}

// shortNameHint explains the common slip of writing `svc.namespace`, which
// Istio takes as a literal host name rather than a Service.
func shortNameHint(host string) string {
	if strings.Count(host, ".") == 1 && !strings.HasPrefix(host, "*") {
		return "; a Service is named by its short name or in full, e.g. " + host + ".svc.cluster.local"
	}
	return ""
}

// boundToMesh reports whether a VirtualService applies to sidecars.
func boundToMesh(vs *networking.VirtualService) bool {
	return len(vs.Gateways) == 0 || slices.Contains(vs.Gateways, "mesh")
}

func virtualServiceHostNotFound(a *analysis) {
	for _, vs := range a.s.VirtualServices.List("") {
		if !boundToMesh(&vs.Spec) {
			continue
		}
		for i, h := range vs.Spec.Hosts {
			if h == "*" || isIP(h) {
				continue
			}
			host := a.fqdn(h, vs.Namespace)
			if !a.hostDefined(host, vs.Namespace) {
				a.report([]Ref{refOf(vs)}, "spec.hosts[%d]: %s matches no Service or ServiceEntry, so no sidecar routes by this VirtualService%s", i, quoteHost(h, host), shortNameHint(h))
			}
		}
	}
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func destinationRuleHostNotFound(a *analysis) {
	for _, dr := range a.s.DestinationRules.List("") {
		host := a.fqdn(dr.Spec.Host, dr.Namespace)
		if !a.hostDefined(host, dr.Namespace) {
			a.report([]Ref{refOf(dr)}, "spec.host: %s matches no Service or ServiceEntry, so this DestinationRule has no effect%s", quoteHost(dr.Spec.Host, host), shortNameHint(dr.Spec.Host))
		}
	}
}

// rulesFor returns the DestinationRules, visible from namespace from, whose
// host covers host.
func (a *analysis) rulesFor(host, from string) []*networkingv1.DestinationRule {
	var out []*networkingv1.DestinationRule
	for _, dr := range a.s.DestinationRules.List("") {
		if visible(dr.Spec.ExportTo, dr.Namespace, from) && validation.HostSubsetOf(host, a.fqdn(dr.Spec.Host, dr.Namespace)) {
			out = append(out, dr)
		}
	}
	return out
}

func subsetNotFound(a *analysis) {
	for _, vs := range a.s.VirtualServices.List("") {
		for _, d := range destinations(&vs.Spec) {
			if d.d.Subset == "" {
				continue
			}
			host := a.fqdn(d.d.Host, vs.Namespace)
			rules := a.rulesFor(host, vs.Namespace)
			found := false
			objs := []Ref{refOf(vs)}
			for _, dr := range rules {
				objs = append(objs, refOf(dr))
				for _, s := range dr.Spec.Subsets {
					found = found || s.GetName() == d.d.Subset
				}
			}
			switch {
			case found:
			case len(rules) == 0:
				a.report(objs, "%s.subset: subset %q of %s is not defined: no DestinationRule for the host defines subsets", d.path, d.d.Subset, quoteHost(d.d.Host, host))
			default:
				a.report(objs, "%s.subset: subset %q of %s is not defined by its DestinationRule", d.path, d.d.Subset, quoteHost(d.d.Host, host))
			}
		}
	}
}

func subsetSelectsNoPods(a *analysis) {
	for _, dr := range a.s.DestinationRules.List("") {
		host := a.fqdn(dr.Spec.Host, dr.Namespace)
		for _, svc := range a.s.Services.List("") {
			if len(svc.Spec.Selector) == 0 || !validation.HostSubsetOf(a.fqdn(svc.Name, svc.Namespace), host) {
				continue
			}
			pods := a.workloads(svc.Namespace, svc.Spec.Selector)
			if len(pods) == 0 {
				// No pods at all is a scaled-down Service, not a subset mistake.
				continue
			}
			for i, s := range dr.Spec.Subsets {
				if s == nil || len(s.Labels) == 0 {
					continue
				}
				n := 0
				for _, l := range pods {
					if labels.SelectorFromSet(s.Labels).Matches(labels.Set(l)) {
						n++
					}
				}
				if n == 0 {
					a.report([]Ref{refOf(dr), refOf(svc)}, "spec.subsets[%d]: subset %q selects none of the %d pods of Service %s/%s (labels %v)",
						i, s.Name, len(pods), svc.Namespace, svc.Name, labels.Set(s.Labels))
				}
			}
		}
	}
}

// workloads returns the labels of the running pods and WorkloadEntries in
// namespace ns that selector selects.
func (a *analysis) workloads(ns string, selector map[string]string) []map[string]string {
	sel := labels.SelectorFromSet(selector)
	var out []map[string]string
	for _, p := range a.s.Pods.Select(ns, sel) {
		if !finished(p) {
			out = append(out, p.Labels)
		}
	}
	for _, we := range a.s.WorkloadEntries.List(ns) {
		if sel.Matches(labels.Set(we.Spec.Labels)) {
			out = append(out, we.Spec.Labels)
		}
	}
	return out
}

func finished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// systemNamespaces hold the cluster's own pods, which are not in the mesh.
var systemNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true}

func podWithoutService(a *analysis) {
	for _, p := range a.s.Pods.List("") {
		if systemNamespaces[p.Namespace] || finished(p) {
			continue
		}
		selected := false
		for _, svc := range a.s.Services.List(p.Namespace) {
			if len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(p.Labels)) {
				selected = true
				break
			}
		}
		if !selected {
			a.report([]Ref{refOf(p)}, "no Service selects this pod (labels %v); Istio needs every pod to belong to a Service, even one exposing no ports", labels.Set(p.Labels))
		}
	}
}

// gatewayKey resolves a gateway reference written in a VirtualService in
// namespace ns to "namespace/name"; ok is false for `mesh`.
func gatewayKey(ref, ns string) (key string, ok bool) {
	if ref == "mesh" {
		return "", false
	}
	if strings.Contains(ref, "/") {
		return ref, true
	}
	if name, gwNS, dotted := strings.Cut(ref, "."); dotted {
		// The legacy `name.namespace` form.
		if i := strings.Index(gwNS, "."); i >= 0 {
			gwNS = gwNS[:i]
		}
		return gwNS + "/" + name, true
	}
	return ns + "/" + ref, true
}

func gatewayNotFound(a *analysis) {
	for _, vs := range a.s.VirtualServices.List("") {
		seen := map[string]bool{}
		check := func(path, ref string) {
			key, ok := gatewayKey(ref, vs.Namespace)
			if !ok || seen[key] {
				return
			}
			seen[key] = true
			ns, name, _ := strings.Cut(key, "/")
			if _, found := a.s.Gateways.Get(ns, name); !found {
				a.report([]Ref{refOf(vs)}, "%s: gateway %s does not exist, so this VirtualService routes nothing through it", path, key)
			}
		}
		for i, g := range vs.Spec.Gateways {
			check(fmt.Sprintf("spec.gateways[%d]", i), g)
		}
		for i, h := range vs.Spec.Http {
			for j, m := range h.GetMatch() {
				for k, g := range m.GetGateways() {
					check(fmt.Sprintf("spec.http[%d].match[%d].gateways[%d]", i, j, k), g)
				}
			}
		}
	}
}

// gatewayRoutes is what one VirtualService contributes to one gateway.
type gatewayRoutes struct {
	vs      *networkingv1.VirtualService
	hosts   []string
	matches []routeMatch
}

type routeMatch struct {
	path string
	m    *networking.HTTPMatchRequest // nil: matches everything
}

// byGateway groups the HTTP matches of VirtualServices by the gateway they
// are bound to.
func (a *analysis) byGateway() (map[string][]gatewayRoutes, []string) {
	out := map[string][]gatewayRoutes{}
	for _, vs := range a.s.VirtualServices.List("") {
		for _, g := range vs.Spec.Gateways {
			key, ok := gatewayKey(g, vs.Namespace)
			if !ok {
				continue
			}
			gr := gatewayRoutes{vs: vs}
			for _, h := range vs.Spec.Hosts {
				gr.hosts = append(gr.hosts, a.fqdn(h, vs.Namespace))
			}
			for i, h := range vs.Spec.Http {
				if h == nil {
					continue
				}
				if len(h.Match) == 0 {
					gr.matches = append(gr.matches, routeMatch{path: fmt.Sprintf("http[%d]", i)})
				}
				for j, m := range h.Match {
					if m == nil || len(m.Gateways) > 0 && !slices.ContainsFunc(m.Gateways, func(r string) bool {
						k, _ := gatewayKey(r, vs.Namespace)
						return k == key
					}) {
						continue // this match does not apply on this gateway
					}
					gr.matches = append(gr.matches, routeMatch{path: fmt.Sprintf("http[%d].match[%d]", i, j), m: m})
				}
			}
			out[key] = append(out[key], gr)
		}
	}
	keys := make([]string, 0, len(out))
	for k := range out {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return out, keys
}

func conflictingGatewayRoutes(a *analysis) { a.gatewayOverlaps(true) }

func shadowedGatewayRoutes(a *analysis) { a.gatewayOverlaps(false) }

// gatewayOverlaps reports pairs of VirtualServices on one gateway with
// overlapping hosts and matches: for the same host (sameHost) a request
// that matches both goes to either; for a wildcard overlapping a specific
// host, the specific one wins and the wildcard's routes never apply to it.
func (a *analysis) gatewayOverlaps(sameHost bool) {
	groups, keys := a.byGateway()
	for _, key := range keys {
		vss := groups[key]
		gwNS, gwName, _ := strings.Cut(key, "/")
		for i := range vss {
			for j := i + 1; j < len(vss); j++ {
				x, y := vss[i], vss[j]
				if x.vs == y.vs {
					continue
				}
				host, ok := overlappingHost(x.hosts, y.hosts, sameHost)
				if !ok {
					continue
				}
				mx, my, ok := overlappingMatch(x.matches, y.matches)
				if !ok {
					continue
				}
				objs := []Ref{refOf(x.vs), refOf(y.vs), {Kind: "Gateway", Namespace: gwNS, Name: gwName}}
				if sameHost {
					a.report(objs, "both bound to gateway %s for host %q with overlapping matches (%s %s and %s %s): a request matching both goes to either one",
						key, host, x.vs.Name, describe(mx), y.vs.Name, describe(my))
				} else {
					a.report(objs, "both bound to gateway %s with overlapping hosts (%s) and matches (%s %s and %s %s): for the more specific host only its own VirtualService applies",
						key, host, x.vs.Name, describe(mx), y.vs.Name, describe(my))
				}
			}
		}
	}
}

func overlappingHost(xs, ys []string, same bool) (string, bool) {
	for _, x := range xs {
		for _, y := range ys {
			switch {
			case same && x == y:
				return x, true
			case !same && x != y && validation.HostsOverlap(x, y):
				return x + " and " + y, true
			}
		}
	}
	return "", false
}

func overlappingMatch(xs, ys []routeMatch) (routeMatch, routeMatch, bool) {
	for _, x := range xs {
		for _, y := range ys {
			if matchesOverlap(x.m, y.m) {
				return x, y, true
			}
		}
	}
	return routeMatch{}, routeMatch{}, false
}

func describe(r routeMatch) string {
	if r.m == nil {
		return r.path + " (no match: everything)"
	}
	if u := r.m.GetUri(); u != nil {
		switch t := u.GetMatchType().(type) {
		case *networking.StringMatch_Exact:
			return fmt.Sprintf("%s (uri exact %s)", r.path, t.Exact)
		case *networking.StringMatch_Prefix:
			return fmt.Sprintf("%s (uri prefix %s)", r.path, t.Prefix)
		case *networking.StringMatch_Regex:
			return fmt.Sprintf("%s (uri regex %s)", r.path, t.Regex)
		}
	}
	return r.path
}

// matchesOverlap reports whether some request can satisfy both matches. It
// only says yes when sure: conditions it cannot compare (regex against
// regex or prefix) count as disjoint, so that an error is never a guess.
func matchesOverlap(x, y *networking.HTTPMatchRequest) bool {
	if x == nil || y == nil {
		return true
	}
	if x.Port != 0 && y.Port != 0 && x.Port != y.Port {
		return false
	}
	fold := x.IgnoreUriCase || y.IgnoreUriCase
	if !stringsOverlap(x.Uri, y.Uri, fold) || !stringsOverlap(x.Method, y.Method, false) ||
		!stringsOverlap(x.Authority, y.Authority, false) || !stringsOverlap(x.Scheme, y.Scheme, false) {
		return false
	}
	for k, v := range x.Headers {
		if w, ok := y.Headers[k]; ok && !stringsOverlap(v, w, false) {
			return false
		}
		if _, absent := y.WithoutHeaders[k]; absent {
			return false
		}
	}
	for k := range y.Headers {
		if _, absent := x.WithoutHeaders[k]; absent {
			return false
		}
	}
	for k, v := range x.QueryParams {
		if w, ok := y.QueryParams[k]; ok && !stringsOverlap(v, w, false) {
			return false
		}
	}
	return true
}

func stringsOverlap(x, y *networking.StringMatch, fold bool) bool {
	if x == nil || x.GetMatchType() == nil || y == nil || y.GetMatchType() == nil {
		return true
	}
	norm := func(s string) string {
		if fold {
			return strings.ToLower(s)
		}
		return s
	}
	ex, isExactX := x.GetMatchType().(*networking.StringMatch_Exact)
	ey, isExactY := y.GetMatchType().(*networking.StringMatch_Exact)
	px, isPrefixX := x.GetMatchType().(*networking.StringMatch_Prefix)
	py, isPrefixY := y.GetMatchType().(*networking.StringMatch_Prefix)
	switch {
	case isExactX && isExactY:
		return norm(ex.Exact) == norm(ey.Exact)
	case isExactX && isPrefixY:
		return strings.HasPrefix(norm(ex.Exact), norm(py.Prefix))
	case isPrefixX && isExactY:
		return strings.HasPrefix(norm(ey.Exact), norm(px.Prefix))
	case isPrefixX && isPrefixY:
		return strings.HasPrefix(norm(px.Prefix), norm(py.Prefix)) || strings.HasPrefix(norm(py.Prefix), norm(px.Prefix))
	case isExactX:
		return regexMatches(y.GetRegex(), ex.Exact)
	case isExactY:
		return regexMatches(x.GetRegex(), ey.Exact)
	}
	return false
}

// regexMatches reports whether re (Envoy's full-string RE2 match) matches s.
func regexMatches(re, s string) bool {
	r, err := regexp.Compile("^(?:" + re + ")$")
	return err == nil && r.MatchString(s)
}

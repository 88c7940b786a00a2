package translate

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/meshd/meshd/pilot/model"
)

// trafficIndex is what the generators need from the VirtualServices and
// DestinationRules of one snapshot: the mesh-bound VirtualServices by the
// FQDN they route, and the DestinationRules with resolved hosts. It is
// built once per config version and is read-only afterwards, except for
// its memo of keys, which is guarded by the Translator's lock.
type trafficIndex struct {
	snap   *model.Snapshot
	vsHost map[string][]*vsEntry
	// vsWild are the mesh VirtualServices with wildcard hosts (*.example.com).
	vsWild []wildVS
	drs    []*drEntry
	// drHost indexes the rules with an exact host; drWild are the others.
	drHost map[string][]*drEntry
	drWild []*drEntry
	// localityLB is true when some DestinationRule may balance by locality
	// (a locality setting, or outlier detection which turns failover on).
	localityLB bool
	keys       map[[3]string]string
	// labelKeys are the label names any mesh VirtualService matches
	// sourceLabels on: the only proxy labels routes depend on.
	labelKeys []string
	// byName holds every VirtualService by namespace/name, for delegates.
	byName map[string]*vsEntry
	// ordered holds every VirtualService, oldest first: gateways pick the
	// ones bound to them from it.
	ordered []*vsEntry
	// als memoizes access-log decisions (Translator.accessLogsFor) for
	// Telemetry version alsVersion.
	als        map[string]accessLogs
	alsVersion uint64
	// sidecarIDs memoizes each Sidecar's spec hash (sidecarScope.id),
	// which every sidecar proxy's outbound key needs on every View.
	sidecarIDs map[*networkingv1.Sidecar]string
}

type wildVS struct {
	suffix string // ".example.com" for "*.example.com"
	e      *vsEntry
}

type vsEntry struct {
	vs   *networkingv1.VirtualService
	id   string // namespace/name@hash of the spec
	spec *networking.VirtualService
}

type drEntry struct {
	dr   *networkingv1.DestinationRule
	host string
	id   string
	spec *networking.DestinationRule
}

// specID names a config object together with a hash of its spec, so that a
// key holding it changes whenever the object's meaning does.
func specID(ns, name string, m proto.Message) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	h := fnv.New64a()
	h.Write(b)
	return fmt.Sprintf("%s/%s@%x", ns, name, h.Sum64())
}

// resolveHost turns a host as written in a config object of namespace ns
// into an FQDN: a short name is a Kubernetes Service in ns, name.namespace
// one in that namespace; anything with more dots is taken as written.
func resolveHost(host, ns, suffix string) string {
	if host == "" || strings.HasPrefix(host, "*") {
		return host
	}
	switch strings.Count(host, ".") {
	case 0:
		return host + "." + ns + ".svc." + suffix
	case 1:
		return host + ".svc." + suffix
	}
	return host
}

// exportedTo applies an Istio config exportTo list ("." is the object's own
// namespace, "*" or empty is everyone).
func exportedTo(exportTo []string, own, ns string) bool {
	if len(exportTo) == 0 {
		return true
	}
	for _, e := range exportTo {
		if e == "*" || e == ns || (e == "." && own == ns) {
			return true
		}
	}
	return false
}

// meshBound reports whether a VirtualService applies to sidecars.
func meshBound(gateways []string) bool {
	if len(gateways) == 0 {
		return true
	}
	for _, g := range gateways {
		if g == "mesh" {
			return true
		}
	}
	return false
}

func newTrafficIndex(snap *model.Snapshot) *trafficIndex {
	idx := &trafficIndex{snap: snap, vsHost: map[string][]*vsEntry{}, keys: map[[3]string]string{}, byName: map[string]*vsEntry{},
		sidecarIDs: map[*networkingv1.Sidecar]string{}}
	labelKeys := map[string]bool{}
	suffix := snap.Options.DomainSuffix
	vss := append([]*networkingv1.VirtualService(nil), snap.VirtualServices...)
	// Merged VirtualServices keep their routes in creation order, oldest
	// first, as istiod merges them.
	sort.SliceStable(vss, func(i, j int) bool {
		a, b := vss[i].CreationTimestamp, vss[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return vss[i].Namespace+"/"+vss[i].Name < vss[j].Namespace+"/"+vss[j].Name
	})
	for _, vs := range vss {
		e := &vsEntry{vs: vs, spec: &vs.Spec, id: specID(vs.Namespace, vs.Name, &vs.Spec)}
		idx.byName[vs.Namespace+"/"+vs.Name] = e
		idx.ordered = append(idx.ordered, e)
		if !meshBound(vs.Spec.Gateways) {
			continue
		}
		for _, h := range vs.Spec.Http {
			for _, m := range h.Match {
				for k := range m.SourceLabels {
					labelKeys[k] = true
				}
			}
		}
		for _, h := range vs.Spec.Tcp {
			for _, m := range h.Match {
				for k := range m.SourceLabels {
					labelKeys[k] = true
				}
			}
		}
		for _, h := range vs.Spec.Tls {
			for _, m := range h.Match {
				for k := range m.SourceLabels {
					labelKeys[k] = true
				}
			}
		}
		seen := map[string]bool{}
		for _, h := range vs.Spec.Hosts {
			fq := resolveHost(h, vs.Namespace, suffix)
			if seen[fq] {
				continue
			}
			if strings.HasPrefix(fq, "*.") {
				seen[fq] = true
				idx.vsWild = append(idx.vsWild, wildVS{suffix: fq[1:], e: e})
				continue
			}
			if strings.HasPrefix(fq, "*") {
				continue // "*" alone is for gateways only
			}
			seen[fq] = true
			idx.vsHost[fq] = append(idx.vsHost[fq], e)
		}
	}
	idx.labelKeys = sortedKeys(labelKeys)
	for _, dr := range snap.DestinationRules {
		e := &drEntry{dr: dr, spec: &dr.Spec,
			host: resolveHost(dr.Spec.Host, dr.Namespace, suffix),
			id:   specID(dr.Namespace, dr.Name, &dr.Spec)}
		idx.drs = append(idx.drs, e)
		idx.localityLB = idx.localityLB || mayBalanceByLocality(dr.Spec.TrafficPolicy)
		for _, ss := range dr.Spec.Subsets {
			idx.localityLB = idx.localityLB || mayBalanceByLocality(ss.TrafficPolicy)
		}
		if strings.HasPrefix(e.host, "*") {
			idx.drWild = append(idx.drWild, e)
		} else {
			if idx.drHost == nil {
				idx.drHost = map[string][]*drEntry{}
			}
			idx.drHost[e.host] = append(idx.drHost[e.host], e)
		}
	}
	return idx
}

// virtualServices returns the VirtualServices a proxy in ns applies to
// host: those naming it exactly or, when none does, those whose wildcard
// host covers it (the longest wildcard), as istiod prefers exact hosts.
func (idx *trafficIndex) virtualServices(host, ns string) []*vsEntry {
	var out []*vsEntry
	for _, e := range idx.vsHost[host] {
		if exportedTo(e.spec.ExportTo, e.vs.Namespace, ns) {
			out = append(out, e)
		}
	}
	if len(out) > 0 {
		return out
	}
	best := 0
	for _, w := range idx.vsWild {
		if len(w.suffix) < best || !strings.HasSuffix(host, w.suffix) || !exportedTo(w.e.spec.ExportTo, w.e.vs.Namespace, ns) {
			continue
		}
		if len(w.suffix) > best {
			out, best = out[:0], len(w.suffix)
		}
		out = append(out, w.e)
	}
	return out
}

// hostMatches reports whether a DestinationRule host (an FQDN or a
// wildcard) covers host, and how specifically (longer is more).
func hostMatches(pattern, host string) (int, bool) {
	if pattern == host {
		return 1 << 20, true
	}
	if pattern == "*" {
		return 0, true
	}
	if strings.HasPrefix(pattern, "*") && strings.HasSuffix(host, pattern[1:]) {
		return len(pattern), true
	}
	return 0, false
}

// destinationRule returns the DestinationRule a proxy in ns applies to the
// service: the most specific host wins; among equals, one in the proxy's
// namespace, then one in the service's namespace, then the oldest.
func (idx *trafficIndex) destinationRule(svc *model.Service, ns string) *drEntry {
	if svc == nil {
		return nil
	}
	var best *drEntry
	bestScore := -1
	exact := idx.drHost[svc.Hostname]
	cands := make([]*drEntry, 0, len(exact)+len(idx.drWild))
	cands = append(append(cands, exact...), idx.drWild...)
	for _, e := range cands {
		if !exportedTo(e.spec.ExportTo, e.dr.Namespace, ns) {
			continue
		}
		spec, ok := hostMatches(e.host, svc.Hostname)
		if !ok {
			continue
		}
		score := spec * 4
		switch e.dr.Namespace {
		case ns:
			score += 2
		case svc.Namespace:
			score++
		}
		if score > bestScore || (score == bestScore && e.dr.CreationTimestamp.Before(&best.dr.CreationTimestamp)) {
			best, bestScore = e, score
		}
	}
	return best
}

// ID is the cache-key part for a service's DestinationRule ("" for none).
func (e *drEntry) ID() string {
	if e == nil {
		return ""
	}
	return e.id
}

// subset returns the named subset of a DestinationRule.
func (e *drEntry) subset(name string) *networking.Subset {
	if e == nil {
		return nil
	}
	for _, s := range e.spec.Subsets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// routeKey returns everything the virtual host (or proxyless route) of
// host, as seen from namespace ns, is built from besides the service
// itself: the VirtualServices applied, and for each host they route to the
// service and DestinationRule chosen (subsets, hash policies). It is
// memoized per snapshot; the caller holds the Translator's lock.
func (idx *trafficIndex) routeKey(svc *model.Service, ns, labels string) string {
	k := [3]string{svc.Hostname, ns, labels}
	if s, ok := idx.keys[k]; ok {
		return s
	}
	var b strings.Builder
	b.WriteString(idx.destinationRule(svc, ns).ID())
	vss := idx.virtualServices(svc.Hostname, ns)
	seen := map[string]bool{}
	for _, e := range vss {
		b.WriteString("|" + e.id)
		for _, h := range idx.expandDelegates(e) {
			dests := make([]*networking.Destination, 0, len(h.Route)+1)
			for _, d := range h.Route {
				dests = append(dests, d.Destination)
			}
			dests = append(dests, h.Mirror)
			for _, m := range h.Mirrors {
				dests = append(dests, m.Destination)
			}
			for _, d := range dests {
				if d == nil {
					continue
				}
				fq := resolveHost(d.Host, e.vs.Namespace, idx.snap.Options.DomainSuffix)
				if seen[fq] {
					continue
				}
				seen[fq] = true
				dst := idx.snap.Service(fq, ns)
				if dst == nil {
					fmt.Fprintf(&b, "|%s=none", fq)
					continue
				}
				fmt.Fprintf(&b, "|%s=%d,%s", dst.Key(), dst.Version, idx.destinationRule(dst, ns).ID())
			}
		}
	}
	// Routes matching on sourceNamespace and sourceLabels depend on the
	// proxy's namespace and (projected) labels.
	if len(vss) > 0 {
		b.WriteString("|ns=" + ns + "|labels=" + labels)
	}
	idx.keys[k] = b.String()
	return idx.keys[k]
}

// labelKey projects a proxy's labels on the ones sourceLabels matches use:
// proxies that differ only in other labels share their outbound config.
func (idx *trafficIndex) labelKey(labels map[string]string) string {
	var b strings.Builder
	for _, k := range idx.labelKeys {
		if v, ok := labels[k]; ok {
			fmt.Fprintf(&b, "%s=%s,", k, v)
		}
	}
	return b.String()
}

// delegateOf returns the delegate VirtualService an http route names.
func (idx *trafficIndex) delegateOf(root *vsEntry, d *networking.Delegate) *vsEntry {
	ns := d.Namespace
	if ns == "" {
		ns = root.vs.Namespace
	}
	e := idx.byName[ns+"/"+d.Name]
	// A delegate has no hosts of its own, and must be exported to the root.
	if e == nil || len(e.spec.Hosts) > 0 || !exportedTo(e.spec.ExportTo, e.vs.Namespace, root.vs.Namespace) {
		return nil
	}
	return e
}

// expandDelegates returns the http routes of a VirtualService with each
// delegating route replaced by the delegate's routes, their matches
// combined with the root's (the delegate's conditions, with anything it
// leaves unset taken from the root), as istiod merges them.
func (idx *trafficIndex) expandDelegates(e *vsEntry) []*networking.HTTPRoute {
	out := make([]*networking.HTTPRoute, 0, len(e.spec.Http))
	for _, h := range e.spec.Http {
		if h.Delegate == nil {
			out = append(out, h)
			continue
		}
		d := idx.delegateOf(e, h.Delegate)
		if d == nil {
			continue
		}
		for _, dh := range d.spec.Http {
			if dh.Delegate != nil {
				continue // delegation is one level deep
			}
			merged := proto.Clone(dh).(*networking.HTTPRoute)
			merged.Match = mergeMatches(h.Match, dh.Match)
			if len(h.Match) > 0 && len(merged.Match) == 0 {
				continue // no combination of conditions can hold
			}
			out = append(out, merged)
		}
	}
	return out
}

func mergeMatches(root, del []*networking.HTTPMatchRequest) []*networking.HTTPMatchRequest {
	if len(root) == 0 {
		return del
	}
	if len(del) == 0 {
		return root
	}
	var out []*networking.HTTPMatchRequest
	for _, r := range root {
		for _, d := range del {
			m := proto.Clone(d).(*networking.HTTPMatchRequest)
			if m.Uri == nil {
				m.Uri = r.Uri
			} else if !uriWithin(r.Uri, m.Uri) {
				continue
			}
			if m.Method == nil {
				m.Method = r.Method
			}
			if m.Authority == nil {
				m.Authority = r.Authority
			}
			if m.Scheme == nil {
				m.Scheme = r.Scheme
			}
			if m.Port == 0 {
				m.Port = r.Port
			}
			if m.SourceNamespace == "" {
				m.SourceNamespace = r.SourceNamespace
			}
			for k, v := range r.Headers {
				if m.Headers == nil {
					m.Headers = map[string]*networking.StringMatch{}
				}
				if _, ok := m.Headers[k]; !ok {
					m.Headers[k] = v
				}
			}
			for k, v := range r.QueryParams {
				if m.QueryParams == nil {
					m.QueryParams = map[string]*networking.StringMatch{}
				}
				if _, ok := m.QueryParams[k]; !ok {
					m.QueryParams[k] = v
				}
			}
			for k, v := range r.WithoutHeaders {
				if m.WithoutHeaders == nil {
					m.WithoutHeaders = map[string]*networking.StringMatch{}
				}
				if _, ok := m.WithoutHeaders[k]; !ok {
					m.WithoutHeaders[k] = v
				}
			}
			out = append(out, m)
		}
	}
	return out
}

// uriWithin reports whether the delegate's uri condition narrows the
// root's (a delegate may not widen what its root matches).
func uriWithin(root, del *networking.StringMatch) bool {
	if root == nil {
		return true
	}
	rp, ok := root.MatchType.(*networking.StringMatch_Prefix)
	if !ok {
		return proto.Equal(root, del)
	}
	switch d := del.MatchType.(type) {
	case *networking.StringMatch_Prefix:
		return strings.HasPrefix(d.Prefix, rp.Prefix)
	case *networking.StringMatch_Exact:
		return strings.HasPrefix(d.Exact, rp.Prefix)
	}
	return false
}

func mayBalanceByLocality(tp *networking.TrafficPolicy) bool {
	if tp == nil {
		return false
	}
	if tp.OutlierDetection != nil || tp.GetLoadBalancer().GetLocalityLbSetting() != nil {
		return true
	}
	for _, pl := range tp.PortLevelSettings {
		if pl.OutlierDetection != nil || pl.GetLoadBalancer().GetLocalityLbSetting() != nil {
			return true
		}
	}
	return false
}

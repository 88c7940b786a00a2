package translate

import (
	"slices"
	"strings"

	networkingapi "istio.io/api/networking/v1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/meshd/meshd/pilot/model"
)

// sidecarScope is what a Sidecar resource lets a sidecar reach: the
// services its egress listeners import. A proxy no Sidecar applies to (or
// whose Sidecar has no egress) reaches every service visible to its
// namespace, as in Istio.
type sidecarScope struct {
	// id names the Sidecar and its spec (namespace/name@hash): proxies
	// with the same scope share outbound config; "" when none applies.
	id      string
	imports []egressImport
	// registryOnly is outboundTrafficPolicy mode REGISTRY_ONLY.
	registryOnly bool
}

// egressImport is one "namespace/dnsName" of an egress listener's hosts,
// with the listener's port (0: every port).
type egressImport struct {
	ns, host string
	port     uint32
}

// sidecarFor returns the Sidecar that applies to a workload with labels in
// namespace ns, by Istio's precedence: one in ns whose workloadSelector
// matches (the oldest if several do), else ns's Sidecar without a
// selector, else the root namespace's Sidecar without a selector.
func sidecarFor(snap *model.Snapshot, ns string, labels map[string]string) *networkingv1.Sidecar {
	var selected, nsDefault, rootDefault *networkingv1.Sidecar
	older := func(a, b *networkingv1.Sidecar) bool {
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	}
	pick := func(cur **networkingv1.Sidecar, sc *networkingv1.Sidecar) {
		if *cur == nil || older(sc, *cur) {
			*cur = sc
		}
	}
	for _, sc := range snap.Sidecars {
		sel := sc.Spec.GetWorkloadSelector().GetLabels()
		switch {
		case sc.Namespace == ns && len(sel) > 0:
			if model.Selects(sel, labels) {
				pick(&selected, sc)
			}
		case sc.Namespace == ns:
			pick(&nsDefault, sc)
		case sc.Namespace == snap.Options.RootNamespace && len(sel) == 0:
			pick(&rootDefault, sc)
		}
	}
	switch {
	case selected != nil:
		return selected
	case nsDefault != nil:
		return nsDefault
	}
	return rootDefault
}

// scopeFor is the egress scope of a sidecar proxy; registryOnly is the
// mesh-wide outboundTrafficPolicy, which a Sidecar's own overrides.
func scopeFor(idx *trafficIndex, p *model.Proxy, registryOnly bool) sidecarScope {
	if p.Type != model.SidecarProxy {
		return sidecarScope{}
	}
	sc := sidecarFor(idx.snap, p.Namespace, p.Labels)
	if sc == nil {
		return sidecarScope{registryOnly: registryOnly}
	}
	id, ok := idx.sidecarIDs[sc]
	if !ok {
		id = specID(sc.Namespace, sc.Name, &sc.Spec)
		idx.sidecarIDs[sc] = id
	}
	s := sidecarScope{id: id, registryOnly: registryOnly}
	// REGISTRY_ONLY is the enum's zero value: only a policy written out
	// says anything.
	if otp := sc.Spec.GetOutboundTrafficPolicy(); otp != nil {
		s.registryOnly = otp.GetMode() == networkingapi.OutboundTrafficPolicy_REGISTRY_ONLY
	}
	if len(sc.Spec.GetEgress()) == 0 {
		// No egress listeners: every visible service, as without a Sidecar.
		s.imports = []egressImport{{ns: "*", host: "*"}}
	}
	for _, l := range sc.Spec.GetEgress() {
		for _, h := range l.GetHosts() {
			ns, host, ok := strings.Cut(h, "/")
			if !ok {
				continue // validation refuses hosts without a namespace
			}
			if ns == "." {
				ns = p.Namespace
			}
			s.imports = append(s.imports, egressImport{ns: ns, host: host, port: l.GetPort().GetNumber()})
		}
	}
	return s
}

// filter keeps the services some egress host imports. An egress listener
// naming a port imports only that port: ports then lists, per kept
// service, the ports imported (nil: all of them for every service).
func (s sidecarScope) filter(services []*model.Service) (kept []*model.Service, ports map[string]map[int32]bool) {
	if s.id == "" {
		return services, nil
	}
	for _, svc := range services {
		all, some := false, map[int32]bool{}
		for _, im := range s.imports {
			if !im.importsHost(svc) {
				continue
			}
			if im.port == 0 {
				all = true
				break
			}
			if _, ok := svc.Port(int32(im.port)); ok {
				some[int32(im.port)] = true
			}
		}
		switch {
		case all:
			kept = append(kept, svc)
		case len(some) > 0:
			kept = append(kept, svc)
			if ports == nil {
				ports = map[string]map[int32]bool{}
			}
			ports[svc.Hostname] = some
		}
	}
	return kept, ports
}

// withPorts returns services with each one's ports narrowed to those
// imported (copies; the snapshot's services are shared and immutable).
func withPorts(services []*model.Service, ports map[string]map[int32]bool) []*model.Service {
	if ports == nil {
		return services
	}
	out := make([]*model.Service, len(services))
	for i, svc := range services {
		some, ok := ports[svc.Hostname]
		if !ok {
			out[i] = svc
			continue
		}
		c := *svc
		c.Ports = slices.DeleteFunc(slices.Clone(svc.Ports), func(p model.Port) bool { return !some[p.Port] })
		out[i] = &c
	}
	return out
}

// portImported reports whether an outbound cluster (or its endpoints) is
// for a port the scope imports.
func portImported(ports map[string]map[int32]bool, clusterName string) bool {
	if ports == nil {
		return true
	}
	_, port, _, host, ok := ParseClusterName(clusterName)
	if !ok {
		return true
	}
	some, scoped := ports[host]
	return !scoped || some[port]
}

// importsHost reports whether the egress host takes in svc: its namespace
// matches ("*" any, "~" none) and its host matches ("*" any, "*.suffix" a
// wildcard).
func (im egressImport) importsHost(svc *model.Service) bool {
	if im.ns == "~" || (im.ns != "*" && im.ns != svc.Namespace) {
		return false
	}
	switch {
	case im.host == "*" || im.host == svc.Hostname:
		return true
	case strings.HasPrefix(im.host, "*.") && strings.HasSuffix(svc.Hostname, im.host[1:]):
		return true
	}
	return false
}

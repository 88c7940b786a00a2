package model

import (
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/meshd/meshd/galley/validation"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

// AnnotationExportTo limits which namespaces see a Kubernetes Service.
const AnnotationExportTo = "networking.istio.io/exportTo"

// Builder builds snapshots from the store. It is used by one goroutine at
// a time (the server's debounce loop); snapshots it returns are immutable.
type Builder struct {
	opts Options
	log  *slog.Logger
	// OnSkip, when set, is told of each object (or part) skipped as invalid.
	OnSkip func(kind string)
	seq    uint64
}

// NewBuilder returns a Builder for the given mesh options.
func NewBuilder(log *slog.Logger, opts Options) *Builder {
	return &Builder{opts: opts.WithDefaults(), log: log}
}

func (b *Builder) next() uint64 {
	b.seq++
	return b.seq
}

func (b *Builder) skip(kind, ns, name, why string) {
	b.log.Warn("skipping invalid config", "kind", kind, "namespace", ns, "name", name, "reason", why)
	if b.OnSkip != nil {
		b.OnSkip(kind)
	}
}

// Build returns the snapshot after changes, reusing from prev (nil for the
// first build) every service, endpoint set and config list the changes did
// not touch, and the Delta between the two.
func (b *Builder) Build(prev *Snapshot, st *store.Store, ch *Changes) (*Snapshot, *Delta) {
	if ch == nil {
		ch = &Changes{}
	}
	full := prev == nil || ch.Full
	snap := &Snapshot{Version: b.next(), Options: b.opts}
	delta := &Delta{Full: full, Endpoints: map[string]bool{}, Hosts: map[string]bool{}}

	// Kubernetes Services and ServiceEntries: rebuilt whole, or only those
	// the changes name or whose selected workloads changed.
	if full {
		snap.kube = map[string]*entry{}
		for _, svc := range st.Services.List("") {
			snap.kube[svc.Namespace+"/"+svc.Name] = b.kubeEntry(st, svc, nil)
		}
		snap.entries = map[string]*entry{}
		for _, se := range st.ServiceEntries.List("") {
			snap.entries[se.Namespace+"/"+se.Name] = b.serviceEntry(st, se, nil)
		}
	} else {
		snap.kube = rebuildChanged(prev.kube, ch, st.Services.Get,
			func(svc *corev1.Service, old *entry) *entry { return b.kubeEntry(st, svc, old) },
			ch.services, ch.endpointsOf)
		snap.entries = rebuildChanged(prev.entries, ch, st.ServiceEntries.Get,
			func(se *networkingv1.ServiceEntry, old *entry) *entry { return b.serviceEntry(st, se, old) },
			ch.entries)
	}

	b.assemble(prev, snap, delta)

	// Config lists: re-read only the kinds that changed.
	kinds := ch.ConfigKinds()
	relist := func(k schema.Kind) bool { return full || kinds[k.Name] }
	if prev != nil {
		snap.VirtualServices, snap.DestinationRules, snap.Gateways, snap.Sidecars = prev.VirtualServices, prev.DestinationRules, prev.Gateways, prev.Sidecars
		snap.PeerAuthentications, snap.AuthorizationPolicies, snap.RequestAuthentications = prev.PeerAuthentications, prev.AuthorizationPolicies, prev.RequestAuthentications
		snap.ServiceEntries, snap.WorkloadEntries = prev.ServiceEntries, prev.WorkloadEntries
		snap.Telemetries, snap.TelemetryVersion = prev.Telemetries, prev.TelemetryVersion
		snap.ConfigVersion = prev.ConfigVersion
	}
	traffic := false
	if relist(schema.VirtualService) {
		snap.VirtualServices, traffic = validOnly(b, schema.VirtualService.Name, st.VirtualServices.List("")), true
	}
	if relist(schema.DestinationRule) {
		snap.DestinationRules, traffic = validOnly(b, schema.DestinationRule.Name, st.DestinationRules.List("")), true
	}
	if relist(schema.Gateway) {
		snap.Gateways, traffic = st.Gateways.List(""), true
	}
	if relist(schema.Sidecar) {
		snap.Sidecars, traffic = st.Sidecars.List(""), true
	}
	if relist(schema.PeerAuthentication) {
		snap.PeerAuthentications, traffic = st.PeerAuthentications.List(""), true
	}
	if relist(schema.AuthorizationPolicy) {
		snap.AuthorizationPolicies, traffic = st.AuthorizationPolicies.List(""), true
	}
	if relist(schema.RequestAuthentication) {
		snap.RequestAuthentications, traffic = st.RequestAuthentications.List(""), true
	}
	if relist(schema.Telemetry) {
		// Telemetry decides which access loggers listeners carry.
		snap.Telemetries, traffic = st.Telemetries.List(""), true
		snap.TelemetryVersion = b.next()
	}
	if relist(schema.ServiceEntry) {
		snap.ServiceEntries = st.ServiceEntries.List("")
	}
	if relist(schema.WorkloadEntry) {
		snap.WorkloadEntries = st.WorkloadEntries.List("")
	}
	if traffic {
		snap.ConfigVersion = b.next()
		delta.ConfigChanged = true
	}
	return snap, delta
}

// assemble builds the sorted service list and host index from the entries,
// reusing prev's when no service changed, and fills the delta.
func (b *Builder) assemble(prev *Snapshot, snap *Snapshot, delta *Delta) {
	var all []*Service
	snap.endpoints = map[string]*Endpoints{}
	for _, m := range []map[string]*entry{snap.kube, snap.entries} {
		for _, e := range m {
			for i, svc := range e.services {
				all = append(all, svc)
				if e.endpoints[i] != nil {
					snap.endpoints[svc.Key()] = e.endpoints[i]
				}
			}
		}
	}
	sortServices(all)

	changed := prev == nil || len(prev.Services) != len(all)
	if !changed {
		for i, svc := range all {
			if prev.Services[i] != svc {
				changed = true
				break
			}
		}
	}
	if prev != nil {
		// Hosts whose service appeared, went or changed.
		before := make(map[string]*Service, len(prev.Services))
		for _, svc := range prev.Services {
			before[svc.Key()] = svc
		}
		for _, svc := range all {
			if old := before[svc.Key()]; old != svc {
				delta.Hosts[svc.Hostname] = true
			}
			delete(before, svc.Key())
			if prev.endpoints[svc.Key()] != snap.endpoints[svc.Key()] {
				delta.Endpoints[svc.Key()] = true
				delta.Hosts[svc.Hostname] = true
			}
		}
		for _, svc := range before {
			delta.Hosts[svc.Hostname] = true
			delta.Endpoints[svc.Key()] = true
		}
	}
	if !changed {
		snap.Services, snap.byHost, snap.ServicesVersion = prev.Services, prev.byHost, prev.ServicesVersion
		return
	}
	delta.ServicesChanged = true
	snap.Services = all
	snap.byHost = make(map[string][]*Service, len(all))
	for _, svc := range all {
		snap.byHost[svc.Hostname] = append(snap.byHost[svc.Hostname], svc)
	}
	snap.ServicesVersion = b.next()
}

func sortServices(all []*Service) {
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.Hostname != b.Hostname {
			return a.Hostname < b.Hostname
		}
		if a.Kind != b.Kind {
			return a.Kind == KindKubernetes
		}
		if a.CreatedAt != b.CreatedAt {
			return a.CreatedAt < b.CreatedAt
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
}

// reuse keeps the previous service and endpoints pointers when their
// content did not change, so that caches keyed on them stay warm.
func (b *Builder) reuse(e *entry, prev *entry) *entry {
	for i, svc := range e.services {
		var old *Service
		var oldEps *Endpoints
		if prev != nil {
			for j, p := range prev.services {
				if p.Key() == svc.Key() {
					old, oldEps = p, prev.endpoints[j]
				}
			}
		}
		if old != nil && sameService(old, svc) {
			e.services[i] = old
		} else {
			svc.Version = b.next()
		}
		eps := e.endpoints[i]
		switch {
		case eps == nil:
		case oldEps != nil && reflect.DeepEqual(oldEps.ByPort, eps.ByPort):
			e.endpoints[i] = oldEps
		default:
			eps.Version = b.next()
		}
	}
	return e
}

func sameService(a, b *Service) bool {
	ac, bc := *a, *b
	ac.Version, bc.Version = 0, 0
	return reflect.DeepEqual(ac, bc)
}

func (b *Builder) hostname(name, ns string) string {
	return name + "." + ns + ".svc." + b.opts.DomainSuffix
}

func exportTo(list []string, ns string) map[string]bool {
	if len(list) == 0 {
		return nil
	}
	out := map[string]bool{}
	for _, v := range list {
		v = strings.TrimSpace(v)
		switch v {
		case "*":
			return nil
		case ".":
			out[ns] = true
		case "~", "":
		default:
			out[v] = true
		}
	}
	return out
}

// kubeEntry builds the service and endpoints of one Kubernetes Service.
func (b *Builder) kubeEntry(st *store.Store, ks *corev1.Service, prev *entry) *entry {
	svc := &Service{
		Hostname:  b.hostname(ks.Name, ks.Namespace),
		Namespace: ks.Namespace,
		Name:      ks.Name,
		Kind:      KindKubernetes,
		Selector:  ks.Spec.Selector,
		CreatedAt: ks.CreationTimestamp.Unix(),
	}
	if v, ok := ks.Annotations[AnnotationExportTo]; ok {
		svc.ExportTo = exportTo(strings.Split(v, ","), ks.Namespace)
	}
	switch {
	case ks.Spec.Type == corev1.ServiceTypeExternalName:
		svc.Resolution = DNSLB
		svc.MeshExternal = true
	case ks.Spec.ClusterIP == corev1.ClusterIPNone:
		svc.Headless = true
		svc.Resolution = Passthrough
	default:
		svc.ClusterIP = ks.Spec.ClusterIP
	}
	for _, p := range ks.Spec.Ports {
		if p.Protocol == corev1.ProtocolUDP || p.Protocol == corev1.ProtocolSCTP {
			continue // meshd, like istiod, proxies TCP only
		}
		port := Port{Name: p.Name, Port: p.Port, Protocol: PortProtocol(p.Name, p.AppProtocol)}
		if p.TargetPort.IntVal != 0 && p.TargetPort.StrVal == "" {
			port.TargetPort = p.TargetPort.IntVal
		}
		svc.Ports = append(svc.Ports, port)
	}
	eps := &Endpoints{ByPort: map[int32][]Endpoint{}}
	if ks.Spec.Type == corev1.ServiceTypeExternalName {
		for _, p := range svc.Ports {
			eps.ByPort[p.Port] = []Endpoint{{Address: ks.Spec.ExternalName, Port: p.Port, Ready: true, Serving: true, Weight: 1}}
		}
	} else {
		b.sliceEndpoints(st, ks, svc, eps)
		b.workloadEntryEndpoints(st, svc, eps)
	}
	for p := range eps.ByPort {
		sortEndpoints(eps.ByPort[p])
	}
	return b.reuse(&entry{services: []*Service{svc}, endpoints: []*Endpoints{eps}}, prev)
}

func (b *Builder) sliceEndpoints(st *store.Store, ks *corev1.Service, svc *Service, eps *Endpoints) {
	seen := map[string]bool{}
	for _, es := range st.EndpointSlicesFor(ks.Namespace, ks.Name) {
		if es.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		for _, sp := range svc.Ports {
			var port int32
			found := false
			for _, p := range es.Ports {
				name := ""
				if p.Name != nil {
					name = *p.Name
				}
				if name == sp.Name && p.Port != nil {
					port, found = *p.Port, true
					break
				}
			}
			if !found {
				continue
			}
			for _, ep := range es.Endpoints {
				if len(ep.Addresses) == 0 {
					continue
				}
				addr := ep.Addresses[0]
				key := fmt.Sprintf("%d/%s/%d", sp.Port, addr, port)
				if seen[key] {
					continue // the same endpoint in two slices (during a resync)
				}
				seen[key] = true
				e := Endpoint{Address: addr, Port: port, Weight: 1}
				e.Ready = ep.Conditions.Ready == nil || *ep.Conditions.Ready
				e.Serving = e.Ready
				if ep.Conditions.Serving != nil {
					e.Serving = *ep.Conditions.Serving
				}
				e.Terminating = ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
				if ep.Zone != nil {
					e.Locality.Zone = *ep.Zone
				}
				if pod := podFor(st, ks.Namespace, ep, addr); pod != nil {
					e.Labels = pod.Labels
					e.ServiceAccount = pod.Spec.ServiceAccountName
					e.Workload, e.FromPod = pod.Name, true
					if loc, ok := pod.Labels["istio-locality"]; ok {
						l := ParseLocality(strings.ReplaceAll(loc, ".", "/"))
						if e.Locality.Zone != "" && l.Zone == "" {
							l.Zone = e.Locality.Zone
						}
						e.Locality = l
					}
				}
				eps.ByPort[sp.Port] = append(eps.ByPort[sp.Port], e)
			}
		}
	}
}

func podFor(st *store.Store, ns string, ep discoveryv1.Endpoint, addr string) *corev1.Pod {
	if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" {
		refNS := ref.Namespace
		if refNS == "" {
			refNS = ns
		}
		if pod, ok := st.Pods.Get(refNS, ref.Name); ok {
			return pod
		}
	}
	for _, pod := range st.PodsByIP(addr) {
		if pod.Namespace == ns {
			return pod
		}
	}
	return nil
}

// workloadEntryEndpoints adds the WorkloadEntries a service selects.
func (b *Builder) workloadEntryEndpoints(st *store.Store, svc *Service, eps *Endpoints) {
	if len(svc.Selector) == 0 {
		return
	}
	for _, we := range st.WorkloadEntries.List(svc.Namespace) {
		labels := weLabels(we)
		if !Selects(svc.Selector, labels) {
			continue
		}
		for _, p := range svc.Ports {
			if e, ok := b.weEndpoint(&we.Spec, labels, p, we.Name); ok {
				eps.ByPort[p.Port] = append(eps.ByPort[p.Port], e)
			}
		}
	}
}

func weLabels(we *networkingv1.WorkloadEntry) map[string]string {
	if l := we.Spec.GetLabels(); len(l) > 0 {
		return l
	}
	return we.Labels
}

func (b *Builder) weEndpoint(we *networking.WorkloadEntry, labels map[string]string, p Port, workload string) (Endpoint, bool) {
	addr := we.GetAddress()
	if addr == "" || strings.HasPrefix(addr, "unix://") {
		return Endpoint{}, false
	}
	port := p.Port
	if p.TargetPort != 0 {
		port = p.TargetPort
	}
	if n, ok := we.GetPorts()[p.Name]; ok && n != 0 {
		port = int32(n)
	}
	w := we.GetWeight()
	if w == 0 {
		w = 1
	}
	return Endpoint{
		Address: addr, Port: port, Ready: true, Serving: true,
		Locality: ParseLocality(we.GetLocality()), Labels: labels,
		ServiceAccount: we.GetServiceAccount(), Weight: w, Workload: workload,
	}, true
}

// serviceEntry builds one service per host of a ServiceEntry.
func (b *Builder) serviceEntry(st *store.Store, se *networkingv1.ServiceEntry, prev *entry) *entry {
	spec := &se.Spec
	e := &entry{}
	var res Resolution
	switch spec.GetResolution() {
	case networking.ServiceEntry_NONE:
		res = Passthrough
	case networking.ServiceEntry_STATIC:
		res = ClientSideLB
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DYNAMIC_DNS:
		res = DNSLB
	case networking.ServiceEntry_DNS_ROUND_ROBIN:
		res = DNSRoundRobinLB
	}
	var ports []Port
	for i, p := range spec.GetPorts() {
		if p.GetNumber() == 0 || p.GetNumber() > 65535 {
			b.skip("ServiceEntry", se.Namespace, se.Name, fmt.Sprintf("spec.ports[%d].number %d is not a port", i, p.GetNumber()))
			continue
		}
		proto := ParseProtocol(p.GetProtocol())
		if p.GetProtocol() == "" {
			proto = PortProtocol(p.GetName(), nil)
		}
		if proto == UDP {
			continue
		}
		ports = append(ports, Port{Name: p.GetName(), Port: int32(p.GetNumber()), Protocol: proto, TargetPort: int32(p.GetTargetPort())})
	}
	for i, addr := range spec.GetAddresses() {
		if _, err := netip.ParsePrefix(addr); err != nil {
			if _, err := netip.ParseAddr(addr); err != nil {
				b.skip("ServiceEntry", se.Namespace, se.Name, fmt.Sprintf("spec.addresses[%d] %q is not an IP or CIDR", i, addr))
				return b.reuse(e, prev)
			}
		}
	}
	for i, host := range spec.GetHosts() {
		if strings.HasPrefix(host, "*") && (res == DNSLB || res == DNSRoundRobinLB) && len(spec.GetEndpoints()) == 0 {
			b.skip("ServiceEntry", se.Namespace, se.Name, fmt.Sprintf("spec.hosts[%d] %q: a wildcard host cannot be resolved by DNS", i, host))
			continue
		}
		svc := &Service{
			Hostname:     host,
			Namespace:    se.Namespace,
			Name:         se.Name,
			Kind:         KindServiceEntry,
			Addresses:    spec.GetAddresses(),
			Ports:        ports,
			Resolution:   res,
			MeshExternal: spec.GetLocation() == networking.ServiceEntry_MESH_EXTERNAL,
			ExportTo:     exportTo(spec.GetExportTo(), se.Namespace),
			CreatedAt:    se.CreationTimestamp.Unix(),
		}
		if ws := spec.GetWorkloadSelector(); ws != nil {
			svc.Selector = ws.GetLabels()
		}
		eps := &Endpoints{ByPort: map[int32][]Endpoint{}}
		for _, p := range ports {
			var list []Endpoint
			seen := map[string]bool{}
			add := func(ep Endpoint) {
				k := fmt.Sprintf("%s/%d", ep.Address, ep.Port)
				if !seen[k] {
					seen[k] = true
					list = append(list, ep)
				}
			}
			for _, we := range spec.GetEndpoints() {
				if ep, ok := b.weEndpoint(we, we.GetLabels(), p, ""); ok {
					add(ep)
				}
			}
			if len(svc.Selector) > 0 {
				for _, we := range st.WorkloadEntries.List(se.Namespace) {
					labels := weLabels(we)
					if Selects(svc.Selector, labels) {
						if ep, ok := b.weEndpoint(&we.Spec, labels, p, we.Name); ok {
							add(ep)
						}
					}
				}
				for _, pod := range st.Pods.List(se.Namespace) {
					if !Selects(svc.Selector, pod.Labels) || pod.Status.PodIP == "" {
						continue
					}
					port := p.Port
					if p.TargetPort != 0 {
						port = p.TargetPort
					}
					ready := podReady(pod)
					add(Endpoint{Address: pod.Status.PodIP, Port: port, Ready: ready, Serving: ready,
						Labels: pod.Labels, ServiceAccount: pod.Spec.ServiceAccountName, Weight: 1, Workload: pod.Name, FromPod: true})
				}
			}
			if len(list) == 0 && (res == DNSLB || res == DNSRoundRobinLB) {
				port := p.Port
				if p.TargetPort != 0 {
					port = p.TargetPort
				}
				list = append(list, Endpoint{Address: host, Port: port, Ready: true, Serving: true, Weight: 1})
			}
			if len(list) > 0 {
				sortEndpoints(list)
				eps.ByPort[p.Port] = list
			}
		}
		e.services = append(e.services, svc)
		e.endpoints = append(e.endpoints, eps)
	}
	return b.reuse(e, prev)
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// validOnly drops the objects that fail validation (they bypassed the
// admission webhook, or were written before it ran), each with a logged
// reason and a metric, so that one bad object never breaks the rest.
func validOnly[T schema.Object](b *Builder, kind string, objs []T) []T {
	out := objs[:0:0]
	for _, o := range objs {
		if _, err := validation.Validate(o); err != nil {
			b.skip(kind, o.GetNamespace(), o.GetName(), err.Error())
			continue
		}
		out = append(out, o)
	}
	return out
}

// rebuildChanged returns prev with the entries named in any of changed, or
// whose selected workloads ch touches, rebuilt from the store by build (or
// dropped when their object is gone); every other entry is reused as is.
func rebuildChanged[T any](prev map[string]*entry, ch *Changes, get func(ns, name string) (T, bool),
	build func(obj T, old *entry) *entry, changed ...map[string]bool) map[string]*entry {
	out := make(map[string]*entry, len(prev))
	for k, e := range prev {
		out[k] = e
	}
	dirty := map[string]bool{}
	for _, keys := range changed {
		for k := range keys {
			dirty[k] = true
		}
	}
	for k, e := range prev {
		if len(e.services) > 0 && ch.workloadTouches(e.services[0].Namespace, e.services[0].Selector) {
			dirty[k] = true
		}
	}
	for k := range dirty {
		ns, name, _ := strings.Cut(k, "/")
		obj, ok := get(ns, name)
		if !ok {
			delete(out, k)
			continue
		}
		out[k] = build(obj, prev[k])
	}
	return out
}

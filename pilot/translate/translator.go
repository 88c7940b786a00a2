package translate

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/meshd/meshd/pilot/model"
)

// Translator turns (snapshot, proxy) into a View, memoizing every piece
// under a key that holds all the inputs its generator reads:
//
//   - per service and generator: its clusters (service version, plus the
//     endpoints version for DNS clusters that carry endpoints inline), its
//     load assignments (service and endpoints versions), and for proxyless
//     gRPC its listeners and routes (service version);
//   - per proxy sharing key (generator, node type, namespace): the sets a
//     proxy gets, rebuilt from the pieces above once per snapshot; listener
//     and route sets only when a service or Istio config changed;
//   - per inbound shape (the service ports a workload serves): the inbound
//     clusters and listener.
//
// The meshd access-log decision of a proxy's Telemetry resources
// (provider.MeshdAccessLogging of the Telemetries, the proxy's namespace
// and, when a workload-scoped Telemetry exists there, its labels) joins the
// outbound key and the inbound keys whole: it is all that the listener and
// cluster generators read of Telemetry, so keying by it is exact; and a
// Telemetry change also bumps ConfigVersion, rebuilding listeners.
//
// Router proxies (ingress gateways, see gateway.go) are keyed apart: their
// listeners and routes come from the Gateways their labels select, so the
// key holds those Gateways' ids (name and spec hash) instead of the
// proxy's labels; their clusters and endpoints are the same per-service
// pieces sidecars use. Sidecar keys are unchanged.
//
// Proxies with equal keys therefore share one built and serialized copy of
// each resource. The Translator is safe for concurrent use.
//
// Generators read VirtualServices and DestinationRules too; their inputs
// join the keys per host: the DestinationRule applied to a service (id and
// spec hash) is part of fragKey, so clusters and endpoints of its subsets
// follow it; trafficIndex.routeKey (the VirtualServices for the host, and
// the services and DestinationRules of every host they route to) is part of
// vhostKey and of the proxyless route check in fragFor. A change therefore
// rebuilds only the pieces of the hosts it names.
type Translator struct {
	log *slog.Logger

	mu       sync.Mutex
	frags    map[fragKey]*frag
	outbound map[string]*outbound
	inbound  map[string]*inboundEntry
	shapes   map[string]*inboundShape
	static   []*Resource

	idx *trafficIndex // of the newest snapshot translated

	// OnDrop, when set, is told of each route (or mirror) of a
	// VirtualService left out as invalid (unknown subset or host, weights
	// adding up to 0). Set it before the first View.
	OnDrop func(what string)

	// ControlPlaneAddress (host:port) is where sidecars whose Telemetry
	// enables the meshd provider stream access logs;
	// DefaultControlPlaneAddress when empty. Set it before the first View.
	ControlPlaneAddress string

	// RegistryOnly is the mesh-wide outboundTrafficPolicy REGISTRY_ONLY
	// (meshConfig.outboundTrafficPolicy in Istio): sidecars refuse traffic
	// to hosts outside the registry unless their Sidecar says ALLOW_ANY.
	// Set it before the first View.
	RegistryOnly bool

	alsCluster     *Resource
	alsClusterAddr string
}

func (t *Translator) env(snap *model.Snapshot, p *model.Proxy, grpc bool, als accessLogs) *routeEnv {
	return &routeEnv{log: t.log, idx: t.index(snap), ns: p.Namespace, labels: p.Labels, grpc: grpc, onDrop: t.OnDrop, als: als}
}

// index returns the traffic index of snap, built once per snapshot.
func (t *Translator) index(snap *model.Snapshot) *trafficIndex {
	if t.idx == nil || t.idx.snap != snap {
		if t.idx != nil && t.idx.snap.ConfigVersion == snap.ConfigVersion && t.idx.snap.ServicesVersion == snap.ServicesVersion {
			// Same config and services: everything carries over, the memo
			// of keys too (they hold no endpoint-dependent input).
			next := *t.idx
			next.snap = snap
			t.idx = &next
		} else {
			t.idx = newTrafficIndex(snap)
		}
	}
	return t.idx
}

// New returns an empty Translator.
func New(log *slog.Logger) *Translator {
	return &Translator{
		log:      log,
		frags:    map[fragKey]*frag{},
		outbound: map[string]*outbound{},
		inbound:  map[string]*inboundEntry{},
		shapes:   map[string]*inboundShape{},
		static:   staticClusters(),
	}
}

type fragKey struct {
	service string
	grpc    bool
	// dr is the DestinationRule applied (with a hash of its spec): it
	// shapes the clusters and their subsets.
	dr string
	// locality is the proxy's, when dr balances by locality (the load
	// assignments then depend on it); "" otherwise.
	locality string
}

// frag holds what one service contributes to every proxy that sees it.
type frag struct {
	used uint64

	clusterSvc, clusterEps uint64
	clusters               []*Resource

	edsSvc, edsEps uint64
	endpoints      []*Resource

	grpcSvc           uint64
	grpcKey           string
	listeners, routes []*Resource

	vhostSvc uint64
	vhosts   map[vhostKey][]byte
}

type vhostKey struct {
	port          int32
	sameNamespace bool
	// traffic is trafficIndex.routeKey: the VirtualServices and
	// DestinationRules the virtual host is built from.
	traffic string
}

type outbound struct {
	used                           uint64
	snapVersion                    uint64
	servicesVersion, configVersion uint64
	clusters, endpoints            *Set
	listeners, routes              *Set
	initialized                    bool
}

type inboundEntry struct {
	used            uint64
	servicesVersion uint64
	epsVersions     map[string]uint64
	// als is accessLogs.serverKey of the proxy: inbound listeners log
	// by it.
	als   string
	shape *inboundShape
}

type inboundShape struct {
	used                uint64
	clusters, listeners *Set
}

// View is the config of one proxy at one snapshot. It is immutable; its
// sets are shared with other proxies.
type View struct {
	Snapshot *model.Snapshot
	Proxy    *model.Proxy

	grpc                    bool
	t                       *Translator
	out                     *outbound
	inClusters, inListeners *Set
}

// View returns the config of proxy p at snapshot snap.
func (t *Translator) View(snap *model.Snapshot, p *model.Proxy) *View {
	t.mu.Lock()
	defer t.mu.Unlock()
	grpc := p.Generator == model.GeneratorGRPC
	v := &View{Snapshot: snap, Proxy: p, grpc: grpc, t: t}
	if p.Type == model.Router && !grpc {
		v.out = t.routerFor(snap, p)
		return v
	}
	v.out = t.outboundFor(snap, p, grpc)
	if !grpc {
		v.inClusters, v.inListeners = t.inboundFor(snap, p)
	}
	return v
}

func (t *Translator) fragFor(snap *model.Snapshot, svc *model.Service, ns string, labels map[string]string, loc model.Locality, grpc bool) *frag {
	idx := t.index(snap)
	dr := idx.destinationRule(svc, ns)
	k := fragKey{service: svc.Key(), grpc: grpc, dr: dr.ID()}
	if !grpc && localityAware(svc, dr) {
		k.locality = "@" + loc.Region + "/" + loc.Zone + "/" + loc.SubZone
	}
	f := t.frags[k]
	if f == nil {
		f = &frag{}
		t.frags[k] = f
	}
	f.used = max(f.used, snap.Version)
	var epsVersion uint64
	if eps := snap.Endpoints(svc); eps != nil {
		epsVersion = eps.Version
	}
	// Only DNS clusters carry endpoints inline.
	clusterEps := uint64(0)
	if !grpc && (svc.Resolution == model.DNSLB || svc.Resolution == model.DNSRoundRobinLB) {
		clusterEps = epsVersion
	}
	if f.clusters == nil || f.clusterSvc != svc.Version || f.clusterEps != clusterEps {
		f.clusters, f.clusterSvc, f.clusterEps = serviceClusters(snap, svc, dr, grpc), svc.Version, clusterEps
	}
	if f.endpoints == nil || f.edsSvc != svc.Version || f.edsEps != epsVersion {
		f.endpoints, f.edsSvc, f.edsEps = serviceEndpoints(snap, svc, dr, grpc, loc), svc.Version, epsVersion
	}
	if grpc {
		rk := idx.routeKey(svc, ns, idx.labelKey(labels))
		if f.listeners == nil || f.grpcSvc != svc.Version || f.grpcKey != rk {
			env := &routeEnv{log: t.log, idx: idx, ns: ns, grpc: true, labels: labels, onDrop: t.OnDrop}
			f.listeners, f.routes = grpcServiceResources(env, svc)
			f.grpcSvc, f.grpcKey = svc.Version, rk
		}
	}
	return f
}

// virtualHost memoizes a service port's serialized virtual host per
// service version; t.mu is held by the caller.
func (t *Translator) virtualHost(snap *model.Snapshot, ns string, labels map[string]string, loc model.Locality) VirtualHostCache {
	return func(svc *model.Service, port int32, same bool, build func() []byte) []byte {
		f := t.fragFor(snap, svc, ns, labels, loc, false)
		if f.vhosts == nil || f.vhostSvc != svc.Version || len(f.vhosts) > 64 {
			f.vhosts, f.vhostSvc = map[vhostKey][]byte{}, svc.Version
		}
		idx := t.index(snap)
		k := vhostKey{port, same, idx.routeKey(svc, ns, idx.labelKey(labels))}
		b, ok := f.vhosts[k]
		if !ok {
			b = build()
			f.vhosts[k] = b
		}
		return b
	}
}

func (t *Translator) outboundFor(snap *model.Snapshot, p *model.Proxy, grpc bool) *outbound {
	key := p.SharingKey()
	// Proxies whose labels some sourceLabels match tells apart get
	// outbound config of their own.
	if lk := t.index(snap).labelKey(p.Labels); lk != "" {
		key += "|" + lk
	}
	// So do proxies whose Telemetry logs differently.
	als := t.accessLogsFor(snap, p)
	if ak := als.key(); ak != "" {
		key += "|" + ak
	}
	// So do proxies in different localities once some DestinationRule
	// balances by locality.
	if !grpc && t.index(snap).localityLB {
		key += "|@" + p.Locality.String()
	}
	// And sidecars a Sidecar resource scopes to fewer services.
	scope := scopeFor(t.index(snap), p, t.RegistryOnly)
	if scope.id != "" {
		key += "|sidecar=" + scope.id
	}
	o := t.outbound[key]
	if o == nil {
		o = &outbound{}
		t.outbound[key] = o
	}
	o.used = max(o.used, snap.Version)
	if o.initialized && o.snapVersion == snap.Version {
		return o
	}
	// A view of an older snapshot (a watch that raced a push) is built
	// but not kept: it must not replace the newer one.
	keep := !o.initialized || o.snapVersion < snap.Version
	// A new outbound value: views handed out earlier keep the old one.
	n := &outbound{used: snap.Version, snapVersion: snap.Version, initialized: true,
		servicesVersion: snap.ServicesVersion, configVersion: snap.ConfigVersion}
	services, ports := scope.filter(snap.VisibleServices(p.Namespace))
	var clusters, endpoints, listeners, routes []*Resource
	if !grpc {
		clusters = append(clusters, t.static...)
		if als.any() {
			if c := t.telemetryClusterResource(); c != nil {
				clusters = append(clusters, c)
			}
		}
	}
	for _, svc := range services {
		f := t.fragFor(snap, svc, p.Namespace, p.Labels, p.Locality, grpc)
		if ports == nil {
			clusters = append(clusters, f.clusters...)
			endpoints = append(endpoints, f.endpoints...)
		} else {
			clusters = appendImported(clusters, f.clusters, ports)
			endpoints = appendImported(endpoints, f.endpoints, ports)
		}
		if grpc {
			listeners = append(listeners, f.listeners...)
			routes = append(routes, f.routes...)
		}
	}
	// Keep the old sets when nothing in them changed, so that the server
	// can tell "unchanged" by identity, without comparing resources.
	n.clusters, n.endpoints = reuseSet(o.clusters, clusters), reuseSet(o.endpoints, endpoints)
	switch {
	case o.initialized && o.servicesVersion == snap.ServicesVersion && o.configVersion == snap.ConfigVersion:
		n.listeners, n.routes = o.listeners, o.routes
	case grpc:
		n.listeners, n.routes = NewSet(listeners), NewSet(routes)
	default:
		scoped := withPorts(services, ports)
		env := t.env(snap, p, false, als)
		env.registryOnly = scope.registryOnly
		n.listeners = NewSet(sidecarListeners(env, scoped))
		n.routes = NewSet(sidecarRoutes(env, scoped, t.virtualHost(snap, p.Namespace, p.Labels, p.Locality)))
	}
	if keep {
		t.outbound[key] = n
	}
	return n
}

func (t *Translator) inboundFor(snap *model.Snapshot, p *model.Proxy) (*Set, *Set) {
	key := p.WorkloadKey() + "|" + strings.Join(p.IPs, ",")
	als := t.accessLogsFor(snap, p)
	e := t.inbound[key]
	if e != nil && e.servicesVersion == snap.ServicesVersion && e.als == als.serverKey() {
		fresh := true
		for svcKey, v := range e.epsVersions {
			var cur uint64
			for _, svc := range snap.Services {
				if svc.Key() == svcKey {
					if eps := snap.Endpoints(svc); eps != nil {
						cur = eps.Version
					}
					break
				}
			}
			if cur != v {
				fresh = false
				break
			}
		}
		if fresh {
			e.used, e.shape.used = snap.Version, snap.Version
			return e.shape.clusters, e.shape.listeners
		}
	}
	ports := snap.Inbound(p.Namespace, p.Labels, p.IPs)
	e = &inboundEntry{used: snap.Version, servicesVersion: snap.ServicesVersion, epsVersions: map[string]uint64{}, als: als.serverKey()}
	var shapeKey strings.Builder
	shapeKey.WriteString(als.serverKey() + "|")
	for _, in := range ports {
		if in.Port.TargetPort == 0 {
			// A named target port was resolved from this workload's endpoints.
			var v uint64
			if eps := snap.Endpoints(in.Service); eps != nil {
				v = eps.Version
			}
			e.epsVersions[in.Service.Key()] = v
		}
		fmt.Fprintf(&shapeKey, "%d/%s,", in.TargetPort, in.Port.Protocol)
	}
	shape := t.shapes[shapeKey.String()]
	if shape == nil {
		shape = &inboundShape{}
		c, l := sidecarInbound(ports, als)
		shape.clusters, shape.listeners = NewSet(c), NewSet(l)
		t.shapes[shapeKey.String()] = shape
	}
	shape.used = snap.Version
	e.shape = shape
	t.inbound[key] = e
	return shape.clusters, shape.listeners
}

// Sweep forgets what was not used at snapshot snap: pieces of deleted
// services and the config of proxies that went away. The server calls it
// after a push has computed the views of every connected proxy.
func (t *Translator) Sweep(snap *model.Snapshot) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, f := range t.frags {
		if f.used < snap.Version {
			delete(t.frags, k)
		}
	}
	for k, o := range t.outbound {
		if o.used < snap.Version {
			delete(t.outbound, k)
		}
	}
	for k, e := range t.inbound {
		if e.used < snap.Version {
			delete(t.inbound, k)
		}
	}
	for k, s := range t.shapes {
		if s.used < snap.Version {
			delete(t.shapes, k)
		}
	}
}

// reuseSet returns old when it holds exactly the resources rs, else a new set.
func reuseSet(old *Set, rs []*Resource) *Set {
	if old != nil && old.Len() == len(rs) {
		same := true
		for _, r := range rs {
			if old.Get(r.Name) != r {
				same = false
				break
			}
		}
		if same {
			return old
		}
	}
	return NewSet(rs)
}

// Differ remembers, for one push, which names differ between two sets, so
// that proxies sharing sets share the comparison too. It is safe for
// concurrent use (ACKs arriving on many streams share one).
type Differ struct {
	mu   sync.Mutex
	memo map[[2]*Set][]string
}

// NewDiffer returns an empty Differ.
func NewDiffer() *Differ { return &Differ{memo: map[[2]*Set][]string{}} }

func (d *Differ) diff(a, b *Set) []string {
	if a == b {
		return nil
	}
	k := [2]*Set{a, b}
	d.mu.Lock()
	names, ok := d.memo[k]
	d.mu.Unlock()
	if ok {
		return names
	}
	for _, n := range a.Names() {
		if rb := b.Get(n); rb == nil || rb.Version != a.Get(n).Version {
			names = append(names, n)
		}
	}
	for _, n := range b.Names() {
		if a.Get(n) == nil {
			names = append(names, n)
		}
	}
	d.mu.Lock()
	d.memo[k] = names
	d.mu.Unlock()
	return names
}

// Changed reports what of a type differs between old (the proxy's view at
// an earlier snapshot) and v: the names whose resources changed, appeared
// or went, or all=true when it cannot say (no old view, inbound or
// name-derived resources changed).
func (v *View) Changed(old *View, typeURL string, d *Differ) (names []string, all bool) {
	if old == nil || old.grpc != v.grpc || old.out == nil {
		return nil, true
	}
	var a, b *Set
	switch typeURL {
	case ClusterType:
		if old.inClusters != v.inClusters {
			return nil, true
		}
		a, b = old.out.clusters, v.out.clusters
	case EndpointType:
		a, b = old.out.endpoints, v.out.endpoints
	case ListenerType:
		if old.inListeners != v.inListeners {
			return nil, true
		}
		a, b = old.out.listeners, v.out.listeners
	case RouteType:
		a, b = old.out.routes, v.out.routes
	default:
		return nil, true
	}
	if a == b {
		return nil, false
	}
	if v.grpc && (typeURL == ListenerType || typeURL == RouteType) {
		// Names resolved on request (aliases, inbound) are in no set.
		return nil, true
	}
	return d.diff(a, b), false
}

// Get returns the named resource of a type, or nil when the proxy has none.
func (v *View) Get(typeURL, name string) *Resource {
	switch typeURL {
	case ClusterType:
		if r := v.out.clusters.Get(name); r != nil {
			return r
		}
		return v.inClusters.Get(name)
	case EndpointType:
		return v.out.endpoints.Get(name)
	case ListenerType:
		if r := v.out.listeners.Get(name); r != nil {
			return r
		}
		if r := v.inListeners.Get(name); r != nil {
			return r
		}
		if v.grpc {
			if strings.HasPrefix(name, GRPCInboundPrefix) {
				return grpcInboundListener(name)
			}
			return v.alias(typeURL, name)
		}
	case RouteType:
		if r := v.out.routes.Get(name); r != nil {
			return r
		}
		if v.grpc {
			return v.alias(typeURL, name)
		}
	}
	return nil
}

// Version returns the version of All(typeURL), computed once per set.
func (v *View) Version(typeURL string) string {
	var sets []*Set
	switch typeURL {
	case ClusterType:
		sets = []*Set{v.out.clusters, v.inClusters}
	case EndpointType:
		sets = []*Set{v.out.endpoints}
	case ListenerType:
		sets = []*Set{v.out.listeners, v.inListeners}
	case RouteType:
		sets = []*Set{v.out.routes}
	}
	var nonEmpty []*Set
	for _, s := range sets {
		if s.Len() > 0 {
			nonEmpty = append(nonEmpty, s)
		}
	}
	switch len(nonEmpty) {
	case 0:
		return VersionOf(nil)
	case 1:
		return nonEmpty[0].Version()
	}
	return VersionOf(v.All(typeURL))
}

// All returns every resource of a type the proxy has, sorted by name: what
// a wildcard subscription receives. The slice may be shared: callers must
// not modify it.
func (v *View) All(typeURL string) []*Resource {
	var sets []*Set
	switch typeURL {
	case ClusterType:
		sets = []*Set{v.out.clusters, v.inClusters}
	case EndpointType:
		sets = []*Set{v.out.endpoints}
	case ListenerType:
		sets = []*Set{v.out.listeners, v.inListeners}
	case RouteType:
		sets = []*Set{v.out.routes}
	}
	n, nonEmpty := 0, 0
	var only *Set
	for _, s := range sets {
		if s.Len() > 0 {
			n += s.Len()
			nonEmpty++
			only = s
		}
	}
	if nonEmpty <= 1 {
		return only.List()
	}
	out := make([]*Resource, 0, n)
	for _, s := range sets {
		out = append(out, s.List()...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// alias answers a proxyless client asking for a service by a shorter name.
func (v *View) alias(typeURL, name string) *Resource {
	v.t.mu.Lock()
	defer v.t.mu.Unlock()
	idx := v.t.idx
	if idx == nil || idx.snap != v.Snapshot {
		idx = newTrafficIndex(v.Snapshot)
	}
	return grpcAlias(&routeEnv{log: v.t.log, idx: idx, ns: v.Proxy.Namespace, grpc: true, labels: v.Proxy.Labels}, typeURL, name) // drops were counted on the FQDN route
}

// appendImported appends the resources whose port the Sidecar imports.
func appendImported(dst, rs []*Resource, ports map[string]map[int32]bool) []*Resource {
	for _, r := range rs {
		if portImported(ports, r.Name) {
			dst = append(dst, r)
		}
	}
	return dst
}

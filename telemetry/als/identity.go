package als

import (
	"net/netip"
	"regexp"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshd/meshd/pilot/model"
	"github.com/meshd/meshd/pilot/translate"
	"github.com/meshd/meshd/pkg/store"
	"github.com/meshd/meshd/telemetry/traffic"
)

// Labels Istio reads a workload's canonical service and revision from,
// in order of preference.
var (
	canonicalNameLabels     = []string{"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"}
	canonicalRevisionLabels = []string{"service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"}
)

// Workload is one end of a call, as Istio's labels name it.
type Workload struct {
	Name, Namespace   string
	App, Version      string
	CanonicalService  string
	CanonicalRevision string
	Cluster           string
	// Labels and IPs are known for the reporting proxy only: labels pick
	// the Services that select it, IPs tell inbound from outbound.
	Labels map[string]string
	IPs    []string
}

func (w *Workload) known() bool { return w.Name != "" }

// resolver answers identity questions from the store. It holds no state;
// the per-stream caches live in the stream.
type resolver struct {
	store     *store.Store
	domain    string
	clusterID string
}

// local identifies the proxy that opened a stream from its node: Istio's
// node ID and metadata first (as pilot reads them), completed from its Pod
// in the store. A node that does not follow Istio's conventions is still
// served, with what its metadata says.
func (r *resolver) local(node *core.Node) Workload {
	meta := node.GetMetadata().AsMap()
	str := func(k string) string { s, _ := meta[k].(string); return s }
	w := Workload{Cluster: str(model.MetaClusterID)}
	var pod *corev1.Pod
	if p, err := model.NewProxy(node.GetId(), meta); err == nil {
		p = p.WithPod(r.store)
		w.Namespace, w.Labels, w.IPs = p.Namespace, p.Labels, p.IPs
		if r.store != nil {
			pod, _ = r.store.Pods.Get(p.Namespace, p.PodName)
		}
		w.Name = p.PodName
	} else {
		w.Namespace = str(model.MetaNamespace)
		if l, ok := meta[model.MetaLabels].(map[string]any); ok {
			w.Labels = map[string]string{}
			for k, v := range l {
				if s, ok := v.(string); ok {
					w.Labels[k] = s
				}
			}
		}
	}
	switch {
	case str("WORKLOAD_NAME") != "":
		w.Name = str("WORKLOAD_NAME")
	case pod != nil:
		w.Name = workloadName(pod)
	}
	r.fillFromLabels(&w)
	return w
}

// byIP identifies a peer from its address through the store's Pods.
func (r *resolver) byIP(ip string) Workload {
	if r.store == nil || ip == "" {
		return Workload{}
	}
	pods := r.store.PodsByIP(ip)
	// Host-network pods share the node's IP: an address several pods
	// claim identifies none of them.
	if len(pods) != 1 {
		return Workload{}
	}
	p := pods[0]
	w := Workload{Name: workloadName(p), Namespace: p.Namespace, Labels: p.Labels}
	r.fillFromLabels(&w)
	return w
}

// fromPeerMetadata reads the workload metadata Istio's metadata exchange
// leaves in filter state (downstream_peer / upstream_peer), serialized as a
// Struct with the fields workload, namespace, app, version, service,
// revision and cluster.
func (r *resolver) fromPeerMetadata(s *structpb.Struct) Workload {
	f := s.GetFields()
	str := func(k string) string { return f[k].GetStringValue() }
	w := Workload{
		Name: str("workload"), Namespace: str("namespace"), App: str("app"), Version: str("version"),
		CanonicalService: str("service"), CanonicalRevision: str("revision"), Cluster: str("cluster"),
	}
	if w.Cluster == "" {
		w.Cluster = r.clusterID
	}
	return w
}

func (r *resolver) fillFromLabels(w *Workload) {
	l := w.Labels
	if w.App == "" {
		w.App = l["app"]
	}
	if w.Version == "" {
		w.Version = l["version"]
	}
	if w.CanonicalService == "" {
		w.CanonicalService = first(l, canonicalNameLabels)
		if w.CanonicalService == "" {
			w.CanonicalService = w.Name
		}
	}
	if w.CanonicalRevision == "" {
		w.CanonicalRevision = first(l, canonicalRevisionLabels)
		if w.CanonicalRevision == "" {
			w.CanonicalRevision = "latest"
		}
	}
	if w.Cluster == "" {
		w.Cluster = r.clusterID
	}
}

func first(l map[string]string, keys []string) string {
	for _, k := range keys {
		if v := l[k]; v != "" {
			return v
		}
	}
	return ""
}

// workloadName is the name of the controller that owns a pod, as Istio
// names workloads: a Deployment's pods are named after the Deployment (the
// ReplicaSet name without its pod-template-hash), others after their
// owner, and bare pods after themselves.
func workloadName(p *corev1.Pod) string {
	for _, o := range p.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		name := o.Name
		if o.Kind == "ReplicaSet" {
			if h := p.Labels["pod-template-hash"]; h != "" {
				name = strings.TrimSuffix(name, "-"+h)
			}
		}
		if o.Kind == "Job" && cronJobSuffix.MatchString(name) {
			// A CronJob's Jobs are NAME-<schedule time in minutes>.
			name = cronJobSuffix.ReplaceAllString(name, "")
		}
		return name
	}
	return p.Name
}

var cronJobSuffix = regexp.MustCompile(`-\d{8,}$`)

// serviceRef is a destination service as Istio's labels name it.
type serviceRef struct {
	Host, Name, Namespace string
}

// serviceByHost resolves a host (an authority, or the host of an outbound
// cluster) to a service: NAME.NS.svc.DOMAIN and its shorter forms, a short
// name in defaultNS, or a ServiceEntry host.
func (r *resolver) serviceByHost(host, defaultNS string) (serviceRef, bool) {
	host = strings.ToLower(stripPort(host))
	if host == "" {
		return serviceRef{}, false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return serviceRef{}, false
	}
	trimmed := strings.TrimSuffix(strings.TrimSuffix(host, "."+r.domain), ".svc")
	parts := strings.Split(trimmed, ".")
	switch {
	case len(parts) == 2 && (trimmed != host || r.hasService(parts[1], parts[0])):
		return serviceRef{Host: r.fqdn(parts[0], parts[1]), Name: parts[0], Namespace: parts[1]}, true
	case len(parts) == 1 && defaultNS != "" && r.hasService(defaultNS, parts[0]):
		return serviceRef{Host: r.fqdn(parts[0], defaultNS), Name: parts[0], Namespace: defaultNS}, true
	}
	if r.store != nil {
		for _, se := range r.store.ServiceEntries.List("") {
			for _, h := range se.Spec.GetHosts() {
				if strings.EqualFold(h, host) {
					return serviceRef{Host: host, Name: host, Namespace: se.Namespace}, true
				}
			}
		}
	}
	return serviceRef{}, false
}

func (r *resolver) hasService(ns, name string) bool {
	if r.store == nil {
		return false
	}
	_, ok := r.store.Services.Get(ns, name)
	return ok
}

func (r *resolver) fqdn(name, ns string) string { return name + "." + ns + ".svc." + r.domain }

// serviceSelecting finds the Service in the workload's namespace that
// selects it, preferring one with port (service port or target port) when
// several do: the destination service of inbound traffic that carries no
// usable host.
func (r *resolver) serviceSelecting(w *Workload, port int32) (serviceRef, bool) {
	if r.store == nil || len(w.Labels) == 0 {
		return serviceRef{}, false
	}
	var found *corev1.Service
	for _, svc := range r.store.Services.List(w.Namespace) {
		sel := svc.Spec.Selector
		if len(sel) == 0 || !subset(sel, w.Labels) {
			continue
		}
		if found == nil {
			found = svc
		}
		for _, p := range svc.Spec.Ports {
			if port != 0 && (p.Port == port || p.TargetPort.IntValue() == int(port)) {
				return serviceRef{Host: r.fqdn(svc.Name, svc.Namespace), Name: svc.Name, Namespace: svc.Namespace}, true
			}
		}
	}
	if found == nil {
		return serviceRef{}, false
	}
	return serviceRef{Host: r.fqdn(found.Name, found.Namespace), Name: found.Name, Namespace: found.Namespace}, true
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func stripPort(hostport string) string {
	if strings.HasPrefix(hostport, "[") {
		if i := strings.IndexByte(hostport, ']'); i > 0 {
			return hostport[1:i]
		}
	}
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && strings.Count(hostport, ":") == 1 {
		return hostport[:i]
	}
	return hostport
}

// cacheTTL bounds how long a stream trusts what it looked up: a pod IP can
// be reused by another pod, and Services come and go.
const cacheTTL = 30 * time.Second

// maxCached bounds a stream's caches; a full cache is simply dropped.
const maxCached = 4096

// lookups caches one stream's identity lookups, the reporting workload
// included: all are redone every cacheTTL, so a Pod that reached the store
// after its proxy connected is picked up without a reconnect.
type lookups struct {
	r        *resolver
	node     *core.Node
	local    Workload
	reset    time.Time
	peers    map[string]Workload
	hosts    map[string]serviceRef
	inbound  map[int32]serviceRef
	clusters map[string]clusterName
}

// clusterName is an Envoy cluster name taken apart.
type clusterName struct {
	dir  string
	port int32
	host string
	ok   bool
}

func newLookups(r *resolver, node *core.Node, now time.Time) *lookups {
	l := &lookups{r: r, node: node}
	l.clear(now)
	return l
}

func (l *lookups) clear(now time.Time) {
	l.reset = now
	l.local = l.r.local(l.node)
	l.peers = map[string]Workload{}
	l.hosts = map[string]serviceRef{}
	l.inbound = map[int32]serviceRef{}
	l.clusters = map[string]clusterName{}
}

// tick drops the caches when they are too old.
func (l *lookups) tick(now time.Time) {
	if now.Sub(l.reset) > cacheTTL {
		l.clear(now)
	}
}

// cluster parses a cluster name once per stream: a proxy logs few
// clusters, many times each.
func (l *lookups) cluster(name string) clusterName {
	if c, ok := l.clusters[name]; ok {
		return c
	}
	var c clusterName
	c.dir, c.port, _, c.host, c.ok = translate.ParseClusterName(name)
	if len(l.clusters) >= maxCached {
		l.clusters = map[string]clusterName{}
	}
	l.clusters[name] = c
	return c
}

func (l *lookups) peer(ip string) Workload {
	if w, ok := l.peers[ip]; ok {
		return w
	}
	w := l.r.byIP(ip)
	if len(l.peers) >= maxCached {
		l.peers = map[string]Workload{}
	}
	l.peers[ip] = w
	return w
}

func (l *lookups) host(host string) (serviceRef, bool) {
	if s, ok := l.hosts[host]; ok {
		return s, s.Host != ""
	}
	s, _ := l.r.serviceByHost(host, l.local.Namespace)
	if len(l.hosts) >= maxCached {
		l.hosts = map[string]serviceRef{}
	}
	l.hosts[host] = s
	return s, s.Host != ""
}

func (l *lookups) inboundService(port int32) (serviceRef, bool) {
	if s, ok := l.inbound[port]; ok {
		return s, s.Host != ""
	}
	s, _ := l.r.serviceSelecting(&l.local, port)
	if len(l.inbound) >= maxCached {
		l.inbound = map[int32]serviceRef{}
	}
	l.inbound[port] = s
	return s, s.Host != ""
}

// source and destination fill one side of the labels from a workload.
func setSource(l *traffic.Labels, w *Workload) {
	l.SourceWorkload, l.SourceWorkloadNamespace = w.Name, w.Namespace
	l.SourceApp, l.SourceVersion = w.App, w.Version
	l.SourceCanonicalService, l.SourceCanonicalRevision = w.CanonicalService, w.CanonicalRevision
	l.SourceCluster = w.Cluster
}

func setDestination(l *traffic.Labels, w *Workload) {
	l.DestinationWorkload, l.DestinationWorkloadNamespace = w.Name, w.Namespace
	l.DestinationApp, l.DestinationVersion = w.App, w.Version
	l.DestinationCanonicalService, l.DestinationCanonicalRevision = w.CanonicalService, w.CanonicalRevision
	l.DestinationCluster = w.Cluster
}

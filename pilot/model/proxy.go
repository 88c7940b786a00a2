package model

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/netip"
	"sort"
	"strings"

	"github.com/meshd/meshd/pkg/store"
)

// NodeType is the first field of a node ID.
type NodeType string

// The node types istiod knows.
const (
	SidecarProxy NodeType = "sidecar"
	Router       NodeType = "router"
	Waypoint     NodeType = "waypoint"
	Ztunnel      NodeType = "ztunnel"
)

// Generator names: which translator serves a proxy.
const (
	GeneratorSidecar = ""
	GeneratorGRPC    = "grpc"
)

// Node metadata keys, as istio-agent and Istio's gRPC bootstrap set them.
const (
	MetaNamespace      = "NAMESPACE"
	MetaLabels         = "LABELS"
	MetaServiceAccount = "SERVICE_ACCOUNT"
	MetaClusterID      = "CLUSTER_ID"
	MetaGenerator      = "GENERATOR"
	MetaIstioVersion   = "ISTIO_VERSION"
	MetaInstanceIPs    = "INSTANCE_IPS"
)

// Proxy is one connected xDS client as pilot understands it.
type Proxy struct {
	// NodeID is the node ID as sent.
	NodeID string
	// ID is POD.NAMESPACE, the name istioctl shows.
	ID   string
	Type NodeType
	// IPs are the workload's addresses (node ID IP, INSTANCE_IPS, Pod IPs).
	IPs []string
	// PodName is the part of POD.NAMESPACE before the namespace.
	PodName string
	// Namespace is the proxy's config namespace.
	Namespace string
	// DNSDomain is the fourth node ID field (NS.svc.cluster.local).
	DNSDomain      string
	Labels         map[string]string
	ServiceAccount string
	ClusterID      string
	// Generator is "" for Envoy sidecars and "grpc" for proxyless gRPC.
	Generator    string
	IstioVersion string
	// HasPod is true when a Pod POD.NAMESPACE was found in the store.
	HasPod bool
	// Locality is where the proxy runs (the xDS node's locality), for
	// locality-aware load balancing.
	Locality Locality
}

// ParseNodeID splits TYPE~IP~POD.NS~NS.svc.DOMAIN. The error names what is wrong.
func ParseNodeID(id string) (typ NodeType, ip, podID, domain string, err error) {
	parts := strings.Split(id, "~")
	if len(parts) != 4 {
		return "", "", "", "", fmt.Errorf("node ID %q: want TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.DOMAIN, got %d fields", id, len(parts))
	}
	switch NodeType(parts[0]) {
	case SidecarProxy, Router, Waypoint, Ztunnel:
	default:
		return "", "", "", "", fmt.Errorf("node ID %q: unknown node type %q (want sidecar, router, waypoint or ztunnel)", id, parts[0])
	}
	if _, perr := netip.ParseAddr(parts[1]); perr != nil {
		return "", "", "", "", fmt.Errorf("node ID %q: IP %q is not an IP address", id, parts[1])
	}
	if parts[2] == "" {
		return "", "", "", "", fmt.Errorf("node ID %q: empty POD.NAMESPACE", id)
	}
	return NodeType(parts[0]), parts[1], parts[2], parts[3], nil
}

// NewProxy builds a Proxy from a node ID and its metadata (as decoded from
// the node's metadata struct). It needs nothing else: a proxy with no Pod
// in the store (a VM, a load-test client) is served from this alone.
func NewProxy(nodeID string, meta map[string]any) (*Proxy, error) {
	typ, ip, podID, domain, err := ParseNodeID(nodeID)
	if err != nil {
		return nil, err
	}
	p := &Proxy{NodeID: nodeID, ID: podID, Type: typ, IPs: []string{ip}, DNSDomain: domain}
	str := func(k string) string {
		if v, ok := meta[k].(string); ok {
			return v
		}
		return ""
	}
	p.Namespace = str(MetaNamespace)
	p.ServiceAccount = str(MetaServiceAccount)
	p.ClusterID = str(MetaClusterID)
	p.Generator = str(MetaGenerator)
	p.IstioVersion = str(MetaIstioVersion)
	if labels, err := labelsFrom(meta[MetaLabels]); err != nil {
		return nil, fmt.Errorf("node %q: metadata %s: %w", nodeID, MetaLabels, err)
	} else if len(labels) > 0 {
		p.Labels = labels
	}
	for _, extra := range strings.Split(str(MetaInstanceIPs), ",") {
		extra = strings.TrimSpace(extra)
		if extra == "" {
			continue
		}
		if _, err := netip.ParseAddr(extra); err != nil {
			return nil, fmt.Errorf("node %q: metadata %s: %q is not an IP address", nodeID, MetaInstanceIPs, extra)
		}
		p.addIP(extra)
	}
	// POD.NAMESPACE: the namespace is after the last dot... except that
	// pod names may hold dots; istiod takes the namespace from the domain
	// or the metadata first, then strips ".NS" from the ID.
	if p.Namespace == "" {
		if ns, _, ok := strings.Cut(domain, "."); ok && ns != "" {
			p.Namespace = ns
		} else if i := strings.LastIndexByte(podID, '.'); i > 0 {
			p.Namespace = podID[i+1:]
		}
	}
	if p.Namespace == "" {
		return nil, fmt.Errorf("node ID %q: no namespace in the ID, its domain or metadata %s", nodeID, MetaNamespace)
	}
	p.PodName = strings.TrimSuffix(podID, "."+p.Namespace)
	return p, nil
}

func labelsFrom(v any) (map[string]string, error) {
	switch l := v.(type) {
	case nil:
		return nil, nil
	case map[string]string:
		return l, nil
	case map[string]any:
		out := make(map[string]string, len(l))
		for k, v := range l {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("label %q is a %T, want a string", k, v)
			}
			out[k] = s
		}
		return out, nil
	case string:
		// Some clients send the labels as a JSON string.
		out := map[string]string{}
		if err := json.Unmarshal([]byte(l), &out); err != nil {
			return nil, fmt.Errorf("not a JSON object of strings: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("is a %T, want an object of strings", v)
}

func (p *Proxy) addIP(ip string) {
	for _, have := range p.IPs {
		if have == ip {
			return
		}
	}
	p.IPs = append(p.IPs, ip)
}

// WithPod returns the proxy completed from its Pod in the store, when there
// is one: labels and service account fill what the metadata left out, and
// the Pod's IPs are added. Metadata wins where both speak, as in istiod.
func (p *Proxy) WithPod(st *store.Store) *Proxy {
	if st == nil {
		return p
	}
	pod, ok := st.Pods.Get(p.Namespace, p.PodName)
	if !ok {
		return p
	}
	out := *p
	out.HasPod = true
	out.IPs = append([]string(nil), p.IPs...)
	if len(out.Labels) == 0 && len(pod.Labels) > 0 {
		out.Labels = pod.Labels
	}
	if out.ServiceAccount == "" {
		out.ServiceAccount = pod.Spec.ServiceAccountName
	}
	for _, ip := range pod.Status.PodIPs {
		out.addIP(ip.IP)
	}
	return &out
}

// SharingKey is what the outbound config of a proxy depends on besides the
// snapshot: proxies with equal keys get the very same resources.
func (p *Proxy) SharingKey() string {
	return p.Generator + "|" + string(p.Type) + "|" + p.Namespace
}

// WorkloadKey adds what the inbound config depends on: the labels that
// select the proxy into services.
func (p *Proxy) WorkloadKey() string {
	keys := make([]string, 0, len(p.Labels))
	for k := range p.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := fnv.New64a()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(p.Labels[k]))
		h.Write([]byte{0})
	}
	return fmt.Sprintf("%s|%x", p.SharingKey(), h.Sum64())
}

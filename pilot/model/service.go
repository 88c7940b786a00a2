// Package model is pilot's view of the mesh: an immutable Snapshot of
// services, their endpoints and the Istio config that shapes traffic, built
// from the store. It knows nothing of Envoy or xDS: translation to xDS lives
// in pilot/translate, so the model can be reasoned about (and tested) alone.
package model

import (
	"sort"
	"strings"
)

// Protocol is a service port's application protocol, as Istio names it.
type Protocol string

// The protocols a port can carry.
const (
	HTTP        Protocol = "HTTP"
	HTTP2       Protocol = "HTTP2"
	GRPC        Protocol = "GRPC"
	GRPCWeb     Protocol = "GRPC-Web"
	HTTPS       Protocol = "HTTPS"
	TLS         Protocol = "TLS"
	TCP         Protocol = "TCP"
	Mongo       Protocol = "Mongo"
	MySQL       Protocol = "MySQL"
	Redis       Protocol = "Redis"
	UDP         Protocol = "UDP"
	Unsupported Protocol = "UnsupportedProtocol"
)

// IsHTTP is true for protocols proxied at layer 7 with HTTP routing.
func (p Protocol) IsHTTP() bool {
	switch p {
	case HTTP, HTTP2, GRPC, GRPCWeb:
		return true
	}
	return false
}

// IsHTTP2 is true for protocols that need HTTP/2 to the upstream.
func (p Protocol) IsHTTP2() bool { return p == HTTP2 || p == GRPC }

// ParseProtocol maps a protocol name (case-insensitive) to a Protocol;
// unknown names give Unsupported, which is forwarded as opaque TCP.
func ParseProtocol(s string) Protocol {
	switch strings.ToLower(s) {
	case "http":
		return HTTP
	case "http2", "kubernetes.io/h2c":
		return HTTP2
	case "grpc":
		return GRPC
	case "grpc-web":
		return GRPCWeb
	case "https":
		return HTTPS
	case "tls":
		return TLS
	case "tcp":
		return TCP
	case "mongo":
		return Mongo
	case "mysql":
		return MySQL
	case "redis":
		return Redis
	case "udp":
		return UDP
	case "kubernetes.io/ws", "kubernetes.io/wss":
		// WebSockets are HTTP upgrades: routed like HTTP.
		return HTTP
	}
	return Unsupported
}

// PortProtocol decides a Kubernetes Service port's protocol as istiod does:
// appProtocol first, then the port name's prefix before the first '-'.
func PortProtocol(name string, appProtocol *string) Protocol {
	if appProtocol != nil && *appProtocol != "" {
		if p := ParseProtocol(*appProtocol); p != Unsupported {
			return p
		}
	}
	// "grpc-web" holds a dash itself: check it before cutting at the first one.
	if len(name) >= len("grpc-web") && strings.EqualFold(name[:len("grpc-web")], "grpc-web") {
		return GRPCWeb
	}
	prefix, _, _ := strings.Cut(name, "-")
	return ParseProtocol(prefix)
}

// Port is one port of a service.
type Port struct {
	Name     string
	Port     int32
	Protocol Protocol
	// TargetPort is the numeric target port when the service states one;
	// 0 when it is named or defaulted (then endpoints carry the number).
	TargetPort int32
}

// Resolution says how a client finds the endpoints of a service.
type Resolution int

// The resolutions.
const (
	// ClientSideLB: the proxy balances over endpoints sent by EDS.
	ClientSideLB Resolution = iota
	// DNSLB: the proxy resolves the endpoints' hostnames (Envoy STRICT_DNS).
	DNSLB
	// DNSRoundRobinLB: the proxy resolves one hostname and uses its first
	// answer per connection (Envoy LOGICAL_DNS).
	DNSRoundRobinLB
	// Passthrough: the proxy forwards to the destination the caller asked
	// for (headless services, ServiceEntry resolution NONE).
	Passthrough
)

func (r Resolution) String() string {
	switch r {
	case ClientSideLB:
		return "ClientSideLB"
	case DNSLB:
		return "DNS"
	case DNSRoundRobinLB:
		return "DNSRoundRobin"
	case Passthrough:
		return "Passthrough"
	}
	return "unknown"
}

// Source kinds of a Service.
const (
	KindKubernetes   = "Kubernetes"
	KindServiceEntry = "ServiceEntry"
)

// Service is one host that clients address: a Kubernetes Service, or one
// host of a ServiceEntry. It is immutable once in a Snapshot.
type Service struct {
	// Hostname is the FQDN (name.ns.svc.cluster.local) or the ServiceEntry host.
	Hostname string
	// Namespace and Name of the object that defined it.
	Namespace, Name string
	// Kind is KindKubernetes or KindServiceEntry.
	Kind string
	// ClusterIP is the Kubernetes cluster IP ("" when headless or none).
	ClusterIP string
	// Addresses are the ServiceEntry addresses (IPs or CIDRs).
	Addresses []string
	// Headless is true for Kubernetes Services with clusterIP None.
	Headless   bool
	Ports      []Port
	Resolution Resolution
	// MeshExternal is true for ServiceEntries with location MESH_EXTERNAL.
	MeshExternal bool
	// Selector picks the workloads (Pods, WorkloadEntries) behind the
	// service; nil when it has none.
	Selector map[string]string
	// ExportTo lists the namespaces that may see the service; nil means all.
	ExportTo map[string]bool
	// CreatedAt orders services that claim the same hostname (oldest wins).
	CreatedAt int64
	// Version changes whenever anything above changes; unchanged services
	// keep their version (and pointer) from one snapshot to the next.
	Version uint64
}

// Key identifies the service across snapshots.
func (s *Service) Key() string { return s.Kind + "/" + s.Namespace + "/" + s.Name + "/" + s.Hostname }

// Port returns the port with the given number.
func (s *Service) Port(num int32) (Port, bool) {
	for _, p := range s.Ports {
		if p.Port == num {
			return p, true
		}
	}
	return Port{}, false
}

// VisibleTo reports whether a proxy in namespace ns may see the service.
func (s *Service) VisibleTo(ns string) bool {
	if s.ExportTo == nil {
		return true
	}
	return s.ExportTo["*"] || s.ExportTo[ns]
}

// ShortName is the Kubernetes Service name for in-namespace references.
func (s *Service) ShortName() string {
	if s.Kind != KindKubernetes {
		return ""
	}
	return s.Name
}

// Locality is where an endpoint runs.
type Locality struct {
	Region, Zone, SubZone string
}

// String renders region/zone/subzone as Istio does.
func (l Locality) String() string {
	if l.SubZone != "" {
		return l.Region + "/" + l.Zone + "/" + l.SubZone
	}
	if l.Zone != "" {
		return l.Region + "/" + l.Zone
	}
	return l.Region
}

// ParseLocality reads region/zone/subzone.
func ParseLocality(s string) Locality {
	parts := strings.SplitN(s, "/", 3)
	var l Locality
	l.Region = parts[0]
	if len(parts) > 1 {
		l.Zone = parts[1]
	}
	if len(parts) > 2 {
		l.SubZone = parts[2]
	}
	return l
}

// Endpoint is one workload address serving one service port.
type Endpoint struct {
	// Address is an IP, or a hostname for DNS-resolved ServiceEntries.
	Address string
	// Port is the workload's port (the target port).
	Port int32
	// Ready means the workload takes new traffic; Serving and Terminating
	// follow EndpointSlice conditions.
	Ready, Serving, Terminating bool
	Locality                    Locality
	Labels                      map[string]string
	ServiceAccount              string
	// Weight is the load-balancing weight (1 unless a WorkloadEntry sets it).
	Weight uint32
	// Workload names the Pod or WorkloadEntry behind the address, for
	// debugging; FromPod says which.
	Workload string
	FromPod  bool
}

// Endpoints are the endpoints of one service, per service port number.
type Endpoints struct {
	// ByPort maps a service port number to its endpoints, sorted by address.
	ByPort map[int32][]Endpoint
	// Version changes whenever the endpoints change.
	Version uint64
}

// For returns the endpoints of one service port.
func (e *Endpoints) For(port int32) []Endpoint {
	if e == nil {
		return nil
	}
	return e.ByPort[port]
}

func sortEndpoints(eps []Endpoint) {
	sort.Slice(eps, func(i, j int) bool {
		if eps[i].Address != eps[j].Address {
			return eps[i].Address < eps[j].Address
		}
		return eps[i].Port < eps[j].Port
	})
}

// Selects reports whether selector (non-empty) matches labels.
func Selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

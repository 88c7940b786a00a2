package model

import (
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"
)

// Options are the mesh-wide facts a snapshot is built with.
type Options struct {
	// DomainSuffix is the cluster DNS domain (cluster.local).
	DomainSuffix string
	// TrustDomain is the SPIFFE trust domain (cluster.local).
	TrustDomain string
	// ClusterID names this cluster (Kubernetes).
	ClusterID string
	// RootNamespace holds mesh-wide config (istio-system): a Telemetry
	// there without a selector applies to every proxy.
	RootNamespace string
}

// WithDefaults fills the zero fields with istiod's defaults.
func (o Options) WithDefaults() Options {
	if o.DomainSuffix == "" {
		o.DomainSuffix = "cluster.local"
	}
	if o.TrustDomain == "" {
		o.TrustDomain = o.DomainSuffix
	}
	if o.ClusterID == "" {
		o.ClusterID = "Kubernetes"
	}
	if o.RootNamespace == "" {
		o.RootNamespace = "istio-system"
	}
	return o
}

// Snapshot is an immutable view of the mesh. Readers need no locks; a new
// snapshot shares every unchanged part (services, endpoints, config lists)
// with the one it was built from.
type Snapshot struct {
	// Version increases with every snapshot.
	Version uint64
	Options Options

	// Services are sorted by hostname, then Kubernetes before ServiceEntry,
	// then oldest first, then namespace.
	Services []*Service
	byHost   map[string][]*Service
	// endpoints by Service.Key().
	endpoints map[string]*Endpoints

	// ServicesVersion changes when any Service changes (not its endpoints).
	ServicesVersion uint64
	// ConfigVersion changes when any Istio traffic or security config changes.
	ConfigVersion uint64

	// Istio config, sorted by namespace and name.
	VirtualServices        []*networkingv1.VirtualService
	DestinationRules       []*networkingv1.DestinationRule
	Gateways               []*networkingv1.Gateway
	Sidecars               []*networkingv1.Sidecar
	ServiceEntries         []*networkingv1.ServiceEntry
	WorkloadEntries        []*networkingv1.WorkloadEntry
	PeerAuthentications    []*securityv1.PeerAuthentication
	AuthorizationPolicies  []*securityv1.AuthorizationPolicy
	RequestAuthentications []*securityv1.RequestAuthentication
	Telemetries            []*telemetryv1.Telemetry

	// TelemetryVersion changes when any Telemetry changes (ConfigVersion
	// changes with it).
	TelemetryVersion uint64

	// what the incremental builder reuses.
	kube    map[string]*entry // by namespace/name of the Service
	entries map[string]*entry // by namespace/name of the ServiceEntry
}

// entry is what one source object contributed.
type entry struct {
	services  []*Service
	endpoints []*Endpoints // parallel to services
}

// ServicesFor returns the services claiming hostname, in precedence order.
func (s *Snapshot) ServicesFor(hostname string) []*Service { return s.byHost[hostname] }

// Service returns the service that a proxy in namespace ns reaches by
// hostname: among those visible to it, one in its own namespace first, then
// the oldest.
func (s *Snapshot) Service(hostname, ns string) *Service {
	var first *Service
	for _, svc := range s.byHost[hostname] {
		if !svc.VisibleTo(ns) {
			continue
		}
		if svc.Namespace == ns {
			return svc
		}
		if first == nil {
			first = svc
		}
	}
	return first
}

// Endpoints returns a service's endpoints (nil when it has none).
func (s *Snapshot) Endpoints(svc *Service) *Endpoints { return s.endpoints[svc.Key()] }

// VisibleServices returns, for a proxy in namespace ns, one service per
// hostname (the one Service picks), in hostname order.
func (s *Snapshot) VisibleServices(ns string) []*Service {
	out := make([]*Service, 0, len(s.Services))
	for i := 0; i < len(s.Services); {
		host := s.Services[i].Hostname
		j := i
		for j < len(s.Services) && s.Services[j].Hostname == host {
			j++
		}
		if j-i == 1 {
			if s.Services[i].VisibleTo(ns) {
				out = append(out, s.Services[i])
			}
		} else if svc := s.Service(host, ns); svc != nil {
			out = append(out, svc)
		}
		i = j
	}
	return out
}

// InboundPort is a port on which a workload serves one of its services.
type InboundPort struct {
	Service *Service
	Port    Port
	// TargetPort is the port the workload listens on.
	TargetPort int32
}

// Inbound returns the service ports a workload (namespace, labels, IPs)
// serves: those of the services in its namespace that select it. A
// workload that no service selects gets none (and still gets its outbound
// config). The result is sorted by target port and deduplicated on it.
func (s *Snapshot) Inbound(ns string, labels map[string]string, ips []string) []InboundPort {
	var out []InboundPort
	seen := map[int32]bool{}
	for _, svc := range s.Services {
		if svc.Namespace != ns || !Selects(svc.Selector, labels) {
			continue
		}
		for _, p := range svc.Ports {
			tp := targetPortFor(p, s.endpoints[svc.Key()], ips)
			if seen[tp] {
				continue
			}
			seen[tp] = true
			out = append(out, InboundPort{Service: svc, Port: p, TargetPort: tp})
		}
	}
	sortInbound(out)
	return out
}

func targetPortFor(p Port, eps *Endpoints, ips []string) int32 {
	if p.TargetPort != 0 {
		return p.TargetPort
	}
	// A named target port: the endpoint for this workload's IP knows it.
	for _, ep := range eps.For(p.Port) {
		for _, ip := range ips {
			if ep.Address == ip {
				return ep.Port
			}
		}
	}
	return p.Port
}

func sortInbound(ports []InboundPort) {
	for i := 1; i < len(ports); i++ {
		for j := i; j > 0 && ports[j].TargetPort < ports[j-1].TargetPort; j-- {
			ports[j], ports[j-1] = ports[j-1], ports[j]
		}
	}
}

// Package schema lists the kinds of object meshd reads (Kubernetes core kinds
// and Istio config kinds), with what it takes to create, name and decode each.
// It is the single table that the store, the config directory loader and the
// admission webhook share, so a kind added here is known everywhere.
package schema

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8sschema "k8s.io/apimachinery/pkg/runtime/schema"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"
)

// Object is what every stored object is: Kubernetes metadata plus runtime.Object.
type Object interface {
	metav1.Object
	runtime.Object
}

// Kind describes one kind of object.
type Kind struct {
	// Name is the Kubernetes kind, e.g. "VirtualService".
	Name string
	// GVR identifies the kind's resource on the API server.
	GVR k8sschema.GroupVersionResource
	// Istio is true for Istio config kinds (their Spec is an istio.io/api proto).
	Istio bool
	// New returns an empty object of this kind.
	New func() Object
}

// GVK is the kind's group, version and kind.
func (k Kind) GVK() k8sschema.GroupVersionKind { return k.GVR.GroupVersion().WithKind(k.Name) }

// APIVersion is the kind's apiVersion as written in YAML.
func (k Kind) APIVersion() string { return k.GVR.GroupVersion().String() }

func core(name, resource string, newFn func() Object) Kind {
	return Kind{Name: name, GVR: k8sschema.GroupVersionResource{Version: "v1", Resource: resource}, New: newFn}
}

func istio(group, version, name, resource string, newFn func() Object) Kind {
	return Kind{Name: name, GVR: k8sschema.GroupVersionResource{Group: group, Version: version, Resource: resource}, Istio: true, New: newFn}
}

const (
	networking = "networking.istio.io"
	security   = "security.istio.io"
	telemetry  = "telemetry.istio.io"
)

// The kinds meshd knows.
var (
	Service       = core("Service", "services", func() Object { return &corev1.Service{} })
	Pod           = core("Pod", "pods", func() Object { return &corev1.Pod{} })
	Namespace     = core("Namespace", "namespaces", func() Object { return &corev1.Namespace{} })
	Secret        = core("Secret", "secrets", func() Object { return &corev1.Secret{} })
	ConfigMap     = core("ConfigMap", "configmaps", func() Object { return &corev1.ConfigMap{} })
	EndpointSlice = Kind{
		Name: "EndpointSlice",
		GVR:  discoveryv1.SchemeGroupVersion.WithResource("endpointslices"),
		New:  func() Object { return &discoveryv1.EndpointSlice{} },
	}

	VirtualService  = istio(networking, "v1", "VirtualService", "virtualservices", func() Object { return &networkingv1.VirtualService{} })
	DestinationRule = istio(networking, "v1", "DestinationRule", "destinationrules", func() Object { return &networkingv1.DestinationRule{} })
	Gateway         = istio(networking, "v1", "Gateway", "gateways", func() Object { return &networkingv1.Gateway{} })
	ServiceEntry    = istio(networking, "v1", "ServiceEntry", "serviceentries", func() Object { return &networkingv1.ServiceEntry{} })
	Sidecar         = istio(networking, "v1", "Sidecar", "sidecars", func() Object { return &networkingv1.Sidecar{} })
	WorkloadEntry   = istio(networking, "v1", "WorkloadEntry", "workloadentries", func() Object { return &networkingv1.WorkloadEntry{} })
	WorkloadGroup   = istio(networking, "v1", "WorkloadGroup", "workloadgroups", func() Object { return &networkingv1.WorkloadGroup{} })

	PeerAuthentication    = istio(security, "v1", "PeerAuthentication", "peerauthentications", func() Object { return &securityv1.PeerAuthentication{} })
	AuthorizationPolicy   = istio(security, "v1", "AuthorizationPolicy", "authorizationpolicies", func() Object { return &securityv1.AuthorizationPolicy{} })
	RequestAuthentication = istio(security, "v1", "RequestAuthentication", "requestauthentications", func() Object { return &securityv1.RequestAuthentication{} })

	Telemetry = istio(telemetry, "v1", "Telemetry", "telemetries", func() Object { return &telemetryv1.Telemetry{} })
)

// Core lists the Kubernetes kinds the store holds.
var Core = []Kind{Service, EndpointSlice, Pod, Namespace, Secret, ConfigMap}

// IstioConfig lists the Istio config kinds the store holds.
var IstioConfig = []Kind{
	VirtualService, DestinationRule, Gateway, ServiceEntry, Sidecar, WorkloadEntry, WorkloadGroup,
	PeerAuthentication, AuthorizationPolicy, RequestAuthentication, Telemetry,
}

// All lists every kind, core first.
var All = append(append([]Kind{}, Core...), IstioConfig...)

// ByGVK finds a kind by its group, version and kind. Istio's older API
// versions (v1alpha3, v1beta1) name the same kinds and decode into the same
// types, as they do for istiod.
func ByGVK(gvk k8sschema.GroupVersionKind) (Kind, bool) {
	for _, k := range All {
		if k.Name != gvk.Kind || k.GVR.Group != gvk.Group {
			continue
		}
		if k.GVR.Version == gvk.Version || (k.Istio && istioVersions[gvk.Version]) {
			return k, true
		}
	}
	return Kind{}, false
}

var istioVersions = map[string]bool{"v1": true, "v1beta1": true, "v1alpha3": true}

// ByName finds a kind by its Kubernetes kind name, e.g. "VirtualService".
func ByName(name string) (Kind, bool) {
	for _, k := range All {
		if k.Name == name {
			return k, true
		}
	}
	return Kind{}, false
}

// Names returns every kind name, sorted; handy for error messages.
func Names() []string {
	out := make([]string, 0, len(All))
	for _, k := range All {
		out = append(out, k.Name)
	}
	sort.Strings(out)
	return out
}

package model

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

// Trigger names, as istiod reports them in pilot_push_triggers.
const (
	TriggerService  = "service"
	TriggerEndpoint = "endpoint"
	TriggerConfig   = "config"
)

// Changes accumulates store events between two snapshot builds, recording
// just enough to know what to rebuild. The zero value is empty.
type Changes struct {
	// Full asks for a rebuild of everything.
	Full bool

	services     map[string]bool // Kubernetes Services (ns/name) to rebuild
	endpointsOf  map[string]bool // Kubernetes Services whose endpoints to rebuild
	entries      map[string]bool // ServiceEntries (ns/name) to rebuild
	workloads    map[string][]map[string]string
	configKinds  map[string]bool
	triggers     map[string]int
	eventCounter int
}

// Add records one event. Kinds pilot does not read (Secrets, ConfigMaps,
// ...) are ignored; Add reports whether the event matters.
func (c *Changes) Add(e store.Event) bool {
	obj := e.Object()
	nsName := obj.GetNamespace() + "/" + obj.GetName()
	switch e.Kind.Name {
	case schema.Service.Name:
		set(&c.services, nsName)
		c.trigger(TriggerService)
	case schema.EndpointSlice.Name:
		es, _ := obj.(*discoveryv1.EndpointSlice)
		if es == nil || es.Labels[discoveryv1.LabelServiceName] == "" {
			return false
		}
		set(&c.endpointsOf, obj.GetNamespace()+"/"+es.Labels[discoveryv1.LabelServiceName])
		c.trigger(TriggerEndpoint)
	case schema.Pod.Name:
		// A Pod's labels and service account show on the endpoints of the
		// services selecting it, before and after the change.
		for _, o := range []schema.Object{e.Old, e.New} {
			if p, ok := o.(*corev1.Pod); ok && p != nil {
				c.workload(p.Namespace, p.Labels)
			}
		}
		c.trigger(TriggerEndpoint)
	case schema.WorkloadEntry.Name:
		for _, o := range []schema.Object{e.Old, e.New} {
			if we, ok := o.(*networkingv1.WorkloadEntry); ok && we != nil {
				labels := we.Spec.GetLabels()
				if len(labels) == 0 {
					labels = we.Labels
				}
				c.workload(we.Namespace, labels)
			}
		}
		set(&c.configKinds, e.Kind.Name)
		c.trigger(TriggerEndpoint)
	case schema.ServiceEntry.Name:
		set(&c.entries, nsName)
		set(&c.configKinds, e.Kind.Name)
		c.trigger(TriggerService)
	case schema.VirtualService.Name, schema.DestinationRule.Name, schema.Gateway.Name, schema.Sidecar.Name,
		schema.PeerAuthentication.Name, schema.AuthorizationPolicy.Name, schema.RequestAuthentication.Name,
		schema.Telemetry.Name:
		set(&c.configKinds, e.Kind.Name)
		c.trigger(TriggerConfig)
	default:
		return false
	}
	c.eventCounter++
	return true
}

func (c *Changes) workload(ns string, labels map[string]string) {
	if c.workloads == nil {
		c.workloads = map[string][]map[string]string{}
	}
	c.workloads[ns] = append(c.workloads[ns], labels)
}

func (c *Changes) trigger(t string) {
	if c.triggers == nil {
		c.triggers = map[string]int{}
	}
	c.triggers[t]++
}

// Empty is true when nothing was recorded.
func (c *Changes) Empty() bool { return c == nil || (!c.Full && c.eventCounter == 0) }

// Events is the number of events recorded.
func (c *Changes) Events() int { return c.eventCounter }

// Triggers counts the recorded events by trigger name.
func (c *Changes) Triggers() map[string]int { return c.triggers }

// ConfigKinds lists the Istio kinds that changed.
func (c *Changes) ConfigKinds() map[string]bool { return c.configKinds }

func set(m *map[string]bool, k string) {
	if *m == nil {
		*m = map[string]bool{}
	}
	(*m)[k] = true
}

// workloadTouches reports whether any changed workload in ns matches selector.
func (c *Changes) workloadTouches(ns string, selector map[string]string) bool {
	for _, l := range c.workloads[ns] {
		if Selects(selector, l) {
			return true
		}
	}
	return false
}

// Delta says what a new snapshot changed compared with the one it was
// built from; the server uses it to decide what to push.
type Delta struct {
	// Full is true for the first snapshot or a full rebuild.
	Full bool
	// ServicesChanged is true when any Service was added, removed or changed.
	ServicesChanged bool
	// ConfigChanged is true when any Istio config list changed.
	ConfigChanged bool
	// Endpoints lists the service keys whose endpoints changed.
	Endpoints map[string]bool
	// Hosts lists the hostnames whose service or endpoints changed.
	Hosts map[string]bool
}

// EndpointsOnly is true when nothing but endpoints changed: an EDS-only push.
func (d *Delta) EndpointsOnly() bool {
	return !d.Full && !d.ServicesChanged && !d.ConfigChanged && len(d.Endpoints) > 0
}

// Empty is true when the snapshot changed nothing that matters.
func (d *Delta) Empty() bool {
	return !d.Full && !d.ServicesChanged && !d.ConfigChanged && len(d.Endpoints) == 0
}

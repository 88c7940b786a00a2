// Package load is meshload's engine: it writes a synthetic mesh into a real
// API server, connects simulated Envoy sidecars (SotW or Delta ADS) and
// proxyless gRPC clients to an Istio-compatible control plane, and
// measures how fast config reaches them.
package load

import (
	"context"
	"fmt"
	"math/rand/v2"

	networkingv1 "istio.io/api/networking/v1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// managedBy marks every object meshload writes, so a leftover mesh is
// recognisable.
const managedBy = "meshload"

// mesh is the synthetic mesh: which service lives where and which of them
// carry a VirtualService and DestinationRule. It is a pure function of the
// sizes and the seed, so two runs (or two targets) see the same mesh.
type mesh struct {
	seed       int64
	namespaces []string
	services   []svc
	routed     []int // indices into services that have a VirtualService
}

type svc struct {
	ns, name  string
	endpoints int
}

func (s svc) host() string { return s.name + "." + s.ns + ".svc.cluster.local" }

func newMesh(cfg Config) *mesh {
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6d657368))
	nns := min(cfg.Namespaces, cfg.Services)
	m := &mesh{seed: cfg.Seed}
	for i := range nns {
		m.namespaces = append(m.namespaces, fmt.Sprintf("%s-%d", cfg.NamespacePrefix, i))
	}
	for i := range cfg.Services {
		m.services = append(m.services, svc{ns: m.namespaces[i%nns], name: fmt.Sprintf("svc-%d", i), endpoints: 1 + rng.IntN(3)})
	}
	m.routed = rng.Perm(cfg.Services)[:min(cfg.VirtualServices, cfg.Services)]
	return m
}

// endpointIP is the i-th service's j-th endpoint: 198.18.0.0/17, never dialled.
func endpointIP(i, j int) string {
	n := i*4 + j
	return fmt.Sprintf("198.18.%d.%d", (n/250)%128, n%250+1)
}

// markerIP encodes an endpoint-churn generation in 198.19.0.0/16, so a
// proxy can tell from an EDS response which update it reflects.
func markerIP(gen int) string { return fmt.Sprintf("198.19.%d.%d", gen>>8, gen&0xff) }

// proxyIP is the i-th simulated sidecar's pod IP, apart from endpoints.
func proxyIP(i int) string { return fmt.Sprintf("198.18.%d.%d", 128+(i/250)%128, i%250+1) }

func labels(name string) map[string]string {
	return map[string]string{"app": name, "app.kubernetes.io/managed-by": managedBy}
}

func (m *mesh) slice(i int, marker int) *discoveryv1.EndpointSlice {
	s := m.services[i]
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: s.name + "-1", Namespace: s.ns, Labels: map[string]string{
			discoveryv1.LabelServiceName: s.name, discoveryv1.LabelManagedBy: managedBy}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	add := func(ip string) {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	for j := range s.endpoints {
		add(endpointIP(i, j))
	}
	if marker > 0 {
		add(markerIP(marker))
	}
	return es
}

func (m *mesh) virtualService(i int, weight int32) *istionet.VirtualService {
	s := m.services[i]
	return &istionet.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.ns, Labels: labels(s.name)},
		Spec: networkingv1.VirtualService{
			Hosts: []string{s.host()},
			Http: []*networkingv1.HTTPRoute{{Route: []*networkingv1.HTTPRouteDestination{
				{Destination: &networkingv1.Destination{Host: s.host(), Subset: "v1"}, Weight: weight},
				{Destination: &networkingv1.Destination{Host: s.host(), Subset: "v2"}, Weight: 100 - weight},
			}}},
		},
	}
}

func (m *mesh) destinationRule(i int) *istionet.DestinationRule {
	s := m.services[i]
	return &istionet.DestinationRule{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.ns, Labels: labels(s.name)},
		Spec: networkingv1.DestinationRule{
			Host: s.host(),
			Subsets: []*networkingv1.Subset{
				{Name: "v1", Labels: map[string]string{"version": "v1"}},
				{Name: "v2", Labels: map[string]string{"version": "v2"}},
			},
		},
	}
}

// create writes the mesh. It refuses to reuse a namespace that exists, so a
// run never measures someone else's objects.
func (m *mesh) create(ctx context.Context, kc kubernetes.Interface, ic istioclient.Interface) error {
	for _, ns := range m.namespaces {
		_, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels(ns)}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("namespace %s exists (left by an earlier run?): delete it or pass another --namespace-prefix", ns)
		}
		if err != nil {
			return fmt.Errorf("create namespace %s: %w", ns, err)
		}
	}
	for i, s := range m.services {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := kc.CoreV1().Services(s.ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.ns, Labels: labels(s.name)},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": s.name},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create service %s/%s: %w", s.ns, s.name, err)
		}
		if _, err := kc.DiscoveryV1().EndpointSlices(s.ns).Create(ctx, m.slice(i, 0), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create endpointslice %s/%s-1: %w", s.ns, s.name, err)
		}
	}
	for _, i := range m.routed {
		s := m.services[i]
		if _, err := ic.NetworkingV1().DestinationRules(s.ns).Create(ctx, m.destinationRule(i), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create destinationrule %s/%s: %w", s.ns, s.name, err)
		}
		if _, err := ic.NetworkingV1().VirtualServices(s.ns).Create(ctx, m.virtualService(i, 50), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create virtualservice %s/%s: %w", s.ns, s.name, err)
		}
	}
	return nil
}

// delete removes the namespaces the mesh lives in (and so everything in them).
func (m *mesh) delete(ctx context.Context, kc kubernetes.Interface) error {
	var first error
	for _, ns := range m.namespaces {
		err := kc.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) && first == nil {
			first = fmt.Errorf("delete namespace %s: %w", ns, err)
		}
	}
	return first
}

// hostIndex maps a service host to its index, for proxies parsing cluster names.
func (m *mesh) hostIndex() map[string]int {
	idx := make(map[string]int, len(m.services))
	for i, s := range m.services {
		idx[s.host()] = i
	}
	return idx
}

// changedWeight is the config change's new v1 weight: 11..49, never the
// 50 the mesh is written with.
func (m *mesh) changedWeight() int32 { return int32(11 + (m.seed%39+39)%39) }

// putVirtualService rewrites service i's VirtualService with weight for v1.
func (m *mesh) putVirtualService(ctx context.Context, ic istioclient.Interface, i int, weight int32) error {
	s := m.services[i]
	cur, err := ic.NetworkingV1().VirtualServices(s.ns).Get(ctx, s.name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get virtualservice %s/%s: %w", s.ns, s.name, err)
	}
	vs := m.virtualService(i, weight)
	vs.ResourceVersion = cur.ResourceVersion
	if _, err := ic.NetworkingV1().VirtualServices(s.ns).Update(ctx, vs, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update virtualservice %s/%s: %w", s.ns, s.name, err)
	}
	return nil
}

// putSlice rewrites service i's EndpointSlice with the churn marker of
// generation gen (0: none); writing is called just before the update is sent.
func (m *mesh) putSlice(ctx context.Context, kc kubernetes.Interface, i, gen int, writing func()) error {
	s := m.services[i]
	es := m.slice(i, gen)
	cur, err := kc.DiscoveryV1().EndpointSlices(s.ns).Get(ctx, es.Name, metav1.GetOptions{})
	if err == nil {
		es.ResourceVersion = cur.ResourceVersion
		if writing != nil {
			writing()
		}
		_, err = kc.DiscoveryV1().EndpointSlices(s.ns).Update(ctx, es, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("update endpointslice %s/%s: %w", s.ns, es.Name, err)
	}
	return nil
}

// reset puts back what a measured run changed (the edited VirtualService,
// the churned EndpointSlices), so the next target starts from the mesh as
// written.
func (m *mesh) reset(ctx context.Context, kc kubernetes.Interface, ic istioclient.Interface, cfg Config) error {
	if len(m.routed) > 0 {
		if err := m.putVirtualService(ctx, ic, m.routed[0], 50); err != nil {
			return err
		}
	}
	for i := range min(cfg.churnUpdates(), len(m.services)) {
		if err := m.putSlice(ctx, kc, i, 0, nil); err != nil {
			return err
		}
	}
	return nil
}

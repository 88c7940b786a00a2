// Package store is meshd's one view of the world: every Kubernetes and Istio
// object the subsystems read, held in typed, indexed collections and fed by a
// single source (shared informers in Kubernetes mode, a config directory in
// file mode). Subsystems read it lock-free through the collections and learn
// of changes through one fan-out (Subscribe).
//
// Objects handed out by the store are shared with the cache behind it: they
// must be treated as read-only.
package store

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"

	"github.com/meshd/meshd/pkg/schema"
)

// Index names available on every collection, and per kind.
const (
	// IndexNamespace indexes every object by its namespace.
	IndexNamespace = cache.NamespaceIndex
	// IndexServiceName indexes EndpointSlices by "namespace/service".
	IndexServiceName = "serviceName"
	// IndexPodIP indexes Pods by each of their IPs.
	IndexPodIP = "podIP"
)

// Store holds one collection per kind.
type Store struct {
	Services       *Collection[*corev1.Service]
	EndpointSlices *Collection[*discoveryv1.EndpointSlice]
	Pods           *Collection[*corev1.Pod]
	Namespaces     *Collection[*corev1.Namespace]
	Secrets        *Collection[*corev1.Secret]
	ConfigMaps     *Collection[*corev1.ConfigMap]

	VirtualServices  *Collection[*networkingv1.VirtualService]
	DestinationRules *Collection[*networkingv1.DestinationRule]
	Gateways         *Collection[*networkingv1.Gateway]
	ServiceEntries   *Collection[*networkingv1.ServiceEntry]
	Sidecars         *Collection[*networkingv1.Sidecar]
	WorkloadEntries  *Collection[*networkingv1.WorkloadEntry]
	WorkloadGroups   *Collection[*networkingv1.WorkloadGroup]

	PeerAuthentications    *Collection[*securityv1.PeerAuthentication]
	AuthorizationPolicies  *Collection[*securityv1.AuthorizationPolicy]
	RequestAuthentications *Collection[*securityv1.RequestAuthentication]

	Telemetries *Collection[*telemetryv1.Telemetry]

	byKind map[string]collection
	bus    bus
	synced atomic.Bool
	ready  chan struct{}
	once   sync.Once
}

// collection is the untyped face of a Collection, for the sources.
type collection interface {
	kind() schema.Kind
	indexer() cache.Indexer
}

// Indexers returns the indexers every collection of kind k must carry; the
// sources install them on the caches they build.
func Indexers(k schema.Kind) cache.Indexers {
	idx := cache.Indexers{IndexNamespace: cache.MetaNamespaceIndexFunc}
	switch k.Name {
	case schema.EndpointSlice.Name:
		idx[IndexServiceName] = func(obj any) ([]string, error) {
			es, ok := obj.(*discoveryv1.EndpointSlice)
			if !ok {
				return nil, nil
			}
			svc := es.Labels[discoveryv1.LabelServiceName]
			if svc == "" {
				return nil, nil
			}
			return []string{es.Namespace + "/" + svc}, nil
		}
	case schema.Pod.Name:
		idx[IndexPodIP] = func(obj any) ([]string, error) {
			pod, ok := obj.(*corev1.Pod)
			if !ok {
				return nil, nil
			}
			var ips []string
			for _, ip := range pod.Status.PodIPs {
				ips = append(ips, ip.IP)
			}
			if len(ips) == 0 && pod.Status.PodIP != "" {
				ips = append(ips, pod.Status.PodIP)
			}
			return ips, nil
		}
	}
	return idx
}

// New builds a store over the given caches, one per kind in schema.All;
// indexerFor is asked for each kind and must return a cache carrying
// Indexers(kind). Sources call New; subsystems only read.
func New(indexerFor func(schema.Kind) cache.Indexer) *Store {
	s := &Store{byKind: map[string]collection{}, ready: make(chan struct{})}
	s.Services = newCollection[*corev1.Service](s, schema.Service, indexerFor)
	s.EndpointSlices = newCollection[*discoveryv1.EndpointSlice](s, schema.EndpointSlice, indexerFor)
	s.Pods = newCollection[*corev1.Pod](s, schema.Pod, indexerFor)
	s.Namespaces = newCollection[*corev1.Namespace](s, schema.Namespace, indexerFor)
	s.Secrets = newCollection[*corev1.Secret](s, schema.Secret, indexerFor)
	s.ConfigMaps = newCollection[*corev1.ConfigMap](s, schema.ConfigMap, indexerFor)
	s.VirtualServices = newCollection[*networkingv1.VirtualService](s, schema.VirtualService, indexerFor)
	s.DestinationRules = newCollection[*networkingv1.DestinationRule](s, schema.DestinationRule, indexerFor)
	s.Gateways = newCollection[*networkingv1.Gateway](s, schema.Gateway, indexerFor)
	s.ServiceEntries = newCollection[*networkingv1.ServiceEntry](s, schema.ServiceEntry, indexerFor)
	s.Sidecars = newCollection[*networkingv1.Sidecar](s, schema.Sidecar, indexerFor)
	s.WorkloadEntries = newCollection[*networkingv1.WorkloadEntry](s, schema.WorkloadEntry, indexerFor)
	s.WorkloadGroups = newCollection[*networkingv1.WorkloadGroup](s, schema.WorkloadGroup, indexerFor)
	s.PeerAuthentications = newCollection[*securityv1.PeerAuthentication](s, schema.PeerAuthentication, indexerFor)
	s.AuthorizationPolicies = newCollection[*securityv1.AuthorizationPolicy](s, schema.AuthorizationPolicy, indexerFor)
	s.RequestAuthentications = newCollection[*securityv1.RequestAuthentication](s, schema.RequestAuthentication, indexerFor)
	s.Telemetries = newCollection[*telemetryv1.Telemetry](s, schema.Telemetry, indexerFor)
	return s
}

// NewMemory builds a store over plain in-memory caches, as file mode and
// unit tests use it.
func NewMemory() *Store {
	return New(func(k schema.Kind) cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, Indexers(k))
	})
}

// Indexer returns the cache behind a kind, for the sources that fill it.
func (s *Store) Indexer(k schema.Kind) cache.Indexer { return s.byKind[k.Name].indexer() }

// Get returns one object of any kind, for debug endpoints and tools.
func (s *Store) Get(k schema.Kind, namespace, name string) (schema.Object, bool) {
	c, ok := s.byKind[k.Name]
	if !ok {
		return nil, false
	}
	obj, ok, _ := c.indexer().GetByKey(key(namespace, name))
	if !ok {
		return nil, false
	}
	return obj.(schema.Object), true
}

// List returns every object of a kind (all namespaces when namespace is ""),
// sorted by namespace and name.
func (s *Store) List(k schema.Kind, namespace string) []schema.Object {
	c, ok := s.byKind[k.Name]
	if !ok {
		return nil
	}
	return sorted(listFrom[schema.Object](c.indexer(), namespace))
}

// MarkSynced records that the source has delivered its initial state; it is
// called once by the source.
func (s *Store) MarkSynced() {
	s.once.Do(func() {
		s.synced.Store(true)
		close(s.ready)
	})
}

// HasSynced reports whether the initial state has been loaded.
func (s *Store) HasSynced() bool { return s.synced.Load() }

// WaitForSync blocks until the store has synced or ctx ends.
func (s *Store) WaitForSync(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the store to sync: %w", ctx.Err())
	}
}

// Collection is the typed, indexed, read-only view of one kind.
type Collection[T schema.Object] struct {
	k   schema.Kind
	idx cache.Indexer
}

func newCollection[T schema.Object](s *Store, k schema.Kind, indexerFor func(schema.Kind) cache.Indexer) *Collection[T] {
	c := &Collection[T]{k: k, idx: indexerFor(k)}
	s.byKind[k.Name] = c
	return c
}

func (c *Collection[T]) kind() schema.Kind      { return c.k }
func (c *Collection[T]) indexer() cache.Indexer { return c.idx }

// Kind returns the collection's kind.
func (c *Collection[T]) Kind() schema.Kind { return c.k }

// Get returns the object namespace/name (name alone for cluster-scoped kinds).
func (c *Collection[T]) Get(namespace, name string) (T, bool) {
	obj, ok, _ := c.idx.GetByKey(key(namespace, name))
	if !ok {
		var zero T
		return zero, false
	}
	return obj.(T), true
}

// List returns the objects in namespace (all when namespace is ""), sorted by
// namespace and name so that callers are deterministic.
func (c *Collection[T]) List(namespace string) []T {
	return sorted(listFrom[T](c.idx, namespace))
}

// ByIndex returns the objects whose index entry equals value, sorted.
func (c *Collection[T]) ByIndex(index, value string) []T {
	objs, err := c.idx.ByIndex(index, value)
	if err != nil {
		// Only an unknown index name gets here: a programming error.
		panic(fmt.Sprintf("store: %s has no index %q", c.k.Name, index))
	}
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(T))
	}
	return sorted(out)
}

// Select returns the objects in namespace (all when "") whose labels match sel.
func (c *Collection[T]) Select(namespace string, sel labels.Selector) []T {
	var out []T
	for _, o := range c.List(namespace) {
		if sel.Matches(labels.Set(o.GetLabels())) {
			out = append(out, o)
		}
	}
	return out
}

// Len returns the number of objects held.
func (c *Collection[T]) Len() int { return len(c.idx.ListKeys()) }

// EndpointSlicesFor returns the EndpointSlices of Service namespace/name.
func (s *Store) EndpointSlicesFor(namespace, service string) []*discoveryv1.EndpointSlice {
	return s.EndpointSlices.ByIndex(IndexServiceName, namespace+"/"+service)
}

// PodsByIP returns the Pods that have ip among their addresses.
func (s *Store) PodsByIP(ip string) []*corev1.Pod {
	return s.Pods.ByIndex(IndexPodIP, ip)
}

func listFrom[T schema.Object](idx cache.Indexer, namespace string) []T {
	var objs []any
	if namespace == "" {
		objs = idx.List()
	} else {
		objs, _ = idx.ByIndex(IndexNamespace, namespace)
	}
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(T))
	}
	return out
}

func sorted[T schema.Object](objs []T) []T {
	sort.Slice(objs, func(i, j int) bool {
		if a, b := objs[i].GetNamespace(), objs[j].GetNamespace(); a != b {
			return a < b
		}
		return objs[i].GetName() < objs[j].GetName()
	})
	return objs
}

func key(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// Package kube feeds the store from the Kubernetes API server: one client-go
// shared informer factory for the core kinds and one istio.io/client-go
// factory for the Istio kinds, started once. Nothing else in meshd watches
// the API server.
package kube

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"

	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

// RootCertConfigMap is the ConfigMap the CA publishes to every namespace;
// it is the only ConfigMap the store watches.
const RootCertConfigMap = "istio-ca-root-cert"

// Source is the Kubernetes-backed source of a store.
type Source struct {
	log       *slog.Logger
	store     *store.Store
	core      informers.SharedInformerFactory
	istio     istioinformers.SharedInformerFactory
	informers map[string]cache.SharedIndexInformer
}

// New builds the informers and the store over them without starting
// anything. Secrets are watched only in namespace (meshd's own, where the CA
// keeps its keys); ConfigMaps only by the name RootCertConfigMap.
func New(log *slog.Logger, kc kubernetes.Interface, ic istioclient.Interface, namespace string) (*Source, error) {
	s := &Source{
		log:       log,
		core:      informers.NewSharedInformerFactory(kc, 0),
		istio:     istioinformers.NewSharedInformerFactory(ic, 0),
		informers: map[string]cache.SharedIndexInformer{},
	}
	v1 := s.core.Core().V1()
	net := s.istio.Networking().V1()
	sec := s.istio.Security().V1()
	byKind := map[string]cache.SharedIndexInformer{
		schema.Service.Name:       v1.Services().Informer(),
		schema.Pod.Name:           v1.Pods().Informer(),
		schema.Namespace.Name:     v1.Namespaces().Informer(),
		schema.EndpointSlice.Name: s.core.Discovery().V1().EndpointSlices().Informer(),
		schema.Secret.Name: s.core.InformerFor(&corev1.Secret{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
			return coreinformers.NewFilteredSecretInformer(c, namespace, resync, cache.Indexers{}, nil)
		}),
		schema.ConfigMap.Name: s.core.InformerFor(&corev1.ConfigMap{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
			return coreinformers.NewFilteredConfigMapInformer(c, metav1.NamespaceAll, resync, cache.Indexers{}, func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", RootCertConfigMap).String()
			})
		}),
		schema.VirtualService.Name:        net.VirtualServices().Informer(),
		schema.DestinationRule.Name:       net.DestinationRules().Informer(),
		schema.Gateway.Name:               net.Gateways().Informer(),
		schema.ServiceEntry.Name:          net.ServiceEntries().Informer(),
		schema.Sidecar.Name:               net.Sidecars().Informer(),
		schema.WorkloadEntry.Name:         net.WorkloadEntries().Informer(),
		schema.WorkloadGroup.Name:         net.WorkloadGroups().Informer(),
		schema.PeerAuthentication.Name:    sec.PeerAuthentications().Informer(),
		schema.AuthorizationPolicy.Name:   sec.AuthorizationPolicies().Informer(),
		schema.RequestAuthentication.Name: sec.RequestAuthentications().Informer(),
		schema.Telemetry.Name:             s.istio.Telemetry().V1().Telemetries().Informer(),
	}
	for _, k := range schema.All {
		inf, ok := byKind[k.Name]
		if !ok {
			return nil, fmt.Errorf("no informer for kind %s", k.Name)
		}
		// managedFields are large and never read: drop them before caching.
		if err := inf.SetTransform(dropManagedFields); err != nil {
			return nil, fmt.Errorf("%s informer: %w", k.Name, err)
		}
		// Informers come with the namespace index; add only the rest.
		missing := cache.Indexers{}
		have := inf.GetIndexer().GetIndexers()
		for name, fn := range store.Indexers(k) {
			if _, ok := have[name]; !ok {
				missing[name] = fn
			}
		}
		if err := inf.AddIndexers(missing); err != nil {
			return nil, fmt.Errorf("%s informer: %w", k.Name, err)
		}
		s.informers[k.Name] = inf
	}
	s.store = store.New(func(k schema.Kind) cache.Indexer { return s.informers[k.Name].GetIndexer() })
	for _, k := range schema.All {
		if _, err := s.informers[k.Name].AddEventHandler(s.handler(k)); err != nil {
			return nil, fmt.Errorf("%s informer: %w", k.Name, err)
		}
	}
	return s, nil
}

// Store returns the store this source fills.
func (s *Source) Store() *store.Store { return s.store }

// Start runs the informers until ctx ends. The store is marked synced once
// every informer has listed; until then the kinds still missing are logged
// every few seconds (a missing Istio CRD shows up here).
func (s *Source) Start(ctx context.Context) error {
	s.core.Start(ctx.Done())
	s.istio.Start(ctx.Done())
	start := time.Now()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		var missing []string
		for _, k := range schema.All {
			if !s.informers[k.Name].HasSynced() {
				missing = append(missing, k.Name)
			}
		}
		if len(missing) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			s.shutdown()
			return nil
		case <-tick.C:
			s.log.Warn("waiting for informers to sync", "kinds", strings.Join(missing, ","), "waited", time.Since(start).Round(time.Second))
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.log.Info("store synced from the API server", "took", time.Since(start).Round(time.Millisecond))
	s.store.MarkSynced()
	<-ctx.Done()
	s.shutdown()
	return nil
}

// NeedLeaderElection is false: every replica keeps its own store.
func (s *Source) NeedLeaderElection() bool { return false }

func (s *Source) shutdown() {
	s.core.Shutdown()
	s.istio.Shutdown()
}

func (s *Source) handler(k schema.Kind) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if o, ok := obj.(schema.Object); ok {
				s.store.Notify(store.Event{Kind: k, Type: store.Added, New: o})
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(schema.Object)
			n, ok2 := newObj.(schema.Object)
			if !ok1 || !ok2 || o.GetResourceVersion() == n.GetResourceVersion() {
				return // a resync, not a change
			}
			s.store.Notify(store.Event{Kind: k, Type: store.Updated, Old: o, New: n})
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if o, ok := obj.(schema.Object); ok {
				s.store.Notify(store.Event{Kind: k, Type: store.Deleted, Old: o})
			}
		},
	}
}

func dropManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

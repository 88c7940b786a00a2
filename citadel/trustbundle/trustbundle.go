// Package trustbundle publishes the CA's roots to every namespace as the
// ConfigMap istio-ca-root-cert (key root-cert.pem), which sidecars mount to
// verify meshd and each other. It creates missing copies and repairs edited
// ones; it runs on the leader only.
package trustbundle

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"

	"github.com/meshd/meshd/citadel/ca"
	"github.com/meshd/meshd/pkg/component"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

// Names, as Istio uses them.
const (
	ConfigMapName = "istio-ca-root-cert"
	DataKey       = "root-cert.pem"
	// configLabel marks the ConfigMap as Istio's, as istiod labels it.
	configLabel = "istio.io/config"
)

// Publisher keeps istio-ca-root-cert current in every namespace.
type Publisher struct {
	log    *slog.Logger
	store  *store.Store
	client kubernetes.Interface
	ca     *ca.CA
}

var _ component.Component = (*Publisher)(nil)

// New returns a publisher reading namespaces and ConfigMaps from st and
// writing with client.
func New(log *slog.Logger, st *store.Store, client kubernetes.Interface, c *ca.CA) *Publisher {
	return &Publisher{log: log, store: st, client: client, ca: c}
}

// NeedLeaderElection is true: one writer is enough.
func (p *Publisher) NeedLeaderElection() bool { return true }

// Start reconciles every namespace now, then on each namespace or ConfigMap
// change and on each CA change, until ctx ends.
func (p *Publisher) Start(ctx context.Context) error {
	if err := p.store.WaitForSync(ctx); err != nil {
		return err
	}
	select {
	case <-p.ca.Ready():
	case <-ctx.Done():
		return nil
	}
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "trustbundle"})
	go func() {
		<-ctx.Done()
		q.ShutDown()
	}()
	p.store.Subscribe(ctx, func(e store.Event) {
		o := e.Object()
		switch {
		case e.Kind.Name == schema.Namespace.Name && e.Type != store.Deleted:
			q.Add(o.GetName())
		case e.Kind.Name == schema.ConfigMap.Name && o.GetName() == ConfigMapName:
			q.Add(o.GetNamespace())
		}
	})
	go func() {
		for {
			changed := p.ca.Changed()
			for _, ns := range p.store.Namespaces.List("") {
				q.Add(ns.Name)
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		ns, shutdown := q.Get()
		if shutdown {
			return nil
		}
		if err := p.reconcile(ctx, ns); err != nil {
			p.log.Warn("trust bundle: will retry", "namespace", ns, "error", err)
			q.AddRateLimited(ns)
		} else {
			q.Forget(ns)
		}
		q.Done(ns)
	}
}

// reconcile makes namespace ns hold the current bundle.
func (p *Publisher) reconcile(ctx context.Context, ns string) error {
	n, ok := p.store.Namespaces.Get("", ns)
	if !ok || n.DeletionTimestamp != nil || n.Status.Phase == corev1.NamespaceTerminating {
		return nil // gone or going: writes would be refused
	}
	roots := string(p.ca.RootsPEM())
	cur, ok := p.store.ConfigMaps.Get(ns, ConfigMapName)
	if !ok {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: ns, Labels: map[string]string{configLabel: "true"}},
			Data:       map[string]string{DataKey: roots},
		}
		_, err := p.client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil // the store has not caught up; its event brings us back
		}
		if err != nil {
			return fmt.Errorf("creating configmap %s/%s: %w", ns, ConfigMapName, err)
		}
		p.log.Debug("trust bundle published", "namespace", ns)
		return nil
	}
	if cur.Data[DataKey] == roots && cur.Labels[configLabel] == "true" {
		return nil
	}
	upd := cur.DeepCopy()
	if upd.Data == nil {
		upd.Data = map[string]string{}
	}
	upd.Data[DataKey] = roots
	if upd.Labels == nil {
		upd.Labels = map[string]string{}
	}
	upd.Labels[configLabel] = "true"
	if _, err := p.client.CoreV1().ConfigMaps(ns).Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // deleted meanwhile; the delete event brings us back
		}
		return fmt.Errorf("updating configmap %s/%s: %w", ns, ConfigMapName, err)
	}
	p.log.Info("trust bundle repaired", "namespace", ns)
	return nil
}

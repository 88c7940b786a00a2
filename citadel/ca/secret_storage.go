package ca

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

// Secret names and type, as Istio uses them.
const (
	// SelfSignedSecret holds the self-signed root meshd creates.
	SelfSignedSecret = "istio-ca-secret"
	// PluginSecret holds an operator's plug-in CA; it wins when present.
	PluginSecret = "cacerts"
	// SecretType is the type Istio gives istio-ca-secret.
	SecretType corev1.SecretType = "istio.io/ca-root"
)

// storeLag bounds how long a write may take to show up in the store.
const storeLag = 30 * time.Second

// SecretStorage keeps the CA in Secrets of meshd's namespace: it reads
// through the shared store and writes with the Kubernetes client.
type SecretStorage struct {
	namespace string
	store     *store.Store
	client    kubernetes.Interface
}

var _ Storage = (*SecretStorage)(nil)

// NewSecretStorage returns a storage over Secrets in namespace.
func NewSecretStorage(namespace string, st *store.Store, client kubernetes.Interface) *SecretStorage {
	return &SecretStorage{namespace: namespace, store: st, client: client}
}

// Load waits for the store to sync (a missing Secret must mean missing, not
// not-yet-seen), then reads cacerts, else istio-ca-secret.
func (s *SecretStorage) Load(ctx context.Context) (*Material, error) {
	if err := s.store.WaitForSync(ctx); err != nil {
		return nil, err
	}
	if sec, ok := s.store.Secrets.Get(s.namespace, PluginSecret); ok {
		return fromSecret(sec, true), nil
	}
	if sec, ok := s.store.Secrets.Get(s.namespace, SelfSignedSecret); ok {
		return fromSecret(sec, false), nil
	}
	return nil, nil
}

func fromSecret(sec *corev1.Secret, plugin bool) *Material {
	return &Material{
		CertPEM:  sec.Data[CACertKey],
		KeyPEM:   sec.Data[CAKeyKey],
		ChainPEM: sec.Data[CertChainKey],
		RootPEM:  sec.Data[RootCertKey],
		Plugin:   plugin,
		Source:   fmt.Sprintf("secret %s/%s", sec.Namespace, sec.Name),
		Version:  sec.ResourceVersion,
	}
}

func (s *SecretStorage) secret(m *Material) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SelfSignedSecret, Namespace: s.namespace},
		Type:       SecretType,
		Data: map[string][]byte{
			CACertKey:    m.CertPEM,
			CAKeyKey:     m.KeyPEM,
			CertChainKey: m.ChainPEM,
			RootCertKey:  m.RootPEM,
		},
	}
}

// Create creates istio-ca-secret.
func (s *SecretStorage) Create(ctx context.Context, m *Material) (*Material, error) {
	created, err := s.client.CoreV1().Secrets(s.namespace).Create(ctx, s.secret(m), metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Let the store catch up so that the Load that follows sees it.
		if werr := s.waitFor(ctx, func(sec *corev1.Secret) bool { return true }); werr != nil {
			return nil, werr
		}
		return nil, ErrExists
	}
	if err != nil {
		return nil, fmt.Errorf("creating secret %s/%s: %w", s.namespace, SelfSignedSecret, err)
	}
	return s.stored(ctx, created)
}

// Update replaces istio-ca-secret if its resourceVersion is still old's.
func (s *SecretStorage) Update(ctx context.Context, old, m *Material) (*Material, error) {
	sec := s.secret(m)
	sec.ResourceVersion = old.Version
	updated, err := s.client.CoreV1().Secrets(s.namespace).Update(ctx, sec, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("updating secret %s/%s: %w", s.namespace, SelfSignedSecret, ErrConflict)
	}
	if err != nil {
		return nil, fmt.Errorf("updating secret %s/%s: %w", s.namespace, SelfSignedSecret, err)
	}
	return s.stored(ctx, updated)
}

// stored waits until the store shows the write, so that a later Load never
// returns the state from before it (which would undo a rotation).
func (s *SecretStorage) stored(ctx context.Context, sec *corev1.Secret) (*Material, error) {
	rv := sec.ResourceVersion
	if err := s.waitFor(ctx, func(got *corev1.Secret) bool { return got.ResourceVersion == rv }); err != nil {
		return nil, err
	}
	return fromSecret(sec, false), nil
}

func (s *SecretStorage) waitFor(ctx context.Context, done func(*corev1.Secret) bool) error {
	ctx, cancel := context.WithTimeout(ctx, storeLag)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if sec, ok := s.store.Secrets.Get(s.namespace, SelfSignedSecret); ok && done(sec) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("secret %s/%s: write not visible in the store: %w", s.namespace, SelfSignedSecret, ctx.Err())
		case <-t.C:
		}
	}
}

// Watch calls changed on any event about cacerts or istio-ca-secret.
func (s *SecretStorage) Watch(ctx context.Context, changed func()) {
	s.store.Subscribe(ctx, func(e store.Event) {
		if e.Kind.Name != schema.Secret.Name {
			return
		}
		o := e.Object()
		if o.GetNamespace() == s.namespace && (o.GetName() == PluginSecret || o.GetName() == SelfSignedSecret) {
			changed()
		}
	})
}

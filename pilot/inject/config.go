package inject

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// ConfigKeeper keeps the caBundle of every webhook in the injector's
// MutatingWebhookConfiguration equal to the root that signs meshd's
// serving certificate, as istiod does for istio-sidecar-injector. It runs
// on the leader and GETs its one object each pass (no informer for it).
type ConfigKeeper struct {
	log      *slog.Logger
	client   kubernetes.Interface
	name     string
	caBundle func() ([]byte, error)
	resync   time.Duration
}

// NewConfigKeeper returns the keeper of the configuration called name.
func NewConfigKeeper(log *slog.Logger, client kubernetes.Interface, name string, caBundle func() ([]byte, error)) *ConfigKeeper {
	return &ConfigKeeper{log: log.With("webhookconfig", name), client: client, name: name, caBundle: caBundle, resync: 10 * time.Second}
}

// NeedLeaderElection is true: one replica patches the shared object.
func (k *ConfigKeeper) NeedLeaderElection() bool { return true }

// Start reconciles at once and then every resync until ctx ends.
func (k *ConfigKeeper) Start(ctx context.Context) error {
	t := time.NewTicker(k.resync)
	defer t.Stop()
	for {
		if err := k.reconcile(ctx); err != nil && ctx.Err() == nil {
			k.log.Warn("reconciling injector webhook configuration", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (k *ConfigKeeper) reconcile(ctx context.Context) error {
	ca, err := k.caBundle()
	if err != nil {
		return fmt.Errorf("root certificate: %w", err)
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cfg, err := k.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, k.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil // not installed: injection is off
		}
		if err != nil {
			return err
		}
		changed := false
		for i := range cfg.Webhooks {
			if !bytes.Equal(cfg.Webhooks[i].ClientConfig.CABundle, ca) {
				cfg.Webhooks[i].ClientConfig.CABundle = ca
				changed = true
			}
		}
		if !changed {
			return nil
		}
		if _, err := k.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, cfg, metav1.UpdateOptions{}); err != nil {
			return err
		}
		k.log.Info("updated injector webhook caBundle")
		return nil
	})
}

// Package webhookconfig keeps meshd's ValidatingWebhookConfiguration working,
// as istiod does for its own: the caBundle of every webhook in it is kept
// equal to the root that signs the webhook's serving certificate, and
// failurePolicy starts as Ignore (so that a cluster is never locked out of
// Istio config while meshd is not yet reachable) and is switched to Fail
// once the API server has been seen to reach the webhook.
//
// It runs on the leader only, and reads the one object it owns with a GET on
// each pass rather than a watch of its own (the store does not hold webhook
// configurations, and one GET every few seconds is cheaper than an informer).
package webhookconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/meshd/meshd/pkg/component"
)

// Options configure a Controller.
type Options struct {
	// Name is the ValidatingWebhookConfiguration's name, e.g.
	// "istio-validator-istio-system".
	Name string
	// CABundle returns the PEM of the root certificate(s) that verify the
	// webhook's serving certificate.
	CABundle func() ([]byte, error)
	// Served is closed once this replica's webhook has answered a review
	// (webhook.Server.Served). Nil if unknown.
	Served <-chan struct{}
	// ProbeNamespace, when set, is where the controller asks the API server
	// for a dry-run create of a Gateway that the webhook always rejects; the
	// rejection proves the API server reaches a webhook, whichever replica
	// serves it. It must exist.
	ProbeNamespace string
	// Resync is how often the configuration is checked; 0 means 10s. While
	// the webhook is not yet known to be reachable, checks are more frequent.
	Resync time.Duration
}

// Controller is the leader-only component that patches the configuration.
type Controller struct {
	log    *slog.Logger
	client kubernetes.Interface
	opts   Options
	// reachable is true once the API server is known to reach the webhook;
	// only then may the configuration fail closed.
	reachable bool
}

var _ component.Component = (*Controller)(nil)

// New returns a Controller; it does nothing until started.
func New(log *slog.Logger, client kubernetes.Interface, opts Options) *Controller {
	if opts.Resync <= 0 {
		opts.Resync = 10 * time.Second
	}
	return &Controller{log: log.With("webhookconfig", opts.Name), client: client, opts: opts}
}

// NeedLeaderElection is true: one replica patches the shared object.
func (c *Controller) NeedLeaderElection() bool { return true }

// Start reconciles until ctx ends.
func (c *Controller) Start(ctx context.Context) error {
	served := c.opts.Served
	// Until the webhook is reachable, look again soon (the API server picks
	// up a new caBundle within a second or two); afterwards, at Resync.
	wait := 500 * time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-served:
			served = nil
			if !c.reachable {
				c.log.Info("webhook has served a review; switching validation to fail closed")
				c.reachable = true
			}
			timer.Stop() // no stale tick can follow Stop since Go 1.23
		case <-timer.C:
		}
		if err := c.reconcile(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("reconciling webhook configuration", "error", err)
		}
		next := c.opts.Resync
		if !c.reachable {
			next = min(wait, c.opts.Resync)
			wait = min(2*wait, c.opts.Resync)
		}
		timer.Reset(next)
	}
}

// reconcile brings the configuration in line once.
func (c *Controller) reconcile(ctx context.Context) error {
	ca, err := c.opts.CABundle()
	if err != nil {
		return fmt.Errorf("loading the CA bundle: %w", err)
	}
	if len(ca) == 0 {
		return errors.New("the CA bundle is empty")
	}
	if !c.reachable && c.opts.ProbeNamespace != "" {
		cfg, err := c.get(ctx)
		if err == nil && cfg != nil && caCurrent(cfg, ca) {
			c.reachable = c.probe(ctx)
		}
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cfg, err := c.get(ctx)
		if err != nil || cfg == nil {
			return err
		}
		updated := cfg.DeepCopy()
		for i := range updated.Webhooks {
			updated.Webhooks[i].ClientConfig.CABundle = ca
			if c.reachable {
				fail := admissionregistrationv1.Fail
				updated.Webhooks[i].FailurePolicy = &fail
			}
		}
		if equalWebhooks(cfg, updated) {
			return nil
		}
		if _, err := c.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
			return err
		}
		c.log.Info("updated webhook configuration", "caBundleUpdated", !caCurrent(cfg, ca), "failClosed", c.reachable)
		return nil
	})
}

func (c *Controller) get(ctx context.Context) (*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	cfg, err := c.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, c.opts.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		// Not installed (yet): nothing to do until it is.
		c.log.Debug("webhook configuration not found")
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("getting ValidatingWebhookConfiguration %s: %w", c.opts.Name, err)
	}
	return cfg, nil
}

// AlwaysRejectAnnotation makes the webhook refuse an object; the probe uses it.
const AlwaysRejectAnnotation = "internal.istio.io/webhook-always-reject"

// probe asks the API server for a dry-run create of a Gateway the webhook
// must reject, and reports whether the webhook did reject it.
func (c *Controller) probe(ctx context.Context) bool {
	rc := c.client.Discovery().RESTClient()
	if rc == nil {
		return false
	}
	gw := map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "Gateway",
		"metadata": map[string]any{
			"name":        "meshd-webhook-probe",
			"namespace":   c.opts.ProbeNamespace,
			"annotations": map[string]string{AlwaysRejectAnnotation: "true"},
		},
		"spec": map[string]any{},
	}
	body, _ := json.Marshal(gw)
	err := rc.Post().
		AbsPath("/apis/networking.istio.io/v1/namespaces", c.opts.ProbeNamespace, "gateways").
		Param("dryRun", metav1.DryRunAll).
		SetHeader("Content-Type", "application/json").
		Body(body).
		Do(ctx).Error()
	switch {
	case err == nil:
		c.log.Info("webhook probe was not rejected: the API server is not calling the webhook yet")
		return false
	case strings.Contains(err.Error(), "denied the request"):
		c.log.Info("webhook rejected the probe; switching validation to fail closed")
		return true
	case strings.Contains(err.Error(), "the server could not find the requested resource"):
		// Without the Gateway CRD there is nothing to validate or probe.
		c.log.Warn("Gateway CRD missing, cannot probe the webhook; assuming it is reachable")
		return true
	}
	c.log.Info("webhook probe failed for another reason; will retry", "error", err)
	return false
}

func caCurrent(cfg *admissionregistrationv1.ValidatingWebhookConfiguration, ca []byte) bool {
	for _, w := range cfg.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, ca) {
			return false
		}
	}
	return true
}

func equalWebhooks(a, b *admissionregistrationv1.ValidatingWebhookConfiguration) bool {
	if len(a.Webhooks) != len(b.Webhooks) {
		return false
	}
	for i := range a.Webhooks {
		wa, wb := a.Webhooks[i], b.Webhooks[i]
		if !bytes.Equal(wa.ClientConfig.CABundle, wb.ClientConfig.CABundle) {
			return false
		}
		if (wa.FailurePolicy == nil) != (wb.FailurePolicy == nil) || wa.FailurePolicy != nil && *wa.FailurePolicy != *wb.FailurePolicy {
			return false
		}
	}
	return true
}

// WebhookName is the name of the one webhook in the configuration, as istiod
// names it.
const WebhookName = "validation.istio.io"

// Configuration returns meshd's ValidatingWebhookConfiguration as it is
// installed: creates and updates in the Istio config groups go to the
// webhook, failing open until the controller has seen it reachable.
func Configuration(name string, client admissionregistrationv1.WebhookClientConfig) *admissionregistrationv1.ValidatingWebhookConfiguration {
	ignore := admissionregistrationv1.Ignore
	none := admissionregistrationv1.SideEffectClassNone
	timeout := int32(10)
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "meshd"}},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:         WebhookName,
			ClientConfig: client,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{"networking.istio.io", "security.istio.io", "telemetry.istio.io"},
					APIVersions: []string{"*"},
					Resources:   []string{"*"},
				},
			}},
			FailurePolicy:           &ignore,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          &timeout,
		}},
	}
}

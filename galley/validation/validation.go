// Package validation holds the rules that decide whether an Istio config
// object is acceptable. They are pure functions of one object: the admission
// webhook, `meshctl validate`, `meshctl analyze` and pilot (before it
// translates an object that bypassed the webhook) all run the same rules, so
// an object gets the same verdict and the same message everywhere.
//
// The contract is istiod's: every object istiod accepts is accepted, and
// everything istiod rejects is rejected, with a message of the same meaning.
// Where meshd has a stricter opinion than istiod it is a warning, never an
// error, so that an existing user's YAML never breaks.
package validation

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/go-multierror"
	security "istio.io/api/security/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"

	"github.com/meshd/meshd/pkg/schema"
)

// FieldError is one problem with one field of an object.
type FieldError struct {
	// Path names the field the way it is written in YAML, e.g.
	// `spec.http[1].route[0].weight`.
	Path string
	// Message says what is wrong with it.
	Message string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// Validate checks one decoded object. It returns every error at once, joined
// by go-multierror (each a *FieldError naming its field), and the warnings:
// things istiod accepts but that are probably not what the author meant.
// Objects of kinds that carry no Istio spec (Services, Pods, ...) have no
// rules beyond strict decoding and are always valid here.
func Validate(obj schema.Object) (warnings []string, err error) {
	r := &report{}
	validateMetadata(r, obj)
	switch o := obj.(type) {
	case *networkingv1.VirtualService:
		validateVirtualService(r, "spec", o.Namespace, &o.Spec)
	case *networkingv1.DestinationRule:
		validateDestinationRule(r, "spec", o.Namespace, &o.Spec)
	case *networkingv1.Gateway:
		validateGateway(r, "spec", o.Name, &o.Spec)
	case *networkingv1.ServiceEntry:
		if w := o.Labels["istio.io/use-waypoint"]; w != "" && !strings.EqualFold(w, "none") {
			r.waypoint = true
		}
		validateServiceEntry(r, "spec", o.Namespace, &o.Spec)
	case *networkingv1.Sidecar:
		validateSidecar(r, "spec", o.Namespace, &o.Spec)
	case *networkingv1.WorkloadEntry:
		validateWorkloadEntry(r, "spec", &o.Spec, nil, true)
	case *networkingv1.WorkloadGroup:
		validateWorkloadGroup(r, "spec", &o.Spec)
	case *securityv1.PeerAuthentication:
		validatePeerAuthentication(r, "spec", &o.Spec)
	case *securityv1.AuthorizationPolicy:
		validateAuthorizationPolicy(r, "spec", &o.Spec)
	case *securityv1.RequestAuthentication:
		validateRequestAuthentication(r, "spec", &o.Spec)
	case *telemetryv1.Telemetry:
		validateTelemetry(r, "spec", &o.Spec)
	}
	return r.result()
}

// Errors returns the individual errors inside an error returned by Validate.
func Errors(err error) []error {
	if err == nil {
		return nil
	}
	if merr, ok := err.(*multierror.Error); ok {
		return merr.Errors
	}
	return []error{err}
}

// Annotations istiod reserves for itself; user objects may not carry them.
const (
	annotationAlwaysReject      = "internal.istio.io/webhook-always-reject"
	annotationParentNamespace   = "internal.istio.io/parent-namespace"
	annotationParentNames       = "internal.istio.io/parents"
	annotationDryRun            = "istio.io/dry-run"
	annotationPathDryRun        = "metadata.annotations[" + annotationDryRun + "]"
	annotationPathAlwaysReject  = "metadata.annotations[" + annotationAlwaysReject + "]"
	annotationPathInternalParen = "metadata.annotations"
)

func validateMetadata(r *report, obj schema.Object) {
	ann := obj.GetAnnotations()
	if _, ok := ann[annotationAlwaysReject]; ok {
		// istiod's own readiness probe sends objects with this annotation and
		// expects them refused; meshd's webhook controller does the same.
		r.errorf(annotationPathAlwaysReject, "%q annotation found, rejecting", annotationAlwaysReject)
	}
	for _, a := range []string{annotationParentNamespace, annotationParentNames} {
		if _, ok := ann[a]; ok {
			r.errorf(path(annotationPathInternalParen).k(a), "%q annotation is internal to the control plane and may not be set by users", a)
		}
	}
	if v, ok := ann[annotationDryRun]; ok {
		ap, isAuthz := obj.(*securityv1.AuthorizationPolicy)
		switch {
		case !isAuthz:
			r.errorf(annotationPathDryRun, "annotation %s is only supported on AuthorizationPolicy; remove it", annotationDryRun)
		case ap.Spec.GetAction() != security.AuthorizationPolicy_ALLOW && ap.Spec.GetAction() != security.AuthorizationPolicy_DENY:
			r.errorf(annotationPathDryRun, "annotation %s only supports action ALLOW or DENY, found %v", annotationDryRun, ap.Spec.GetAction())
		case !isBool(v):
			r.errorf(annotationPathDryRun, "annotation %s must be true or false, got %q", annotationDryRun, v)
		}
	}
}

// isBool accepts what strconv.ParseBool accepts, as istiod does.
func isBool(s string) bool {
	switch s {
	case "1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False":
		return true
	}
	return false
}

// report collects the errors and warnings of one object.
type report struct {
	errs  []error
	warns []string
	// waypoint is true when the object is labelled to use a waypoint proxy,
	// which changes what a ServiceEntry may say.
	waypoint bool
}

func (r *report) errorf(p path, format string, args ...any) {
	r.errs = append(r.errs, &FieldError{Path: string(p), Message: fmt.Sprintf(format, args...)})
}

// err records err (when not nil) against p.
func (r *report) err(p path, err error) {
	if err != nil {
		r.errs = append(r.errs, &FieldError{Path: string(p), Message: err.Error()})
	}
}

func (r *report) warnf(p path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if p != "" {
		msg = string(p) + ": " + msg
	}
	r.warns = append(r.warns, msg)
}

func (r *report) result() ([]string, error) {
	var err error
	if len(r.errs) > 0 {
		merr := &multierror.Error{Errors: r.errs, ErrorFormat: joinErrors}
		err = merr
	}
	if len(r.warns) == 0 {
		return nil, err
	}
	return dedupe(r.warns), err
}

// joinErrors prints all errors on one line, so that kubectl shows them all
// in its one-line admission denial.
func joinErrors(errs []error) string {
	s := make([]string, len(errs))
	for i, e := range errs {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// path is a field path as written in YAML.
type path string

// f names a field of the object at p.
func (p path) f(name string) path {
	if p == "" {
		return path(name)
	}
	return p + "." + path(name)
}

// i names an element of the list at p.
func (p path) i(i int) path { return path(fmt.Sprintf("%s[%d]", p, i)) }

// k names an entry of the map at p.
func (p path) k(key string) path { return path(fmt.Sprintf("%s[%s]", p, key)) }

// sortedKeys returns a map's keys in order, so messages are deterministic.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

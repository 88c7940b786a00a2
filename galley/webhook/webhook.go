// Package webhook is galley's validating admission webhook: the API server
// POSTs an admission.k8s.io/v1 AdmissionReview for every create and update
// of an Istio config object, and the webhook answers with the verdict of the
// validation rules (galley/validation), the same rules pilot applies.
//
// It is a plain http.Handler; TLS and the listener (port 15017) belong to
// whoever mounts it with Routes.
package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sschema "k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshd/meshd/galley/validation"
	"github.com/meshd/meshd/pkg/schema"
)

// Path is where the API server sends reviews, as it does to istiod.
const Path = "/validate"

// legacyPath is the path of Istio's older webhook configurations.
const legacyPath = "/admitpilot"

// DefaultMaxBodyBytes bounds a review: an object and its old version, each at
// most etcd's 1.5 MiB, with room to spare.
const DefaultMaxBodyBytes = 6 << 20

// Reasons a review is refused, as the `reason` label of
// galley_validation_failed (istiod's values).
const (
	ReasonUnsupportedOperation = "unsupported_operation"
	ReasonDecodeError          = "yaml_decode_error"
	ReasonStrictDecodeError    = "crd_conversion_error"
	ReasonInvalidConfig        = "invalid_resource"
)

// Options tune the server.
type Options struct {
	// MaxBodyBytes bounds the size of a request; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// Server answers admission reviews.
type Server struct {
	log     *slog.Logger
	maxBody int64
	m       metrics

	servedOnce sync.Once
	served     chan struct{}
}

type metrics struct {
	passed    *prometheus.CounterVec
	failed    *prometheus.CounterVec
	httpError *prometheus.CounterVec
}

// New builds a Server and registers its metrics on reg.
func New(log *slog.Logger, reg prometheus.Registerer, opts Options) (*Server, error) {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	s := &Server{
		log:     log,
		maxBody: opts.MaxBodyBytes,
		served:  make(chan struct{}),
		m: metrics{
			passed: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "galley_validation_passed",
				Help: "Resource is valid.",
			}, []string{"group", "version", "resource"}),
			failed: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "galley_validation_failed",
				Help: "Resource validation failed.",
			}, []string{"group", "version", "resource", "reason"}),
			httpError: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "galley_validation_http_error",
				Help: "Resource validation http serve errors.",
			}, []string{"status"}),
		},
	}
	for _, c := range []prometheus.Collector{s.m.passed, s.m.failed, s.m.httpError} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering galley metrics: %w", err)
		}
	}
	return s, nil
}

// Routes mounts the webhook on mux (at /validate, and at /admitpilot where
// Istio's older webhook configurations point).
func (s *Server) Routes(mux *http.ServeMux) {
	mux.Handle(Path, s)
	mux.Handle(legacyPath, s)
}

// Served is closed once the webhook has answered its first well-formed
// review: proof that the API server can reach it and trusts its
// certificate, which is what the webhook configuration controller waits for
// before failing closed.
func (s *Server) Served() <-chan struct{} { return s.served }

// ServeHTTP answers one AdmissionReview. A request that is not a review
// (wrong method, content type, oversized or malformed body) gets an HTTP
// error with the reason; a review always gets a 200 with the verdict.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.httpError(w, http.StatusMethodNotAllowed, "only POST is supported")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.httpError(w, http.StatusBadRequest, fmt.Sprintf("invalid Content-Type %q, want application/json", r.Header.Get("Content-Type")))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.httpError(w, http.StatusBadRequest, fmt.Sprintf("request body larger than %d bytes", s.maxBody))
			return
		}
		s.httpError(w, http.StatusBadRequest, fmt.Sprintf("reading request body: %v", err))
		return
	}
	if len(body) == 0 {
		s.httpError(w, http.StatusBadRequest, "no body found")
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		s.httpError(w, http.StatusBadRequest, fmt.Sprintf("could not decode body as an AdmissionReview: %v", err))
		return
	}
	if gvk := review.GroupVersionKind(); gvk != admissionv1.SchemeGroupVersion.WithKind("AdmissionReview") {
		s.httpError(w, http.StatusBadRequest, fmt.Sprintf("expected an admission.k8s.io/v1 AdmissionReview, got %q %q", review.APIVersion, review.Kind))
		return
	}
	if review.Request == nil {
		s.httpError(w, http.StatusBadRequest, "AdmissionReview has no request")
		return
	}
	if review.Request.UID == "" {
		// The API server matches the answer to its request by UID.
		s.httpError(w, http.StatusBadRequest, "AdmissionReview request has no uid")
		return
	}
	resp := s.Review(review.Request)
	resp.UID = review.Request.UID
	out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
	if err != nil {
		s.httpError(w, http.StatusInternalServerError, fmt.Sprintf("encoding response: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(out); err != nil {
		s.log.Debug("writing admission response", "error", err)
		s.m.httpError.WithLabelValues(strconv.Itoa(http.StatusInternalServerError)).Inc()
		return
	}
	s.servedOnce.Do(func() { close(s.served) })
}

func (s *Server) httpError(w http.ResponseWriter, status int, reason string) {
	s.m.httpError.WithLabelValues(strconv.Itoa(status)).Inc()
	s.log.Info("refusing admission request", "status", status, "reason", reason)
	http.Error(w, reason, status)
}

// Review decides one admission request: creates and updates of Istio
// config kinds are decoded strictly and validated; anything else is let
// through.
func (s *Server) Review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	dryRun := req.DryRun != nil && *req.DryRun
	deny := func(reason string, err error) *admissionv1.AdmissionResponse {
		// istiod keeps dry runs out of the metrics: they change nothing.
		if !dryRun {
			s.m.failed.WithLabelValues(req.Resource.Group, req.Resource.Version, req.Resource.Resource, reason).Inc()
		}
		s.log.Info("rejected config", "kind", req.Kind.Kind, "namespace", req.Namespace, "name", req.Name,
			"operation", req.Operation, "reason", reason, "dryRun", dryRun, "error", err.Error())
		return &admissionv1.AdmissionResponse{
			Allowed: false,
			Result:  &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest, Message: err.Error()},
		}
	}

	switch req.Operation {
	case admissionv1.Create, admissionv1.Update:
	default:
		// Deletes and connects are not ours to judge; counted as istiod does.
		if !dryRun {
			s.m.failed.WithLabelValues(req.Resource.Group, req.Resource.Version, req.Resource.Resource, ReasonUnsupportedOperation).Inc()
		}
		return &admissionv1.AdmissionResponse{Allowed: true}
	}

	var tm metav1.TypeMeta
	if err := json.Unmarshal(req.Object.Raw, &tm); err != nil {
		return deny(ReasonDecodeError, fmt.Errorf("cannot decode configuration: %w", err))
	}
	gv, err := k8sschema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return deny(ReasonDecodeError, fmt.Errorf("cannot decode configuration: apiVersion %q: %w", tm.APIVersion, err))
	}
	kind, ok := schema.ByGVK(gv.WithKind(tm.Kind))
	if !ok || !kind.Istio {
		// A kind meshd has no rules for (EnvoyFilter, WasmPlugin, ...) may
		// still be routed here by a broad webhook rule: refusing it would
		// break objects istiod accepts, so it passes, with a word.
		s.log.Debug("not validating unknown kind", "kind", gv.WithKind(tm.Kind).String())
		s.m.passed.WithLabelValues(req.Resource.Group, req.Resource.Version, req.Resource.Resource).Inc()
		return &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{fmt.Sprintf("meshd does not validate %s objects", gv.WithKind(tm.Kind).String())}}
	}
	obj, err := schema.DecodeKind(kind, req.Object.Raw)
	if err != nil {
		return deny(ReasonStrictDecodeError, fmt.Errorf("error decoding configuration: %w", err))
	}
	warnings, err := validation.Validate(obj)
	if err != nil {
		return deny(ReasonInvalidConfig, fmt.Errorf("configuration is invalid: %w", err))
	}
	s.m.passed.WithLabelValues(req.Resource.Group, req.Resource.Version, req.Resource.Resource).Inc()
	return &admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}
}

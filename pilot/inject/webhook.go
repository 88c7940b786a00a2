package inject

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
)

// Path is where the API server sends pods to inject, as istiod's.
const Path = "/inject"

// maxBody bounds a review: a pod spec is far smaller.
const maxBody = 8 << 20

// Webhook serves the sidecar injector.
type Webhook struct {
	log                     *slog.Logger
	opts                    Options
	requests, skipped, done prometheus.Counter
	failed                  *prometheus.CounterVec
}

// NewWebhook registers Istio's injection metrics (sidecar_injection_*) on
// reg and returns the injector's webhook.
func NewWebhook(log *slog.Logger, reg prometheus.Registerer, opts Options) *Webhook {
	w := &Webhook{log: log, opts: opts,
		requests: prometheus.NewCounter(prometheus.CounterOpts{Name: "sidecar_injection_requests_total", Help: "Total number of sidecar injection requests."}),
		done:     prometheus.NewCounter(prometheus.CounterOpts{Name: "sidecar_injection_success_total", Help: "Total number of successful sidecar injection requests."}),
		skipped:  prometheus.NewCounter(prometheus.CounterOpts{Name: "sidecar_injection_skip_total", Help: "Total number of skipped sidecar injection requests."}),
		failed:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sidecar_injection_failure_total", Help: "Total number of failed sidecar injection requests."}, []string{"type"}),
	}
	reg.MustRegister(w.requests, w.done, w.skipped, w.failed)
	return w
}

// Routes mounts the injector on the webhook mux.
func (w *Webhook) Routes(mux *http.ServeMux) {
	mux.Handle(Path, w)
	mux.Handle(Path+"/", w) // istiod's revision-and-cluster form, /inject/cluster/C/net/N
}

// ServeHTTP answers one AdmissionReview of a pod with a JSON patch adding
// the proxy, or with no patch when the pod is not to be injected. A pod
// the injector cannot handle is still admitted (uninjected), with the
// reason logged, counted and returned as a warning, as istiod does.
func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.requests.Inc()
	if r.Method != http.MethodPost {
		w.httpError(rw, http.StatusMethodNotAllowed, "only POST is supported")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, maxBody))
	if err != nil {
		w.httpError(rw, http.StatusBadRequest, fmt.Sprintf("reading request body: %v", err))
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil || review.Request.UID == "" {
		w.httpError(rw, http.StatusBadRequest, fmt.Sprintf("body is not an AdmissionReview with a request and uid (%v)", err))
		return
	}
	resp := w.review(review.Request)
	resp.UID = review.Request.UID
	out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
	if err != nil {
		w.httpError(rw, http.StatusInternalServerError, fmt.Sprintf("encoding response: %v", err))
		return
	}
	rw.Header().Set("Content-Type", "application/json")
	_, _ = rw.Write(out)
}

func (w *Webhook) review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		w.failed.WithLabelValues("decode").Inc()
		w.log.Warn("not injecting: the object is not a pod", "namespace", req.Namespace, "name", req.Name, "error", err)
		allow.Warnings = []string{"sidecar not injected: object is not a pod: " + err.Error()}
		return allow
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace // not set yet on create
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	if d := Decide(&pod); !d.Inject {
		w.skipped.Inc()
		w.log.Debug("not injecting", "pod", pod.Namespace+"/"+name, "reason", d.Reason)
		return allow
	}
	injected, err := Mutate(&pod, w.opts)
	if err == nil {
		var patch []byte
		if patch, err = Patch(injected); err == nil {
			w.done.Inc()
			w.log.Info("injected sidecar", "pod", pod.Namespace+"/"+name)
			pt := admissionv1.PatchTypeJSONPatch
			allow.Patch, allow.PatchType = patch, &pt
			return allow
		}
	}
	w.failed.WithLabelValues("inject").Inc()
	w.log.Warn("not injecting", "pod", pod.Namespace+"/"+name, "error", err)
	allow.Warnings = []string{fmt.Sprintf("sidecar not injected into pod %s/%s: %v", pod.Namespace, name, err)}
	return allow
}

func (w *Webhook) httpError(rw http.ResponseWriter, status int, reason string) {
	w.failed.WithLabelValues("request").Inc()
	w.log.Info("refusing injection request", "status", status, "reason", reason)
	http.Error(rw, reason, status)
}

// patchOp is one RFC 6902 operation.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// Patch is the JSON patch that turns a pod into injected. Whole lists and maps
// are set ("add" replaces a member that exists): simpler to read back than
// index-by-index operations, and the pod is not stored yet, so nothing
// races with it.
func Patch(injected *corev1.Pod) ([]byte, error) {
	ops := []patchOp{
		{"add", "/spec/initContainers", injected.Spec.InitContainers},
		{"add", "/spec/containers", injected.Spec.Containers},
		{"add", "/spec/volumes", injected.Spec.Volumes},
		{"add", "/metadata/labels", injected.Labels},
		{"add", "/metadata/annotations", injected.Annotations},
	}
	return json.Marshal(ops)
}

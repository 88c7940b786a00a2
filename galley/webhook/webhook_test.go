package webhook_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/meshd/meshd/galley/webhook"
)

func newServer(t testing.TB) (*webhook.Server, *prometheus.Registry, http.Handler) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := webhook.New(slog.New(slog.DiscardHandler), reg, webhook.Options{MaxBodyBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Routes(mux)
	return s, reg, mux
}

// review wraps an object (YAML) in an AdmissionReview as the API server sends it.
func review(t testing.TB, op admissionv1.Operation, objYAML string) []byte {
	t.Helper()
	raw, err := yaml.YAMLToJSON([]byte(objYAML))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	_ = json.Unmarshal(raw, &meta)
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("uid-" + meta.Metadata.Name),
			Kind:      metav1.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"},
			Resource:  metav1.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"},
			Name:      meta.Metadata.Name,
			Namespace: meta.Metadata.Namespace,
			Operation: op,
			Object:    runtime.RawExtension{Raw: raw},
		},
	}
	b, err := json.Marshal(ar)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(h http.Handler, contentType string, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, webhook.Path, bytes.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func decodeResponse(t *testing.T, w *httptest.ResponseRecorder) *admissionv1.AdmissionReview {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("response is not an AdmissionReview: %v\n%s", err, w.Body)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil {
		t.Fatalf("bad response envelope: %s", w.Body)
	}
	return &out
}

const validVS = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v2}
      weight: 30
`

const invalidVS = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: everything, namespace: default}
spec:
  hosts: ["*"]
  http:
  - timeout: 1500us
    route:
    - destination: {host: reviews}
`

const unknownFieldVS = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: typo, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      wieght: 100
`

func TestReviews(t *testing.T) {
	for _, tc := range []struct {
		name     string
		op       admissionv1.Operation
		obj      string
		allowed  bool
		message  []string
		warnings []string
		reason   string
	}{
		{name: "valid, with a warning", op: admissionv1.Create, obj: validVS, allowed: true,
			warnings: []string{"spec.http[0].route: weights sum to 80, not 100"}},
		{name: "invalid, all errors at once", op: admissionv1.Update, obj: invalidVS, reason: webhook.ReasonInvalidConfig,
			message: []string{"configuration is invalid: ",
				"spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway",
				"spec.http[0].timeout: only durations to ms precision are supported"}},
		{name: "unknown field", op: admissionv1.Create, obj: unknownFieldVS, reason: webhook.ReasonStrictDecodeError,
			message: []string{"error decoding configuration: spec.http[0].route[0].wieght: unknown field"}},
		{name: "a kind meshd has no rules for passes", op: admissionv1.Create, obj: "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: ef}\nspec: {anything: goes}\n", allowed: true,
			warnings: []string{"meshd does not validate networking.istio.io/v1alpha3, Kind=EnvoyFilter objects"}},
		{name: "not an object", op: admissionv1.Create, obj: `"just a string"`, reason: webhook.ReasonDecodeError,
			message: []string{"cannot decode configuration"}},
		{name: "delete is not judged", op: admissionv1.Delete, obj: invalidVS, allowed: true, reason: webhook.ReasonUnsupportedOperation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, reg, h := newServer(t)
			body := review(t, tc.op, tc.obj)
			out := decodeResponse(t, post(h, "application/json", body))
			var in admissionv1.AdmissionReview
			_ = json.Unmarshal(body, &in)
			if out.Response.UID != in.Request.UID {
				t.Errorf("UID %q, want %q", out.Response.UID, in.Request.UID)
			}
			if out.Response.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v (%+v)", out.Response.Allowed, tc.allowed, out.Response.Result)
			}
			for _, m := range tc.message {
				if out.Response.Result == nil || !strings.Contains(out.Response.Result.Message, m) {
					t.Errorf("message %+v does not hold %q", out.Response.Result, m)
				}
			}
			if len(out.Response.Warnings) != len(tc.warnings) {
				t.Errorf("warnings %q, want %q", out.Response.Warnings, tc.warnings)
			}
			for i, w := range tc.warnings {
				if i < len(out.Response.Warnings) && !strings.Contains(out.Response.Warnings[i], w) {
					t.Errorf("warning %q does not hold %q", out.Response.Warnings[i], w)
				}
			}
			passed := testutil.ToFloat64(counter(t, reg, "galley_validation_passed", nil))
			failed := 0.0
			if tc.reason != "" {
				failed = testutil.ToFloat64(counter(t, reg, "galley_validation_failed", map[string]string{"reason": tc.reason}))
			}
			switch {
			case tc.reason == "" && passed != 1:
				t.Errorf("galley_validation_passed = %v, want 1", passed)
			case tc.reason != "" && (failed != 1 || passed != 0):
				t.Errorf("galley_validation_failed{reason=%q} = %v and passed = %v, want 1 and 0", tc.reason, failed, passed)
			}
		})
	}
}

func TestDryRunIsNotCounted(t *testing.T) {
	_, reg, h := newServer(t)
	var ar admissionv1.AdmissionReview
	_ = json.Unmarshal(review(t, admissionv1.Create, invalidVS), &ar)
	yes := true
	ar.Request.DryRun = &yes
	body, _ := json.Marshal(ar)
	out := decodeResponse(t, post(h, "application/json", body))
	if out.Response.Allowed {
		t.Fatal("dry run of an invalid object allowed")
	}
	if n := testutil.CollectAndCount(reg, "galley_validation_failed"); n != 0 {
		t.Errorf("a dry run was counted as a failure (%d series)", n)
	}
}

func TestBadRequests(t *testing.T) {
	good := review(t, admissionv1.Create, validVS)
	for _, tc := range []struct {
		name        string
		method      string
		contentType string
		body        []byte
		status      int
		reason      string
	}{
		{"wrong method", http.MethodGet, "application/json", good, http.StatusMethodNotAllowed, "only POST"},
		{"wrong content type", http.MethodPost, "text/plain", good, http.StatusBadRequest, `invalid Content-Type "text/plain"`},
		{"no content type", http.MethodPost, "", good, http.StatusBadRequest, "invalid Content-Type"},
		{"empty body", http.MethodPost, "application/json", nil, http.StatusBadRequest, "no body found"},
		{"oversized body", http.MethodPost, "application/json", bytes.Repeat([]byte(" "), 65<<10), http.StatusBadRequest, "request body larger than 65536 bytes"},
		{"malformed JSON", http.MethodPost, "application/json", []byte(`{"apiVersion": "admission.k8s.io/v1", `), http.StatusBadRequest, "could not decode body"},
		{"not a review", http.MethodPost, "application/json", []byte(`{"apiVersion": "v1", "kind": "Pod"}`), http.StatusBadRequest, "expected an admission.k8s.io/v1 AdmissionReview"},
		{"v1beta1 review", http.MethodPost, "application/json", bytes.Replace(good, []byte("admission.k8s.io/v1"), []byte("admission.k8s.io/v1beta1"), 1), http.StatusBadRequest, "expected an admission.k8s.io/v1 AdmissionReview"},
		{"review without request", http.MethodPost, "application/json", []byte(`{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}`), http.StatusBadRequest, "AdmissionReview has no request"},
		{"request without uid", http.MethodPost, "application/json", []byte(`{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE"}}`), http.StatusBadRequest, "AdmissionReview request has no uid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, reg, h := newServer(t)
			r := httptest.NewRequest(tc.method, webhook.Path, bytes.NewReader(tc.body))
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.reason) {
				t.Errorf("got %d %q, want %d with %q", w.Code, w.Body, tc.status, tc.reason)
			}
			got := testutil.ToFloat64(counter(t, reg, "galley_validation_http_error", map[string]string{"status": itoa(tc.status)}))
			if got != 1 {
				t.Errorf("galley_validation_http_error{status=%d} = %v, want 1", tc.status, got)
			}
			select {
			case <-s.Served():
				t.Error("Served closed by a request that was not a review")
			default:
			}
		})
	}
}

func TestServedAfterFirstReview(t *testing.T) {
	s, _, h := newServer(t)
	select {
	case <-s.Served():
		t.Fatal("Served closed before any review")
	default:
	}
	decodeResponse(t, post(h, "application/json", review(t, admissionv1.Create, invalidVS)))
	select {
	case <-s.Served():
	default:
		t.Fatal("Served still open after a review was answered")
	}
	// Later reviews must not close it again (that would panic).
	decodeResponse(t, post(h, "application/json", review(t, admissionv1.Create, validVS)))
}

func TestLegacyPath(t *testing.T) {
	_, _, h := newServer(t)
	r := httptest.NewRequest(http.MethodPost, "/admitpilot", bytes.NewReader(review(t, admissionv1.Create, validVS)))
	r.Header.Set("Content-Type", "application/json; charset=utf-8")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if out := decodeResponse(t, w); !out.Response.Allowed {
		t.Fatalf("denied: %+v", out.Response.Result)
	}
}

func TestRegisterTwiceFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := webhook.New(slog.New(slog.DiscardHandler), reg, webhook.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := webhook.New(slog.New(slog.DiscardHandler), reg, webhook.Options{}); err == nil {
		t.Fatal("second registration of the same metrics succeeded")
	}
}

// counter finds the one series of a metric whose labels include want.
func counter(t testing.TB, reg *prometheus.Registry, name string, want map[string]string) prometheus.Collector {
	t.Helper()
	return collectorFunc(func(ch chan<- prometheus.Metric) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		metrics:
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				for k, v := range want {
					if labels[k] != v {
						continue metrics
					}
				}
				ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, "", nil, nil), prometheus.CounterValue, m.GetCounter().GetValue())
				return
			}
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, "", nil, nil), prometheus.CounterValue, 0)
	})
}

type collectorFunc func(chan<- prometheus.Metric)

func (f collectorFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

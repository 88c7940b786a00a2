package webhook_test

import (
	"encoding/json"
	"net/http"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/meshd/meshd/galley/internal/cases"
)

// FuzzHandler sends arbitrary bodies to the webhook. Whatever arrives, the
// answer is a 400 with a reason or a 200 carrying an AdmissionReview for the
// same request; never a panic or another status.
func FuzzHandler(f *testing.F) {
	for _, c := range append(append([]cases.Case{}, cases.Compatibility...), cases.Valid[:5]...) {
		f.Add(review(f, admissionv1.Create, c.Doc))
	}
	f.Add(review(f, admissionv1.Delete, validVS))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","object":null}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","object":{"apiVersion":"networking.istio.io/v1","kind":"Gateway","spec":{"servers":[{}]}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`))
	f.Add([]byte(`[]`))
	_, _, h := newServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		w := post(h, "application/json", body)
		switch w.Code {
		case http.StatusBadRequest:
			if w.Body.Len() == 0 {
				t.Fatal("400 without a reason")
			}
		case http.StatusOK:
			var in, out admissionv1.AdmissionReview
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Fatalf("200 without an AdmissionReview response: %v %s", err, w.Body)
			}
			if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
				t.Fatalf("a body that is not a review was answered with 200: %s", body)
			}
			if out.Response.UID != in.Request.UID {
				t.Fatalf("UID %q, want %q", out.Response.UID, in.Request.UID)
			}
			if !out.Response.Allowed && (out.Response.Result == nil || out.Response.Result.Message == "") {
				t.Fatalf("denied without a message: %s", w.Body)
			}
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}

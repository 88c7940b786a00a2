// Package compat checks meshd's validation rules against istiod's own: for
// every object in the shared table (and every input the fuzzer finds), the
// two must agree on accept or reject. This is the compatibility contract of
// galley: accept what istiod accepts, reject what it rejects.
package compat

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/gvk"
	istiovalidation "istio.io/istio/pkg/config/validation"
	istiolog "istio.io/istio/pkg/log"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"

	"github.com/meshd/meshd/galley/internal/cases"
	"github.com/meshd/meshd/galley/validation"
	"github.com/meshd/meshd/pkg/schema"
)

func init() {
	// istiod logs a line per deprecated field it sees; keep test output quiet.
	if s := istiolog.FindScope("validation"); s != nil {
		s.SetOutputLevel(istiolog.ErrorLevel)
	}
}

// istiod runs istiod's validation of the object, as its webhook does.
func istiod(obj schema.Object) (warnings error, err error, ok bool) {
	meta := config.Meta{
		Name:        obj.GetName(),
		Namespace:   obj.GetNamespace(),
		Labels:      obj.GetLabels(),
		Annotations: obj.GetAnnotations(),
		Domain:      "cluster.local",
	}
	var fn istiovalidation.ValidateFunc
	switch o := obj.(type) {
	case *networkingv1.VirtualService:
		meta.GroupVersionKind, fn = gvk.VirtualService, istiovalidation.ValidateVirtualService
		return run(fn, meta, &o.Spec)
	case *networkingv1.DestinationRule:
		meta.GroupVersionKind, fn = gvk.DestinationRule, istiovalidation.ValidateDestinationRule
		return run(fn, meta, &o.Spec)
	case *networkingv1.Gateway:
		meta.GroupVersionKind, fn = gvk.Gateway, istiovalidation.ValidateGateway
		return run(fn, meta, &o.Spec)
	case *networkingv1.ServiceEntry:
		meta.GroupVersionKind, fn = gvk.ServiceEntry, istiovalidation.ValidateServiceEntry
		return run(fn, meta, &o.Spec)
	case *networkingv1.Sidecar:
		meta.GroupVersionKind, fn = gvk.Sidecar, istiovalidation.ValidateSidecar
		return run(fn, meta, &o.Spec)
	case *networkingv1.WorkloadEntry:
		meta.GroupVersionKind, fn = gvk.WorkloadEntry, istiovalidation.ValidateWorkloadEntry
		return run(fn, meta, &o.Spec)
	case *networkingv1.WorkloadGroup:
		meta.GroupVersionKind, fn = gvk.WorkloadGroup, istiovalidation.ValidateWorkloadGroup
		return run(fn, meta, &o.Spec)
	case *securityv1.PeerAuthentication:
		meta.GroupVersionKind, fn = gvk.PeerAuthentication, istiovalidation.ValidatePeerAuthentication
		return run(fn, meta, &o.Spec)
	case *securityv1.AuthorizationPolicy:
		meta.GroupVersionKind, fn = gvk.AuthorizationPolicy, istiovalidation.ValidateAuthorizationPolicy
		return run(fn, meta, &o.Spec)
	case *securityv1.RequestAuthentication:
		meta.GroupVersionKind, fn = gvk.RequestAuthentication, istiovalidation.ValidateRequestAuthentication
		return run(fn, meta, &o.Spec)
	case *telemetryv1.Telemetry:
		meta.GroupVersionKind, fn = gvk.Telemetry, istiovalidation.ValidateTelemetry
		return run(fn, meta, &o.Spec)
	}
	return nil, nil, false
}

func run(fn istiovalidation.ValidateFunc, meta config.Meta, spec config.Spec) (warnings error, err error, ok bool) {
	w, err := fn(config.Config{Meta: meta, Spec: spec})
	return w, err, true
}

// verdict compares both validators on one document. It returns a non-empty
// description when they disagree on accept/reject.
func verdict(doc []byte) (disagreement string, decoded bool) {
	obj, _, err := schema.Decode(doc)
	if err != nil {
		return "", false
	}
	_, ierr, ok := istiod(obj)
	if !ok {
		return "", false
	}
	_, merr := validation.Validate(obj)
	switch {
	case ierr != nil && merr == nil:
		return fmt.Sprintf("istiod rejects but meshd accepts:\n  istiod: %v", ierr), true
	case ierr == nil && merr != nil:
		return fmt.Sprintf("istiod accepts but meshd rejects:\n  meshd: %v", merr), true
	}
	return "", true
}

func TestAgreesWithIstiodOnTheTable(t *testing.T) {
	table := append(append(append([]cases.Case{}, cases.Compatibility...), cases.Invalid...), cases.Valid...)
	for _, tc := range table {
		t.Run(tc.Name, func(t *testing.T) {
			d, ok := verdict([]byte(tc.Doc))
			if !ok {
				t.Fatalf("did not decode")
			}
			if d != "" {
				t.Errorf("%s\n%s", d, tc.Doc)
			}
			if testing.Verbose() && len(tc.Errs) > 0 {
				obj, _, _ := schema.Decode([]byte(tc.Doc))
				_, ierr, _ := istiod(obj)
				_, merr := validation.Validate(obj)
				t.Logf("istiod: %v\nmeshd:  %v", ierr, merr)
			}
		})
	}
}

func TestAgreesWithIstiodOnFiles(t *testing.T) {
	files, _ := filepath.Glob("../validation/testdata/valid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no files")
	}
	for _, f := range files {
		for i, d := range splitDocs(t, f) {
			if dis, _ := verdict(d); dis != "" {
				t.Errorf("%s doc %d: %s", f, i, dis)
			}
		}
	}
}

// FuzzAgreesWithIstiod mutates the table's documents and checks that both
// validators still agree on every mutant that decodes.
func FuzzAgreesWithIstiod(f *testing.F) {
	for _, tc := range append(append(append([]cases.Case{}, cases.Compatibility...), cases.Invalid...), cases.Valid...) {
		f.Add([]byte(tc.Doc))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if d, _ := verdict(doc); d != "" {
			t.Errorf("%s\n%s", d, doc)
		}
	})
}

func splitDocs(t testing.TB, file string) [][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var docs [][]byte
	for {
		d, err := r.Read()
		if err == io.EOF {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
}

package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/meshd/meshd/manifests"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCRDs creates every CRD in manifests.CRDs and waits until the API
// server reports each one Established, so typed clients can use them at once.
func (c *Cluster) installCRDs() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	crds, err := parseCRDs(manifests.CRDs)
	if err != nil {
		return err
	}
	client := c.Dynamic.Resource(crdGVR)
	pending := map[string]bool{}
	// A few at a time: the API server spends its time decoding and
	// validating these large objects, and has two cores to do it on.
	var g errgroup.Group
	g.SetLimit(4)
	for _, crd := range crds {
		pending[crd.GetName()] = true
		g.Go(func() error {
			if _, err := client.Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create CRD %s: %w", crd.GetName(), err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	err = pollUntil(ctx, func() error {
		list, err := client.List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, item := range list.Items {
			if pending[item.GetName()] && established(&item) {
				delete(pending, item.GetName())
			}
		}
		if len(pending) > 0 {
			return fmt.Errorf("not established: %s", strings.Join(sortedNames(pending), ", "))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("install Istio CRDs: %w", err)
	}
	return nil
}

// parseCRDs splits the multi-document YAML into objects, skipping empty ones.
func parseCRDs(data []byte) ([]*unstructured.Unstructured, error) {
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 64<<10)
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		obj := map[string]any{}
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("manifests.CRDs: document %d: %w", i, err)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetKind() != "CustomResourceDefinition" {
			return nil, fmt.Errorf("manifests.CRDs: document %d: kind %q, want CustomResourceDefinition", i, u.GetKind())
		}
		out = append(out, u)
	}
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

func sortedNames(set map[string]bool) []string {
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

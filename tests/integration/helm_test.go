//go:build integration

package integration

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/meshd/meshd/manifests"
	"github.com/meshd/meshd/tests/integration/framework"
)

// decodeObjects splits YAML into objects keyed by kind/namespace/name.
func decodeObjects(t *testing.T, data []byte) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatal(err)
		}
		if len(obj) == 0 {
			continue
		}
		meta, _ := obj["metadata"].(map[string]any)
		key := obj["kind"].(string) + " " + str(meta["namespace"]) + "/" + str(meta["name"])
		if _, dup := out[key]; dup {
			t.Fatalf("%s twice", key)
		}
		out[key] = obj
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// TestHelmChartRendersTheManifests: the chart, rendered by the real Helm CLI
// with default values, is the plain manifests, object for object.
func TestHelmChartRendersTheManifests(t *testing.T) {
	helm := filepath.Join(framework.ToolsDir(), "helm")
	_, file, _, _ := runtime.Caller(0)
	chart := filepath.Join(filepath.Dir(file), "..", "..", "manifests", "charts", "meshd")
	out, err := exec.Command(helm, "template", "meshd", chart, "--include-crds").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("helm template: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("helm template: %v (run hack/build-tools.sh)", err)
	}
	rendered := decodeObjects(t, out)

	var plain bytes.Buffer
	files, err := manifests.FS.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := manifests.FS.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		plain.Write(data)
		plain.WriteString("\n---\n")
	}
	want := decodeObjects(t, plain.Bytes())

	keys := func(m map[string]map[string]any) []string {
		var k []string
		for key := range m {
			k = append(k, key)
		}
		sort.Strings(k)
		return k
	}
	if !reflect.DeepEqual(keys(rendered), keys(want)) {
		t.Fatalf("objects differ:\nchart:     %v\nmanifests: %v", keys(rendered), keys(want))
	}
	for key, obj := range want {
		if !reflect.DeepEqual(rendered[key], obj) {
			t.Errorf("%s differs between the chart and the manifests:\nchart:     %v\nmanifests: %v", key, rendered[key], obj)
		}
	}
}

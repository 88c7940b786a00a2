package validation_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/meshd/meshd/galley/internal/cases"
	"github.com/meshd/meshd/galley/validation"
	"github.com/meshd/meshd/pkg/schema"
)

func TestCompatibility(t *testing.T) { run(t, cases.Compatibility) }
func TestInvalid(t *testing.T)       { run(t, cases.Invalid) }
func TestValid(t *testing.T)         { run(t, cases.Valid) }

// TestValidFiles runs every object in testdata/valid: Bookinfo's config
// and the examples of the seed notes. None may have an error or a warning.
func TestValidFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	n := 0
	for _, f := range files {
		for i, d := range splitDocs(t, f) {
			obj, _, err := schema.Decode(d)
			if err != nil {
				t.Errorf("%s doc %d: decode: %v", f, i, err)
				continue
			}
			n++
			warns, err := validation.Validate(obj)
			if err != nil {
				t.Errorf("%s: %s %s/%s: unexpected error: %v", f, obj.GetObjectKind().GroupVersionKind().Kind, obj.GetNamespace(), obj.GetName(), err)
			}
			if len(warns) > 0 {
				t.Errorf("%s: %s %s/%s: unexpected warnings: %q", f, obj.GetObjectKind().GroupVersionKind().Kind, obj.GetNamespace(), obj.GetName(), warns)
			}
		}
	}
	if n < 30 {
		t.Errorf("only %d objects in testdata/valid", n)
	}
}

func TestTableSizes(t *testing.T) {
	// The acceptance bar of the issue: at least 60 rejected objects, 20 accepted.
	bad, good := 0, 0
	for _, tc := range append(append(append([]cases.Case{}, cases.Compatibility...), cases.Invalid...), cases.Valid...) {
		if len(tc.Errs) > 0 {
			bad++
		} else {
			good++
		}
	}
	if bad < 60 || good < 20 {
		t.Errorf("tables hold %d invalid and %d valid objects; want at least 60 and 20", bad, good)
	}
}

func TestErrorsAreFieldErrors(t *testing.T) {
	obj, _, err := schema.Decode([]byte(cases.Invalid[len(cases.Invalid)-1].Doc))
	if err != nil {
		t.Fatal(err)
	}
	_, err = validation.Validate(obj)
	for _, e := range validation.Errors(err) {
		var fe *validation.FieldError
		if !errors.As(e, &fe) || fe.Path == "" {
			t.Errorf("error %q does not name its field", e)
		}
	}
}

func run(t *testing.T, table []cases.Case) {
	t.Helper()
	seen := map[string]bool{}
	for _, tc := range table {
		if seen[tc.Name] {
			t.Fatalf("duplicate test name %q", tc.Name)
		}
		seen[tc.Name] = true
		t.Run(tc.Name, func(t *testing.T) {
			obj, _, err := schema.Decode([]byte(tc.Doc))
			if err != nil {
				t.Fatalf("decode: %v\n%s", err, tc.Doc)
			}
			warns, err := validation.Validate(obj)
			var msgs []string
			for _, e := range validation.Errors(err) {
				msgs = append(msgs, e.Error())
			}
			matchAll(t, "error", msgs, tc.Errs)
			matchAll(t, "warning", warns, tc.Warns)
			if err != nil && len(tc.Errs) > 0 && !strings.Contains(err.Error(), tc.Errs[0]) {
				t.Errorf("the aggregated message %q does not hold %q", err, tc.Errs[0])
			}
		})
	}
}

// matchAll checks that got and want (substrings) pair up one to one.
func matchAll(t *testing.T, what string, got, want []string) {
	t.Helper()
	used := make([]bool, len(got))
	for _, w := range want {
		found := false
		for i, g := range got {
			if !used[i] && strings.Contains(g, w) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("missing %s %q; got %q", what, w, got)
		}
	}
	for i, g := range got {
		if !used[i] {
			t.Errorf("unexpected %s %q", what, g)
		}
	}
}

func splitDocs(t *testing.T, file string) [][]byte {
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
			t.Fatalf("%s: %v", file, err)
		}
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
}

func stripComments(d []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(d, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

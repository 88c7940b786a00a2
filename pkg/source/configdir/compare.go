package configdir

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshd/meshd/pkg/schema"
)

// sameContent reports whether a re-read object equals the stored one, apart
// from the metadata the loader stamps.
func sameContent(old, cur schema.Object) bool {
	a, b := old.DeepCopyObject().(schema.Object), cur.DeepCopyObject().(schema.Object)
	for _, o := range []schema.Object{a, b} {
		o.SetResourceVersion("")
		o.SetUID("")
		o.SetGeneration(0)
		o.SetCreationTimestamp(metav1.Time{})
	}
	// Compare encodings: Istio specs are protos, which reflection-based
	// equality must not walk.
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

func bufioReader(data []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }

// stripComments drops comment-only lines so that a document holding only
// comments counts as empty.
func stripComments(doc []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(doc), "\n") {
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "\n"))
}

// describeDoc names a document by kind and name when those can be read, so
// that an error says which object it is about.
func describeDoc(doc []byte) string {
	var head struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if yaml.Unmarshal(doc, &head) != nil || head.Kind == "" {
		return ""
	}
	name := head.Metadata.Name
	if head.Metadata.Namespace != "" {
		name = head.Metadata.Namespace + "/" + name
	}
	return " (" + head.Kind + " " + name + ")"
}

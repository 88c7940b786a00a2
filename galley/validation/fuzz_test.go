package validation_test

import (
	"encoding/json"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshd/meshd/galley/internal/cases"
	"github.com/meshd/meshd/galley/validation"
	"github.com/meshd/meshd/pkg/schema"
)

// FuzzDecodeKind feeds arbitrary JSON to the strict decoder of each Istio
// kind, then to the rules. Neither may panic, and an object that decodes
// must survive a round trip: encoding it and decoding it again gives an
// object with the same verdict (so what meshd stores, it can read back).
func FuzzDecodeKind(f *testing.F) {
	for _, c := range append(append(append([]cases.Case{}, cases.Compatibility...), cases.Invalid...), cases.Valid...) {
		_, kind, err := schema.Decode([]byte(c.Doc))
		if err != nil {
			f.Fatal(err)
		}
		js, err := yaml.YAMLToJSON([]byte(c.Doc))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(kindIndex(kind), js)
	}
	f.Fuzz(func(t *testing.T, k uint8, data []byte) {
		kind := schema.IstioConfig[int(k)%len(schema.IstioConfig)]
		obj, err := schema.DecodeKind(kind, data)
		if err != nil {
			return
		}
		_, verr := validation.Validate(obj)
		again, err := json.Marshal(obj)
		if err != nil {
			t.Fatalf("cannot encode a decoded %s: %v", kind.Name, err)
		}
		obj2, err := schema.DecodeKind(kind, again)
		if err != nil {
			t.Fatalf("a decoded %s does not decode again: %v\nfirst:  %s\nsecond: %s", kind.Name, err, data, again)
		}
		if _, verr2 := validation.Validate(obj2); (verr == nil) != (verr2 == nil) {
			t.Fatalf("verdict changed over a round trip: %v then %v\nfirst:  %s\nsecond: %s", verr, verr2, data, again)
		}
	})
}

func kindIndex(k schema.Kind) uint8 {
	for i, x := range schema.IstioConfig {
		if x.Name == k.Name {
			return uint8(i)
		}
	}
	panic(k.Name)
}

// Package manifests holds meshd's deployment manifests, embedded so that
// tests and tools apply exactly the files users apply with
// `kubectl apply -f manifests/`.
//
// The Istio CRDs are generated, never hand-edited: `go generate ./manifests`
// copies them from the istio.io/api module that go.mod pins.
package manifests

import "embed"

//go:generate sh -c "cp \"$(go list -m -f '{{.Dir}}' istio.io/api)/kubernetes/customresourcedefinitions.gen.yaml\" 00-crds.gen.yaml && chmod 644 00-crds.gen.yaml"

// CRDs is the Istio CRD file, from istio.io/api.
//
//go:embed 00-crds.gen.yaml
var CRDs []byte

// FS holds every manifest file.
//
//go:embed *.yaml
var FS embed.FS

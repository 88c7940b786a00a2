# meshd's build and test entry points. `make test` is what CI runs.
export GOTOOLCHAIN := local
TOOLS ?= $(or $(MESHD_TOOLS_CACHE),$(HOME)/.cache/meshd/tools)
export MESHD_TOOLS_CACHE := $(TOOLS)

.PHONY: run test tools lint unit integration bench generate

# Run meshd on the embedded default: Istio's Bookinfo in file mode.
run:
	go run ./cmd/meshd --config-dir examples/bookinfo

# Every test: lint, unit tests, then integration tests against a real
# kube-apiserver and etcd (built once into $(TOOLS)).
test: lint unit integration

# The real binaries the integration tests run, built from the Go module proxy.
tools:
	hack/build-tools.sh

lint: tools
	@bad=$$(gofmt -l $$(git ls-files '*.go' | grep -v /testdata/)); if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi
	go vet ./...
	$(TOOLS)/staticcheck ./...

unit:
	go test -race -count=1 ./...

integration: tools
	hack/install-test-deps.sh
	go test -race -count=1 -timeout 40m -tags integration ./tests/integration/... ./tests/load/...

bench:
	go test -run '^$$' -bench . -benchmem ./...

generate:
	go generate ./...

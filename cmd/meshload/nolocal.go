//go:build !integration

package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/meshd/meshd/tests/load"
)

// startLocal needs the integration test framework, which only builds
// with -tags integration.
func startLocal(context.Context, *slog.Logger, *load.Config) (func(), error) {
	return nil, errors.New("--start-apiserver needs a build with -tags integration (go run -tags integration ./cmd/meshload ...)")
}

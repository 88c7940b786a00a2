//go:build integration

package main

import (
	"context"
	"log/slog"

	"github.com/meshd/meshd/tests/load"
)

// startLocal starts an API server and meshd and points cfg at them.
func startLocal(ctx context.Context, log *slog.Logger, cfg *load.Config) (func(), error) {
	l, err := load.StartLocal(ctx, log)
	if err != nil {
		return nil, err
	}
	cfg.Kubeconfig, cfg.XDSAddress, cfg.PID = l.Kubeconfig, l.XDSAddress, l.PID
	if cfg.PprofURL == "" {
		cfg.PprofURL = l.DebugURL
	}
	log.Info("local control plane", "kubeconfig", l.Kubeconfig, "xds", l.XDSAddress, "pid", l.PID, "pprof", l.DebugURL+"/debug/pprof/")
	return l.Stop, nil
}

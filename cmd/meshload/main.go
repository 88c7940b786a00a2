// Command meshload measures an Istio-compatible control plane: it writes a
// synthetic mesh into an API server, connects simulated Envoy sidecars over
// SotW or Delta ADS (and optionally proxyless gRPC clients), and reports cold-start, config-change and endpoint-churn
// convergence with the control plane's CPU and memory. See BENCHMARKS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshd/meshd/tests/load"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "meshload:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var cfg load.Config
	fs := flag.NewFlagSet("meshload", flag.ContinueOnError)
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "API server to write the mesh into")
	fs.StringVar(&cfg.XDSAddress, "xds-address", "127.0.0.1:15010", "control plane's plaintext ADS address")
	fs.IntVar(&cfg.PID, "pid", 0, "control plane's process ID, sampled for CPU and RSS (0: not sampled)")
	fs.IntVar(&cfg.Services, "services", 100, "services in the mesh")
	fs.IntVar(&cfg.Namespaces, "namespaces", 4, "namespaces the services spread over")
	fs.IntVar(&cfg.VirtualServices, "virtual-services", 0, "services with a VirtualService and a DestinationRule (default services/10)")
	fs.IntVar(&cfg.Proxies, "proxies", 100, "simulated sidecars")
	fs.StringVar(&cfg.XDS, "xds", "sotw", "protocol the sidecars speak: sotw (State of the World ADS) or delta (incremental ADS)")
	fs.IntVar(&cfg.Proxyless, "proxyless", 0, "simulated proxyless gRPC clients, besides the sidecars")
	fs.Int64Var(&cfg.Seed, "seed", 1, "seed of the mesh's shape")
	fs.StringVar(&cfg.NamespacePrefix, "namespace-prefix", "meshload", "prefix of the namespaces the mesh is written to")
	fs.IntVar(&cfg.ChurnRate, "churn-rate", 10, "endpoint churn: EndpointSlice updates per second")
	fs.DurationVar(&cfg.ChurnFor, "churn-for", 0, "endpoint churn: how long (default 10s)")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "per scenario: longest wait for convergence (default 5m)")
	minMem := fs.Int64("min-mem-available-mib", 2048, "stop cleanly when the machine's MemAvailable drops below this")
	fs.BoolVar(&cfg.Keep, "keep", false, "leave the mesh in the API server afterwards")
	fs.StringVar(&cfg.PprofURL, "pprof-url", "", "control plane's debug address serving /debug/pprof (http://host:8080); set by --start-apiserver")
	fs.StringVar(&cfg.ProfileDir, "profile-dir", "", "save a CPU profile of the run's first --profile-for and a heap profile after each scenario here")
	fs.DurationVar(&cfg.ProfileFor, "profile-for", 0, "length of the CPU profile (default 30s)")
	out := fs.String("out", "meshload.json", "JSON report file")
	local := fs.Bool("start-apiserver", false, "start a local etcd + kube-apiserver and a meshd built from this checkout, and measure that (needs -tags integration and hack/build-tools.sh)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.MinMemAvailable = *minMem << 20

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if *local {
		stop, err := startLocal(ctx, log, &cfg)
		if err != nil {
			return err
		}
		defer stop()
	} else if cfg.Kubeconfig == "" {
		return errors.New("--kubeconfig is required (or --start-apiserver)")
	}
	rep, runErr := load.Run(ctx, log, cfg)
	if rep != nil {
		rep.WriteTable(os.Stdout)
		if err := rep.WriteJSON(*out); err != nil {
			return err
		}
	}
	return runErr
}

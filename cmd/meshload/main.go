// Command meshload measures Istio-compatible control planes: it writes a
// synthetic mesh into an API server, connects simulated Envoy sidecars over
// SotW or Delta ADS (and optionally proxyless gRPC clients), and reports
// cold-start, config-change and endpoint-churn convergence, a CSR storm and
// a webhook load, with each control plane's CPU and memory. Given two
// targets (--target meshd,istiod) it measures them one after the other on
// the same mesh and prints their ratios. See BENCHMARKS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
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

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string) error {
	var cfg load.Config
	var running load.Target
	var istiodEnv listFlag
	fs := flag.NewFlagSet("meshload", flag.ContinueOnError)
	targets := fs.String("target", load.TargetMeshd, "control planes to start and measure, one at a time, on the same mesh: meshd, istiod or meshd,istiod (ratios printed)")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "API server to write the mesh into (default: start a local etcd + kube-apiserver built by hack/build-tools.sh)")
	fs.StringVar(&running.XDSAddress, "xds-address", "", "measure a control plane already running with plaintext ADS here instead of starting --target (needs --kubeconfig)")
	fs.StringVar(&running.CAAddress, "ca-address", "", "with --xds-address: its TLS gRPC address serving IstioCertificateService (empty: no CSR storm)")
	fs.StringVar(&running.WebhookURL, "webhook-url", "", "with --xds-address: its validating webhook, https://HOST:PORT/validate (empty: no webhook load)")
	fs.IntVar(&running.PID, "pid", 0, "with --xds-address: its process ID, sampled for CPU and RSS (0: not sampled)")
	fs.StringVar(&running.PprofURL, "pprof-url", "", "with --xds-address: its debug address serving /debug/pprof (http://HOST:8080)")
	fs.Var(&istiodEnv, "istiod-env", "KEY=VALUE for istiod's environment, repeatable (PILOT_MAX_REQUESTS_PER_SECOND=4)")
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
	fs.IntVar(&cfg.CSRs, "csrs", 1000, "CSR storm: certificates requested per key type (ECDSA P-256, RSA 2048); -1 skips it")
	fs.IntVar(&cfg.CSRConcurrency, "csr-concurrency", 50, "CSR storm: workloads requesting at once, each on its own connection")
	fs.IntVar(&cfg.WebhookRate, "webhook-rate", 500, "webhook load: AdmissionReviews per second, open loop; -1 skips it")
	fs.DurationVar(&cfg.WebhookFor, "webhook-for", 0, "webhook load: how long (default 10s)")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "per scenario: longest wait for convergence (default 5m)")
	minMem := fs.Int64("min-mem-available-mib", 2048, "stop a target cleanly when the machine's MemAvailable drops below this")
	fs.BoolVar(&cfg.Keep, "keep", false, "leave the mesh in the API server afterwards")
	fs.StringVar(&cfg.ProfileDir, "profile-dir", "", "save each target's CPU profile of the run's first --profile-for and a heap profile after each scenario in DIR/TARGET")
	fs.DurationVar(&cfg.ProfileFor, "profile-for", 0, "length of the CPU profile (default 30s)")
	out := fs.String("out", "meshload.json", "JSON report file")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.MinMemAvailable = *minMem << 20
	if st, err := os.Stderr.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
		cfg.Progress = os.Stderr
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	var starters []load.Starter
	if running.XDSAddress != "" {
		if cfg.Kubeconfig == "" {
			return errors.New("--xds-address needs --kubeconfig: the API server that control plane watches")
		}
		running.Name = "external"
		starters = append(starters, load.Running(running))
	} else {
		for _, name := range strings.Split(*targets, ",") {
			switch name = strings.TrimSpace(name); name {
			case load.TargetMeshd:
				starters = append(starters, func(ctx context.Context) (*load.Target, func(), error) {
					p, err := load.StartMeshd(ctx, log, cfg.Kubeconfig)
					if err != nil {
						return nil, nil, err
					}
					return &p.Target, p.Stop, nil
				})
			case load.TargetIstiod:
				starters = append(starters, func(ctx context.Context) (*load.Target, func(), error) {
					p, err := load.StartIstiod(ctx, log, cfg.Kubeconfig, istiodEnv)
					if err != nil {
						return nil, nil, err
					}
					return &p.Target, p.Stop, nil
				})
			default:
				return fmt.Errorf("--target %q: want meshd, istiod or a comma-separated list of them", name)
			}
		}
		if cfg.Kubeconfig == "" {
			api, err := load.StartAPIServer(ctx, log)
			if err != nil {
				return err
			}
			defer api.Stop()
			cfg.Kubeconfig = api.Kubeconfig
		}
	}

	reports, runErr := load.Run(ctx, log, cfg, starters...)
	for i, r := range reports {
		if i > 0 {
			fmt.Println()
		}
		r.WriteTable(os.Stdout)
	}
	if len(reports) == 2 {
		fmt.Println()
		load.WriteRatios(os.Stdout, reports[0], reports[1])
	}
	if len(reports) > 0 {
		if err := load.WriteJSON(*out, reports); err != nil {
			return errors.Join(runErr, err)
		}
	}
	return runErr
}

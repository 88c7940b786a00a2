// Command meshd is the meshd control plane: Istio's istiod in one binary
// (pilot xDS, citadel CA, galley validation, telemetry), reading a
// Kubernetes cluster or, in file mode, a directory of YAML.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshd/meshd/pkg/bootstrap"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run is main without the exit, for tests. A bad flag or setting is one line
// on stderr and exit code 2; a failure while running is exit code 1; a
// SIGTERM or SIGINT drains and exits 0.
func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("meshd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var opts bootstrap.Options
	opts.Flags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintln(stderr, "Usage: meshd [--config-dir DIR | --kubeconfig FILE] [flags]")
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "meshd: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meshd: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := opts.Complete(); err != nil {
		fmt.Fprintf(stderr, "meshd: %v\n", err)
		return 2
	}
	level, _ := bootstrap.ParseLevel(opts.LogLevel)
	hopts := &slog.HandlerOptions{Level: level}
	var handler slog.Handler = slog.NewTextHandler(stderr, hopts)
	if opts.LogFormat == "json" {
		handler = slog.NewJSONHandler(stderr, hopts)
	}
	log := slog.New(handler)

	srv, err := bootstrap.New(opts, log)
	if err != nil {
		fmt.Fprintf(stderr, "meshd: %v\n", err)
		return 2
	}
	if err := srv.Listen(); err != nil {
		fmt.Fprintf(stderr, "meshd: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := srv.Run(ctx); err != nil {
		log.Error("meshd failed", "err", err)
		return 1
	}
	return 0
}

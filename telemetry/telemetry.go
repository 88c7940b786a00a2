// Package telemetry is meshd's mesh-traffic subsystem: Envoy's access-log
// and metrics services on the shared gRPC servers (telemetry/als), Istio's
// standard traffic metrics at /stats/prometheus (telemetry/traffic), and a
// windowed service graph at /api/graph and /ui/graph (telemetry/graph).
// telemetry/provider decides which proxies stream to meshd.
//
// The traffic metrics live in a registry of their own, apart from the
// control-plane registry served at /metrics: they are the mesh's data, sized
// by its workloads, and a scrape job can take one without the other.
package telemetry

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/meshd/meshd/pkg/component"
	"github.com/meshd/meshd/pkg/store"
	"github.com/meshd/meshd/telemetry/als"
	"github.com/meshd/meshd/telemetry/graph"
	"github.com/meshd/meshd/telemetry/traffic"
)

// StatsPath is where the traffic metrics are served, as on an Istio sidecar.
const StatsPath = "/stats/prometheus"

// Options tune the subsystem; the zero value is meshd's defaults.
type Options struct {
	Traffic traffic.Options
	Graph   graph.Options
	ALS     als.Options
}

// Telemetry is the wired subsystem.
type Telemetry struct {
	// Registry holds the istio_* traffic families served at StatsPath.
	Registry   *prometheus.Registry
	Aggregator *traffic.Aggregator
	Graph      *graph.Graph
	ALS        *als.Server

	log *slog.Logger
}

// New builds the subsystem over the store. Its own health metrics
// (meshd_telemetry_*) go to ctrl, the control-plane registry.
func New(log *slog.Logger, st *store.Store, ctrl prometheus.Registerer, opts Options) *Telemetry {
	t := &Telemetry{
		Registry:   prometheus.NewRegistry(),
		Aggregator: traffic.NewAggregator(opts.Traffic, ctrl),
		Graph:      graph.New(opts.Graph, ctrl),
		log:        log,
	}
	t.Registry.MustRegister(t.Aggregator)
	t.ALS = als.New(log, st, traffic.Sinks{t.Aggregator, t.Graph}, t.Aggregator, ctrl, opts.ALS)
	return t
}

// Register adds the access-log and metrics services to a gRPC server.
func (t *Telemetry) Register(g *grpc.Server) { t.ALS.Register(g) }

// Routes serves StatsPath, /api/graph and /ui/graph.
func (t *Telemetry) Routes(mux *http.ServeMux) {
	mux.Handle(StatsPath, promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{
		// One unexposable series must not blank the whole page.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      printLogger{t.log},
	}))
	t.Graph.Routes(mux)
}

// Component expires idle traffic series; it runs on every replica, since
// each replica aggregates the streams it receives.
func (t *Telemetry) Component() component.Component {
	return component.Func(t.Aggregator.Run)
}

// printLogger adapts slog to promhttp's logger.
type printLogger struct{ log *slog.Logger }

func (p printLogger) Println(v ...any) {
	p.log.Warn("serving traffic metrics", "error", fmt.Sprint(v...))
}

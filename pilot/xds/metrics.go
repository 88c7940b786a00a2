package xds

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics carries Istio's pilot metric names, so existing dashboards work.
type metrics struct {
	xdsClients        *prometheus.GaugeVec
	pushes            *prometheus.CounterVec
	convergence       prometheus.Histogram
	pushTime          *prometheus.HistogramVec
	rejects           *prometheus.CounterVec
	typeRejects       map[string]*prometheus.GaugeVec
	services          prometheus.Gauge
	debounceTime      prometheus.Histogram
	pushTriggers      *prometheus.CounterVec
	inboundUpdates    *prometheus.CounterVec
	configSize        *prometheus.HistogramVec
	internalErrors    prometheus.Counter
	skipped           *prometheus.CounterVec
	dropped           *prometheus.CounterVec
	snapshotBuildTime prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		xdsClients: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pilot_xds", Help: "Number of endpoints connected to this pilot using XDS.",
		}, []string{"version"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_xds_pushes", Help: "Pilot build and send errors for lds, rds, cds and eds.",
		}, []string{"type"}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pilot_proxy_convergence_time",
			Help:    "Delay in seconds between config change and a proxy receiving all required configuration.",
			Buckets: []float64{.1, .5, 1, 3, 5, 10, 20, 30},
		}),
		pushTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pilot_xds_push_time",
			Help:    "Total time in seconds Pilot takes to push lds, rds, cds and eds.",
			Buckets: []float64{.01, .1, 1, 3, 5, 10, 20, 30},
		}, []string{"type"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_total_xds_rejects", Help: "Total number of XDS responses from pilot rejected by proxy.",
		}, []string{"type"}),
		typeRejects: map[string]*prometheus.GaugeVec{},
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pilot_services", Help: "Total services known to pilot.",
		}),
		debounceTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pilot_debounce_time",
			Help:    "Delay in seconds between the first config enters debouncing and the merged push request is pushed into the push queue.",
			Buckets: []float64{.01, .1, 1, 3, 5, 10, 20, 30},
		}),
		pushTriggers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_push_triggers", Help: "Total number of times a push was triggered, labeled by reason for the push.",
		}, []string{"type"}),
		inboundUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_inbound_updates", Help: "Total number of updates received by pilot.",
		}, []string{"type"}),
		configSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pilot_xds_config_size_bytes",
			Help:    "Distribution of configuration sizes pushed to clients",
			Buckets: []float64{1, 10000, 1000000, 4000000, 10000000, 40000000},
		}, []string{"type"}),
		internalErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pilot_total_xds_internal_errors", Help: "Total number of internal XDS errors in pilot.",
		}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_config_skipped", Help: "Objects (or parts of objects) skipped as invalid while building the mesh snapshot, by kind.",
		}, []string{"kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_config_dropped_routes", Help: "Routes (or mirrors) of VirtualServices left out of generated config as invalid: an unknown subset or host, weights adding up to 0.",
		}, []string{"what"}),
		snapshotBuildTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pilot_snapshot_build_time",
			Help:    "Time in seconds to build a mesh snapshot after a debounced change.",
			Buckets: []float64{.001, .01, .1, 1, 5},
		}),
	}
	for _, t := range []string{"cds", "eds", "lds", "rds"} {
		m.typeRejects[t] = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pilot_xds_" + t + "_reject", Help: "Pilot rejected " + t + " configs.",
		}, []string{"node", "err"})
	}
	if reg == nil {
		return m
	}
	m.xdsClients = register(reg, m.xdsClients)
	m.pushes = register(reg, m.pushes)
	m.convergence = register(reg, m.convergence)
	m.pushTime = register(reg, m.pushTime)
	m.rejects = register(reg, m.rejects)
	for t, g := range m.typeRejects {
		m.typeRejects[t] = register(reg, g)
	}
	m.services = register(reg, m.services)
	m.debounceTime = register(reg, m.debounceTime)
	m.pushTriggers = register(reg, m.pushTriggers)
	m.inboundUpdates = register(reg, m.inboundUpdates)
	m.configSize = register(reg, m.configSize)
	m.internalErrors = register(reg, m.internalErrors)
	m.skipped = register(reg, m.skipped)
	m.dropped = register(reg, m.dropped)
	m.snapshotBuildTime = register(reg, m.snapshotBuildTime)
	return m
}

// register adds c to reg, or returns the collector already registered
// under its name (a second server on one registry, as in tests).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// truncate keeps metric label values short.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

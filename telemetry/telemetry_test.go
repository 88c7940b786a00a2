package telemetry

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"github.com/meshd/meshd/pkg/store"
	"github.com/meshd/meshd/telemetry/traffic"
)

// TestWiring builds the subsystem as bootstrap does: beside a control-plane
// registry that already has collectors, on shared servers.
func TestWiring(t *testing.T) {
	ctrl := prometheus.NewRegistry()
	ctrl.MustRegister(collectors.NewGoCollector())
	tel := New(slog.New(slog.DiscardHandler), store.NewMemory(), ctrl, Options{})
	plain, secure := grpc.NewServer(), grpc.NewServer()
	tel.Register(plain)
	tel.Register(secure)
	for _, svc := range []string{"envoy.service.accesslog.v3.AccessLogService", "envoy.service.metrics.v3.MetricsService"} {
		if _, ok := plain.GetServiceInfo()[svc]; !ok {
			t.Errorf("%s not registered", svc)
		}
	}
	mux := http.NewServeMux()
	tel.Routes(mux)

	l := traffic.Labels{Reporter: traffic.ReporterDestination, DestinationServiceName: "reviews", RequestProtocol: "http", ResponseCode: "200"}
	l.Normalize()
	tel.Aggregator.Record([]traffic.Record{{Kind: traffic.HTTP, Labels: l, DurationMillis: 3}})

	get := func(path string) string {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, rec.Code)
		}
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	stats := get(StatsPath)
	if !strings.Contains(stats, `istio_requests_total{`) || strings.Contains(stats, "go_goroutines") || strings.Contains(stats, "meshd_telemetry") {
		t.Errorf("%s should hold the istio_* families only:\n%s", StatsPath, stats)
	}
	get("/api/graph")
	get("/ui/graph")

	fams, err := ctrl.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "meshd_telemetry") {
			names = append(names, f.GetName())
		}
	}
	if len(names) == 0 {
		t.Errorf("no meshd_telemetry_* families in the control-plane registry")
	}
}

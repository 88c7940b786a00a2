package server

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshd/meshd/citadel/ca"
)

// metrics carry Istio's citadel_server_* names, so that existing dashboards
// and alerts keep working.
type metrics struct {
	csr          prometheus.Counter
	success      prometheus.Counter
	authnFailure prometheus.Counter
	signErr      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, c *ca.CA) (*metrics, error) {
	m := &metrics{
		csr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_csr_count",
			Help: "The number of CSRs received by Citadel server.",
		}),
		success: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_success_cert_issuance_count",
			Help: "The number of certificates issuances that have succeeded.",
		}),
		authnFailure: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_authentication_failure_count",
			Help: "The number of authentication failures.",
		}),
		signErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "citadel_server_csr_sign_err_count",
			Help: "The number of errors occurred when signing the CSR.",
		}, []string{"error"}),
	}
	if reg == nil {
		return m, nil
	}
	rootExpiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "citadel_server_root_cert_expiry_timestamp",
		Help: "The unix timestamp, in seconds, when the root cert will expire.",
	}, func() float64 {
		if roots := c.Roots(); len(roots) > 0 {
			return float64(roots[0].NotAfter.Unix())
		}
		return 0
	})
	for _, col := range []prometheus.Collector{m.csr, m.success, m.authnFailure, m.signErr, rootExpiry} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("registering CA metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) signError(label string) { m.signErr.WithLabelValues(label).Inc() }

package als

import (
	"errors"
	"fmt"
	"math"
	"sort"

	dto "github.com/prometheus/client_model/go"

	"github.com/meshd/meshd/telemetry/traffic"
)

// The Istio families a proxy's metrics-service stream may carry; all its
// other stats (thousands of Envoy cluster and listener stats) are skipped
// unread. Envoy must emit tags as labels (emit_tags_as_labels) and report
// counters cumulatively (its default).
const (
	famRequests      = "istio_requests_total"
	famDuration      = "istio_request_duration_milliseconds"
	famRequestBytes  = "istio_request_bytes"
	famResponseBytes = "istio_response_bytes"
	famTCPSent       = "istio_tcp_sent_bytes_total"
	famTCPReceived   = "istio_tcp_received_bytes_total"
	famTCPOpened     = "istio_tcp_connections_opened_total"
	famTCPClosed     = "istio_tcp_connections_closed_total"
)

// snapshotOf reads the Istio families of one metrics-service message into
// a snapshot, validating what it reads.
func snapshotOf(families []*dto.MetricFamily) (*traffic.Snapshot, error) {
	snap := &traffic.Snapshot{HTTP: map[traffic.Labels]*traffic.HTTPTotals{}, TCP: map[traffic.Labels]*traffic.TCPTotals{}}
	var errs errorList
	for i, f := range families {
		if f == nil {
			errs.add("envoy_metrics[%d]: empty family", i)
			continue
		}
		name := f.GetName()
		switch name {
		case famRequests, famDuration, famRequestBytes, famResponseBytes,
			famTCPSent, famTCPReceived, famTCPOpened, famTCPClosed:
		default:
			continue
		}
		for j, m := range f.GetMetric() {
			if err := addMetric(snap, name, m); err != nil {
				errs.add("envoy_metrics[%d] (%s).metric[%d]: %v", i, name, j, err)
			}
		}
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return snap, nil
}

func addMetric(snap *traffic.Snapshot, family string, m *dto.Metric) error {
	if m == nil {
		return errors.New("empty metric")
	}
	var l traffic.Labels
	for _, p := range m.GetLabel() {
		l.Set(p.GetName(), p.GetValue())
	}
	l.Normalize()
	switch family {
	case famRequests:
		v, err := counterValue(m)
		if err != nil {
			return err
		}
		httpTotals(snap, l).Requests += v
	case famDuration, famRequestBytes, famResponseBytes:
		h, err := histogramOf(m.GetHistogram())
		if err != nil {
			return err
		}
		t := httpTotals(snap, l)
		switch family {
		case famDuration:
			t.Duration = h
		case famRequestBytes:
			t.RequestBytes = h
		default:
			t.ResponseBytes = h
		}
	default:
		v, err := counterValue(m)
		if err != nil {
			return err
		}
		l.ResponseCode, l.GRPCResponseStatus = "", ""
		t := snap.TCP[l]
		if t == nil {
			t = &traffic.TCPTotals{}
			snap.TCP[l] = t
		}
		switch family {
		case famTCPSent:
			t.SentBytes += v
		case famTCPReceived:
			t.ReceivedBytes += v
		case famTCPOpened:
			t.Opened += v
		default:
			t.Closed += v
		}
	}
	return nil
}

func httpTotals(snap *traffic.Snapshot, l traffic.Labels) *traffic.HTTPTotals {
	t := snap.HTTP[l]
	if t == nil {
		t = &traffic.HTTPTotals{}
		snap.HTTP[l] = t
	}
	return t
}

func counterValue(m *dto.Metric) (uint64, error) {
	var v float64
	switch {
	case m.GetCounter() != nil:
		v = m.GetCounter().GetValue()
	case m.GetUntyped() != nil:
		v = m.GetUntyped().GetValue()
	default:
		return 0, errors.New("not a counter")
	}
	if math.IsNaN(v) || v < 0 || v > math.MaxUint64/2 {
		return 0, fmt.Errorf("counter value %v out of range", v)
	}
	return uint64(v), nil
}

// histogramOf maps a proxy's cumulative histogram onto traffic.Buckets.
// Istio's proxies use the same bounds, so this is usually exact; for other
// bounds each of ours gets the count at the largest bound at or below it,
// which keeps the histogram valid and errs low.
func histogramOf(h *dto.Histogram) (traffic.Histogram, error) {
	var out traffic.Histogram
	if h == nil {
		return out, errors.New("not a histogram")
	}
	bs := append([]*dto.Bucket(nil), h.GetBucket()...)
	sort.SliceStable(bs, func(i, j int) bool { return bs[i].GetUpperBound() < bs[j].GetUpperBound() })
	total := h.GetSampleCount()
	var last uint64
	for k, b := range bs {
		if math.IsNaN(b.GetUpperBound()) {
			return out, fmt.Errorf("bucket[%d]: upper bound is NaN", k)
		}
		if b.GetCumulativeCount() < last {
			return out, fmt.Errorf("bucket[%d] (le=%g): cumulative count %d below the previous bucket's %d", k, b.GetUpperBound(), b.GetCumulativeCount(), last)
		}
		last = b.GetCumulativeCount()
	}
	if last > total {
		return out, fmt.Errorf("sample_count %d below the buckets' %d", total, last)
	}
	var prev uint64
	j := 0
	var at uint64
	for i, bound := range traffic.Buckets {
		for j < len(bs) && bs[j].GetUpperBound() <= bound {
			at = bs[j].GetCumulativeCount()
			j++
		}
		out.Counts[i] = at - prev
		prev = at
	}
	out.Counts[len(traffic.Buckets)] = total - prev
	out.Sum = h.GetSampleSum()
	return out, nil
}

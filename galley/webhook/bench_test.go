package webhook_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

// BenchmarkReviewsHTTPS measures the webhook as the API server sees it:
// reviews POSTed over HTTPS (HTTP/2) by concurrent clients, half of them
// for valid objects and half for invalid ones. It reports reviews per
// second and the 99th percentile latency of one review.
func BenchmarkReviewsHTTPS(b *testing.B) {
	_, _, h := newServer(b)
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	client := srv.Client()
	url := srv.URL + "/validate"
	bodies := [][]byte{review(b, admissionv1.Create, validVS), review(b, admissionv1.Create, invalidVS)}

	var mu sync.Mutex
	var latencies []time.Duration
	b.SetParallelism(8) // 8 clients per CPU
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var local []time.Duration
		i := 0
		for pb.Next() {
			i++
			t0 := time.Now()
			resp, err := client.Post(url, "application/json", bytes.NewReader(bodies[i%2]))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
			local = append(local, time.Since(t0))
		}
		mu.Lock()
		latencies = append(latencies, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "reviews/s")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
}

// BenchmarkReview measures decoding and validation alone, without HTTP.
func BenchmarkReview(b *testing.B) {
	s, _, _ := newServer(b)
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(review(b, admissionv1.Create, validVS), &ar); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !s.Review(ar.Request).Allowed {
			b.Fatal("denied")
		}
	}
}

package load

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// review is an AdmissionReview of a valid VirtualService create, the
// request the API server sends the webhook for `kubectl apply`; %s is the
// request's UID, which the answer must echo.
const review = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"%s",` +
	`"kind":{"group":"networking.istio.io","version":"v1","kind":"VirtualService"},` +
	`"resource":{"group":"networking.istio.io","version":"v1","resource":"virtualservices"},` +
	`"name":"reviews","namespace":"meshload-webhook","operation":"CREATE",` +
	`"userInfo":{"username":"meshload"},` +
	`"object":{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"reviews","namespace":"meshload-webhook"},` +
	`"spec":{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews","subset":"v1"},"weight":75},` +
	`{"destination":{"host":"reviews","subset":"v2"},"weight":25}],"timeout":"2s","retries":{"attempts":3,"perTryTimeout":"500ms"}}]}}}}`

// webhookLoad sends AdmissionReviews to url at rate per second for d,
// open loop (a slow answer does not slow the sender, as with the API
// server), over HTTP/2 as the API server does, and returns the latency of
// every review allowed.
func webhookLoad(ctx context.Context, url string, pool *x509.CertPool, rate int, d time.Duration) ([]time.Duration, error) {
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: serverName},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	// One review first, unmeasured: the TLS handshake is not the figure.
	if err := admit(ctx, client, url, "warmup"); err != nil {
		return nil, err
	}
	n := max(1, int(float64(rate)*d.Seconds()))
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		if w := time.Until(start.Add(time.Duration(i) * interval)); w > 0 {
			select {
			case <-ctx.Done():
				wg.Wait()
				return nil, ctx.Err()
			case <-time.After(w):
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			errs[i] = admit(ctx, client, url, fmt.Sprintf("meshload-%d", i))
			lat[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	ok := lat[:0]
	var first error
	for i, d := range lat {
		if errs[i] == nil {
			ok = append(ok, d)
		} else if first == nil {
			first = errs[i]
		}
	}
	return ok, first
}

// admit sends one review and checks that it was allowed.
func admit(ctx context.Context, client *http.Client, url, uid string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(fmt.Appendf(nil, review, uid)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("webhook %s: status %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	var out struct {
		Response struct {
			UID     string `json:"uid"`
			Allowed bool   `json:"allowed"`
			Result  struct {
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("webhook %s: answer is not an AdmissionReview: %w", url, err)
	}
	switch {
	case out.Response.UID != uid:
		return fmt.Errorf("webhook %s: answered uid %q to review %q", url, out.Response.UID, uid)
	case !out.Response.Allowed:
		return errors.New("webhook refused a valid VirtualService: " + out.Response.Result.Message)
	}
	return nil
}

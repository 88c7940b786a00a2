package server

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	pb "istio.io/api/security/v1alpha1"
)

// BenchmarkCreateCertificate measures CSRs signed per second through the
// gRPC API on a loopback listener, authenticated with a meshd token. The
// client's key generation is outside the loop: it is the workload's cost.
func BenchmarkCreateCertificate(b *testing.B) {
	e := newEnv(b)
	tok := e.mint(b, "shop", "cart", nil, time.Hour, time.Now())
	for _, tc := range []struct {
		name string
		key  func() crypto.Signer
	}{
		{"RSA2048", func() crypto.Signer {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				b.Fatal(err)
			}
			return k
		}},
		{"ECDSAP256", func() crypto.Signer { return ecKey(b) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req := &pb.IstioCertificateRequest{Csr: string(csrFor(b, tc.key(), withURI(cart.String())))}
			client := dial(b, e.addr, nil)
			ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := client.CreateCertificate(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "CSRs/s")
		})
	}
}

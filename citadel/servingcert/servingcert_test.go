package servingcert

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/meshd/meshd/citadel/ca"
	"github.com/meshd/meshd/citadel/spiffe"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newCA(t *testing.T) *ca.CA {
	c := ca.New(discard(), ca.NewDirStorage(t.TempDir(), ""), ca.Options{})
	if err := c.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

func start(t *testing.T, c *ca.CA, opts Options) *Cert {
	s := New(discard(), c, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	select {
	case <-s.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("serving certificate never issued")
	}
	return s
}

// echo serves lines back over TLS.
func echo(t *testing.T, conf *tls.Config) string {
	lis, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := bufio.NewReader(conn)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := conn.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return lis.Addr().String()
}

func roundTrip(t *testing.T, conn *tls.Conn) {
	t.Helper()
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo: %q, %v", line, err)
	}
}

func clientConf(c *ca.CA, name string) *tls.Config {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c.RootsPEM())
	return &tls.Config{RootCAs: roots, ServerName: name}
}

func TestHostsAndRotationWithoutDroppingConnections(t *testing.T) {
	c := newCA(t)
	s := start(t, c, Options{Namespace: "istio-system", ExtraHosts: []string{"127.0.0.1", "meshd.example"}})
	addr := echo(t, s.HTTPSServerConfig())
	for _, name := range []string{"istiod.istio-system.svc", "meshd.istio-system.svc", "meshd.example", "127.0.0.1"} {
		conn, err := tls.Dial("tcp", addr, clientConf(c, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		conn.Close()
	}
	if _, err := tls.Dial("tcp", addr, clientConf(c, "other.svc")); err == nil {
		t.Fatal("certificate valid for a name it should not carry")
	}

	old, err := tls.Dial("tcp", addr, clientConf(c, "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	roundTrip(t, old)
	oldSerial := old.ConnectionState().PeerCertificates[0].SerialNumber

	// A root rotation reissues the serving certificate; the open
	// connection is untouched and new ones get the new certificate.
	if err := c.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		leaf, _ := s.GetCertificate(nil)
		if leaf.Leaf.SerialNumber.Cmp(oldSerial) != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("serving certificate not reissued after rotation")
		}
		time.Sleep(10 * time.Millisecond)
	}
	fresh, err := tls.Dial("tcp", addr, clientConf(c, "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if fresh.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(oldSerial) == 0 {
		t.Fatal("new connection got the old certificate")
	}
	roundTrip(t, old)
}

func TestRenewsBeforeExpiry(t *testing.T) {
	c := newCA(t)
	// So short a lifetime that half of it has passed at once (certificates
	// are backdated a minute): renewal follows within a second or so.
	s := start(t, c, Options{Namespace: "ns", TTL: 10 * time.Second})
	first, _ := s.GetCertificate(nil)
	deadline := time.Now().Add(20 * time.Second)
	for {
		cur, _ := s.GetCertificate(nil)
		if cur != first {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("certificate not renewed past half its lifetime")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestGRPCConfigVerifiesClientCertificates(t *testing.T) {
	c := newCA(t)
	s := start(t, c, Options{Namespace: "ns", ExtraHosts: []string{"127.0.0.1"}})
	addr := echo(t, s.GRPCServerConfig())
	mesh := func(authority *ca.CA) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		iss, err := authority.SignWorkload(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			spiffe.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "cart"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{iss.Leaf.Raw}, PrivateKey: key}
	}
	dial := func(certs ...tls.Certificate) error {
		conf := clientConf(c, "127.0.0.1")
		conf.Certificates = certs
		conn, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			return err
		}
		defer conn.Close()
		// TLS 1.3 reports a refused client certificate on the first read.
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			return err
		}
		_, err = bufio.NewReader(conn).ReadString('\n')
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("no client certificate: %v", err)
	}
	if err := dial(mesh(c)); err != nil {
		t.Fatalf("mesh certificate: %v", err)
	}
	if err := dial(mesh(newCA(t))); err == nil {
		t.Fatal("certificate from another CA accepted")
	}
}

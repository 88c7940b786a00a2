//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/tests/integration/framework"
)

// backendWith starts a gRPC backend whose answer is decided by fn (an
// error fails the call), and maps meshAddr to it. Call it before any
// client dials: the dialer reads the map without a lock.
func (e *pilotEnv) backendWith(meshAddr, name string, fn func(ctx context.Context) error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	g := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		var in emptypb.Empty
		if err := stream.RecvMsg(&in); err != nil {
			return err
		}
		if err := fn(stream.Context()); err != nil {
			return err
		}
		return stream.SendMsg(wrapperspb.String(name))
	}))
	go func() { _ = g.Serve(lis) }()
	e.t.Cleanup(g.Stop)
	e.backends[meshAddr] = lis.Addr().String()
	e.names[meshAddr] = name
}

// apply creates or updates Istio config written as YAML, in the test namespace.
func (e *pilotEnv) apply(doc string) {
	e.t.Helper()
	obj, _, err := schema.Decode([]byte(doc))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx := context.Background()
	nw := e.cluster.Istio.NetworkingV1()
	switch o := obj.(type) {
	case *networkingv1.ServiceEntry:
		o.Namespace = e.ns
		_, err = nw.ServiceEntries(e.ns).Create(ctx, o, metav1.CreateOptions{})
	case *networkingv1.DestinationRule:
		o.Namespace = e.ns
		_, err = nw.DestinationRules(e.ns).Create(ctx, o, metav1.CreateOptions{})
	case *networkingv1.VirtualService:
		o.Namespace = e.ns
		cur, gerr := nw.VirtualServices(e.ns).Get(ctx, o.Name, metav1.GetOptions{})
		if gerr == nil {
			o.ResourceVersion = cur.ResourceVersion
			_, err = nw.VirtualServices(e.ns).Update(ctx, o, metav1.UpdateOptions{})
		} else {
			_, err = nw.VirtualServices(e.ns).Create(ctx, o, metav1.CreateOptions{})
		}
	default:
		e.t.Fatalf("apply: unexpected %T", obj)
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

// serviceEntry declares host NAME.NS.svc.cluster.local:7070 (gRPC) with
// the given endpoints (address -> version label).
func (e *pilotEnv) serviceEntry(name string, eps map[string]string) string {
	host := name + "." + e.ns + ".svc.cluster.local"
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %s}
spec:
  hosts: [%s]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 7070, name: grpc, protocol: GRPC}]
  endpoints:
`, name, host)
	for addr, v := range eps {
		fmt.Fprintf(&b, "  - {address: %s, labels: {version: %s}}\n", addr, v)
	}
	e.apply(b.String())
	return host
}

// callWith makes one RPC with outgoing metadata (key, value pairs).
func callWith(cc *grpc.ClientConn, timeout time.Duration, kv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if len(kv) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, kv...)
	}
	var out wrapperspb.StringValue
	if err := cc.Invoke(ctx, "/echo.Echo/Name", &emptypb.Empty{}, &out); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

// tally makes n calls and counts answers by backend, errors by code.
func tally(t *testing.T, cc *grpc.ClientConn, n int, kv ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for i := 0; i < n; i++ {
		name, err := callWith(cc, 10*time.Second, kv...)
		if err != nil {
			out["error:"+status.Code(err).String()]++
			continue
		}
		out[name]++
	}
	return out
}

func within(got, lo, hi float64) bool { return got >= lo && got <= hi }

const subsetsDR = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %s}
spec:
  host: %s
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`

// TestTrafficManagement drives real grpc-go xDS clients through meshd's
// VirtualServices and DestinationRules, written to a real API server, and
// checks what the calls do: where they go, which fail and how.
func TestTrafficManagement(t *testing.T) {
	e := startPilot(t)
	ok := func(context.Context) error { return nil }
	e.backendWith("192.0.2.11:7070", "v1", ok)
	e.backendWith("192.0.2.12:7070", "v2", ok)
	var flakyCalls atomic.Int64
	e.backendWith("192.0.2.21:7070", "flaky", func(context.Context) error {
		if flakyCalls.Add(1)%2 == 1 {
			return status.Error(codes.Unavailable, "flaky: every other call fails")
		}
		return nil
	})
	e.backendWith("192.0.2.22:7070", "slow", func(ctx context.Context) error {
		// Only a call carrying a short deadline (the route timeout) hangs,
		// so that a missing timeout shows as a quick success.
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < 20*time.Second {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	e.backendWith("192.0.2.23:7070", "broken", func(context.Context) error {
		return status.Error(codes.Unavailable, "broken: always fails")
	})
	e.backendWith("192.0.2.24:7070", "healthy", ok)
	e.backendWith("192.0.2.13:7070", "v3", ok)

	t.Run("weighted split and weight change", func(t *testing.T) {
		host := e.serviceEntry("split", map[string]string{"192.0.2.11": "v1", "192.0.2.12": "v2"})
		e.apply(fmt.Sprintf(subsetsDR, "split", host))
		vs := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: split}
spec:
  hosts: [split]
  http:
  - route:
    - {destination: {host: split, subset: v1}, weight: %d}
    - {destination: {host: split, subset: v2}, weight: %d}
`
		e.apply(fmt.Sprintf(vs, 80, 20))
		cc := e.grpcClientFor("split-client", host+":7070")
		waitForBackends(t, cc, "v1", "v2")
		// Both backends answer under the default route too, so the split
		// is judged once the client holds the weighted route: a batch of
		// 500 calls without errors, 80±8 to v1 (a 50/50 default lands
		// there with negligible probability).
		framework.Eventually(t, 60*time.Second, func() error {
			got := tally(t, cc, 500)
			if share := float64(got["v1"]) / 5; !within(share, 72, 88) || got["v1"]+got["v2"] != 500 {
				return fmt.Errorf("80/20 split: v1 got %.1f%% of 500 calls (%v), want 80±8 and no errors", share, got)
			}
			return nil
		})
		e.apply(fmt.Sprintf(vs, 20, 80))
		framework.Eventually(t, 60*time.Second, func() error {
			got := tally(t, cc, 200)
			if share := float64(got["v2"]) / 2; !within(share, 72, 88) {
				return fmt.Errorf("after the weight change v2 got %.1f%% of 200 calls (%v), want 80±8", share, got)
			}
			return nil
		})
	})

	t.Run("header match", func(t *testing.T) {
		host := e.serviceEntry("hdr", map[string]string{"192.0.2.11": "v1", "192.0.2.12": "v2"})
		e.apply(fmt.Sprintf(subsetsDR, "hdr", host))
		e.apply(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: hdr}
spec:
  hosts: [hdr]
  http:
  - match: [{headers: {x-canary: {exact: "yes"}}}]
    route: [{destination: {host: hdr, subset: v2}}]
  - route: [{destination: {host: hdr, subset: v1}}]
`)
		cc := e.grpcClientFor("hdr-client", host+":7070")
		framework.Eventually(t, 30*time.Second, func() error {
			plain, canary := tally(t, cc, 20), tally(t, cc, 20, "x-canary", "yes")
			if plain["v1"] != 20 || canary["v2"] != 20 {
				return fmt.Errorf("without header %v, with x-canary: yes %v; want all v1, all v2", plain, canary)
			}
			return nil
		})
	})

	t.Run("fault abort and delay", func(t *testing.T) {
		host := e.serviceEntry("fault", map[string]string{"192.0.2.11": "v1"})
		e.apply(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: fault}
spec:
  hosts: [fault]
  http:
  - match: [{headers: {x-delay: {exact: "1"}}}]
    fault: {delay: {fixedDelay: 60s, percentage: {value: 100}}}
    route: [{destination: {host: fault}}]
  - fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 50}}}
    route: [{destination: {host: fault}}]
`)
		cc := e.grpcClientFor("fault-client", host+":7070")
		framework.Eventually(t, 30*time.Second, func() error {
			got := tally(t, cc, 400)
			if share := float64(got["error:Unavailable"]) / 4; !within(share, 35, 65) || got["v1"]+got["error:Unavailable"] != 400 {
				return fmt.Errorf("abort at 50%%: %v", got)
			}
			return nil
		})
		// The delayed call outlives its own deadline: it can only fail
		// with DEADLINE_EXCEEDED, and never reaches the backend.
		_, err := callWith(cc, 2*time.Second, "x-delay", "1")
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("delayed call: %v, want DeadlineExceeded", err)
		}
	})

	t.Run("retries", func(t *testing.T) {
		host := e.serviceEntry("retry", map[string]string{"192.0.2.21": "v1"})
		e.apply(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: retry}
spec:
  hosts: [retry]
  http:
  - retries: {attempts: 3, retryOn: unavailable}
    route: [{destination: {host: retry}}]
`)
		cc := e.grpcClientFor("retry-client", host+":7070")
		framework.Eventually(t, 30*time.Second, func() error {
			if got := tally(t, cc, 40); got["flaky"] != 40 {
				return fmt.Errorf("with retries against a backend failing every other call: %v, want every call to succeed", got)
			}
			return nil
		})
	})

	t.Run("timeout", func(t *testing.T) {
		host := e.serviceEntry("timeout", map[string]string{"192.0.2.22": "v1"})
		e.apply(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: timeout}
spec:
  hosts: [timeout]
  http:
  - timeout: 1s
    route: [{destination: {host: timeout}}]
`)
		cc := e.grpcClientFor("timeout-client", host+":7070")
		framework.Eventually(t, 30*time.Second, func() error {
			name, err := callWith(cc, 60*time.Second)
			if status.Code(err) != codes.DeadlineExceeded {
				return fmt.Errorf("call to a hanging backend: answer %q, error %v; want DeadlineExceeded from the route timeout", name, err)
			}
			return nil
		})
	})

	t.Run("outlier detection", func(t *testing.T) {
		host := e.serviceEntry("outlier", map[string]string{"192.0.2.23": "v1", "192.0.2.24": "v1"})
		e.apply(fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: outlier}
spec:
  host: %s
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 10m, maxEjectionPercent: 100}
`, host))
		cc := e.grpcClientFor("outlier-client", host+":7070")
		waitForBackends(t, cc, "healthy")
		framework.Eventually(t, 60*time.Second, func() error {
			if got := tally(t, cc, 20); got["healthy"] != 20 {
				return fmt.Errorf("the always-failing backend is still picked: %v", got)
			}
			return nil
		})
	})

	t.Run("invalid route dropped, the rest served", func(t *testing.T) {
		host := e.serviceEntry("partial", map[string]string{"192.0.2.11": "v1", "192.0.2.12": "v2"})
		e.apply(fmt.Sprintf(subsetsDR, "partial", host))
		e.apply(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: partial}
spec:
  hosts: [partial]
  http:
  - match: [{headers: {x-bad: {exact: "1"}}}]
    route: [{destination: {host: partial, subset: nope}}]
  - match: [{headers: {x-ghost: {exact: "1"}}}]
    route: [{destination: {host: ghost.example.com}}]
  - route: [{destination: {host: partial, subset: v2}}]
`)
		cc := e.grpcClientFor("partial-client", host+":7070")
		framework.Eventually(t, 30*time.Second, func() error {
			plain, bad, ghost := tally(t, cc, 10), tally(t, cc, 10, "x-bad", "1"), tally(t, cc, 10, "x-ghost", "1")
			if plain["v2"] != 10 || bad["v2"] != 10 || ghost["v2"] != 10 {
				return fmt.Errorf("plain %v, x-bad %v, x-ghost %v: want every call on v2", plain, bad, ghost)
			}
			return nil
		})
		if got := e.counter("pilot_config_dropped_routes"); got < 2 {
			t.Errorf("pilot_config_dropped_routes = %v, want the two dropped routes counted", got)
		}
	})

	lb := func(name, policy string) (*grpc.ClientConn, string) {
		host := e.serviceEntry(name, map[string]string{"192.0.2.11": "v1", "192.0.2.12": "v2", "192.0.2.13": "v3"})
		e.apply(fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %s}
spec:
  host: %s
  trafficPolicy:
    loadBalancer: %s
`, name, host, policy))
		return e.grpcClientFor(name+"-client", host+":7070"), host
	}
	t.Run("round robin", func(t *testing.T) {
		cc, _ := lb("rr", "{simple: ROUND_ROBIN}")
		waitForBackends(t, cc, "v1", "v2", "v3")
		framework.Eventually(t, 30*time.Second, func() error {
			// Round robin over three ready backends: each gets a third.
			got := tally(t, cc, 90)
			for _, b := range []string{"v1", "v2", "v3"} {
				if !within(float64(got[b]), 25, 35) {
					return fmt.Errorf("round robin over 90 calls: %v, want about 30 each", got)
				}
			}
			return nil
		})
	})
	t.Run("least request", func(t *testing.T) {
		cc, _ := lb("lr", "{simple: LEAST_REQUEST}")
		// With no call in flight every pick is a tie: all backends serve.
		waitForBackends(t, cc, "v1", "v2", "v3")
	})
	t.Run("ring hash", func(t *testing.T) {
		cc, _ := lb("rh", "{consistentHash: {httpHeaderName: x-user}}")
		waitForBackends(t, cc, "v1", "v2", "v3")
		framework.Eventually(t, 30*time.Second, func() error {
			distinct := map[string]bool{}
			for u := 0; u < 30; u++ {
				got := tally(t, cc, 10, "x-user", fmt.Sprintf("user-%d", u))
				if len(got) != 1 {
					return fmt.Errorf("user-%d went to several backends: %v", u, got)
				}
				for b := range got {
					distinct[b] = true
				}
			}
			if len(distinct) < 2 {
				return fmt.Errorf("30 users all hashed to %v", distinct)
			}
			return nil
		})
	})
}

// counter sums a counter over its labels.
func (e *pilotEnv) counter(name string) float64 {
	mfs, err := e.registry.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.Metric {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

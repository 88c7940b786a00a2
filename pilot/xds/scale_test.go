package xds_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/meshd/meshd/pilot/translate"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

// sidecarSim acts as Envoy does on one SotW stream: wildcard CDS and LDS,
// then EDS for every EDS cluster and RDS for every route its listeners
// name, ACKing everything.
func sidecarSim(ctx context.Context, cc *grpc.ClientConn, id int, acked *atomic.Int64, edsSeen *atomic.Int64) error {
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	n := node(fmt.Sprintf("sidecar~10.1.%d.%d~client-%d.ns-%d~ns-%d.svc.cluster.local", id/250, id%250+1, id, id%10, id%10), nil)
	if err := stream.Send(&discovery.DiscoveryRequest{Node: n, TypeUrl: translate.ClusterType}); err != nil {
		return err
	}
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: translate.ListenerType}); err != nil {
		return err
	}
	names := map[string][]string{}
	for {
		r, err := stream.Recv()
		if err != nil {
			return err
		}
		switch r.TypeUrl {
		case translate.ClusterType:
			var eds []string
			for _, a := range r.Resources {
				if _, _, _, host, ok := translate.ParseClusterName(clusterName(a.Value)); ok && host != "" {
					eds = append(eds, clusterName(a.Value))
				}
			}
			if names[translate.EndpointType] == nil {
				names[translate.EndpointType] = eds
				_ = stream.Send(&discovery.DiscoveryRequest{TypeUrl: translate.EndpointType, ResourceNames: eds})
			}
		case translate.ListenerType:
			var routes []string
			for _, a := range r.Resources {
				var l listener.Listener
				_ = a.UnmarshalTo(&l)
				for _, fc := range l.FilterChains {
					for _, f := range fc.Filters {
						var h hcm.HttpConnectionManager
						if f.GetTypedConfig().UnmarshalTo(&h) == nil && h.GetRds() != nil {
							routes = append(routes, h.GetRds().GetRouteConfigName())
						}
					}
				}
			}
			if names[translate.RouteType] == nil {
				names[translate.RouteType] = routes
				_ = stream.Send(&discovery.DiscoveryRequest{TypeUrl: translate.RouteType, ResourceNames: routes})
			}
		case translate.EndpointType:
			edsSeen.Add(1)
		}
		if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: r.TypeUrl, VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce, ResourceNames: names[r.TypeUrl]}); err != nil {
			return err
		}
		acked.Add(1)
	}
}

// clusterName reads field 1 (name) of a serialized Cluster without a full decode.
func clusterName(b []byte) string {
	if len(b) < 2 || b[0] != 0x0a {
		return ""
	}
	l, i := 0, 1
	for shift := 0; i < len(b); i++ {
		l |= int(b[i]&0x7f) << shift
		shift += 7
		if b[i] < 0x80 {
			i++
			break
		}
	}
	if i+l > len(b) {
		return ""
	}
	return string(b[i : i+l])
}

// TestScale connects MESHD_SCALE_PROXIES simulated sidecars to a mesh of
// MESHD_SCALE_SERVICES services and reports cold-start and endpoint-push
// figures. It is skipped unless MESHD_SCALE_PROXIES is set: a measurement,
// not a check.
func TestScale(t *testing.T) {
	proxies, _ := strconv.Atoi(os.Getenv("MESHD_SCALE_PROXIES"))
	services, _ := strconv.Atoi(os.Getenv("MESHD_SCALE_SERVICES"))
	if proxies == 0 {
		t.Skip("set MESHD_SCALE_PROXIES (and MESHD_SCALE_SERVICES) to measure")
	}
	if services == 0 {
		services = proxies
	}
	st := store.NewMemory()
	for i := 0; i < services; i++ {
		ns := fmt.Sprintf("ns-%d", i%10)
		name := fmt.Sprintf("svc-%d", i)
		s := service(ns, name, fmt.Sprintf("10.96.%d.%d", i/250, i%250+1), grpcPort(7070))
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "http", Port: 80})
		put(t, st, schema.Service, s)
		put(t, st, schema.EndpointSlice, slice(ns, name, 7070, fmt.Sprintf("10.%d.%d.1", 1+i/250, i%250), fmt.Sprintf("10.%d.%d.2", 1+i/250, i%250)))
	}
	st.MarkSynced()
	e := &env{t: t, st: st}
	e.start("127.0.0.1:0")

	var ms0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var acked, edsSeen atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	conns := make([]*grpc.ClientConn, 0, 10)
	for i := 0; i < 10; i++ {
		cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		conns = append(conns, cc)
	}
	for i := 0; i < proxies; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_ = sidecarSim(ctx, conns[i%len(conns)], i, &acked, &edsSeen)
		}(i)
	}
	// Each proxy acks CDS, LDS, EDS and RDS at least once.
	eventuallyWithin(t, 10*time.Minute, "every proxy acked its config", func() bool { return acked.Load() >= int64(4*proxies) })
	cold := time.Since(start)
	runtime.GC()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)

	if path := os.Getenv("MESHD_SCALE_HEAP"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		_ = pprof.WriteHeapProfile(f)
		f.Close()
	}
	before := edsSeen.Load()
	t0 := time.Now()
	put(t, st, schema.EndpointSlice, slice("ns-0", "svc-0", 7070, "10.1.0.1", "10.1.0.2", "10.1.0.3"))
	eventuallyWithin(t, 5*time.Minute, "every proxy got the EDS push", func() bool { return edsSeen.Load()-before >= int64(proxies) })
	eds := time.Since(t0)
	t.Logf("services=%d proxies=%d: cold start (all acked) %v; endpoint change reached all in %v (incl. 5ms debounce); heap after connect %d MiB (mesh before %d MiB); cds pushes %v",
		services, proxies, cold.Round(time.Millisecond), eds.Round(time.Millisecond), ms1.HeapAlloc>>20, ms0.HeapAlloc>>20, pushes(e, "cds"))
	cancel()
	wg.Wait()
}

func eventuallyWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package xds_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	grpcals "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	telemetryapi "istio.io/api/telemetry/v1alpha1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"

	"github.com/meshd/meshd/pilot/translate"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/telemetry/provider"
)

// accessLogClusters returns, per listener, the clusters its gRPC access
// loggers (HTTP and TCP) stream to.
func accessLogClusters(t *testing.T, r *discovery.DiscoveryResponse) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, a := range r.Resources {
		var l listener.Listener
		if err := a.UnmarshalTo(&l); err != nil {
			t.Fatal(err)
		}
		chains := append([]*listener.FilterChain{l.DefaultFilterChain}, l.FilterChains...)
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				m, err := f.GetTypedConfig().UnmarshalNew()
				if err != nil {
					t.Fatal(err)
				}
				var cfgs []*grpcals.CommonGrpcAccessLogConfig
				switch m := m.(type) {
				case *hcm.HttpConnectionManager:
					for _, al := range m.AccessLog {
						var c grpcals.HttpGrpcAccessLogConfig
						if err := al.GetTypedConfig().UnmarshalTo(&c); err != nil {
							t.Fatalf("%s: %s: %v", l.Name, al.Name, err)
						}
						cfgs = append(cfgs, c.CommonConfig)
					}
				case *tcpproxy.TcpProxy:
					for _, al := range m.AccessLog {
						var c grpcals.TcpGrpcAccessLogConfig
						if err := al.GetTypedConfig().UnmarshalTo(&c); err != nil {
							t.Fatalf("%s: %s: %v", l.Name, al.Name, err)
						}
						cfgs = append(cfgs, c.CommonConfig)
					}
				}
				for _, c := range cfgs {
					out[l.Name] = append(out[l.Name], c.GetGrpcService().GetEnvoyGrpc().GetClusterName())
				}
			}
		}
	}
	return out
}

func meshdTelemetry() *telemetryv1.Telemetry {
	return &telemetryv1.Telemetry{
		ObjectMeta: metav1.ObjectMeta{Name: "mesh-default", Namespace: "istio-system"},
		Spec: telemetryapi.Telemetry{AccessLogging: []*telemetryapi.AccessLogging{{
			Providers: []*telemetryapi.ProviderRef{{Name: provider.Name}},
		}}},
	}
}

// A Telemetry enabling the meshd provider, applied while a sidecar is
// connected, reaches it: the cluster back to meshd and the access loggers
// arrive; deleting the Telemetry takes both away again.
func TestTelemetryChangeReachesConnectedProxy(t *testing.T) {
	e := newEnv(t)
	c := e.sotw(node(sidecarID, nil))

	c.request(translate.ClusterType)
	cds := c.expect(translate.ClusterType)
	if contains(names(cds), provider.ClusterName) {
		t.Fatalf("clusters %v have %s without any Telemetry", names(cds), provider.ClusterName)
	}
	c.ack(cds)
	c.request(translate.ListenerType)
	lds := c.expect(translate.ListenerType)
	if got := accessLogClusters(t, lds); len(got) != 0 {
		t.Fatalf("access loggers without any Telemetry: %v", got)
	}
	c.ack(lds)

	tel := meshdTelemetry()
	put(t, e.st, schema.Telemetry, tel)
	cds = c.expect(translate.ClusterType)
	if !contains(names(cds), provider.ClusterName) {
		t.Fatalf("clusters %v lack %s after the Telemetry was applied", names(cds), provider.ClusterName)
	}
	c.ack(cds)
	lds = c.expect(translate.ListenerType)
	got := accessLogClusters(t, lds)
	for _, name := range []string{"0.0.0.0_7070", translate.VirtualOutboundListener} {
		if len(got[name]) != 1 || got[name][0] != provider.ClusterName {
			t.Errorf("listener %s streams access logs to %v, want [%s] (all: %v)", name, got[name], provider.ClusterName, got)
		}
	}
	c.ack(lds)

	remove(t, e.st, schema.Telemetry, tel)
	cds = c.expect(translate.ClusterType)
	if contains(names(cds), provider.ClusterName) {
		t.Fatalf("clusters %v keep %s after the Telemetry was deleted", names(cds), provider.ClusterName)
	}
	c.ack(cds)
	lds = c.expect(translate.ListenerType)
	if got := accessLogClusters(t, lds); len(got) != 0 {
		t.Fatalf("access loggers left after the Telemetry was deleted: %v", got)
	}
}

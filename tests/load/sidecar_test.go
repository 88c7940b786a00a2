package load

import (
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestMeshIsDeterministic(t *testing.T) {
	cfg := Config{Services: 50, Namespaces: 4, VirtualServices: 5, Seed: 3, NamespacePrefix: "x"}
	a, b := newMesh(cfg), newMesh(cfg)
	for i := range a.services {
		if a.services[i] != b.services[i] {
			t.Fatalf("service %d differs between two meshes of one seed: %+v vs %+v", i, a.services[i], b.services[i])
		}
	}
	if len(a.routed) != 5 || a.routed[0] != b.routed[0] {
		t.Errorf("routed services differ: %v vs %v", a.routed, b.routed)
	}
}

func TestSidecarNodeAndClusterNames(t *testing.T) {
	m := newMesh(Config{Services: 3, Namespaces: 2, VirtualServices: 1, NamespacePrefix: "ml"})
	p := newProxy(4, sotwSidecar, m, m.hostIndex())
	n := p.node()
	if want := "sidecar~198.18.128.5~svc-1-4.ml-1~ml-1.svc.cluster.local"; n.Id != want {
		t.Errorf("node ID %q, want %q", n.Id, want)
	}
	for _, k := range []string{"NAMESPACE", "LABELS", "SERVICE_ACCOUNT", "CLUSTER_ID"} {
		if _, ok := n.Metadata.Fields[k]; !ok {
			t.Errorf("node metadata lacks %s", k)
		}
	}

	cla := &endpoint.ClusterLoadAssignment{
		ClusterName: "outbound|80||svc-2.ml-0.svc.cluster.local",
		Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: []*endpoint.LbEndpoint{{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: &core.Address{
				Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{Address: markerIP(300)}}}}},
		}}}},
	}
	a, err := anypb.New(cla)
	if err != nil {
		t.Fatal(err)
	}
	if got := field1(a.Value); got != cla.ClusterName {
		t.Errorf("field1 = %q, want %q", got, cla.ClusterName)
	}
	f := newFacts(p.hosts)
	f.putCLA(field1(a.Value))
	f.putCLA("outbound|80||elsewhere.example.com")
	if f.edsHosts != 1 {
		t.Errorf("load assignments cover %d mesh services, want 1", f.edsHosts)
	}
	if gens := claGens(a.Value); len(gens) != 1 || gens[0] != 300 {
		t.Errorf("claGens = %v, want [300]", gens)
	}
}

func TestPercentile(t *testing.T) {
	var l []time.Duration
	for i := 1; i <= 100; i++ {
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]float64{.5: 50, .9: 90, .99: 99, 1: 100} {
		if got := percentile(l, q); got != want {
			t.Errorf("p%v = %v, want %v", q*100, got, want)
		}
	}
}

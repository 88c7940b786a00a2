package xds_test

import (
	"bytes"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshd/meshd/pilot/xds"
)

// TestCodecWritesWhatProtoWould: a proxy decoding meshd's bytes for a
// DiscoveryResponse gets exactly the response, and the resources' bytes
// are the shared ones, not copies.
func TestCodecWritesWhatProtoWould(t *testing.T) {
	big := bytes.Repeat([]byte{0x0a, 0x03, 'a', 'b', 'c'}, 40000) // 200 KB: a length needing a 3-byte varint
	resp := &discovery.DiscoveryResponse{
		VersionInfo: "v1", TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster", Nonce: "7",
		ControlPlane: &core.ControlPlane{Identifier: "meshd-0"},
		Resources: []*anypb.Any{
			{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster", Value: []byte{0x0a, 0x01, 'x'}},
			{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}, // empty value
			{Value: []byte{0x0a, 0x01, 'y'}},                                 // empty type URL
			{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster", Value: big},
		},
	}
	c := xds.Codec()
	checkEncoding(t, resp, &discovery.DiscoveryResponse{}, big)

	// Everything else goes through gRPC's proto codec unchanged.
	req := &discovery.DiscoveryRequest{TypeUrl: "t", ResourceNames: []string{"a", "b"}}
	b, err := c.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	back := &discovery.DiscoveryRequest{}
	if err := c.Unmarshal(b, back); err != nil || !proto.Equal(back, req) {
		t.Errorf("request round trip: %v, %v", back, err)
	}
}

// TestCodecDelta: the same for Delta xDS, whose resources wrap each Any
// with its name and version.
func TestCodecDelta(t *testing.T) {
	big := bytes.Repeat([]byte{0x0a, 0x03, 'a', 'b', 'c'}, 40000)
	resp := &discovery.DeltaDiscoveryResponse{
		SystemVersionInfo: "v2", TypeUrl: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", Nonce: "9",
		RemovedResources: []string{"gone"}, ControlPlane: &core.ControlPlane{Identifier: "meshd-0"},
		Resources: []*discovery.Resource{
			{Name: "a", Version: "1", Resource: &anypb.Any{TypeUrl: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", Value: []byte{0x0a, 0x01, 'a'}}},
			{Name: "b", Version: "2", Aliases: []string{"bee"}, Resource: &anypb.Any{TypeUrl: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", Value: big}},
			{Name: "c", Version: "3"}, // no resource
			{Name: "d", Version: "4", Resource: &anypb.Any{TypeUrl: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"}},
		},
	}
	checkEncoding(t, resp, &discovery.DeltaDiscoveryResponse{}, big)
}

// TestCodecRequests: requests decode as proto decodes them, and two ACKs
// naming the same resources share one list.
func TestCodecRequests(t *testing.T) {
	c := xds.Codec()
	decode := func(req *discovery.DiscoveryRequest) *discovery.DiscoveryRequest {
		t.Helper()
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		got := &discovery.DiscoveryRequest{}
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, req) {
			t.Fatalf("decoded %v\nwant %v", got, req)
		}
		return got
	}
	names := []string{"outbound|80||a.ns.svc.cluster.local", "", "outbound|80||b.ns.svc.cluster.local"}
	first := decode(&discovery.DiscoveryRequest{Node: &core.Node{Id: "sidecar~1"}, TypeUrl: "eds", ResourceNames: names})
	ack := decode(&discovery.DiscoveryRequest{TypeUrl: "eds", VersionInfo: "v1", ResponseNonce: "1", ResourceNames: names})
	if &first.ResourceNames[0] != &ack.ResourceNames[0] {
		t.Error("an ACK repeating the same names did not share the decoded list")
	}
	other := decode(&discovery.DiscoveryRequest{TypeUrl: "eds", ResourceNames: names[:2]})
	if &other.ResourceNames[0] == &first.ResourceNames[0] {
		t.Error("a shorter list shared the longer one's slice")
	}
	decode(&discovery.DiscoveryRequest{TypeUrl: "cds"}) // no names at all

	// Names need not be adjacent on the wire: they decode the same, twice.
	var split []byte
	split = protowire.AppendTag(split, 3, protowire.BytesType)
	split = protowire.AppendString(split, "x")
	split = protowire.AppendTag(split, 4, protowire.BytesType)
	split = protowire.AppendString(split, "eds")
	split = protowire.AppendTag(split, 3, protowire.BytesType)
	split = protowire.AppendString(split, "y")
	want := &discovery.DiscoveryRequest{}
	if err := proto.Unmarshal(split, want); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got := &discovery.DiscoveryRequest{}
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(split)}, got); err != nil || !proto.Equal(got, want) {
			t.Fatalf("split names: decoded %v (%v), want %v", got, err, want)
		}
	}

	bad := protowire.AppendTag(nil, 3, protowire.BytesType)
	bad = protowire.AppendBytes(bad, []byte{0xff, 0xfe})
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(bad)}, &discovery.DiscoveryRequest{}); err == nil {
		t.Error("a resource name that is not UTF-8 was accepted")
	}
}

// checkEncoding encodes resp with meshd's codec and checks that proto
// decodes it (into got) to resp, that resp is unchanged, and that the
// resource bytes big are sent as they are, not copied.
func checkEncoding(t *testing.T, resp, got proto.Message, big []byte) {
	t.Helper()
	want := proto.Clone(resp)
	out, err := xds.Codec().Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(out.Materialize(), got); err != nil {
		t.Fatalf("meshd's encoding does not decode: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("decoded %v\nwant %v", got, want)
	}
	if !proto.Equal(resp, want) {
		t.Errorf("Marshal changed the response it was given")
	}
	if !shares(out, big) {
		t.Error("the 200 KB resource was copied, not shared")
	}
}

// shares reports whether one of out's buffers is b itself, not a copy.
func shares(out mem.BufferSlice, b []byte) bool {
	for _, buf := range out {
		if d := buf.ReadOnlyData(); len(d) == len(b) && &d[0] == &b[0] {
			return true
		}
	}
	return false
}

package xds

import (
	"bytes"
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	gproto "google.golang.org/protobuf/proto"
)

// Codec is the gRPC codec meshd's servers use (grpc.ForceServerCodecV2):
// gRPC's own proto codec, except that a DiscoveryResponse (SotW) or
// DeltaDiscoveryResponse is written without copying its resources. Every proxy that receives a resource gets
// the very bytes the translator serialized once; the generic codec would
// copy all of them into a fresh buffer per proxy, and with a thousand
// proxies each waiting for a multi-megabyte CDS response those copies were
// most of meshd's memory.
func Codec() encoding.CodecV2 { return codec{base: encoding.GetCodecV2(proto.Name)} }

type codec struct{ base encoding.CodecV2 }

func (c codec) Name() string { return proto.Name }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*discovery.DiscoveryRequest); ok {
		return c.unmarshalRequest(data, r)
	}
	return c.base.Unmarshal(data, v)
}

// unmarshalRequest decodes a SotW request, sharing its resource names with
// earlier requests that named the same ones. A sidecar's EDS and RDS ACKs
// repeat every name it subscribes to (a thousand cluster names in a large
// mesh), and thousands of sidecars ask for the same lists: decoding them
// afresh was a sixth of meshd's CPU under endpoint churn. Nothing in the
// request path changes a request's ResourceNames, so they can be shared.
func (c codec) unmarshalRequest(data mem.BufferSlice, r *discovery.DiscoveryRequest) error {
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData()
	} else {
		// A pooled copy: nothing decoded below refers to these bytes.
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		b = buf.ReadOnlyData()
	}
	// Find the resource_names entries (field 3); decode the rest as usual.
	var rest []byte
	h := xxhash.New()
	count := 0
	// The names are hashed a run of adjacent entries at a time (clients
	// write them together): one Write per entry cost more than the hash.
	runStart, runEnd, runs := 0, 0, 0
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			return c.base.Unmarshal(data, r) // let proto report it
		}
		m := protowire.ConsumeFieldValue(num, typ, b[i+n:])
		if m < 0 {
			return c.base.Unmarshal(data, r)
		}
		field := b[i : i+n+m]
		if num == 3 && typ == protowire.BytesType {
			if i != runEnd || runs == 0 {
				_, _ = h.Write(b[runStart:runEnd])
				runStart = i
				runs++
			}
			runEnd = i + n + m
			count++
		} else {
			rest = append(rest, field...)
		}
		i += n + m
	}
	if count == 0 {
		return c.base.Unmarshal(data, r)
	}
	_, _ = h.Write(b[runStart:runEnd])
	if err := gproto.Unmarshal(rest, r); err != nil {
		return err
	}
	var run []byte // the names' encoding, when it is one piece
	if runs == 1 {
		run = b[runStart:runEnd]
	}
	names, err := requestNames.get(h.Sum64(), count, b, run)
	if err != nil {
		return err
	}
	r.ResourceNames = names
	return nil
}

// nameLists interns requests' resource-name lists by the hash of their
// encoding. A hit is checked against the encoding kept with it (or name by
// name), so a hash collision costs a decode, never a wrong list.
type nameLists struct {
	mu    sync.Mutex
	lists map[uint64]nameList
}

type nameList struct {
	names []string
	raw   []byte // the encoding they were decoded from, if it was one piece
}

// maxNameLists bounds the interned lists; past it the table starts over.
// Distinct lists are roughly one per distinct sidecar scope and type.
const maxNameLists = 1 << 14

var requestNames = &nameLists{lists: map[uint64]nameList{}}

// get returns the count resource names encoded in request b (run is their
// encoding when it is one piece), shared with an earlier identical list
// when there was one.
func (t *nameLists) get(sum uint64, count int, b, run []byte) ([]string, error) {
	t.mu.Lock()
	cached := t.lists[sum]
	t.mu.Unlock()
	if len(cached.names) == count {
		// Comparing the encodings is a memcmp; name by name parses each.
		if cached.raw != nil && run != nil {
			if bytes.Equal(cached.raw, run) {
				return cached.names, nil
			}
		} else if sameNames(cached.names, b) {
			return cached.names, nil
		}
	}
	names := make([]string, 0, count)
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		i += n
		if num == 3 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b[i:])
			if !utf8.Valid(v) {
				return nil, fmt.Errorf("DiscoveryRequest.resource_names[%d]: invalid UTF-8", len(names))
			}
			names = append(names, string(v))
			i += m
			continue
		}
		i += protowire.ConsumeFieldValue(num, typ, b[i:])
	}
	t.mu.Lock()
	if len(t.lists) >= maxNameLists {
		clear(t.lists)
	}
	t.lists[sum] = nameList{names: names, raw: bytes.Clone(run)}
	t.mu.Unlock()
	return names, nil
}

// sameNames reports whether the resource_names entries of request b are
// names, in order.
func sameNames(names []string, b []byte) bool {
	k := 0
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		i += n
		if num == 3 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b[i:])
			if k >= len(names) || string(v) != names[k] {
				return false
			}
			k++
			i += m
			continue
		}
		i += protowire.ConsumeFieldValue(num, typ, b[i:])
	}
	return k == len(names)
}

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	switch r := v.(type) {
	case *discovery.DiscoveryResponse:
		if len(r.Resources) > 0 {
			return c.marshalSotw(r)
		}
	case *discovery.DeltaDiscoveryResponse:
		if len(r.Resources) > 0 {
			return c.marshalDelta(r)
		}
	}
	return c.base.Marshal(v)
}

func (c codec) marshalSotw(r *discovery.DiscoveryResponse) (mem.BufferSlice, error) {
	// Everything but the resources, by the generic codec: the message is
	// this send's own (the nonce was just set on it), so setting its
	// resources aside for a moment races with nothing.
	rs := r.Resources
	r.Resources = nil
	head, err := c.base.Marshal(r)
	r.Resources = rs
	if err != nil {
		return nil, err
	}
	// Then each resource as field 2 (repeated google.protobuf.Any): a
	// small header, shared by every resource of its type and size, then
	// the shared serialized value. Protobuf lets fields come in any order,
	// and a repeated field's entries keep theirs. What is built per proxy
	// is only this list of buffers.
	out := make(mem.BufferSlice, 0, len(head)+2*len(rs))
	out = append(out, head...)
	for _, a := range rs {
		if a == nil {
			head.Free()
			return nil, fmt.Errorf("DiscoveryResponse %s: nil resource", r.GetTypeUrl())
		}
		out = append(out, anyHeaders.get(a.GetTypeUrl(), len(a.GetValue())))
		if len(a.GetValue()) > 0 {
			out = append(out, mem.SliceBuffer(a.GetValue()))
		}
	}
	return out, nil
}

// headerKey names a DiscoveryResponse.resources entry header: it depends
// on the Any's type URL and value length only.
type headerKey struct {
	typeURL string
	size    int
}

// headerCache holds each header once, boxed as a gRPC buffer, so a
// response to a thousand proxies allocates no header bytes.
type headerCache struct {
	mu sync.RWMutex
	m  map[headerKey]mem.Buffer
}

// maxHeaders bounds the cache; distinct (type, size) pairs number at most
// the resources built, far fewer in practice.
const maxHeaders = 1 << 17

var anyHeaders = &headerCache{m: map[headerKey]mem.Buffer{}}

func (c *headerCache) get(typeURL string, size int) mem.Buffer {
	k := headerKey{typeURL, size}
	c.mu.RLock()
	h, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return h
	}
	h = mem.SliceBuffer(appendAnyHeader(make([]byte, 0, anyHeaderSize(typeURL, size)), typeURL, size))
	c.mu.Lock()
	if len(c.m) >= maxHeaders {
		clear(c.m)
	}
	c.m[k] = h
	c.mu.Unlock()
	return h
}

func (c codec) marshalDelta(r *discovery.DeltaDiscoveryResponse) (mem.BufferSlice, error) {
	rs := r.Resources
	r.Resources = nil
	head, err := c.base.Marshal(r)
	r.Resources = rs
	if err != nil {
		return nil, err
	}
	// Each resources entry (field 2, a discovery.Resource) is its name,
	// version and the rest, serialized here without its Any (field 2 of
	// the Resource), then that Any's header and the shared value. The
	// Resource wrappers are built for this response alone (the Any they
	// point to is what is shared), so the Any is set aside just as above.
	out := make(mem.BufferSlice, 0, len(head)+2*len(rs))
	out = append(out, head...)
	var hdrs []byte
	for _, x := range rs {
		if x == nil {
			head.Free()
			return nil, fmt.Errorf("DeltaDiscoveryResponse %s: nil resource", r.GetTypeUrl())
		}
		a := x.Resource
		x.Resource = nil
		meta, err := marshalPlain.Marshal(x)
		x.Resource = a
		if err != nil {
			head.Free()
			return nil, fmt.Errorf("DeltaDiscoveryResponse %s: resource %q: %w", r.GetTypeUrl(), x.GetName(), err)
		}
		entry := len(meta)
		if a != nil {
			body := anyBody(a.GetTypeUrl(), len(a.GetValue()))
			entry += 1 + protowire.SizeVarint(uint64(body)) + body
		}
		start := len(hdrs)
		hdrs = protowire.AppendTag(hdrs, 2, protowire.BytesType)
		hdrs = protowire.AppendVarint(hdrs, uint64(entry))
		hdrs = append(hdrs, meta...)
		if a != nil {
			hdrs = appendAnyHeader(hdrs, a.GetTypeUrl(), len(a.GetValue()))
		}
		// A later append may move hdrs; the bytes this slice views stay
		// valid and unchanged in the array they were written to.
		out = append(out, mem.SliceBuffer(hdrs[start:len(hdrs):len(hdrs)]))
		if a != nil && len(a.GetValue()) > 0 {
			out = append(out, mem.SliceBuffer(a.GetValue()))
		}
	}
	return out, nil
}

var marshalPlain = gproto.MarshalOptions{}

// anyBody is the size of an Any's encoding: type_url (field 1) and value
// (field 2), each left out when empty as proto3 does.
func anyBody(typeURL string, valueLen int) int {
	n := 0
	if typeURL != "" {
		n += 1 + protowire.SizeVarint(uint64(len(typeURL))) + len(typeURL)
	}
	if valueLen > 0 {
		n += 1 + protowire.SizeVarint(uint64(valueLen)) + valueLen
	}
	return n
}

// anyHeaderSize is what appendAnyHeader writes: all of the entry but the value.
func anyHeaderSize(typeURL string, valueLen int) int {
	body := anyBody(typeURL, valueLen)
	n := 1 + protowire.SizeVarint(uint64(body)) + body
	if valueLen > 0 {
		n -= valueLen
	}
	return n
}

// appendAnyHeader writes the DiscoveryResponse.resources entry of an Any
// up to (not including) its value bytes.
func appendAnyHeader(b []byte, typeURL string, valueLen int) []byte {
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(anyBody(typeURL, valueLen)))
	if typeURL != "" {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, typeURL)
	}
	if valueLen > 0 {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(valueLen))
	}
	return b
}

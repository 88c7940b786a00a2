// Package translate turns a mesh snapshot and a proxy into xDS resources.
// The generators are pure functions (snapshot + proxy in, resources out);
// the Translator memoizes them under keys that hold every input they read,
// so proxies with the same inputs share the very same built and serialized
// resources.
package translate

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"

	"github.com/cespare/xxhash/v2"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// The xDS type URLs pilot generates.
const (
	ClusterType  = resourcev3.ClusterType
	EndpointType = resourcev3.EndpointType
	ListenerType = resourcev3.ListenerType
	RouteType    = resourcev3.RouteType
)

// Types lists the generated types in push order: clusters before their
// endpoints, listeners before their routes, as Envoy wants them.
var Types = []string{ClusterType, EndpointType, ListenerType, RouteType}

// ShortType returns cds, eds, lds or rds (or the type URL itself).
func ShortType(typeURL string) string {
	switch typeURL {
	case ClusterType:
		return "cds"
	case EndpointType:
		return "eds"
	case ListenerType:
		return "lds"
	case RouteType:
		return "rds"
	}
	return typeURL
}

// Resource is one named, serialized xDS resource. It is immutable and
// shared by every proxy that receives it. Only the serialized form is
// kept: the message is decoded again on the rare occasions (debug dumps,
// tests) it is read.
type Resource struct {
	Name string
	// Version is a hash of the serialized bytes: equal versions, equal bytes.
	Version string
	Any     *anypb.Any
}

// Message decodes the resource.
func (r *Resource) Message() (proto.Message, error) {
	m, err := r.Any.UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("decoding %s %q: %w", r.Any.GetTypeUrl(), r.Name, err)
	}
	return m, nil
}

// Size is the serialized size in bytes.
func (r *Resource) Size() int { return len(r.Any.GetValue()) }

var marshal = proto.MarshalOptions{Deterministic: true}

// NewResource serializes m once, for every proxy that will receive it.
func NewResource(name string, m proto.Message) (*Resource, error) {
	b, err := marshal.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("serializing %s %q: %w", m.ProtoReflect().Descriptor().FullName(), name, err)
	}
	return &Resource{
		Name:    name,
		Version: hashVersion(b),
		Any:     &anypb.Any{TypeUrl: "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName()), Value: b},
	}, nil
}

// rawResource wraps bytes already serialized as typeURL.
func rawResource(name, typeURL string, b []byte) *Resource {
	return &Resource{Name: name, Version: hashVersion(b), Any: &anypb.Any{TypeUrl: typeURL, Value: b}}
}

// mustResource is NewResource for messages built here, which always
// serialize; a failure is a bug in a generator.
func mustResource(name string, m proto.Message) *Resource {
	r, err := NewResource(name, m)
	if err != nil {
		panic(err)
	}
	return r
}

// Set is an immutable, name-indexed collection of resources of one type.
type Set struct {
	names  []string
	list   []*Resource // sorted by name, parallel to names
	byName map[string]*Resource

	versionOnce sync.Once
	version     string
}

// Version hashes the names and versions of the whole set, once.
func (s *Set) Version() string {
	if s == nil {
		return VersionOf(nil)
	}
	s.versionOnce.Do(func() { s.version = VersionOf(s.list) })
	return s.version
}

// VersionOf hashes the names and versions of resources (in their order):
// equal lists, equal versions.
func VersionOf(rs []*Resource) string {
	h := xxhash.New()
	for _, r := range rs {
		h.WriteString(r.Name)
		h.WriteString("\x00")
		h.WriteString(r.Version)
		h.WriteString("\x00")
	}
	return hex.EncodeToString(h.Sum(nil))
}

// hashVersion is the version of serialized bytes. xxhash rather than FNV:
// every push hashes every resource it builds, and FNV's byte-at-a-time
// loop was a tenth of meshd's CPU under endpoint churn.
func hashVersion(b []byte) string {
	var out [8]byte
	binary.BigEndian.PutUint64(out[:], xxhash.Sum64(b))
	return hex.EncodeToString(out[:])
}

// NewSet indexes resources; on duplicate names the first wins.
func NewSet(rs []*Resource) *Set {
	s := &Set{byName: make(map[string]*Resource, len(rs)), names: make([]string, 0, len(rs))}
	for _, r := range rs {
		if _, dup := s.byName[r.Name]; dup {
			continue
		}
		s.byName[r.Name] = r
		s.names = append(s.names, r.Name)
	}
	sort.Strings(s.names)
	s.list = make([]*Resource, len(s.names))
	for i, n := range s.names {
		s.list[i] = s.byName[n]
	}
	return s
}

// List returns the resources sorted by name; callers must not modify it.
func (s *Set) List() []*Resource {
	if s == nil {
		return nil
	}
	return s.list
}

// Get returns the named resource, or nil.
func (s *Set) Get(name string) *Resource {
	if s == nil {
		return nil
	}
	return s.byName[name]
}

// Names returns the sorted names.
func (s *Set) Names() []string {
	if s == nil {
		return nil
	}
	return s.names
}

// Len is the number of resources.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.names)
}

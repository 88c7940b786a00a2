package compat

import (
	"fmt"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshd/meshd/galley/internal/cases"
	"github.com/meshd/meshd/galley/validation"
	"github.com/meshd/meshd/pkg/schema"
)

// FuzzGeneratedAgreement builds Istio specs field by field from the fuzzer's
// bytes, with values drawn from the edge cases validation cares about
// (hosts, wildcards, ports, durations, regexes, ...), and checks that meshd
// and istiod agree on each. Unlike mutating YAML, nearly every input is a
// well-formed object, so the rules themselves are exercised.
func FuzzGeneratedAgreement(f *testing.F) {
	for i := range schema.IstioConfig {
		f.Add(uint8(i), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})
		f.Add(uint8(i), []byte("\xff\x00\x10\x80\x7f\x01\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee"))
	}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		k := schema.IstioConfig[int(kind)%len(schema.IstioConfig)]
		obj := generate(k, &source{b: data})
		_, ierr, ok := istiod(obj)
		if !ok {
			t.Fatalf("no istiod validation for %s", k.Name)
		}
		_, merr := validation.Validate(obj)
		if (ierr == nil) != (merr == nil) {
			t.Errorf("%s: istiod says %v\nmeshd says %v\nspec: %v", k.Name, ierr, merr, schema.SpecOf(obj))
		}
	})
}

func generate(k schema.Kind, src *source) schema.Object {
	obj := k.New()
	obj.SetName(src.pick("x", "my.gw", "gw-1", "UPPER"))
	obj.SetNamespace(src.pick("default", "istio-system"))
	if src.chance(8) {
		obj.SetAnnotations(map[string]string{"istio.io/dry-run": src.pick("true", "maybe")})
	}
	if src.chance(8) {
		obj.SetLabels(map[string]string{"istio.io/use-waypoint": src.pick("none", "waypoint")})
	}
	fill(schema.SpecOf(obj).ProtoReflect(), src, 0)
	return obj
}

// source doles out the fuzzer's bytes; when they run out it returns zeros,
// which means "leave unset" and "the first choice".
type source struct {
	b []byte
	i int
}

func (s *source) byte() byte {
	if s.i >= len(s.b) {
		return 0
	}
	s.i++
	return s.b[s.i-1]
}

func (s *source) intn(n int) int { return int(s.byte()) % n }

// chance is true with probability about 1/n.
func (s *source) chance(n int) bool { return s.intn(n) == 1 }

func (s *source) pick(options ...string) string { return options[s.intn(len(options))] }

var (
	strs = []string{
		"", "*", "a", "reviews", "reviews.default.svc.cluster.local", "*.example.com", "a.example.com",
		"bad_host", "ns/a.example.com", "*/a.example.com", "./*", "~/x.y", "*/*", "a*.b", "192.0.2.1",
		"10.0.0.0/8", "::1", "1.2.3.4/99", "unix:///tmp/sock", "unix://", "/path", "^/a(", "[a-z]+",
		"%HOSTNAME%", "100%%", "%X", "GET", "FETCH", "*", "v1", "V_1", "5xx,connect-failure", "bogus",
		"http", "HTTP", "HTTPS", "TLS", "TCP", "GRPC", "foo", "mesh", "istio-system/gw", "gw.ns",
		"x-user", "bad header", ":path", "host", ":authority", "@request.auth.claims.sub", "request.headers[x]",
		"source.ip", "destination.port", "foo.bar", "cluster.local/ns/a/sa/b", "a/b", "/a/{**}", "/a/{**}/b",
		"https://x.example.com/jwks", "ftp://x", "{\"keys\":[]}", "not json", "127.0.0.1:8080", ":8080",
		"response.code >= 400", "response.code >=", "CONNECT", "POST", "us-east", "us-east/a/*", "us/*",
		"topology.kubernetes.io/zone", "outbound_.80_._.a.example.com", "kubernetes://c", "configmap://default/c",
		"configmap://other/c", "ECDHE-RSA-AES128-SHA", "BAD-CIPHER", "NOT_FOUND", "NOPE", ".", "~", "default",
		"A.Example.COM", "a.example.com.", "a.123", "-a.example.com", "a-.example.com", "*-foo.example.com",
		"**.example.com", "*.*.example.com", "a.*.com", "[::1]:80", "0.0.0.0:80", "@abstract", "unix:///a/",
		"a\x01b", "a\tb", "@request.auth.claims[a]", "@request.auth.claims", ":method", "0", "65536", "-1",
		"1,2", "ns/*", "~ns/a.example.com", "*/", "/a.example.com", "ns/a", "x.ns", "mesh", "*.local",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com", "example.com/app",
		"app.kubernetes.io/name", "_x", "x_", "v1.0", "{*}", "/a/{*}/b", "/{**}", "source.namespace",
		"request.auth.claims[iss]", "request.auth.claims", "remote.ip", "connection.sni", "destination.labels[a]",
		"fe80::1/64", "2001:db8::/129", "%START_TIME(%s)%", "%REQ(x)%", "retriable-status-codes,503", "gateway-error",
		"DENY", "kubernetes://ns/c", "cluster.local", "https", "h2", "*.", "a..b", "dns:///x",
	}
	ints     = []int64{0, 1, -1, 2, 3, 80, 100, 101, 443, 65535, 65536, 200, 301, 500, 600, 9080, 5000011, 1021, 2147483647, 4294967295, 199, 399, 16, 17}
	floats   = []float64{0, 0.00001, 0.5, 1, 50, 100, 100.5, -1, 150}
	duration = []*durationpb.Duration{
		durationpb.New(0), {Nanos: 1500000}, {Seconds: 1}, {Nanos: 500000}, {Seconds: 5, Nanos: 500000000},
		{Seconds: -1}, {Seconds: 3600}, {Nanos: 1000000},
	}
)

func fill(m protoreflect.Message, src *source, depth int) {
	if depth > 6 {
		return
	}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if src.intn(3) != 1 { // most fields unset
			continue
		}
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for n := src.intn(3) + 1; n > 0; n-- {
				if fd.Kind() == protoreflect.MessageKind {
					e := l.NewElement()
					if !fillWellKnown(e.Message(), src) {
						fill(e.Message(), src, depth+1)
					}
					l.Append(e)
					continue
				}
				l.Append(scalar(fd, src))
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for n := src.intn(3) + 1; n > 0; n-- {
				key := mapKey(fd.MapKey(), src)
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					v := mp.NewValue()
					if !fillWellKnown(v.Message(), src) {
						fill(v.Message(), src, depth+1)
					}
					mp.Set(key, v)
					continue
				}
				mp.Set(key, scalar(fd.MapValue(), src))
			}
		case fd.Kind() == protoreflect.MessageKind:
			v := m.Mutable(fd).Message()
			if !fillWellKnown(v, src) {
				fill(v, src, depth+1)
			}
		default:
			m.Set(fd, scalar(fd, src))
		}
	}
}

// fillWellKnown sets durations and wrapper types, which the validators read
// as plain values.
func fillWellKnown(m protoreflect.Message, src *source) bool {
	switch m.Descriptor().FullName() {
	case "google.protobuf.Duration":
		d := duration[src.intn(len(duration))]
		m.Set(m.Descriptor().Fields().ByName("seconds"), protoreflect.ValueOfInt64(d.Seconds))
		m.Set(m.Descriptor().Fields().ByName("nanos"), protoreflect.ValueOfInt32(d.Nanos))
		return true
	case "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.UInt32Value",
		"google.protobuf.Int32Value", "google.protobuf.DoubleValue", "google.protobuf.UInt64Value",
		"google.protobuf.Int64Value", "google.protobuf.FloatValue":
		fd := m.Descriptor().Fields().ByName("value")
		m.Set(fd, scalar(fd, src))
		return true
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.Any", "google.protobuf.Timestamp":
		return true
	}
	return false
}

func mapKey(fd protoreflect.FieldDescriptor, src *source) protoreflect.MapKey {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(strs[src.intn(len(strs))]).MapKey()
	case protoreflect.Uint32Kind:
		return protoreflect.ValueOfUint32(uint32(ints[src.intn(len(ints))])).MapKey()
	}
	panic(fmt.Sprintf("map key kind %v", fd.Kind()))
}

func scalar(fd protoreflect.FieldDescriptor, src *source) protoreflect.Value {
	n := ints[src.intn(len(ints))]
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(strs[src.intn(len(strs))])
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(strs[src.intn(len(strs))]))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(src.chance(2))
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(src.intn(vals.Len())).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(n))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(n)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(n))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(n))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(floats[src.intn(len(floats))])
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(floats[src.intn(len(floats))]))
	}
	panic(fmt.Sprintf("kind %v", fd.Kind()))
}

// FuzzOneChange starts from an object both validators accept (the valid
// table and the Bookinfo and seed-note files) and changes one field, so that
// a disagreement points at exactly one rule.
func FuzzOneChange(f *testing.F) {
	for i := range validObjects(f) {
		f.Add(uint16(i), []byte{byte(i), 7, 3, 9})
	}
	bases := validObjects(f)
	f.Fuzz(func(t *testing.T, base uint16, data []byte) {
		src := &source{b: data}
		obj := bases[int(base)%len(bases)].DeepCopyObject().(schema.Object)
		where := mutate(schema.SpecOf(obj).ProtoReflect(), src)
		_, ierr, _ := istiod(obj)
		_, merr := validation.Validate(obj)
		if (ierr == nil) != (merr == nil) {
			t.Errorf("after changing %s:\nistiod says %v\nmeshd says %v\nspec: %v", where, ierr, merr, schema.SpecOf(obj))
		}
	})
}

var bases []schema.Object

func validObjects(tb testing.TB) []schema.Object {
	if bases != nil {
		return bases
	}
	for _, tc := range cases.Valid {
		obj, _, err := schema.Decode([]byte(tc.Doc))
		if err != nil {
			tb.Fatal(err)
		}
		bases = append(bases, obj)
	}
	files, _ := filepath.Glob("../validation/testdata/valid/*.yaml")
	for _, f := range files {
		for _, d := range splitDocs(tb, f) {
			if obj, _, err := schema.Decode(d); err == nil {
				bases = append(bases, obj)
			}
		}
	}
	return bases
}

type site struct {
	m    protoreflect.Message
	fd   protoreflect.FieldDescriptor
	path string
}

// mutate changes one field somewhere in m and says where.
func mutate(m protoreflect.Message, src *source) string {
	var sites []site
	var walk func(m protoreflect.Message, path string, depth int)
	walk = func(m protoreflect.Message, path string, depth int) {
		if depth > 8 || isWellKnown(m) {
			return
		}
		fields := m.Descriptor().Fields()
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			p := path + "." + string(fd.Name())
			sites = append(sites, site{m, fd, p})
			if !m.Has(fd) || fd.Kind() != protoreflect.MessageKind || fd.IsMap() && fd.MapValue().Kind() != protoreflect.MessageKind {
				continue
			}
			switch {
			case fd.IsList():
				l := m.Get(fd).List()
				for j := 0; j < l.Len(); j++ {
					walk(l.Get(j).Message(), fmt.Sprintf("%s[%d]", p, j), depth+1)
				}
			case fd.IsMap():
				m.Get(fd).Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
					walk(v.Message(), fmt.Sprintf("%s[%v]", p, k), depth+1)
					return true
				})
			default:
				walk(m.Get(fd).Message(), p, depth+1)
			}
		}
	}
	walk(m, "spec", 0)
	s := sites[(int(src.byte())<<8|int(src.byte()))%len(sites)]
	switch {
	case src.chance(6) && s.m.Has(s.fd):
		s.m.Clear(s.fd)
		return s.path + " (cleared)"
	case s.fd.IsList():
		l := s.m.Mutable(s.fd).List()
		if s.fd.Kind() == protoreflect.MessageKind {
			e := l.NewElement()
			if !fillWellKnown(e.Message(), src) {
				fill(e.Message(), src, 4)
			}
			l.Append(e)
		} else {
			l.Append(scalar(s.fd, src))
		}
		return s.path + " (appended)"
	case s.fd.IsMap():
		mp := s.m.Mutable(s.fd).Map()
		k := mapKey(s.fd.MapKey(), src)
		if s.fd.MapValue().Kind() == protoreflect.MessageKind {
			v := mp.NewValue()
			if !fillWellKnown(v.Message(), src) {
				fill(v.Message(), src, 4)
			}
			mp.Set(k, v)
		} else {
			mp.Set(k, scalar(s.fd.MapValue(), src))
		}
		return s.path + " (entry added)"
	case s.fd.Kind() == protoreflect.MessageKind:
		v := s.m.Mutable(s.fd).Message()
		if !fillWellKnown(v, src) {
			fill(v, src, 5)
		}
		return s.path + " (set)"
	default:
		s.m.Set(s.fd, scalar(s.fd, src))
		return s.path + " (set)"
	}
}

func isWellKnown(m protoreflect.Message) bool {
	return m.Descriptor().FullName().Parent() == "google.protobuf"
}

package translate_test

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshd/meshd/pilot/model"
	"github.com/meshd/meshd/pilot/translate"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

// meshOf fills a store with n services over 10 namespaces, each with an
// HTTP and a gRPC port and three endpoints.
func meshOf(tb testing.TB, n int) *store.Store {
	st := store.NewMemory()
	httpName, grpcName := "http", "grpc"
	httpPort, grpcPort := int32(8080), int32(7070)
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("ns-%d", i%10)
		name := fmt.Sprintf("svc-%d", i)
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{
				ClusterIP: fmt.Sprintf("10.96.%d.%d", i/250, i%250+1),
				Selector:  map[string]string{"app": name},
				Ports:     []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "grpc", Port: 7070}},
			},
		}
		es := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &httpName, Port: &httpPort}, {Name: &grpcName, Port: &grpcPort}},
		}
		for j := 0; j < 3; j++ {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", 1+i/250, i%250, j+1)}})
		}
		if err := st.Indexer(schema.Service).Add(svc); err != nil {
			tb.Fatal(err)
		}
		if err := st.Indexer(schema.EndpointSlice).Add(es); err != nil {
			tb.Fatal(err)
		}
	}
	st.MarkSynced()
	return st
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func benchProxy(b *testing.B, generator string) *model.Proxy {
	p, err := model.NewProxy("sidecar~10.1.0.9~client-1.ns-0~ns-0.svc.cluster.local",
		map[string]any{"GENERATOR": generator, "LABELS": map[string]any{"app": "svc-0"}})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkSnapshotBuild builds the mesh snapshot from scratch.
func BenchmarkSnapshotBuild(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st := meshOf(b, n)
			builder := model.NewBuilder(quiet(), model.Options{})
			b.ReportAllocs()
			for b.Loop() {
				builder.Build(nil, st, nil)
			}
		})
	}
}

// BenchmarkSnapshotEndpointChange rebuilds after one EndpointSlice changed.
func BenchmarkSnapshotEndpointChange(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st := meshOf(b, n)
			builder := model.NewBuilder(quiet(), model.Options{})
			snap, _ := builder.Build(nil, st, nil)
			es, _ := st.EndpointSlices.Get("ns-0", "svc-0-1")
			b.ReportAllocs()
			for b.Loop() {
				ch := &model.Changes{}
				ch.Add(store.Event{Kind: schema.EndpointSlice, Type: store.Updated, Old: es, New: es})
				snap, _ = builder.Build(snap, st, ch)
			}
		})
	}
}

// BenchmarkTranslate translates one proxy's full config with nothing
// cached (what the first proxy of a namespace costs).
func BenchmarkTranslate(b *testing.B) {
	for _, gen := range []string{"sidecar", "grpc"} {
		for _, n := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/services=%d", gen, n), func(b *testing.B) {
				st := meshOf(b, n)
				snap, _ := model.NewBuilder(quiet(), model.Options{}).Build(nil, st, nil)
				g := ""
				if gen == "grpc" {
					g = "grpc"
				}
				p := benchProxy(b, g)
				b.ReportAllocs()
				for b.Loop() {
					v := translate.New(quiet()).View(snap, p)
					if len(v.All(translate.ClusterType)) < n {
						b.Fatal("missing clusters")
					}
				}
			})
		}
	}
}

// BenchmarkTranslateShared is the cost for each further proxy with the
// same sharing key at the same snapshot: a cache hit.
func BenchmarkTranslateShared(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st := meshOf(b, n)
			snap, _ := model.NewBuilder(quiet(), model.Options{}).Build(nil, st, nil)
			tr := translate.New(quiet())
			p := benchProxy(b, "")
			tr.View(snap, p)
			b.ReportAllocs()
			for b.Loop() {
				tr.View(snap, p)
			}
		})
	}
}

// BenchmarkTranslateAfterChange is the per-change cost for one sharing
// key with a warm cache: after one EndpointSlice changed (EDS only) and
// after one Service changed (clusters, listeners, routes reassembled).
func BenchmarkTranslateAfterChange(b *testing.B) {
	for _, kind := range []string{"endpoint", "service"} {
		for _, n := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/services=%d", kind, n), func(b *testing.B) {
				st := meshOf(b, n)
				builder := model.NewBuilder(quiet(), model.Options{})
				snap, _ := builder.Build(nil, st, nil)
				tr := translate.New(quiet())
				p := benchProxy(b, "")
				tr.View(snap, p)
				es, _ := st.EndpointSlices.Get("ns-0", "svc-0-1")
				svc, _ := st.Services.Get("ns-0", "svc-0")
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					i++
					ch := &model.Changes{}
					if kind == "endpoint" {
						e := es.DeepCopy()
						e.Endpoints = e.Endpoints[:1+i%3]
						_ = st.Indexer(schema.EndpointSlice).Update(e)
						ch.Add(store.Event{Kind: schema.EndpointSlice, Type: store.Updated, New: e})
					} else {
						s := svc.DeepCopy()
						s.Spec.Ports[0].Port = int32(80 + i%2)
						_ = st.Indexer(schema.Service).Update(s)
						ch.Add(store.Event{Kind: schema.Service, Type: store.Updated, New: s})
					}
					snap, _ = builder.Build(snap, st, ch)
					tr.View(snap, p)
				}
			})
		}
	}
}

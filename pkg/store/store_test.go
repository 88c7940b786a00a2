package store

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshd/meshd/pkg/schema"
)

func pod(ns, name, ip string, lbls map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls},
		Status:     corev1.PodStatus{PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

func slice(ns, name, svc string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc},
	}}
}

func add(t *testing.T, s *Store, k schema.Kind, objs ...schema.Object) {
	t.Helper()
	for _, o := range objs {
		if err := s.Indexer(k).Add(o); err != nil {
			t.Fatal(err)
		}
		s.Notify(Event{Kind: k, Type: Added, New: o})
	}
}

func names[T schema.Object](objs []T) []string {
	out := []string{}
	for _, o := range objs {
		out = append(out, o.GetNamespace()+"/"+o.GetName())
	}
	return out
}

func TestCollections(t *testing.T) {
	s := NewMemory()
	add(t, s, schema.Pod,
		pod("b", "reviews-v2", "192.0.2.2", map[string]string{"app": "reviews", "version": "v2"}),
		pod("a", "reviews-v1", "192.0.2.1", map[string]string{"app": "reviews", "version": "v1"}),
		pod("a", "ratings-v1", "192.0.2.3", map[string]string{"app": "ratings"}),
	)
	add(t, s, schema.EndpointSlice, slice("a", "reviews-1", "reviews"), slice("a", "reviews-2", "reviews"), slice("b", "reviews-1", "reviews"))

	tests := map[string]struct {
		got, want []string
	}{
		"list all, sorted":      {names(s.Pods.List("")), []string{"a/ratings-v1", "a/reviews-v1", "b/reviews-v2"}},
		"list one namespace":    {names(s.Pods.List("b")), []string{"b/reviews-v2"}},
		"select by label":       {names(s.Pods.Select("", labels.SelectorFromSet(labels.Set{"app": "reviews"}))), []string{"a/reviews-v1", "b/reviews-v2"}},
		"select in namespace":   {names(s.Pods.Select("a", labels.SelectorFromSet(labels.Set{"app": "reviews"}))), []string{"a/reviews-v1"}},
		"pods by ip":            {names(s.PodsByIP("192.0.2.2")), []string{"b/reviews-v2"}},
		"slices of one service": {names(s.EndpointSlicesFor("a", "reviews")), []string{"a/reviews-1", "a/reviews-2"}},
		"slices of missing one": {names(s.EndpointSlicesFor("a", "ratings")), []string{}},
		"untyped list":          {names(s.List(schema.Pod, "a")), []string{"a/ratings-v1", "a/reviews-v1"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if len(tt.got) != len(tt.want) {
				t.Fatalf("got %v, want %v", tt.got, tt.want)
			}
			for i := range tt.got {
				if tt.got[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", tt.got, tt.want)
				}
			}
		})
	}
	if p, ok := s.Pods.Get("a", "reviews-v1"); !ok || p.Status.PodIP != "192.0.2.1" {
		t.Fatalf("Get = %v, %v", p, ok)
	}
	if _, ok := s.Pods.Get("a", "nope"); ok {
		t.Fatal("Get found a missing pod")
	}
}

func TestSubscribeDeliversInOrderToEverySubscriber(t *testing.T) {
	s := NewMemory()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	got := map[int][]string{}
	for i := range 2 {
		s.Subscribe(ctx, func(e Event) {
			mu.Lock()
			defer mu.Unlock()
			got[i] = append(got[i], e.Type.String()+" "+e.Object().GetName())
		})
	}
	p := pod("a", "p", "192.0.2.1", nil)
	add(t, s, schema.Pod, p)
	s.Notify(Event{Kind: schema.Pod, Type: Updated, Old: p, New: p})
	s.Notify(Event{Kind: schema.Pod, Type: Deleted, Old: p})
	want := []string{"add p", "update p", "delete p"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		done := len(got[0]) == 3 && len(got[1]) == 3
		snapshot := map[int][]string{0: append([]string(nil), got[0]...), 1: append([]string(nil), got[1]...)}
		mu.Unlock()
		if done {
			for i := range 2 {
				for j := range want {
					if snapshot[i][j] != want[j] {
						t.Fatalf("subscriber %d got %v, want %v", i, snapshot[i], want)
					}
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events not delivered: %v", snapshot)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSlowSubscriberDoesNotBlockTheSource(t *testing.T) {
	s := NewMemory()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	block := make(chan struct{})
	s.Subscribe(ctx, func(Event) { <-block })
	done := make(chan struct{})
	go func() {
		for range 1000 {
			s.Notify(Event{Kind: schema.Pod, Type: Added, New: pod("a", "p", "", nil)})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Notify blocked on a slow subscriber")
	}
	close(block)
}

func TestWaitForSync(t *testing.T) {
	s := NewMemory()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.WaitForSync(ctx); err == nil {
		t.Fatal("WaitForSync returned before sync")
	}
	s.MarkSynced()
	s.MarkSynced() // idempotent
	if err := s.WaitForSync(context.Background()); err != nil || !s.HasSynced() {
		t.Fatalf("after MarkSynced: %v %v", err, s.HasSynced())
	}
}

package store

import (
	"context"
	"sync"

	"github.com/meshd/meshd/pkg/schema"
)

// EventType says what happened to an object.
type EventType int

// The event types.
const (
	Added EventType = iota
	Updated
	Deleted
)

func (t EventType) String() string {
	switch t {
	case Added:
		return "add"
	case Updated:
		return "update"
	case Deleted:
		return "delete"
	}
	return "unknown"
}

// Event is one change to one object. Old is nil for Added; New is nil for Deleted.
type Event struct {
	Kind schema.Kind
	Type EventType
	Old  schema.Object
	New  schema.Object
}

// Object returns the object the event is about: New, or Old for a delete.
func (e Event) Object() schema.Object {
	if e.New != nil {
		return e.New
	}
	return e.Old
}

// Subscribe registers fn to be called with every change, in the order the
// source saw them, until ctx ends. Each subscriber has its own queue and
// goroutine, so a slow subscriber delays only itself and never the source.
// Events for the initial state are delivered too, before HasSynced is true.
func (s *Store) Subscribe(ctx context.Context, fn func(Event)) {
	sub := &subscriber{fn: fn}
	sub.cond = sync.NewCond(&sub.mu)
	s.bus.add(sub)
	go func() {
		<-ctx.Done()
		s.bus.remove(sub)
		sub.close()
	}()
	go sub.run()
}

// Notify delivers an event to every subscriber. Sources call it after the
// change is visible in the collections, so a subscriber reading the store
// sees at least the state the event describes.
func (s *Store) Notify(e Event) { s.bus.publish(e) }

type bus struct {
	mu   sync.RWMutex
	subs []*subscriber
}

func (b *bus) add(s *subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs = append(b.subs, s)
}

func (b *bus) remove(s *subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, x := range b.subs {
		if x == s {
			b.subs = append(b.subs[:i:i], b.subs[i+1:]...)
			return
		}
	}
}

func (b *bus) publish(e Event) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, s := range b.subs {
		s.push(e)
	}
}

// subscriber is an unbounded FIFO drained by one goroutine.
type subscriber struct {
	fn     func(Event)
	mu     sync.Mutex
	cond   *sync.Cond
	queue  []Event
	closed bool
}

func (s *subscriber) push(e Event) {
	s.mu.Lock()
	if !s.closed {
		s.queue = append(s.queue, e)
	}
	s.mu.Unlock()
	s.cond.Signal()
}

func (s *subscriber) close() {
	s.mu.Lock()
	s.closed = true
	s.queue = nil
	s.mu.Unlock()
	s.cond.Signal()
}

func (s *subscriber) run() {
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.closed {
			s.cond.Wait()
		}
		if s.closed {
			s.mu.Unlock()
			return
		}
		batch := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, e := range batch {
			s.fn(e)
		}
	}
}

package configdir

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshd/meshd/pkg/store"
)

const reviewsVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: %s}
`

const reviewsSvc = `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports: [{name: http, port: 9080}]
`

// syncBuffer is a log sink the test can read while the source writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type fixture struct {
	t   *testing.T
	dir string
	src *Source
	log *syncBuffer
	reg *prometheus.Registry
}

func newFixture(t *testing.T, files map[string]string) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{t: t, dir: dir, log: &syncBuffer{}, reg: prometheus.NewRegistry()}
	for name, content := range files {
		f.write(name, content)
	}
	src, err := New(slog.New(slog.NewTextHandler(f.log, nil)), dir, f.reg)
	if err != nil {
		t.Fatal(err)
	}
	f.src = src
	return f
}

func (f *fixture) write(name, content string) {
	f.t.Helper()
	path := filepath.Join(f.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		f.t.Fatal(err)
	}
	// Write to a temporary file and rename, as editors do.
	tmp := filepath.Join(f.dir, ".tmp-"+filepath.Base(name))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.src.Start(ctx) }()
	f.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("Start: %v", err)
		}
	})
	if err := f.src.Store().WaitForSync(ctx); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) eventually(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out waiting for: %s\nlog:\n%s", what, f.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func subset(s *store.Store) string {
	vs, ok := s.VirtualServices.Get("default", "reviews")
	if !ok {
		return ""
	}
	return vs.Spec.Http[0].Route[0].Destination.Subset
}

func TestLoadsEveryDocument(t *testing.T) {
	f := newFixture(t, map[string]string{
		"a.yaml":        fmt.Sprintf(reviewsVS, "v1") + "---\n# a comment-only document\n---\n" + reviewsSvc,
		"sub/dir/b.yml": strings.Replace(reviewsSvc, "name: reviews", "name: ratings", 1),
		"notes.txt":     "not config",
	})
	if err := f.src.Sync(); err != nil {
		t.Fatal(err)
	}
	s := f.src.Store()
	if subset(s) != "v1" || s.Services.Len() != 2 {
		t.Fatalf("loaded vs subset %q, %d services", subset(s), s.Services.Len())
	}
	if _, ok := s.Namespaces.Get("", "default"); !ok {
		t.Fatal("namespace of the objects was not created")
	}
	vs, _ := s.VirtualServices.Get("default", "reviews")
	if vs.ResourceVersion == "" || vs.UID == "" {
		t.Fatalf("object not stamped: rv %q uid %q", vs.ResourceVersion, vs.UID)
	}
}

func TestHotReload(t *testing.T) {
	f := newFixture(t, map[string]string{"vs.yaml": fmt.Sprintf(reviewsVS, "v1")})
	f.start()
	s := f.src.Store()
	if subset(s) != "v1" {
		t.Fatalf("initial subset %q", subset(s))
	}

	f.write("vs.yaml", fmt.Sprintf(reviewsVS, "v2"))
	f.eventually("edit applied", func() bool { return subset(s) == "v2" })

	f.write("svc.yaml", reviewsSvc)
	f.eventually("new file loaded", func() bool { _, ok := s.Services.Get("default", "reviews"); return ok })

	f.write("later/dir/svc2.yaml", strings.Replace(reviewsSvc, "name: reviews", "name: ratings", 1))
	f.eventually("file in new subdirectory loaded", func() bool { _, ok := s.Services.Get("default", "ratings"); return ok })

	if err := os.Remove(filepath.Join(f.dir, "svc.yaml")); err != nil {
		t.Fatal(err)
	}
	f.eventually("removed file's objects deleted", func() bool { _, ok := s.Services.Get("default", "reviews"); return !ok })
}

func TestBadFileKeepsPreviousObjects(t *testing.T) {
	f := newFixture(t, map[string]string{
		"vs.yaml":  fmt.Sprintf(reviewsVS, "v1"),
		"svc.yaml": reviewsSvc,
	})
	f.start()
	s := f.src.Store()
	events := make(chan store.Event, 100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Subscribe(ctx, func(e store.Event) { events <- e })

	// A misspelled field in a second document: the whole file is refused.
	bad := fmt.Sprintf(reviewsVS, "v2") + "---\n" + strings.Replace(fmt.Sprintf(reviewsVS, "v3"), "subset:", "subsett:", 1)
	f.write("vs.yaml", bad)
	f.eventually("error logged", func() bool { return strings.Contains(f.log.String(), "config file not applied") })
	logs := f.log.String()
	for _, want := range []string{"file=vs.yaml", "document 1 (VirtualService default/reviews)", "spec.http[0].route[0].destination.subsett: unknown field"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log does not name %q:\n%s", want, logs)
		}
	}
	if subset(s) != "v1" {
		t.Fatalf("previous object not kept: subset %q", subset(s))
	}
	if got := testutil.ToFloat64(f.src.errors.WithLabelValues("decode")); got != 1 {
		t.Fatalf("meshd_config_file_errors_total{reason=decode} = %v, want 1", got)
	}
	// Other files keep being served and applied.
	f.write("svc.yaml", strings.Replace(reviewsSvc, "9080", "9081", 1))
	f.eventually("other file applied", func() bool {
		svc, _ := s.Services.Get("default", "reviews")
		return svc.Spec.Ports[0].Port == 9081
	})
	// Fixing the file applies it.
	f.write("vs.yaml", fmt.Sprintf(reviewsVS, "v3"))
	f.eventually("fixed file applied", func() bool { return subset(s) == "v3" })
	for {
		select {
		case e := <-events:
			if e.Kind.Name == "VirtualService" && e.Type == store.Deleted {
				t.Fatal("a bad file deleted its previous objects")
			}
			continue
		default:
		}
		break
	}
}

func TestDuplicateAcrossFiles(t *testing.T) {
	f := newFixture(t, map[string]string{
		"a.yaml": fmt.Sprintf(reviewsVS, "v1"),
		"b.yaml": fmt.Sprintf(reviewsVS, "v2"),
	})
	err := f.src.Sync()
	if err == nil || !strings.Contains(err.Error(), "config file b.yaml: document 0: VirtualService default/reviews is already defined in a.yaml") {
		t.Fatalf("err = %v", err)
	}
	if subset(f.src.Store()) != "v1" {
		t.Fatalf("subset %q, want the first file's", subset(f.src.Store()))
	}
	// Moving the object: once a.yaml no longer holds it, b.yaml's copy wins.
	f.write("a.yaml", reviewsSvc)
	if err := f.src.Sync(); err != nil {
		t.Fatal(err)
	}
	if subset(f.src.Store()) != "v2" {
		t.Fatalf("subset %q after the move, want v2", subset(f.src.Store()))
	}
}

func TestNewRefusesMissingDir(t *testing.T) {
	_, err := New(slog.Default(), filepath.Join(t.TempDir(), "missing"), nil)
	if err == nil || !strings.Contains(err.Error(), "config dir") {
		t.Fatalf("err = %v", err)
	}
}

func TestRewriteWithoutChangeIsNotAnEvent(t *testing.T) {
	f := newFixture(t, map[string]string{"vs.yaml": fmt.Sprintf(reviewsVS, "v1")})
	if err := f.src.Sync(); err != nil {
		t.Fatal(err)
	}
	s := f.src.Store()
	before, _ := s.VirtualServices.Get("default", "reviews")
	var events []store.Event
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan store.Event, 10)
	s.Subscribe(ctx, func(e store.Event) { got <- e })
	// Same objects, different bytes: a comment and key order.
	f.write("vs.yaml", "# reordered\n"+fmt.Sprintf(reviewsVS, "v1"))
	if err := f.src.Sync(); err != nil {
		t.Fatal(err)
	}
	// A real change afterwards proves the subscription works; it must be
	// the only event.
	f.write("vs.yaml", fmt.Sprintf(reviewsVS, "v2"))
	if err := f.src.Sync(); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		events = append(events, e)
	case <-time.After(10 * time.Second):
		t.Fatal("no event for a real change")
	}
	if len(events) != 1 || events[0].Type != store.Updated || events[0].Old.GetResourceVersion() != before.ResourceVersion {
		t.Fatalf("events %v: a rewrite without change was reported", events)
	}
	select {
	case e := <-got:
		t.Fatalf("unexpected extra event %v %s", e.Type, e.Object().GetName())
	default:
	}
}

// An editor that writes in place truncates the file first: the objects must
// not disappear in between.
func TestInPlaceWriteNeverDeletes(t *testing.T) {
	f := newFixture(t, map[string]string{"vs.yaml": fmt.Sprintf(reviewsVS, "v1")})
	f.start()
	s := f.src.Store()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deleted := make(chan struct{}, 1)
	s.Subscribe(ctx, func(e store.Event) {
		if e.Type == store.Deleted {
			select {
			case deleted <- struct{}{}:
			default:
			}
		}
	})
	path := filepath.Join(f.dir, "vs.yaml")
	for i := range 5 {
		// Truncate, pause as a slow writer would, then write.
		fh, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // the writer's own pace, not a wait for state
		if _, err := fh.WriteString(fmt.Sprintf(reviewsVS, fmt.Sprintf("v%d", i+2))); err != nil {
			t.Fatal(err)
		}
		fh.Close()
	}
	f.eventually("last write applied", func() bool { return subset(s) == "v6" })
	select {
	case <-deleted:
		t.Fatal("an in-place write deleted the file's objects")
	default:
	}
}

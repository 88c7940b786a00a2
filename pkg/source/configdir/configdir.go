// Package configdir feeds the store from a directory of YAML files: file
// mode, for a laptop or a first run. Every kind the store holds can be
// written as multi-document YAML; the directory is watched and changes are
// applied without a restart.
//
// A file is applied whole or not at all: if any document in it is bad (an
// unknown field, a value of the wrong type, an unknown kind, a duplicate), the
// error is logged with the file, document index and field, counted, and the
// objects that file last contributed stay in the store.
package configdir

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

// errDuplicate marks a file refused because an object in it is defined twice.
var errDuplicate = errors.New("duplicate object")

// Source is the directory-backed source of a store.
type Source struct {
	dir    string
	log    *slog.Logger
	store  *store.Store
	errors *prometheus.CounterVec

	mu      sync.Mutex
	files   map[string]*fileState // by path
	owners  map[objKey]string     // which file defines each object
	version uint64                // resourceVersion counter
}

type objKey struct {
	kind, namespace, name string
}

func (k objKey) String() string {
	if k.namespace == "" {
		return k.kind + " " + k.name
	}
	return k.kind + " " + k.namespace + "/" + k.name
}

type fileState struct {
	sum     [32]byte
	objects map[objKey]schema.Object
	err     error
}

// New returns a source for dir. It checks that dir is a readable directory
// and registers its metric on reg; nothing is read until Load or Start.
func New(log *slog.Logger, dir string, reg prometheus.Registerer) (*Source, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("config dir: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("config dir %s: not a directory", dir)
	}
	if _, err := os.ReadDir(dir); err != nil {
		return nil, fmt.Errorf("config dir: %w", err)
	}
	s := &Source{
		dir:   dir,
		log:   log,
		store: store.NewMemory(),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshd_config_file_errors_total",
			Help: "Config files (file mode) that could not be applied, by kind of error; the previous objects of such a file are kept.",
		}, []string{"reason"}),
		files:  map[string]*fileState{},
		owners: map[objKey]string{},
	}
	if reg != nil {
		if err := reg.Register(s.errors); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Load reads a directory once into a new store, for one-shot tools such as
// `meshctl analyze --config-dir`. It returns the store and every file error.
func Load(log *slog.Logger, dir string) (*store.Store, error) {
	s, err := New(log, dir, nil)
	if err != nil {
		return nil, err
	}
	err = s.Sync()
	s.store.MarkSynced()
	return s.store, err
}

// Store returns the store this source fills.
func (s *Source) Store() *store.Store { return s.store }

// NeedLeaderElection is false.
func (s *Source) NeedLeaderElection() bool { return false }

// Start loads the directory, marks the store synced, then applies changes as
// files are written, renamed or removed, until ctx ends.
func (s *Source) Start(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("config dir: watch: %w", err)
	}
	defer w.Close()
	// Watch before the first read so that no write falls between the two.
	if err := s.watchTree(w); err != nil {
		return err
	}
	_ = s.Sync() // file errors are logged and counted; the rest is served
	s.store.MarkSynced()
	s.log.Info("config dir loaded", "dir", s.dir, "files", len(s.files))

	// A file written in place is first truncated, then filled: reading it
	// at the first event would see it empty or cut short, and briefly delete
	// its objects. So a sync waits until the directory has been quiet for
	// settleQuiet (at most settleMax after the first event). This is not
	// the push debounce (pilot owns that); it only waits for writers.
	var (
		quiet   = time.NewTimer(time.Hour)
		first   time.Time
		pending bool
	)
	quiet.Stop()
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					_ = s.watchTree(w)
				}
			}
			if !pending {
				pending, first = true, time.Now()
			}
			wait := settleQuiet
			if left := settleMax - time.Since(first); left < wait {
				wait = max(left, 0)
			}
			quiet.Reset(wait)
		case <-quiet.C:
			pending = false
			_ = s.Sync()
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.log.Warn("config dir watch error", "dir", s.dir, "err", err)
		}
	}
}

// How long the directory must be quiet before a sync, and the longest a
// stream of writes can hold one off.
const (
	settleQuiet = 100 * time.Millisecond
	settleMax   = time.Second
)

func (s *Source) watchTree(w *fsnotify.Watcher) error {
	return filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // vanished while walking
		}
		if d.IsDir() {
			if err := w.Add(path); err != nil {
				return fmt.Errorf("config dir: watch %s: %w", path, err)
			}
		}
		return nil
	})
}

// Sync brings the store in line with the directory: new, changed and removed
// files are applied; unchanged files cost a read and a hash. It returns the
// errors of the files that could not be applied (also logged and counted).
func (s *Source) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var paths []string
	_ = filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !isConfigFile(path) {
			return nil
		}
		paths = append(paths, path)
		return nil
	})
	sort.Strings(paths)
	for _, path := range paths {
		seen[path] = true
	}
	// Removals first, so that an object moved from one file to another is
	// free to be claimed by its new file in the same pass.
	for path := range s.files {
		if !seen[path] {
			s.replace(path, nil)
			delete(s.files, path)
			s.log.Info("config file removed", "file", s.rel(path))
		}
	}
	var errs []error
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed since the walk; its event follows
			}
			errs = append(errs, s.fail(path, "read", err))
			continue
		}
		sum := sha256.Sum256(data)
		// An unchanged file is skipped, unless it failed only because
		// another file held one of its objects: that may have changed.
		if st, ok := s.files[path]; ok && st.sum == sum && !errors.Is(st.err, errDuplicate) {
			if st.err != nil {
				errs = append(errs, st.err)
			}
			continue
		}
		if err := s.applyFile(path, data, sum); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func isConfigFile(path string) bool {
	base := filepath.Base(path)
	if strings.HasPrefix(base, ".") || strings.HasSuffix(base, "~") {
		return false // editor swap and backup files
	}
	switch filepath.Ext(path) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// applyFile decodes every document in a file; only if all are good does it
// replace what the file contributed before.
func (s *Source) applyFile(path string, data []byte, sum [32]byte) error {
	objs, err := s.decodeFile(path, data)
	if err != nil {
		// Keep the file's previous objects; remember the error against
		// this content so that it is not logged again until the file changes.
		st := s.files[path]
		if st == nil {
			st = &fileState{objects: map[objKey]schema.Object{}}
			s.files[path] = st
		}
		st.sum, st.err = sum, err
		return err
	}
	s.replace(path, objs)
	s.files[path] = &fileState{sum: sum, objects: objs}
	s.log.Info("config file applied", "file", s.rel(path), "objects", len(objs))
	return nil
}

func (s *Source) decodeFile(path string, data []byte) (map[objKey]schema.Object, error) {
	objs := map[objKey]schema.Object{}
	r := utilyaml.NewYAMLReader(bufioReader(data))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, s.fail(path, "syntax", fmt.Errorf("document %d: %w", i, err))
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, kind, err := schema.Decode(doc)
		if err != nil {
			return nil, s.fail(path, "decode", fmt.Errorf("document %d%s: %w", i, describeDoc(doc), err))
		}
		if obj.GetName() == "" {
			return nil, s.fail(path, "decode", fmt.Errorf("document %d (%s): metadata.name is required", i, kind.Name))
		}
		if kind.Name != schema.Namespace.Name && obj.GetNamespace() == "" {
			obj.SetNamespace(metav1.NamespaceDefault)
		}
		k := objKey{kind.Name, obj.GetNamespace(), obj.GetName()}
		if _, dup := objs[k]; dup {
			return nil, s.fail(path, "duplicate", fmt.Errorf("document %d: %s is defined twice in this file: %w", i, k, errDuplicate))
		}
		if owner, ok := s.owners[k]; ok && owner != path {
			return nil, s.fail(path, "duplicate", fmt.Errorf("document %d: %s is already defined in %s: %w", i, k, s.rel(owner), errDuplicate))
		}
		objs[k] = obj
	}
	return objs, nil
}

func (s *Source) fail(path, reason string, err error) error {
	err = fmt.Errorf("config file %s: %w", s.rel(path), err)
	s.errors.WithLabelValues(reason).Inc()
	s.log.Error("config file not applied; its previous objects are kept", "file", s.rel(path), "err", err)
	return err
}

// replace swaps the objects a file contributes for objs, notifying the store
// of each addition, change and removal.
func (s *Source) replace(path string, objs map[objKey]schema.Object) {
	var prev map[objKey]schema.Object
	if st := s.files[path]; st != nil {
		prev = st.objects
	}
	keys := make([]objKey, 0, len(objs))
	for k := range objs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	for _, k := range keys {
		obj := objs[k]
		kind, _ := schema.ByName(k.kind)
		old, existed := prev[k]
		if existed && sameContent(old, obj) {
			objs[k] = old // unchanged: keep the stored object and its version
			continue
		}
		s.stamp(obj, old)
		s.ensureNamespace(k.namespace)
		idx := s.store.Indexer(kind)
		if existed {
			_ = idx.Update(obj)
			s.store.Notify(store.Event{Kind: kind, Type: store.Updated, Old: old, New: obj})
		} else {
			_ = idx.Add(obj)
			s.store.Notify(store.Event{Kind: kind, Type: store.Added, New: obj})
		}
		s.owners[k] = path
	}
	for k, old := range prev {
		if _, ok := objs[k]; ok {
			continue
		}
		kind, _ := schema.ByName(k.kind)
		_ = s.store.Indexer(kind).Delete(old)
		delete(s.owners, k)
		s.store.Notify(store.Event{Kind: kind, Type: store.Deleted, Old: old})
	}
}

// stamp gives a file object the metadata an API server would: a UID, a
// creation time and a resourceVersion that changes on every update.
func (s *Source) stamp(obj, old schema.Object) {
	s.version++
	obj.SetResourceVersion(strconv.FormatUint(s.version, 10))
	if old != nil {
		obj.SetUID(old.GetUID())
		obj.SetCreationTimestamp(old.GetCreationTimestamp())
		obj.SetGeneration(old.GetGeneration() + 1)
		return
	}
	obj.SetUID(types.UID(fmt.Sprintf("file-%x", sha256.Sum256([]byte(obj.GetObjectKind().GroupVersionKind().Kind+"/"+obj.GetNamespace()+"/"+obj.GetName())))[:21]))
	obj.SetCreationTimestamp(metav1.Now())
	obj.SetGeneration(1)
}

// ensureNamespace makes sure every namespace a file uses exists in the store,
// as it would in a cluster.
func (s *Source) ensureNamespace(ns string) {
	if ns == "" {
		return
	}
	if _, ok := s.store.Namespaces.Get("", ns); ok {
		return
	}
	n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	n.SetGroupVersionKind(schema.Namespace.GVK())
	s.stamp(n, nil)
	_ = s.store.Indexer(schema.Namespace).Add(n)
	s.store.Notify(store.Event{Kind: schema.Namespace, Type: store.Added, New: n})
}

func (s *Source) rel(path string) string {
	if r, err := filepath.Rel(s.dir, path); err == nil {
		return r
	}
	return path
}

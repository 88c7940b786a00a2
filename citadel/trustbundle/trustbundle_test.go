package trustbundle

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/meshd/meshd/citadel/ca"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

// cluster is a fake API server whose ConfigMap writes land in the store,
// as the informers would deliver them.
type cluster struct {
	st *store.Store
	cs *fake.Clientset
	mu sync.Mutex
	rv int
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{st: store.NewMemory(), cs: fake.NewClientset()}
	c.st.MarkSynced()
	c.cs.PrependReactor("*", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch a.GetVerb() {
		case "create", "update":
			cm := a.(k8stesting.CreateAction).GetObject().(*corev1.ConfigMap).DeepCopy()
			cur, exists := c.st.ConfigMaps.Get(cm.Namespace, cm.Name)
			if a.GetVerb() == "create" && exists {
				return true, nil, apierrors.NewAlreadyExists(corev1.Resource("configmaps"), cm.Name)
			}
			if a.GetVerb() == "update" && (!exists || cur.ResourceVersion != cm.ResourceVersion) {
				return true, nil, apierrors.NewConflict(corev1.Resource("configmaps"), cm.Name, nil)
			}
			c.rv++
			cm.ResourceVersion = strconv.Itoa(c.rv)
			c.put(t, cm)
			return true, cm, nil
		}
		return false, nil, nil
	})
	return c
}

func (c *cluster) put(t *testing.T, o schema.Object) {
	k := schema.ConfigMap
	if _, ok := o.(*corev1.Namespace); ok {
		k = schema.Namespace
	}
	if err := c.st.Indexer(k).Add(o); err != nil {
		t.Fatal(err)
	}
	c.st.Notify(store.Event{Kind: k, Type: store.Updated, New: o})
}

func (c *cluster) deleteCM(t *testing.T, ns string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cm, _ := c.st.ConfigMaps.Get(ns, ConfigMapName)
	if err := c.st.Indexer(schema.ConfigMap).Delete(cm); err != nil {
		t.Fatal(err)
	}
	c.st.Notify(store.Event{Kind: schema.ConfigMap, Type: store.Deleted, Old: cm})
}

func (c *cluster) addNamespace(t *testing.T, name string) {
	c.put(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
}

// waitFor polls until every namespace's bundle equals want.
func (c *cluster) waitFor(t *testing.T, want string, namespaces ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		missing := ""
		for _, ns := range namespaces {
			cm, ok := c.st.ConfigMaps.Get(ns, ConfigMapName)
			if !ok || cm.Data[DataKey] != want || cm.Labels[configLabel] != "true" {
				missing = ns
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace %s has no current %s", missing, ConfigMapName)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPublishesAndRepairs(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	authority := ca.New(log, ca.NewDirStorage(t.TempDir(), ""), ca.Options{})
	if err := authority.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t)
	c.addNamespace(t, "default")
	c.addNamespace(t, "shop")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := New(log, c.st, c.cs, authority)
	if !p.NeedLeaderElection() {
		t.Fatal("publisher must run on the leader only")
	}
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()

	roots := string(authority.RootsPEM())
	c.waitFor(t, roots, "default", "shop")

	c.addNamespace(t, "new")
	c.waitFor(t, roots, "new")

	// Someone edits one copy and deletes another.
	edited, _ := c.st.ConfigMaps.Get("shop", ConfigMapName)
	edited = edited.DeepCopy()
	edited.Data[DataKey] = "tampered"
	c.mu.Lock()
	c.put(t, edited)
	c.mu.Unlock()
	c.deleteCM(t, "default")
	c.waitFor(t, roots, "shop", "default")

	// A rotated root reaches every namespace, old root still included.
	if err := authority.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	rotated := string(authority.RootsPEM())
	if rotated == roots {
		t.Fatal("rotation did not change the bundle")
	}
	c.waitFor(t, rotated, "default", "shop", "new")

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

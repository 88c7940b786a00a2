package ca

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

const testNS = "istio-system"

// fakeCluster is a client whose Secret writes land in the store, with
// resourceVersions and conflicts as an API server gives them.
func fakeCluster(t *testing.T) (*store.Store, *fake.Clientset) {
	t.Helper()
	st := store.NewMemory()
	st.MarkSynced()
	cs := fake.NewClientset()
	var mu sync.Mutex
	rv := 0
	write := func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		sec := a.(k8stesting.CreateAction).GetObject().(*corev1.Secret).DeepCopy()
		switch a.GetVerb() {
		case "create":
			if _, ok := st.Secrets.Get(sec.Namespace, sec.Name); ok {
				return true, nil, apierrors.NewAlreadyExists(corev1.Resource("secrets"), sec.Name)
			}
		case "update":
			cur, ok := st.Secrets.Get(sec.Namespace, sec.Name)
			if !ok {
				return true, nil, apierrors.NewNotFound(corev1.Resource("secrets"), sec.Name)
			}
			if cur.ResourceVersion != sec.ResourceVersion {
				return true, nil, apierrors.NewConflict(corev1.Resource("secrets"), sec.Name, errors.New("stale"))
			}
		}
		rv++
		sec.ResourceVersion = strconv.Itoa(rv)
		if err := st.Indexer(schema.Secret).Add(sec); err != nil {
			return true, nil, err
		}
		st.Notify(store.Event{Kind: schema.Secret, Type: store.Updated, New: sec})
		return true, sec, nil
	}
	cs.PrependReactor("create", "secrets", write)
	cs.PrependReactor("update", "secrets", write)
	return st, cs
}

func TestSecretStorageCreatesOnceAndReloads(t *testing.T) {
	st, cs := fakeCluster(t)
	first := New(discard(), NewSecretStorage(testNS, st, cs), Options{})
	if err := first.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	sec, ok := st.Secrets.Get(testNS, SelfSignedSecret)
	if !ok || sec.Type != SecretType || len(sec.Data[CAKeyKey]) == 0 {
		t.Fatalf("istio-ca-secret not written: %+v", sec)
	}
	// A second replica (or a restart) loads it rather than creating another.
	second := New(discard(), NewSecretStorage(testNS, st, cs), Options{})
	if err := second.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if string(first.RootsPEM()) != string(second.RootsPEM()) {
		t.Fatal("second replica made its own root")
	}

	// One rotates; the other's Sync picks up the new bundle, and its own
	// stale rotation attempt is a conflict rather than a second new root.
	if err := first.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	stale := second.current()
	if _, err := second.storage.Update(context.Background(), stale, stale); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v, want ErrConflict", err)
	}
	if err := second.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if string(first.RootsPEM()) != string(second.RootsPEM()) || len(second.Roots()) != 2 {
		t.Fatal("second replica did not load the rotated bundle")
	}
}

func TestSecretStoragePluginWins(t *testing.T) {
	st, cs := fakeCluster(t)
	c := New(discard(), NewSecretStorage(testNS, st, cs), Options{})
	if err := c.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	changed := c.Changed()

	root, rootKey := makeCA(t, "plug-in root", nil, nil, 1000*3600e9)
	keyPEM, _ := EncodeKey(rootKey)
	plugin := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: PluginSecret, Namespace: testNS},
		Data: map[string][]byte{
			CACertKey: EncodeCert(root), CAKeyKey: keyPEM, RootCertKey: EncodeCert(root), CertChainKey: EncodeCert(root),
		},
	}
	if _, err := cs.CoreV1().Secrets(testNS).Create(context.Background(), plugin, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-changed
	if !c.Roots()[0].Equal(root) {
		t.Fatal("cacerts did not win over istio-ca-secret")
	}
	iss, err := c.SignWorkload(makeCSR(t, csrSpec{}), testID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(iss.CertChain()) != 2 {
		t.Fatalf("chain with a root signing directly: %d entries, want 2", len(iss.CertChain()))
	}
	verify(t, iss.CertChain(), poolOf(t, string(EncodeCert(root))))
}

func TestSecretStorageWatchSignalsCAChanges(t *testing.T) {
	st, cs := fakeCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan struct{}, 10)
	NewSecretStorage(testNS, st, cs).Watch(ctx, func() { got <- struct{}{} })
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: testNS}}
	mine := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: PluginSecret, Namespace: testNS}}
	for _, s := range []*corev1.Secret{other, mine} {
		if _, err := cs.CoreV1().Secrets(testNS).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	<-got
	select {
	case <-got:
		t.Fatal("signalled for an unrelated secret")
	default:
	}
}

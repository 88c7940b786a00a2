package ca

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writePlugin(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPluginCAWithIntermediate(t *testing.T) {
	root, rootKey := makeCA(t, "root", nil, nil, 1000*time.Hour)
	inter, interKey := makeCA(t, "intermediate", root, rootKey, 500*time.Hour)
	keyPEM, err := EncodeKey(interKey)
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	plugin := filepath.Join(base, "cacerts")
	writePlugin(t, plugin, map[string][]byte{
		CACertKey:    EncodeCert(inter),
		CAKeyKey:     keyPEM,
		CertChainKey: append(EncodeCert(inter), EncodeCert(root)...),
		RootCertKey:  EncodeCert(root),
	})
	// A self-signed CA made earlier is ignored once a plug-in CA is there.
	selfDir := filepath.Join(base, "self")
	if err := New(discard(), NewDirStorage(selfDir, ""), Options{}).Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := New(discard(), NewDirStorage(selfDir, plugin), Options{})
	if err := c.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !c.Roots()[0].Equal(root) || len(c.Roots()) != 1 {
		t.Fatal("plug-in root is not the trust bundle")
	}
	iss, err := c.SignWorkload(makeCSR(t, csrSpec{}), testID, 1000*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	chain := iss.CertChain()
	if len(chain) != 3 {
		t.Fatalf("chain has %d entries, want leaf, intermediate, root", len(chain))
	}
	if chain[1] != string(EncodeCert(inter)) || chain[2] != string(EncodeCert(root)) {
		t.Fatal("chain is not leaf, intermediate, root")
	}
	leaf := verify(t, chain, poolOf(t, chain[2]))
	if leaf.NotAfter.After(inter.NotAfter) {
		t.Fatal("leaf outlives its issuer")
	}
	if err := c.Rotate(context.Background()); err == nil || !strings.Contains(err.Error(), "plug-in CA") {
		t.Fatalf("Rotate on a plug-in CA: %v", err)
	}
}

func TestPluginCAErrorsNameFiles(t *testing.T) {
	root, rootKey := makeCA(t, "root", nil, nil, 1000*time.Hour)
	inter, _ := makeCA(t, "intermediate", root, rootKey, 500*time.Hour)
	otherRoot, _ := makeCA(t, "other", nil, nil, 1000*time.Hour)
	wrongKey, _ := EncodeKey(ecKey(t))
	plugin := filepath.Join(t.TempDir(), "cacerts")
	writePlugin(t, plugin, map[string][]byte{
		CACertKey:   EncodeCert(inter),
		CAKeyKey:    wrongKey,
		RootCertKey: EncodeCert(otherRoot),
	})
	err := New(discard(), NewDirStorage(t.TempDir(), plugin), Options{}).Init(context.Background())
	if err == nil {
		t.Fatal("mismatched plug-in CA loaded")
	}
	for _, want := range []string{
		"directory " + plugin + ": " + CAKeyKey + ": does not belong to the certificate in ca-cert.pem",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// With the right key, the broken chain is reported.
	goodInter, goodKey := makeCA(t, "intermediate", root, rootKey, 500*time.Hour)
	keyPEM, _ := EncodeKey(goodKey)
	writePlugin(t, plugin, map[string][]byte{CACertKey: EncodeCert(goodInter), CAKeyKey: keyPEM})
	err = New(discard(), NewDirStorage(t.TempDir(), plugin), Options{}).Init(context.Background())
	if err == nil || !strings.Contains(err.Error(), "ca-cert.pem: does not chain to root-cert.pem") {
		t.Fatalf("err = %v", err)
	}
}

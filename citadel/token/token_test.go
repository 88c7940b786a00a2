package token

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMintVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k", KeyFile)
	key, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateKey(path)
	if err != nil || !again.Equal(key) {
		t.Fatalf("reloaded key differs (err %v)", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode())
	}
	now := time.Now()
	tok, err := Mint(key, "shop", "cart", nil, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(&key.PublicKey, func() time.Time { return now })
	ns, sa, err := v.Verify(tok, DefaultAudience)
	if err != nil || ns != "shop" || sa != "cart" {
		t.Fatalf("Verify = %q, %q, %v", ns, sa, err)
	}

	other, _ := LoadOrCreateKey(filepath.Join(t.TempDir(), KeyFile))
	foreign, _ := Mint(other, "shop", "cart", nil, time.Hour, now)
	wrongAud, _ := Mint(key, "shop", "cart", []string{"kubernetes"}, time.Hour, now)
	expired, _ := Mint(key, "shop", "cart", nil, time.Hour, now.Add(-3*time.Hour))
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + b64.EncodeToString([]byte(`{"iss":"meshd","sub":"system:serviceaccount:shop:admin","aud":["istio-ca"],"exp":9999999999}`)) + "." + parts[2]
	for name, tc := range map[string]struct{ tok, msg string }{
		"other key":      {foreign, "does not verify"},
		"wrong audience": {wrongAud, `do not include "istio-ca"`},
		"expired":        {expired, "token expired"},
		"not a JWT":      {"abc", "not a JWT"},
		"forged payload": {forged, "does not verify"},
	} {
		if _, _, err := v.Verify(tc.tok, DefaultAudience); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.msg)
		}
	}
}

func TestKeyPathBesideCADir(t *testing.T) {
	if got := KeyPath("/var/lib/meshd/ca/"); got != "/var/lib/meshd/"+KeyFile {
		t.Fatalf("KeyPath = %q", got)
	}
}

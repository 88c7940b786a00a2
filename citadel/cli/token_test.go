package cli

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshd/meshd/citadel/token"
)

func TestTokenCommand(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "ca")
	key, err := token.LoadOrCreateKey(token.KeyPath(caDir))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := NewTokenCommand()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--namespace", "shop", "--service-account", "cart", "--ca-dir", caDir})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	ns, sa, err := token.NewVerifier(&key.PublicKey, nil).Verify(strings.TrimSpace(out.String()), token.DefaultAudience)
	if err != nil || ns != "shop" || sa != "cart" {
		t.Fatalf("minted token: %s/%s, %v", ns, sa, err)
	}
}

func TestTokenCommandErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		msg  string
	}{
		"missing account": {[]string{"-n", "shop"}, "--namespace and --service-account are required"},
		"no key":          {[]string{"-n", "shop", "--service-account", "cart", "--key", filepath.Join(t.TempDir(), "nope.pem")}, "meshd creates the key"},
		"bad ttl":         {[]string{"-n", "shop", "--service-account", "cart", "--ttl", "-1s"}, "--ttl -1s"},
	} {
		cmd := NewTokenCommand()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(tc.args)
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.msg)
		}
	}
}

package ca

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// DirStorage keeps the CA in a directory, for file mode: the self-signed CA
// in Dir and, when PluginDir holds ca-cert.pem, the operator's plug-in CA
// there (read only). File names are the cacerts keys.
type DirStorage struct {
	// Dir holds the self-signed CA meshd creates.
	Dir string
	// PluginDir, if set and populated, holds a plug-in CA.
	PluginDir string

	mu sync.Mutex
}

var _ Storage = (*DirStorage)(nil)

// NewDirStorage returns a storage over dir and (optionally) pluginDir.
func NewDirStorage(dir, pluginDir string) *DirStorage {
	return &DirStorage{Dir: dir, PluginDir: pluginDir}
}

// Load reads the plug-in CA, else the self-signed one, else nil.
func (d *DirStorage) Load(context.Context) (*Material, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.PluginDir != "" {
		m, err := readDir(d.PluginDir, true)
		if err != nil || m != nil {
			return m, err
		}
	}
	return readDir(d.Dir, false)
}

func readDir(dir string, plugin bool) (*Material, error) {
	read := func(name string, required bool) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) && !required {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading CA: %w", err)
		}
		return b, nil
	}
	if _, err := os.Stat(filepath.Join(dir, CACertKey)); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	m := &Material{Plugin: plugin, Source: "directory " + dir}
	var err error
	if m.CertPEM, err = read(CACertKey, true); err != nil {
		return nil, err
	}
	if m.KeyPEM, err = read(CAKeyKey, true); err != nil {
		return nil, err
	}
	if m.ChainPEM, err = read(CertChainKey, false); err != nil {
		return nil, err
	}
	if m.RootPEM, err = read(RootCertKey, plugin); err != nil {
		return nil, err
	}
	m.Version = digest(m)
	return m, nil
}

func digest(m *Material) string {
	h := sha256.New()
	for _, b := range [][]byte{m.CertPEM, m.KeyPEM, m.ChainPEM, m.RootPEM} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Create writes m into Dir unless a CA is there already.
func (d *DirStorage) Create(_ context.Context, m *Material) (*Material, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if existing, err := readDir(d.Dir, false); err != nil || existing != nil {
		if err == nil {
			err = ErrExists
		}
		return nil, err
	}
	return d.write(m)
}

// Update replaces the CA in Dir if it is still old.
func (d *DirStorage) Update(_ context.Context, old, m *Material) (*Material, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, err := readDir(d.Dir, false)
	if err != nil {
		return nil, err
	}
	if cur == nil || old == nil || cur.Version != digest(old) {
		return nil, ErrConflict
	}
	return d.write(m)
}

// write stores each file by rename so that a crash leaves whole files; the
// certificate goes last because its presence is what Load looks for.
func (d *DirStorage) write(m *Material) (*Material, error) {
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("storing CA: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode fs.FileMode
	}{
		{CAKeyKey, m.KeyPEM, 0o600},
		{CertChainKey, m.ChainPEM, 0o644},
		{RootCertKey, m.RootPEM, 0o644},
		{CACertKey, m.CertPEM, 0o644},
	} {
		if err := writeFileAtomic(filepath.Join(d.Dir, f.name), f.data, f.mode); err != nil {
			return nil, fmt.Errorf("storing CA: %w", err)
		}
	}
	out := *m
	out.Plugin = false
	out.Source = "directory " + d.Dir
	out.Version = digest(&out)
	return &out, nil
}

func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Watch does nothing: in file mode meshd is the only writer, and the CA's
// periodic check picks up a plug-in CA dropped into PluginDir.
func (d *DirStorage) Watch(context.Context, func()) {}

// DefaultDir is where file mode keeps its self-signed CA unless told
// otherwise: per user, so that meshd and meshctl token agree.
func DefaultDir() string {
	base, err := os.UserConfigDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "meshd", "ca")
}

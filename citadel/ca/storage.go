package ca

import (
	"context"
	"errors"
)

// Storage errors.
var (
	// ErrExists: Create found a CA already stored (another replica won).
	ErrExists = errors.New("CA already stored")
	// ErrConflict: Update found the stored CA changed since it was loaded.
	ErrConflict = errors.New("stored CA changed meanwhile")
)

// Storage keeps the CA's material. An operator's plug-in CA, when present,
// wins over the self-signed one.
type Storage interface {
	// Load returns the plug-in CA if there is one, else the stored
	// self-signed CA, else nil.
	Load(ctx context.Context) (*Material, error)
	// Create stores a self-signed CA where there is none, returning it as
	// stored (with Source and Version); ErrExists if one appeared meanwhile.
	Create(ctx context.Context, m *Material) (*Material, error)
	// Update replaces the stored self-signed CA old (as Load returned it)
	// with m, returning m as stored; ErrConflict if old is no longer current.
	Update(ctx context.Context, old, m *Material) (*Material, error)
	// Watch calls changed (from any goroutine) whenever the stored material
	// may have changed, until ctx ends. It does not block.
	Watch(ctx context.Context, changed func())
}

package bootstrap

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
)

// Readiness answers /ready: 200 once every registered check passes, 503
// with the failing checks otherwise.
type Readiness struct {
	mu     sync.Mutex
	checks []readyCheck
}

type readyCheck struct {
	name string
	fn   func() error
}

// Add registers a named check.
func (r *Readiness) Add(name string, fn func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, readyCheck{name, fn})
}

// Check returns nil when every check passes.
func (r *Readiness) Check() error {
	r.mu.Lock()
	checks := append([]readyCheck(nil), r.checks...)
	r.mu.Unlock()
	var failed []string
	for _, c := range checks {
		if err := c.fn(); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", c.name, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("not ready: %s", strings.Join(failed, "; "))
	}
	return nil
}

func (r *Readiness) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	if err := r.Check(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// ParseLevel parses a --log-level value.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

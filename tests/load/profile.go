package load

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// profiler fetches the control plane's pprof profiles (meshd serves
// /debug/pprof on its debug address) into a directory: one CPU profile
// covering the start of the run, and a heap profile after each scenario.
type profiler struct {
	log     *slog.Logger
	baseURL string
	dir     string
	client  *http.Client
	cpuDone chan struct{}
}

func newProfiler(log *slog.Logger, baseURL, dir string) *profiler {
	if baseURL == "" || dir == "" {
		return nil
	}
	return &profiler{log: log, baseURL: strings.TrimSuffix(baseURL, "/"), dir: dir, client: &http.Client{}}
}

// startCPU records a CPU profile for d in the background; wait collects it.
func (p *profiler) startCPU(ctx context.Context, d time.Duration) {
	if p == nil {
		return
	}
	p.cpuDone = make(chan struct{})
	go func() {
		defer close(p.cpuDone)
		secs := max(1, int(d.Seconds()))
		ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
		defer cancel()
		p.fetch(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), "cpu.pprof")
	}()
}

// heap saves a heap profile named after the scenario.
func (p *profiler) heap(ctx context.Context, scenario string) {
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p.fetch(ctx, "/debug/pprof/heap", "heap-"+strings.ReplaceAll(scenario, " ", "-")+".pprof")
}

func (p *profiler) wait() {
	if p != nil && p.cpuDone != nil {
		<-p.cpuDone
	}
}

// fetch saves one profile; a failure is logged, not fatal: the figures
// matter more than the profile.
func (p *profiler) fetch(ctx context.Context, path, file string) {
	err := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.baseURL+path, nil)
		if err != nil {
			return err
		}
		resp, err := p.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		if err := os.MkdirAll(p.dir, 0o755); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(p.dir, file))
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}()
	if err != nil {
		p.log.Warn("profile not saved", "url", p.baseURL+path, "err", err)
		return
	}
	p.log.Info("profile saved", "file", filepath.Join(p.dir, file))
}

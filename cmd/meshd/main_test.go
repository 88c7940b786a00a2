package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as meshd: with MESHD_TEST_MAIN set it runs main,
// so these tests drive the real process (flags, signals, exit codes).
func TestMain(m *testing.M) {
	if os.Getenv("MESHD_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stderr))
	}
	os.Exit(m.Run())
}

type process struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr strings.Builder
	done   chan struct{}
	debug  string
}

func (p *process) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startMeshd runs meshd with args plus loopback listen addresses.
func startMeshd(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{done: make(chan struct{}), debug: freeAddr(t)}
	args = append(args, "--ca-dir", t.TempDir(), "--debug-address", p.debug, "--grpc-address", "127.0.0.1:0", "--secure-grpc-address", "127.0.0.1:0",
		"--webhook-address", "127.0.0.1:0", "--monitoring-address", "127.0.0.1:0")
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), "MESHD_TEST_MAIN=1")
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		_ = p.cmd.Wait()
		if t.Failed() {
			t.Logf("meshd log:\n%s", p.logs())
		}
	})
	return p
}

func (p *process) get(path string) (int, string, error) {
	resp, err := http.Get("http://" + p.debug + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

func TestBookinfoFileMode(t *testing.T) {
	dir := copyDir(t, "../../examples/bookinfo")
	p := startMeshd(t, "--config-dir", dir)

	eventually(t, "/ready to answer 200", func() error {
		code, body, err := p.get("/ready")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d: %s", code, body)
		}
		return err
	})

	_, body, err := p.get("/debug/registryz")
	if err != nil {
		t.Fatal(err)
	}
	var services []struct {
		Hostname  string `json:"hostname"`
		Endpoints []struct {
			Address string `json:"address"`
			Port    int    `json:"port"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(body), &services); err != nil {
		t.Fatalf("registryz: %v\n%s", err, body)
	}
	endpoints := map[string]int{}
	for _, s := range services {
		endpoints[s.Hostname] = len(s.Endpoints)
	}
	want := map[string]int{
		"productpage.default.svc.cluster.local": 1, "details.default.svc.cluster.local": 1,
		"reviews.default.svc.cluster.local": 3, "ratings.default.svc.cluster.local": 1,
	}
	if len(endpoints) != len(want) {
		t.Fatalf("registryz services %v, want %v", endpoints, want)
	}
	for host, n := range want {
		if endpoints[host] != n {
			t.Errorf("%s has %d endpoints, want %d", host, endpoints[host], n)
		}
	}

	// An edit shows up in /debug/configz without a restart.
	vsFile := filepath.Join(dir, "virtual-services.yaml")
	orig, err := os.ReadFile(vsFile)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(orig), "weight: 80", "weight: 60", 1)
	edited = strings.Replace(edited, "weight: 20", "weight: 40", 1)
	writeFile(t, vsFile, edited)
	eventually(t, "the edit in /debug/configz", func() error {
		_, body, err := p.get("/debug/configz?kind=VirtualService&namespace=default")
		if err == nil && !strings.Contains(body, `"weight": 60`) {
			err = fmt.Errorf("weight 60 not in configz")
		}
		return err
	})

	// A misspelled field: an error naming the file and field, and the
	// previous objects still served.
	writeFile(t, vsFile, strings.Replace(edited, "subset: v3", "subsett: v3", 1))
	eventually(t, "an error naming file and field", func() error {
		l := p.logs()
		if strings.Contains(l, "virtual-services.yaml") && strings.Contains(l, "destination.subsett: unknown field") {
			return nil
		}
		return fmt.Errorf("not logged yet")
	})
	_, body, _ = p.get("/debug/configz?kind=VirtualService&namespace=default")
	if !strings.Contains(body, `"weight": 60`) || !strings.Contains(body, `"name": "reviews"`) {
		t.Fatalf("previous objects not served after a bad edit:\n%s", body)
	}

	// SIGTERM drains and exits 0.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("meshd did not exit after SIGTERM")
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBadInvocationIsOneClearLine(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	writeFile(t, kubeconfig, "this: [is not a kubeconfig")
	tests := map[string]struct {
		args []string
		want string
	}{
		"unknown flag":          {[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		"bad duration":          {[]string{"--config-dir", ".", "--debounce-after", "soon"}, "invalid value \"soon\" for flag -debounce-after"},
		"missing config dir":    {[]string{"--config-dir", "/does/not/exist"}, "config dir: stat /does/not/exist"},
		"unreadable kubeconfig": {[]string{"--kubeconfig", kubeconfig}, "kubeconfig " + kubeconfig},
		"both modes":            {[]string{"--kubeconfig", kubeconfig, "--config-dir", "."}, "exclusive"},
		"bad address":           {[]string{"--config-dir", ".", "--grpc-address", "15010"}, "--grpc-address \"15010\""},
		"bad log level":         {[]string{"--config-dir", ".", "--log-level", "loud"}, "--log-level \"loud\""},
		"bad traffic policy":    {[]string{"--config-dir", ".", "--outbound-traffic-policy", "DENY"}, "--outbound-traffic-policy \"DENY\": want ALLOW_ANY or REGISTRY_ONLY"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], tt.args...)
			cmd.Env = append(os.Environ(), "MESHD_TEST_MAIN=1", "KUBECONFIG=")
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
				t.Fatalf("exit: %v, want non-zero; output:\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "meshd: ") || !strings.Contains(lines[0], tt.want) {
				t.Fatalf("output %q, want one line containing %q", out, tt.want)
			}
		})
	}
}

package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshd/meshd/tests/integration/framework"
)

// The control planes meshload can start on this machine.
const (
	TargetMeshd  = "meshd"
	TargetIstiod = "istiod"
)

// APIServer is a throwaway etcd + kube-apiserver (hack/build-tools.sh's
// binaries) with the Istio CRDs and namespace istio-system: what every
// target of a local run is measured against.
type APIServer struct {
	Kubeconfig string
	cluster    *framework.Cluster
}

// StartAPIServer starts a local API server, building the binaries first
// with hack/build-tools.sh if this machine has none yet.
func StartAPIServer(ctx context.Context, log *slog.Logger) (*APIServer, error) {
	if err := ensureTools(ctx, log, "kube-apiserver", "etcd"); err != nil {
		return nil, err
	}
	c, err := framework.StartCluster(framework.Options{Logger: log.With("component", "apiserver")})
	if err != nil {
		return nil, fmt.Errorf("start API server: %w", err)
	}
	_, err = c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		c.Stop()
		return nil, fmt.Errorf("create namespace istio-system: %w", err)
	}
	return &APIServer{Kubeconfig: c.Kubeconfig, cluster: c}, nil
}

// Stop stops the API server and removes its files.
func (a *APIServer) Stop() { a.cluster.Stop() }

// ensureTools runs hack/build-tools.sh for the named binaries missing from
// the tools cache. The script lives in the meshd checkout the command runs
// in; outside one, the error says what to build.
func ensureTools(ctx context.Context, log *slog.Logger, names ...string) error {
	var missing []string
	for _, n := range names {
		if _, err := framework.FindTool(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return fmt.Errorf("%s not built and no meshd checkout here to build them: run hack/build-tools.sh %s", strings.Join(missing, ", "), strings.Join(missing, " "))
	}
	log.Info("building tools (once per machine)", "tools", missing)
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "build-tools.sh"), missing...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("hack/build-tools.sh %s: %w", strings.Join(missing, " "), err)
	}
	return nil
}

// moduleRoot is the directory of the meshd module the working directory is in.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	b, err := os.ReadFile(gomod)
	if err != nil || !bytes.HasPrefix(b, []byte("module github.com/meshd/meshd\n")) {
		return "", fmt.Errorf("%s is not meshd's go.mod", gomod)
	}
	return filepath.Dir(gomod), nil
}

// Process is a control plane meshload started, listening on loopback ports
// of its own.
type Process struct {
	Target
	cmd    *exec.Cmd
	done   chan struct{}
	dir    string
	logMu  sync.Mutex
	log    bytes.Buffer
	logCap int
}

// StartMeshd builds cmd/meshd from the checkout the command runs in and
// starts it against kubeconfig, waiting until it is ready.
func StartMeshd(ctx context.Context, log *slog.Logger, kubeconfig string, extraArgs ...string) (_ *Process, err error) {
	p := &Process{}
	defer func() {
		if err != nil {
			p.Stop()
		}
	}()
	if p.dir, err = os.MkdirTemp("", "meshload-meshd-"); err != nil {
		return nil, err
	}
	bin := filepath.Join(p.dir, "meshd")
	log.Info("building meshd", "out", bin)
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/meshd/meshd/cmd/meshd").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build meshd: %w\n%s", err, out)
	}
	a, err := loopbackAddrs(5)
	if err != nil {
		return nil, err
	}
	p.Target = Target{Name: TargetMeshd, XDSAddress: a[0], CAAddress: a[1], WebhookURL: "https://" + a[2] + "/validate", PprofURL: "http://" + a[4]}
	args := append([]string{"--kubeconfig", kubeconfig, "--namespace", "istio-system", "--pod-name", "meshd-load",
		"--grpc-address", a[0], "--secure-grpc-address", a[1], "--webhook-address", a[2],
		"--monitoring-address", a[3], "--debug-address", a[4], "--log-level", "warn"}, extraArgs...)
	if err := p.start(log, bin, args, nil); err != nil {
		return nil, err
	}
	return p, p.waitReady(ctx, log, p.PprofURL+"/ready")
}

// StartIstiod starts upstream istiod (pilot-discovery, built by
// hack/build-tools.sh from the Istio module pinned in tools/istiod) against
// kubeconfig, as the Deployment in Istio's chart would run it but on
// loopback ports, with its own CA, and waits until it is ready. env adds
// or overrides environment variables (PILOT_MAX_REQUESTS_PER_SECOND=4).
func StartIstiod(ctx context.Context, log *slog.Logger, kubeconfig string, env []string) (_ *Process, err error) {
	p := &Process{logCap: 1 << 20}
	defer func() {
		if err != nil {
			p.Stop()
		}
	}()
	if err := ensureTools(ctx, log, "pilot-discovery"); err != nil {
		return nil, err
	}
	bin, err := framework.FindTool("pilot-discovery")
	if err != nil {
		return nil, err
	}
	// istiod keeps its serving certificate and reads plugged-in CA files
	// relative to its working directory: give it one of its own.
	if p.dir, err = os.MkdirTemp("", "meshload-istiod-"); err != nil {
		return nil, err
	}
	mesh := filepath.Join(p.dir, "mesh.yaml")
	if err := os.WriteFile(mesh, []byte("rootNamespace: istio-system\ntrustDomain: cluster.local\n"), 0o644); err != nil {
		return nil, err
	}
	a, err := loopbackAddrs(5)
	if err != nil {
		return nil, err
	}
	p.Target = Target{Name: TargetIstiod, XDSAddress: a[0], CAAddress: a[1], WebhookURL: "https://" + a[2] + "/validate", PprofURL: "http://" + a[4]}
	args := []string{"discovery", "--kubeconfig", kubeconfig, "--meshConfig", mesh,
		"--networksConfig", filepath.Join(p.dir, "meshNetworks.yaml"), "--namespace", "istio-system",
		"--grpcAddr", a[0], "--secureGRPCAddr", a[1], "--httpsAddr", a[2], "--monitoringAddr", a[3], "--httpAddr", a[4],
		"--domain", "cluster.local", "--clusterID", "Kubernetes", "--log_output_level", "default:warn"}
	base := []string{
		"POD_NAME=istiod-load", "POD_NAMESPACE=istio-system", "REVISION=default",
		"JWT_POLICY=third-party-jwt", "PILOT_CERT_PROVIDER=istiod", "ENABLE_CA_SERVER=true",
		// No webhook configurations exist to patch, and analysis would add
		// work meshd's figures do not include.
		"INJECTION_WEBHOOK_CONFIG_NAME=", "VALIDATION_WEBHOOK_CONFIG_NAME=", "PILOT_ENABLE_ANALYSIS=false",
		"KUBECONFIG=" + kubeconfig,
	}
	if err := p.start(log, bin, args, append(base, env...)); err != nil {
		return nil, err
	}
	return p, p.waitReady(ctx, log, p.PprofURL+"/ready")
}

func (p *Process) start(log *slog.Logger, bin string, args, env []string) error {
	p.done = make(chan struct{})
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = p.dir
	p.cmd.Env = append(framework.WithoutProxy(os.Environ()), env...)
	p.cmd.Stdout = processLog{p}
	p.cmd.Stderr = processLog{p}
	// The kernel kills the control plane if meshload dies first.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		p.cmd = nil
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.PID = p.cmd.Process.Pid
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	log.Info("waiting for control plane", "target", p.Name, "pid", p.PID, "xds", p.XDSAddress)
	return nil
}

func (p *Process) waitReady(ctx context.Context, log *slog.Logger, url string) error {
	exited := func() bool {
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	}
	ready := waitFor(ctx, log, p.Name+" ready", 3*time.Minute, 1, func() int {
		if exited() {
			return 1
		}
		resp, err := http.Get(url)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0
		}
		return 1
	})
	switch {
	case exited():
		return fmt.Errorf("%s exited: %s", p.Name, p.Log())
	case !ready:
		return fmt.Errorf("%s not ready within 3m: %s", p.Name, p.Log())
	}
	return nil
}

// Log returns what the control plane wrote (the last MiB of it for istiod,
// whose warnings are many).
func (p *Process) Log() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.log.String()
}

// Stop kills the control plane and removes its files.
func (p *Process) Stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
}

type processLog struct{ p *Process }

func (w processLog) Write(b []byte) (int, error) {
	w.p.logMu.Lock()
	defer w.p.logMu.Unlock()
	w.p.log.Write(b)
	if c := w.p.logCap; c > 0 && w.p.log.Len() > 2*c {
		tail := append([]byte(nil), w.p.log.Bytes()[w.p.log.Len()-c:]...)
		w.p.log.Reset()
		w.p.log.Write(tail)
	}
	return len(b), nil
}

func loopbackAddrs(n int) ([]string, error) {
	ports, err := framework.FreePorts(n)
	if err != nil {
		return nil, err
	}
	addrs := make([]string, n)
	for i, port := range ports {
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	return addrs, nil
}

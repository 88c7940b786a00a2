//go:build integration

package load

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshd/meshd/tests/integration/framework"
)

// Local is a throwaway API server (etcd + kube-apiserver, from
// hack/build-tools.sh's binaries) with a meshd process against it: what
// `meshload --start-apiserver` and the smoke test measure.
type Local struct {
	Kubeconfig string
	XDSAddress string
	DebugURL   string // meshd's debug mux, which serves /debug/pprof
	PID        int

	cluster *framework.Cluster
	cmd     *exec.Cmd
	done    chan struct{}
	binDir  string
	logMu   sync.Mutex
	log     bytes.Buffer
}

// StartLocal builds cmd/meshd (the working directory must be inside the
// meshd module), starts an API server with the Istio CRDs, and runs meshd
// against it until Stop.
func StartLocal(ctx context.Context, log *slog.Logger, meshdArgs ...string) (_ *Local, err error) {
	l := &Local{done: make(chan struct{})}
	defer func() {
		if err != nil {
			l.Stop()
		}
	}()
	l.binDir, err = os.MkdirTemp("", "meshload-bin-")
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(l.binDir, "meshd")
	log.Info("building meshd", "out", bin)
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/meshd/meshd/cmd/meshd").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build meshd: %w\n%s", err, out)
	}
	l.cluster, err = framework.StartCluster(framework.Options{Logger: log.With("component", "apiserver")})
	if err != nil {
		return nil, fmt.Errorf("start API server: %w", err)
	}
	l.Kubeconfig = l.cluster.Kubeconfig
	_, err = l.cluster.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace istio-system: %w", err)
	}
	addrs := make([]string, 5)
	for i := range addrs {
		p, err := framework.FreePort()
		if err != nil {
			return nil, err
		}
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	l.XDSAddress, l.DebugURL = addrs[0], "http://"+addrs[4]
	args := append([]string{"--kubeconfig", l.Kubeconfig, "--namespace", "istio-system", "--pod-name", "meshd-load",
		"--grpc-address", addrs[0], "--secure-grpc-address", addrs[1], "--webhook-address", addrs[2],
		"--monitoring-address", addrs[3], "--debug-address", addrs[4], "--log-level", "warn"}, meshdArgs...)
	l.cmd = exec.Command(bin, args...)
	l.cmd.Stderr = lockedWriter{&l.logMu, &l.log}
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := l.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start meshd: %w", err)
	}
	l.PID = l.cmd.Process.Pid
	go func() { _ = l.cmd.Wait(); close(l.done) }()
	log.Info("waiting for meshd", "pid", l.PID, "xds", l.XDSAddress)
	ready := waitFor(ctx, log, "meshd ready", 2*time.Minute, 1, func() int {
		select {
		case <-l.done:
			return 1
		default:
		}
		resp, err := http.Get(l.DebugURL + "/ready")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0
		}
		return 1
	})
	select {
	case <-l.done:
		return nil, fmt.Errorf("meshd exited: %s", l.Log())
	default:
	}
	if !ready {
		return nil, fmt.Errorf("meshd not ready within 2m: %s", l.Log())
	}
	return l, nil
}

// Log returns what meshd wrote to stderr.
func (l *Local) Log() string {
	l.logMu.Lock()
	defer l.logMu.Unlock()
	return l.log.String()
}

// Stop kills meshd and the API server and removes their files.
func (l *Local) Stop() {
	if l.cmd != nil && l.cmd.Process != nil {
		_ = l.cmd.Process.Kill()
		<-l.done
	}
	if l.cluster != nil {
		l.cluster.Stop()
	}
	if l.binDir != "" {
		_ = os.RemoveAll(l.binDir)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

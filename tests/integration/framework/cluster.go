// Package framework runs a real etcd and kube-apiserver on loopback for
// meshd's integration tests, from the binaries hack/build-tools.sh builds,
// with the Istio CRDs installed.
//
// There is no kubelet and no controller-manager: tests play their part
// (NewNamespace creates the `default` ServiceAccount; tests set Pod status and
// write EndpointSlices themselves). Every process listens on 127.0.0.1 only.
//
// Starting a cluster takes seconds; a package whose tests can share one
// should start it once in TestMain with StartCluster.
package framework

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options tune StartCluster. The zero value is what most tests want.
type Options struct {
	// ToolsDir holds the etcd and kube-apiserver binaries; empty means ToolsDir().
	ToolsDir string
	// Logger receives a few progress lines; nil discards them.
	Logger *slog.Logger
	// APIServerArgs are appended to the API server's command line; a flag
	// given here overrides the harness's own value for it.
	APIServerArgs []string
	// SkipCRDs leaves the Istio CRDs out.
	SkipCRDs bool
	// StartTimeout bounds each start of a process (and the CRD install);
	// zero means 2 minutes, which leaves room for a loaded machine.
	StartTimeout time.Duration
}

// Cluster is a running etcd + kube-apiserver. Its exported fields are set
// once by StartCluster and stay valid across StopAPIServer/StartAPIServer
// (same address, same serving certificate, same credentials); treat them as
// read-only, and rest.CopyConfig(RESTConfig) before changing a config.
type Cluster struct {
	// Dir is the cluster's temporary directory (etcd data, certificates,
	// logs); Stop removes it.
	Dir string
	// Kubeconfig is the path of a kubeconfig file for the admin user; it
	// verifies the API server's certificate.
	Kubeconfig string
	// Host is the API server's URL, https://127.0.0.1:PORT.
	Host string
	// RESTConfig is the admin config the clients below use (client-side rate
	// limiting is raised so that tests are not throttled).
	RESTConfig *rest.Config
	// Kube, Istio and Dynamic are admin clients.
	Kube    kubernetes.Interface
	Istio   istioclient.Interface
	Dynamic dynamic.Interface
	// AdminToken is a bearer token for AdminUser, in group system:masters.
	AdminToken string
	// ServiceAccountKey signs service-account tokens
	// (--service-account-signing-key-file); tokens it signs with issuer
	// ServiceAccountIssuer are accepted by the API server.
	ServiceAccountKey *rsa.PrivateKey
	// ServiceAccountKeyFile and ServiceAccountPublicKeyFile hold that key
	// pair in PEM (PKCS#8 private key, PKIX public key).
	ServiceAccountKeyFile       string
	ServiceAccountPublicKeyFile string
	// EtcdURL is etcd's client URL, http://127.0.0.1:PORT.
	EtcdURL string

	log           *slog.Logger
	timeout       time.Duration
	apiserverBin  string
	apiserverArgs []string
	certFile      string

	mu         sync.Mutex
	etcd       *process
	apiserver  *process
	starts     int   // API server starts so far, to name their logs
	pids       []int // every process started, for tests of Stop
	stopped    bool
	removedDir bool
}

// Start starts a cluster for the test, with the Istio CRDs installed, and
// stops it when the test ends. It fails the test if the cluster cannot start.
func Start(t testing.TB) *Cluster {
	t.Helper()
	c, err := StartCluster(Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster logs (%s):\n%s", c.Dir, c.LogTails(20))
		}
		c.Stop()
	})
	return c
}

// StartCluster starts etcd and kube-apiserver, waits until the API server is
// ready, and installs the Istio CRDs (unless opts.SkipCRDs). It is for
// TestMain and other places without a testing.TB; the caller must Stop the
// cluster. On error nothing is left running.
func StartCluster(opts Options) (_ *Cluster, err error) {
	begin := time.Now()
	toolsDir := opts.ToolsDir
	if toolsDir == "" {
		toolsDir = ToolsDir()
	}
	apiserverBin, err := findTool(toolsDir, "kube-apiserver")
	if err != nil {
		return nil, err
	}
	etcdBin, err := findTool(toolsDir, "etcd")
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}

	sweepStaleDirs(log)
	dir, err := os.MkdirTemp("", clusterDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("create cluster directory: %w", err)
	}
	// Lets a later run remove this directory if we die before Stop.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create cluster directory: %w", err)
	}
	c := &Cluster{Dir: dir, log: log, timeout: timeout, apiserverBin: apiserverBin}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()

	// Key generation is CPU work; do it while etcd starts.
	type keyResult struct {
		key              *rsa.PrivateKey
		keyFile, pubFile string
		err              error
	}
	keyCh := make(chan keyResult, 1)
	go func() {
		var r keyResult
		r.key, r.keyFile, r.pubFile, r.err = writeServiceAccountKey(dir)
		keyCh <- r
	}()

	if err := c.startEtcd(etcdBin); err != nil {
		<-keyCh
		return nil, err
	}
	kr := <-keyCh
	if kr.err != nil {
		return nil, kr.err
	}
	c.ServiceAccountKey, c.ServiceAccountKeyFile, c.ServiceAccountPublicKeyFile = kr.key, kr.keyFile, kr.pubFile

	tokenFile, token, err := writeTokenFile(dir)
	if err != nil {
		return nil, err
	}
	c.AdminToken = token
	etcdReady := time.Now()
	if err := c.startFirstAPIServer(tokenFile, opts.APIServerArgs); err != nil {
		return nil, err
	}
	apiserverReady := time.Now()
	if !opts.SkipCRDs {
		if err := c.installCRDs(); err != nil {
			return nil, err
		}
	}
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	log.Info("test cluster ready", "apiserver", c.Host, "etcd", c.EtcdURL, "dir", dir,
		"startup", ms(time.Since(begin)), "etcdStart", ms(etcdReady.Sub(begin)),
		"apiserverStart", ms(apiserverReady.Sub(etcdReady)), "crdInstall", ms(time.Since(apiserverReady)))
	return c, nil
}

// StopAPIServer stops the API server (SIGTERM, then SIGKILL after a grace
// period) and waits for it to exit; etcd keeps running. Clients then see
// connection errors until StartAPIServer.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver == nil {
		return errors.New("kube-apiserver is not running")
	}
	begin := time.Now()
	c.apiserver.stop(30 * time.Second)
	c.apiserver = nil
	c.log.Info("kube-apiserver stopped", "took", time.Since(begin).Round(time.Millisecond))
	return nil
}

// StartAPIServer starts the API server again, on the same port with the same
// etcd, certificate and credentials, and waits until it is ready.
func (c *Cluster) StartAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.stopped:
		return errors.New("cluster is stopped")
	case c.apiserver != nil && !c.apiserver.exited():
		return errors.New("kube-apiserver is already running")
	}
	begin := time.Now()
	if err := c.runAPIServerLocked(); err != nil {
		return err
	}
	c.log.Info("kube-apiserver started again", "took", time.Since(begin).Round(time.Millisecond))
	return nil
}

// Stop stops every process of the cluster, waits for them to exit and
// removes Dir. It is safe to call more than once.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	// Everything is thrown away, so there is nothing to shut down
	// gracefully for: kill at once.
	if c.apiserver != nil {
		c.apiserver.stop(0)
		c.apiserver = nil
	}
	if c.etcd != nil {
		c.etcd.stop(0)
		c.etcd = nil
	}
	if !c.removedDir {
		c.removedDir = true
		if err := os.RemoveAll(c.Dir); err != nil {
			c.log.Warn("removing test cluster directory", "dir", c.Dir, "err", err)
		}
	}
}

// LogTails returns the last n lines of each process's log (the current
// API server's log, and etcd's), for a failure message.
func (c *Cluster) LogTails(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, name := range []string{"etcd.log", c.apiserverLogName()} {
		fmt.Fprintf(&b, "--- %s\n%s", name, tailFile(filepath.Join(c.Dir, name), n))
	}
	return b.String()
}

func (c *Cluster) apiserverLogName() string {
	if c.starts <= 1 {
		return "kube-apiserver.log"
	}
	return fmt.Sprintf("kube-apiserver.%d.log", c.starts)
}

// waitUntil polls ready every 50ms until it returns nil, p exits, or the
// start timeout passes; the error then carries the tail of p's log.
func (c *Cluster) waitUntil(p *process, what string, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.exitError()
		case <-ctx.Done():
			return fmt.Errorf("%s not %s within %v (last error: %v); last lines of %s:\n%s",
				p.name, what, c.timeout, err, p.logPath, p.tail(30))
		case <-tick.C:
		}
	}
}

// httpReady GETs url with client and wants a 200 response.
func httpReady(ctx context.Context, client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// buildClients reads the kubeconfig back (so the file is known to work) and
// makes the admin clients from it.
func (c *Cluster) buildClients() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig %s: %w", c.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	cfg.UserAgent = "meshd-integration-test"
	if c.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	if c.Istio, err = istioclient.NewForConfig(cfg); err != nil {
		return fmt.Errorf("istio client: %w", err)
	}
	if c.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	c.RESTConfig = cfg
	return nil
}

const (
	clusterDirPrefix = "meshd-cluster-"
	ownerFile        = "owner.pid"
)

// sweepStaleDirs removes cluster directories whose test binary died before
// it could clean up (interrupted, timed out). Its processes died with it.
func sweepStaleDirs(log *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), clusterDirPrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or being created right now
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		if err := os.RemoveAll(dir); err == nil {
			log.Info("removed stale test cluster directory", "dir", dir)
		}
	}
}

// processAlive reports whether pid is a running process; a zombie (dead,
// waiting for a parent that may never reap it) does not count.
func processAlive(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !os.IsNotExist(err)
	}
	// Format: "pid (comm) state ...", and comm may contain spaces or ')'.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

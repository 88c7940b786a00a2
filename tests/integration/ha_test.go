//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/xds"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshd/meshd/tests/integration/framework"
)

var (
	buildOnce sync.Once
	meshdBin  string
	buildErr  error
)

// meshdBinary builds cmd/meshd once per test binary.
func meshdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshd-bin-")
		if err != nil {
			buildErr = err
			return
		}
		meshdBin = filepath.Join(dir, "meshd")
		out, err := exec.Command("go", "build", "-o", meshdBin, "github.com/meshd/meshd/cmd/meshd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build meshd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return meshdBin
}

// replica is one meshd process.
type replica struct {
	name  string
	cmd   *exec.Cmd
	grpc  string
	debug string
	log   *bytes.Buffer
	mu    *sync.Mutex
	done  chan struct{}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

// startReplica runs a meshd process against the cluster as name, with a
// short lease so that failover fits a test.
func startReplica(t *testing.T, kubeconfig, name string) *replica {
	t.Helper()
	r := &replica{name: name, grpc: freeAddr(t), debug: freeAddr(t), log: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	r.cmd = exec.Command(meshdBinary(t), "--kubeconfig", kubeconfig, "--pod-name", name, "--namespace", "istio-system",
		"--grpc-address", r.grpc, "--secure-grpc-address", freeAddr(t), "--webhook-address", freeAddr(t),
		"--monitoring-address", freeAddr(t), "--debug-address", r.debug,
		"--debounce-after", "50ms", "--debounce-max", "1s")
	r.cmd.Stderr = lockedWriter{r.mu, r.log}
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.done
		if t.Failed() {
			r.mu.Lock()
			t.Logf("%s log:\n%s", r.name, r.log.String())
			r.mu.Unlock()
		}
	})
	framework.Eventually(t, 2*time.Minute, func() error {
		resp, err := http.Get("http://" + r.debug + "/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s not ready: %d", name, resp.StatusCode)
		}
		return nil
	})
	return r
}

func leaseHolder(c *framework.Cluster) (string, error) {
	l, err := c.Kube.CoordinationV1().Leases("istio-system").Get(context.Background(), "meshd", metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if l.Spec.HolderIdentity == nil {
		return "", nil
	}
	return *l.Spec.HolderIdentity, nil
}

// TestFailover runs two replicas with the manifests' account: one holds the
// lease; SIGKILL moves leadership to the other within the lease duration,
// the CA root survives, and proxyless gRPC clients connected to the killed
// replica reconnect to the survivor and keep following config changes made
// meanwhile.
func TestFailover(t *testing.T) {
	c := framework.Start(t)
	applyManifests(t, c)
	kubeconfig := serviceAccountKubeconfig(t, c, "istio-system", "meshd")
	a := startReplica(t, kubeconfig, "meshd-a")
	b := startReplica(t, kubeconfig, "meshd-b")
	byName := map[string]*replica{a.name: a, b.name: b}

	var leader string
	framework.Eventually(t, time.Minute, func() error {
		h, err := leaseHolder(c)
		if err != nil || byName[h] == nil {
			return fmt.Errorf("lease holder %q (%v)", h, err)
		}
		leader = h
		return nil
	})
	survivor := a
	if leader == a.name {
		survivor = b
	}
	killed := byName[leader]

	// The mesh: echo with a v1 and a v2 backend, all traffic on v1; and a
	// namespace whose root ConfigMap the leader published.
	e := &pilotEnv{t: t, cluster: c, ns: c.NewNamespace(t, "ha"), backends: map[string]string{}, names: map[string]string{}}
	e.backend("192.0.2.1:7070", "v1")
	e.backend("192.0.2.2:7070", "v2")
	host := e.serviceEntry("echo", map[string]string{"192.0.2.1": "v1", "192.0.2.2": "v2"})
	e.apply(fmt.Sprintf(subsetsDR, "echo", host))
	const route = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  http:
  - route: [{destination: {host: echo, subset: %s}}]
`
	e.apply(fmt.Sprintf(route, "v1"))
	var rootBefore string
	framework.Eventually(t, time.Minute, func() error {
		cm, err := c.Kube.CoreV1().ConfigMaps(e.ns).Get(context.Background(), "istio-ca-root-cert", metav1.GetOptions{})
		if err == nil {
			rootBefore = cm.Data["root-cert.pem"]
		}
		return err
	})

	// A client that reaches the replicas through one address, connected
	// to the leader first.
	cc := haClient(t, e, serviceVIP(t, killed.grpc, survivor.grpc))
	onlyFrom := func(want string) func() error {
		return func() error {
			for range 5 {
				name, err := call(context.Background(), cc)
				if err != nil {
					return err
				}
				if name != want {
					return fmt.Errorf("answered by %s, want %s only", name, want)
				}
			}
			return nil
		}
	}
	framework.Eventually(t, time.Minute, onlyFrom("v1"))

	// Kill the leader; move the route to v2 while it is down.
	if err := killed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-killed.done
	e.apply(fmt.Sprintf(route, "v2"))

	framework.Eventually(t, 45*time.Second, func() error {
		h, err := leaseHolder(c)
		if err != nil || h != survivor.name {
			return fmt.Errorf("lease holder %q, want %s (%v)", h, survivor.name, err)
		}
		return nil
	})
	// The client follows the change through the survivor.
	framework.Eventually(t, time.Minute, onlyFrom("v2"))
	// The survivor kept the root the first leader created.
	cm, err := c.Kube.CoreV1().ConfigMaps(e.ns).Get(context.Background(), "istio-ca-root-cert", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["root-cert.pem"] != rootBefore {
		t.Fatal("the CA root changed on failover")
	}
	chain := requestWorkloadCert(t, c, survivor.grpc, e.ns, "default")
	verifyChain(t, chain, []byte(rootBefore))
}

// serviceVIP stands in for the Service istiod in front of the replicas: a
// loopback TCP forwarder that sends each new connection to the first replica
// that accepts it, as kube-proxy sends it to a ready endpoint. Sidecars reach
// istiod (and meshd) this way. A bootstrap listing both replicas would not
// show failover: grpc-go (gRFC A71) falls back to a second server only for
// resources it has not cached, and keeps serving cached config otherwise.
func serviceVIP(t *testing.T, replicas ...string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				var out net.Conn
				for _, r := range replicas {
					if out, err = net.DialTimeout("tcp", r, time.Second); err == nil {
						break
					}
				}
				if out == nil {
					return
				}
				defer out.Close()
				go func() { _, _ = io.Copy(out, in) }()
				_, _ = io.Copy(in, out)
			}()
		}
	}()
	return lis.Addr().String()
}

// haClient dials echo through grpc-go's xDS resolver, bootstrapped to the
// control plane at addr.
func haClient(t *testing.T, e *pilotEnv, addr string) *grpc.ClientConn {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
	  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
	  "node": {
	    "id": "sidecar~192.0.2.100~ha-client.%s~%s.svc.cluster.local",
	    "metadata": {"GENERATOR": "grpc", "NAMESPACE": %q, "CLUSTER_ID": "Kubernetes"},
	    "locality": {}
	  }
	}`, addr, e.ns, e.ns, e.ns)
	resolver, err := xdscreds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///"+e.host()+":7070", grpc.WithResolvers(resolver),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(e.dial))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

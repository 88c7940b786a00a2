//go:build integration

package framework

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	networkingv1 "istio.io/api/networking/v1"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func TestMissingBinary(t *testing.T) {
	dir := t.TempDir()
	_, err := StartCluster(Options{ToolsDir: dir})
	want := "kube-apiserver not found in " + dir + ": run hack/build-tools.sh"
	if err == nil || err.Error() != want {
		t.Fatalf("StartCluster with an empty tools dir: got error %v, want %q", err, want)
	}
}

func TestCluster(t *testing.T) {
	c := Start(t)
	ctx := t.Context()

	t.Run("uses loopback only", func(t *testing.T) {
		for _, pid := range c.pids {
			socks := tcpSockets(t, pid)
			if !slices.ContainsFunc(socks, func(s tcpSocket) bool { return s.listen }) {
				t.Errorf("process %d listens on nothing", pid)
			}
			for _, s := range socks {
				if !s.local.Addr().Unmap().IsLoopback() || (!s.listen && !s.remote.Addr().Unmap().IsLoopback()) {
					t.Errorf("process %d has a non-loopback socket: %+v", pid, s)
				}
			}
		}
	})

	t.Run("kubeconfig verifies the server", func(t *testing.T) {
		cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Insecure || len(cfg.CAData) == 0 {
			t.Fatalf("kubeconfig does not verify TLS: insecure=%v, %d bytes of CA", cfg.Insecure, len(cfg.CAData))
		}
		kube, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kube.Discovery().ServerVersion(); err != nil {
			t.Fatalf("kubeconfig client: %v", err)
		}
	})

	ns := c.NewNamespace(t, t.Name())
	svc, err := c.Kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}
	if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err != nil || !netip.MustParsePrefix("198.18.0.0/16").Contains(ip) {
		t.Errorf("service cluster IP %q, want one in 198.18.0.0/16", svc.Spec.ClusterIP)
	}
	_, err = c.Istio.NetworkingV1().VirtualServices(ns).Create(ctx, &istionetworking.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews"},
		Spec: networkingv1.VirtualService{
			Hosts: []string{"reviews"},
			Http: []*networkingv1.HTTPRoute{{
				Route: []*networkingv1.HTTPRouteDestination{{Destination: &networkingv1.Destination{Host: "reviews"}}},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create virtualservice: %v", err)
	}

	readBack := func(t *testing.T) {
		t.Helper()
		if _, err := c.Kube.CoreV1().Services(ns).Get(ctx, "reviews", metav1.GetOptions{}); err != nil {
			t.Fatalf("get service: %v", err)
		}
		vs, err := c.Istio.NetworkingV1().VirtualServices(ns).Get(ctx, "reviews", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get virtualservice: %v", err)
		}
		if got := vs.Spec.GetHosts(); !slices.Equal(got, []string{"reviews"}) {
			t.Fatalf("virtualservice hosts = %v, want [reviews]", got)
		}
		if got := vs.Spec.GetHttp()[0].GetRoute()[0].GetDestination().GetHost(); got != "reviews" {
			t.Fatalf("virtualservice destination = %q, want reviews", got)
		}
	}
	t.Run("read back", readBack)

	t.Run("pods admitted with the default service account", func(t *testing.T) {
		_, err := c.Kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "reviews-v1"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create pod: %v", err)
		}
	})

	t.Run("service account tokens are subject to RBAC", func(t *testing.T) {
		tok, err := c.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "default",
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{ServiceAccountIssuer}}},
			metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create token: %v", err)
		}
		cfg := rest.AnonymousClientConfig(c.RESTConfig)
		cfg.BearerToken = tok.Status.Token
		kube := kubernetes.NewForConfigOrDie(cfg)
		_, err = kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("list services as %s/default: got %v, want Forbidden", ns, err)
		}
	})

	// An informer started before the restart must see objects created after it.
	factory := informers.NewSharedInformerFactoryWithOptions(c.Kube, 0, informers.WithNamespace(ns))
	services := factory.Core().V1().Services().Lister()
	factory.Start(ctx.Done())
	t.Cleanup(factory.Shutdown)
	for typ, synced := range factory.WaitForCacheSync(ctx.Done()) {
		if !synced {
			t.Fatalf("informer for %v did not sync", typ)
		}
	}

	t.Run("restart API server", func(t *testing.T) {
		if err := c.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Kube.CoreV1().Services(ns).Get(ctx, "reviews", metav1.GetOptions{}); err == nil {
			t.Fatal("API server still answers after StopAPIServer")
		}
		if err := c.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		readBack(t)
		if _, err := c.Kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "ratings"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create service after restart: %v", err)
		}
		Eventually(t, time.Minute, func() error {
			_, err := services.Services(ns).Get("ratings")
			return err
		})
	})

	t.Run("stop leaves nothing behind", func(t *testing.T) {
		pids := slices.Clone(c.pids)
		if len(pids) != 3 { // etcd, kube-apiserver twice
			t.Errorf("started %d processes, want 3", len(pids))
		}
		c.Stop()
		for _, pid := range pids {
			if !processGone(pid) {
				t.Errorf("process (group) %d still exists after Stop", pid)
			}
		}
		if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
			t.Errorf("cluster directory %s still exists after Stop (stat: %v)", c.Dir, err)
		}
	})
}

func TestNamespacePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"TestFoo/Bar_baz":       "testfoo-bar-baz-",
		"":                      "test-",
		"9lives":                "test-9lives-",
		strings.Repeat("a", 60): strings.Repeat("a", 40) + "-",
	} {
		if got := namespacePrefix(in); got != want {
			t.Errorf("namespacePrefix(%q) = %q, want %q", in, got, want)
		}
	}
}

type tcpSocket struct {
	local, remote netip.AddrPort
	listen        bool
}

// tcpSockets returns the TCP sockets process pid holds open.
func tcpSockets(t *testing.T, pid int) []tcpSocket {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var out []tcpSocket
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st ... inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			const listen = "0A"
			out = append(out, tcpSocket{
				local:  parseProcAddr(t, fields[1]),
				remote: parseProcAddr(t, fields[2]),
				listen: fields[3] == listen,
			})
		}
		f.Close()
	}
	return out
}

// parseProcAddr decodes /proc/net/tcp's "HEXADDR:HEXPORT", where the address
// is stored as 32-bit words in host (little-endian) order.
func parseProcAddr(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	hexAddr, hexPort, _ := strings.Cut(s, ":")
	raw, err := hex.DecodeString(hexAddr)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	for i := 0; i+4 <= len(raw); i += 4 {
		slices.Reverse(raw[i : i+4])
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr, uint16(port))
}

// processGone reports whether no process with the given id, and no member of
// the process group with that id, exists any more.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) &&
		errors.Is(syscall.Kill(-pid, 0), syscall.ESRCH)
}

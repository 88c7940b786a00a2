package framework

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// FreePorts returns n distinct free loopback ports: all n listeners are open
// at once, so the kernel cannot hand out the same port twice.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Eventually calls condition until it returns nil, and fails the test with
// condition's last error if that does not happen within timeout. It polls
// quickly at first and then every 200ms.
func Eventually(t testing.TB, timeout time.Duration, condition func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := pollUntil(ctx, condition); err != nil {
		t.Fatalf("condition not met within %v: %v", timeout, err)
	}
}

// pollUntil calls condition until it returns nil or ctx ends; then the error
// is condition's last one.
func pollUntil(ctx context.Context, condition func() error) error {
	delay := 10 * time.Millisecond
	for {
		err := condition()
		if err == nil {
			return nil
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-timer.C:
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// NewNamespace creates a namespace named prefix plus a random suffix (prefix
// is cleaned into a DNS label, so t.Name() will do) and its `default`
// ServiceAccount, which a controller-manager would otherwise create and
// without which the API server refuses Pods. It returns the name.
//
// Nothing finalizes a deleted namespace on this cluster, so it is not
// deleted after the test; fresh names keep tests apart.
func (c *Cluster) NewNamespace(t testing.TB, prefix string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: namespacePrefix(prefix)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %q: %v", prefix, err)
	}
	_, err = c.Kube.CoreV1().ServiceAccounts(ns.Name).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create serviceaccount %s/default: %v", ns.Name, err)
	}
	return ns.Name
}

// namespacePrefix turns s into a GenerateName prefix: lower-case letters,
// digits and dashes, starting with a letter, short enough to leave room for
// the random suffix, ending in a dash.
func namespacePrefix(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	p := b.String()
	if len(p) > 40 {
		p = p[:40]
	}
	p = strings.Trim(p, "-")
	if p == "" || p[0] < 'a' || p[0] > 'z' {
		p = "test-" + p
	}
	return strings.TrimRight(p, "-") + "-"
}

package framework

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"

	"k8s.io/client-go/rest"
)

// startFirstAPIServer picks the API server's port, starts it, and once it has
// written its serving certificate, writes the kubeconfig and makes the
// clients. It retries on another port if the one picked was taken.
func (c *Cluster) startFirstAPIServer(tokenFile string, extraArgs []string) error {
	certDir := filepath.Join(c.Dir, "apiserver-certs")
	c.certFile = filepath.Join(certDir, "apiserver.crt")
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		var port int
		if port, err = FreePort(); err != nil {
			return err
		}
		c.Host = fmt.Sprintf("https://127.0.0.1:%d", port)
		c.apiserverArgs = append([]string{
			"--etcd-servers=" + c.EtcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", port),
			// No controller-manager maintains the `kubernetes` Service's
			// endpoints, and the default reconciler would refuse 127.0.0.1.
			"--endpoint-reconciler-type=none",
			"--cert-dir=" + certDir,
			"--service-account-key-file=" + c.ServiceAccountPublicKeyFile,
			"--service-account-signing-key-file=" + c.ServiceAccountKeyFile,
			"--service-account-issuer=" + ServiceAccountIssuer,
			"--api-audiences=" + ServiceAccountIssuer,
			"--token-auth-file=" + tokenFile,
			"--authorization-mode=RBAC",
			// Never dialled: nothing routes Service IPs without kube-proxy.
			"--service-cluster-ip-range=198.18.0.0/16",
			// Otherwise SIGTERM waits up to a minute for open watches
			// (informers always have one) before the server exits.
			"--shutdown-send-retry-after=true",
		}, extraArgs...)
		if err = c.runAPIServerLocked(); err == nil {
			return nil
		}
		if c.apiserver == nil || !portTaken(c.apiserver) {
			return err
		}
		// The next port gets a new kubeconfig and clients.
		c.apiserver, c.RESTConfig = nil, nil
	}
	return err
}

// runAPIServerLocked starts the API server with c.apiserverArgs and waits for
// /readyz. The first time, it also writes the kubeconfig and the clients, as
// soon as the certificate the server generates into --cert-dir is there.
// Callers hold c.mu.
func (c *Cluster) runAPIServerLocked() error {
	c.starts++
	p, err := startProcess("kube-apiserver", c.apiserverBin, filepath.Join(c.Dir, c.apiserverLogName()), c.apiserverArgs)
	if err != nil {
		return err
	}
	c.apiserver = p
	c.pids = append(c.pids, p.pid())
	var client *http.Client
	err = c.waitUntil(p, "ready", func(ctx context.Context) error {
		if c.RESTConfig == nil {
			ca, err := readServingCA(c.certFile)
			if err != nil {
				return fmt.Errorf("serving certificate: %w", err)
			}
			if err := writeKubeconfig(c.Kubeconfig, c.Host, ca, c.AdminToken); err != nil {
				return err
			}
			if err := c.buildClients(); err != nil {
				return err
			}
		}
		if client == nil {
			var err error
			if client, err = rest.HTTPClientFor(c.RESTConfig); err != nil {
				return fmt.Errorf("http client: %w", err)
			}
		}
		return httpReady(ctx, client, c.Host+"/readyz")
	})
	if err != nil {
		p.stop(0)
		return err
	}
	return nil
}

package framework

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// loopbackHTTP talks to the processes we started, never through a proxy.
var loopbackHTTP = &http.Client{Transport: &http.Transport{Proxy: nil}}

// startAttempts is how often a start is tried when the port picked turned
// out to be taken by someone else between FreePort and the bind.
const startAttempts = 3

// startEtcd starts a single-member etcd whose client and peer URLs are on
// free loopback ports, and waits until it reports healthy. Metrics are
// served on the client URL (no separate listener).
func (c *Cluster) startEtcd(bin string) error {
	dataDir := filepath.Join(c.Dir, "etcd")
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		var ports []int
		if ports, err = FreePorts(2); err != nil {
			return err
		}
		clientURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		args := []string{
			"--name=meshd-test",
			"--data-dir=" + dataDir,
			"--listen-client-urls=" + clientURL,
			"--advertise-client-urls=" + clientURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=meshd-test=" + peerURL,
			"--initial-cluster-state=new",
			// Test data is thrown away; fsync only costs time.
			"--unsafe-no-fsync",
			"--log-level=warn",
		}
		var p *process
		if p, err = startProcess("etcd", bin, filepath.Join(c.Dir, "etcd.log"), args); err != nil {
			return err
		}
		c.mu.Lock()
		c.etcd = p
		c.pids = append(c.pids, p.pid())
		c.mu.Unlock()
		err = c.waitUntil(p, "healthy", func(ctx context.Context) error {
			return httpReady(ctx, loopbackHTTP, clientURL+"/health")
		})
		if err == nil {
			c.EtcdURL = clientURL
			return nil
		}
		p.stop(0)
		if !portTaken(p) {
			return err
		}
		if rmErr := os.RemoveAll(dataDir); rmErr != nil {
			return fmt.Errorf("%w (and removing %s: %v)", err, dataDir, rmErr)
		}
	}
	return err
}

// portTaken reports whether p failed because an address was in use.
func portTaken(p *process) bool {
	return strings.Contains(p.tail(30), "address already in use")
}

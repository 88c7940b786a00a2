//go:build integration

package integration

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/tests/integration/framework"
)

// TestIstioctlProxyStatus: Istio's own istioctl (built from the Go module
// proxy by hack/build-tools.sh) lists a proxy connected to meshd as
// SYNCED on every type it subscribes to, over meshd's xDS debug types, as
// it does against istiod.
func TestIstioctlProxyStatus(t *testing.T) {
	istioctl, err := framework.FindTool("istioctl")
	if err != nil {
		t.Fatal(err)
	}
	e := startPilot(t)
	e.createEcho("192.0.2.1")
	cc := e.grpcClient("client-0")
	waitForBackends(t, cc, "backend-1")

	proxyID := "client-0." + e.ns
	var out []byte
	framework.Eventually(t, 30*time.Second, func() error {
		out, err = exec.Command(istioctl, "proxy-status", "--xds-address", e.xdsAddr, "--plaintext",
			"--kubeconfig", e.cluster.Kubeconfig, "--istioNamespace", "istio-system", "-v", "1").CombinedOutput()
		if err != nil {
			return fmt.Errorf("istioctl proxy-status: %v\n%s", err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != proxyID {
				continue
			}
			if n := strings.Count(line, "SYNCED"); n < 4 || strings.Contains(line, "STALE") {
				return fmt.Errorf("%s not SYNCED on CDS, LDS, EDS and RDS yet:\n%s", proxyID, out)
			}
			return nil
		}
		return fmt.Errorf("%s not listed:\n%s", proxyID, out)
	})
	t.Logf("istioctl proxy-status -v 1:\n%s", out)
}

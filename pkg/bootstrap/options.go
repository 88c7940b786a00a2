// Package bootstrap is the one place that wires meshd together: it builds
// the store from its source, the shared servers, and each subsystem's
// components, and runs them.
package bootstrap

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/meshd/meshd/citadel/ca"
)

// Options are meshd's settings, one per command-line flag.
type Options struct {
	// Kubeconfig is a kubeconfig path (Kubernetes mode). Empty with
	// ConfigDir empty means in-cluster config.
	Kubeconfig string
	// ConfigDir is a directory of YAML (file mode).
	ConfigDir string
	// TrustDomain is the SPIFFE trust domain, also the DNS suffix root.
	TrustDomain string
	// ProxyImage is the Istio proxy image the sidecar injector adds.
	ProxyImage string
	// OutboundTrafficPolicy is the mesh-wide default for sidecars' traffic
	// to hosts outside the registry: ALLOW_ANY or REGISTRY_ONLY (Istio's
	// meshConfig.outboundTrafficPolicy.mode); a Sidecar can override it.
	OutboundTrafficPolicy string
	// Namespace is meshd's own namespace (CA secrets, leases).
	Namespace string
	// PodName identifies this replica (leader election).
	PodName string

	// Listen addresses.
	GRPCAddr, SecureGRPCAddr, WebhookAddr, MonitoringAddr, DebugAddr string

	// ClusterID names this cluster (Istio's CLUSTER_ID); CSRs naming
	// another cluster in their ClusterID metadata are refused.
	ClusterID string
	// CADir keeps the file-mode CA root and token-signing key; CACertsDir,
	// if set, holds a plug-in CA (ca-cert.pem, ca-key.pem, root-cert.pem,
	// cert-chain.pem) for file mode.
	CADir, CACertsDir string
	// CustomHosts are extra DNS names and IPs in meshd's serving
	// certificate (Istio's ISTIOD_CUSTOM_HOST).
	CustomHosts []string
	// CATrustedNodeAccounts may ask for certificates on behalf of workloads
	// on their node (Istio's CA_TRUSTED_NODE_ACCOUNTS), as "ns/sa".
	CATrustedNodeAccounts []string

	// DebounceAfter and DebounceMax bound how config changes are batched
	// before a push (Istio's PILOT_DEBOUNCE_AFTER / PILOT_DEBOUNCE_MAX).
	DebounceAfter, DebounceMax time.Duration
	// MaxConnectionAge closes xDS connections after about this long (grpc
	// adds +-10% jitter), so proxies spread over replicas after a scale-out
	// (istiod does the same with its keepalive MaxServerConnectionAge).
	MaxConnectionAge time.Duration
	// DrainTimeout bounds a graceful stop.
	DrainTimeout time.Duration

	// LogLevel is debug, info, warn or error; LogFormat is text or json.
	LogLevel, LogFormat string
}

// FileMode reports whether meshd reads a config directory instead of a cluster.
func (o *Options) FileMode() bool { return o.ConfigDir != "" }

// Flags registers every option on fs with its default.
func (o *Options) Flags(fs *flag.FlagSet) {
	host, _ := os.Hostname()
	fs.StringVar(&o.Kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file (default: $KUBECONFIG, else in-cluster config)")
	fs.StringVar(&o.ConfigDir, "config-dir", "", "read Services, endpoints and Istio config from this directory of YAML instead of a cluster (file mode)")
	fs.StringVar(&o.TrustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain of workload identities")
	fs.StringVar(&o.OutboundTrafficPolicy, "outbound-traffic-policy", "ALLOW_ANY", "sidecars' traffic to hosts outside the registry: ALLOW_ANY (pass through) or REGISTRY_ONLY (refuse), unless a Sidecar says otherwise")
	fs.StringVar(&o.ProxyImage, "proxy-image", "docker.io/istio/proxyv2:1.28.0", "Istio proxy image (pilot-agent and Envoy) the sidecar injector adds to pods")
	fs.StringVar(&o.Namespace, "namespace", envOr("POD_NAMESPACE", "istio-system"), "namespace meshd runs in")
	fs.StringVar(&o.PodName, "pod-name", envOr("POD_NAME", host), "this replica's name, for leader election")
	fs.StringVar(&o.ClusterID, "cluster-id", envOr("CLUSTER_ID", "Kubernetes"), "this cluster's ID, as in Istio's CLUSTER_ID")
	fs.StringVar(&o.CADir, "ca-dir", "", "file mode: where the CA keeps its root and token-signing key (default: the user config dir's meshd/ca)")
	fs.StringVar(&o.CACertsDir, "cacerts-dir", "", "file mode: a plug-in CA directory (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem)")
	fs.Func("custom-host", "extra DNS name or IP in meshd's serving certificate; repeatable or comma-separated (default: $ISTIOD_CUSTOM_HOST; 127.0.0.1,localhost in file mode)", func(v string) error {
		o.CustomHosts = append(o.CustomHosts, splitList(v)...)
		return nil
	})
	fs.Func("ca-trusted-node-accounts", "ns/sa accounts that may request certificates for workloads on their node (default: $CA_TRUSTED_NODE_ACCOUNTS)", func(v string) error {
		o.CATrustedNodeAccounts = append(o.CATrustedNodeAccounts, splitList(v)...)
		return nil
	})
	fs.StringVar(&o.GRPCAddr, "grpc-address", "", "plaintext xDS and CA gRPC address (default :15010; 127.0.0.1:15010 in file mode)")
	fs.StringVar(&o.SecureGRPCAddr, "secure-grpc-address", "", "TLS xDS and CA gRPC address (default :15012)")
	fs.StringVar(&o.WebhookAddr, "webhook-address", "", "HTTPS admission webhook address (default :15017)")
	fs.StringVar(&o.MonitoringAddr, "monitoring-address", "", "Prometheus /metrics address (default :15014)")
	fs.StringVar(&o.DebugAddr, "debug-address", "", "debug HTTP address: /ready, /debug/* (default :8080)")
	// istiod waits 100ms (PILOT_DEBOUNCE_AFTER) because each push rebuilds
	// every proxy's config; meshd rebuilds only what a change touches, so a
	// short quiet period still batches a burst without delaying one edit.
	fs.DurationVar(&o.DebounceAfter, "debounce-after", 10*time.Millisecond, "quiet period after a config change before pushing")
	fs.DurationVar(&o.DebounceMax, "debounce-max", 10*time.Second, "longest a change waits for the quiet period")
	fs.DurationVar(&o.MaxConnectionAge, "max-connection-age", 30*time.Minute, "close gRPC connections after about this long so proxies rebalance across replicas")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 10*time.Second, "how long a graceful stop may take")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
}

// Complete fills in mode-dependent defaults and checks the options, so that
// a bad setting is one clear error before anything starts.
func (o *Options) Complete() error {
	if o.Kubeconfig != "" && o.ConfigDir != "" {
		return errors.New("--kubeconfig and --config-dir are exclusive: pick a cluster or a directory")
	}
	// In file mode meshd is a local tool: listen on loopback unless told
	// otherwise. In a cluster it listens on every interface, as istiod does.
	host := ""
	if o.FileMode() {
		host = "127.0.0.1"
	}
	def := func(addr *string, port string) {
		if *addr == "" {
			*addr = net.JoinHostPort(host, port)
		}
	}
	if len(o.CustomHosts) == 0 {
		o.CustomHosts = splitList(os.Getenv("ISTIOD_CUSTOM_HOST"))
		if len(o.CustomHosts) == 0 && o.FileMode() {
			o.CustomHosts = []string{"127.0.0.1", "localhost"}
		}
	}
	if len(o.CATrustedNodeAccounts) == 0 {
		o.CATrustedNodeAccounts = splitList(os.Getenv("CA_TRUSTED_NODE_ACCOUNTS"))
	}
	if o.ClusterID == "" {
		o.ClusterID = "Kubernetes"
	}
	if o.CADir == "" {
		o.CADir = ca.DefaultDir()
	}
	def(&o.GRPCAddr, "15010")
	def(&o.SecureGRPCAddr, "15012")
	def(&o.WebhookAddr, "15017")
	def(&o.MonitoringAddr, "15014")
	def(&o.DebugAddr, "8080")
	for name, addr := range map[string]string{
		"--grpc-address": o.GRPCAddr, "--secure-grpc-address": o.SecureGRPCAddr, "--webhook-address": o.WebhookAddr,
		"--monitoring-address": o.MonitoringAddr, "--debug-address": o.DebugAddr,
	} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s %q: %w", name, addr, err)
		}
	}
	switch o.OutboundTrafficPolicy {
	case "", "ALLOW_ANY", "REGISTRY_ONLY":
	default:
		return fmt.Errorf("--outbound-traffic-policy %q: want ALLOW_ANY or REGISTRY_ONLY", o.OutboundTrafficPolicy)
	}
	if o.DebounceAfter <= 0 || o.DebounceMax < o.DebounceAfter {
		return fmt.Errorf("--debounce-after (%s) must be positive and at most --debounce-max (%s)", o.DebounceAfter, o.DebounceMax)
	}
	switch o.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("--log-format %q: want text or json", o.LogFormat)
	}
	if _, err := ParseLevel(o.LogLevel); err != nil {
		return err
	}
	if o.TrustDomain == "" || o.Namespace == "" {
		return errors.New("--trust-domain and --namespace must not be empty")
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

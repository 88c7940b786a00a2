//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	pb "istio.io/api/security/v1alpha1"

	"github.com/meshd/meshd/manifests"
	"github.com/meshd/meshd/pkg/bootstrap"
	"github.com/meshd/meshd/tests/integration/framework"
)

// auditPolicy records who did what, without bodies.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
`

const meshdUser = "system:serviceaccount:istio-system:meshd"

// startAuditedCluster starts a cluster whose API server writes an audit log.
func startAuditedCluster(t *testing.T) (*framework.Cluster, string) {
	t.Helper()
	dir := t.TempDir()
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	auditLog := filepath.Join(dir, "audit.log")
	c, err := framework.StartCluster(framework.Options{
		Logger:        slog.New(slog.NewTextHandler(t.Output(), nil)),
		APIServerArgs: []string{"--audit-policy-file=" + policy, "--audit-log-path=" + auditLog, "--audit-log-mode=blocking"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c, auditLog
}

// applyManifests server-side-applies every object in manifests/, as
// `kubectl apply --server-side -f manifests/` would.
func applyManifests(t *testing.T, c *framework.Cluster) {
	t.Helper()
	ctx := context.Background()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Kube.Discovery()))
	files, err := manifests.FS.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := manifests.FS.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for i := 0; ; i++ {
			var u unstructured.Unstructured
			if err := dec.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				t.Fatalf("%s document %d: %v", f.Name(), i, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			gvk := u.GroupVersionKind()
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Fatalf("%s: %s %s: %v", f.Name(), gvk, u.GetName(), err)
			}
			body, err := json.Marshal(u.Object)
			if err != nil {
				t.Fatal(err)
			}
			ri := c.Dynamic.Resource(m.Resource)
			var applier interface {
				Patch(context.Context, string, types.PatchType, []byte, metav1.PatchOptions, ...string) (*unstructured.Unstructured, error)
			} = ri
			if u.GetNamespace() != "" {
				applier = ri.Namespace(u.GetNamespace())
			}
			force := true
			if _, err := applier.Patch(ctx, u.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: "meshd-install", Force: &force}); err != nil {
				t.Fatalf("apply %s %s from %s: %v", gvk.Kind, u.GetName(), f.Name(), err)
			}
		}
	}
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as
// namespace/name with a token from the TokenRequest API.
func serviceAccountKubeconfig(t *testing.T, c *framework.Cluster, namespace, name string) string {
	t.Helper()
	tr, err := c.Kube.CoreV1().ServiceAccounts(namespace).CreateToken(context.Background(), name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptrTo[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	for n, cl := range admin.Clusters {
		cfg.Clusters[n] = cl
		cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: n, AuthInfo: "sa"}
	}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.CurrentContext = "sa"
	path := filepath.Join(t.TempDir(), "kubeconfig-"+name)
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func ptrTo[T any](v T) *T { return &v }

type auditEvent struct {
	Verb      string `json:"verb"`
	User      struct{ Username string }
	ObjectRef *struct {
		Resource    string `json:"resource"`
		APIGroup    string `json:"apiGroup"`
		Name        string `json:"name"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// meshdRequests reads the audit log: every (verb, group/resource) meshd's
// account used, and those it was refused.
func meshdRequests(t *testing.T, path string) (used map[string]bool, forbidden []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	used = map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e auditEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.User.Username != meshdUser || e.ObjectRef == nil {
			continue
		}
		key := e.Verb + " " + e.ObjectRef.APIGroup + "/" + e.ObjectRef.Resource
		if e.ResponseStatus != nil && e.ResponseStatus.Code == 403 {
			forbidden = append(forbidden, key+" "+e.ObjectRef.Name)
			continue
		}
		used[key] = true
		// Informers stream their initial state with a watch
		// (sendInitialEvents) and fall back to a list on API servers
		// without that: a watch stands for both.
		if e.Verb == "watch" {
			used["list "+e.ObjectRef.APIGroup+"/"+e.ObjectRef.Resource] = true
		}
	}
	return used, forbidden
}

// grantedVerbs lists every (verb, group/resource) the manifests grant meshd.
func grantedVerbs(t *testing.T, c *framework.Cluster) []string {
	t.Helper()
	ctx := context.Background()
	var rules []rbacv1.PolicyRule
	cr, err := c.Kube.RbacV1().ClusterRoles().Get(ctx, "meshd", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rules = append(rules, cr.Rules...)
	r, err := c.Kube.RbacV1().Roles("istio-system").Get(ctx, "meshd", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rules = append(rules, r.Rules...)
	var out []string
	for _, rule := range rules {
		for _, g := range rule.APIGroups {
			for _, res := range rule.Resources {
				for _, v := range rule.Verbs {
					out = append(out, v+" "+g+"/"+res)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestManifestsInstallAndGrantExactlyWhatMeshdUses applies manifests/ with
// server-side apply, runs meshd with the manifests' ServiceAccount, drives
// every path that touches the API, and compares the API server's audit log
// with the RBAC rules: nothing meshd does is refused, and nothing granted
// goes unused.
func TestManifestsInstallAndGrantExactlyWhatMeshdUses(t *testing.T) {
	c, auditLog := startAuditedCluster(t)
	applyManifests(t, c)
	ns := c.NewNamespace(t, "rbac")
	kubeconfig := serviceAccountKubeconfig(t, c, "istio-system", "meshd")
	m := startMeshd(t, c, func(o *bootstrap.Options) { o.Kubeconfig = kubeconfig })
	ctx := context.Background()

	// The CA created its root, and the leader published it to namespaces.
	framework.Eventually(t, time.Minute, func() error {
		_, err := c.Kube.CoreV1().ConfigMaps(ns).Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
		return err
	})
	// A tampered root ConfigMap is repaired (update).
	framework.Eventually(t, 30*time.Second, func() error {
		cm, err := c.Kube.CoreV1().ConfigMaps(ns).Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cm.Data = map[string]string{"root-cert.pem": "tampered"}
		_, err = c.Kube.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	framework.Eventually(t, 30*time.Second, func() error {
		cm, err := c.Kube.CoreV1().ConfigMaps(ns).Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
		if err == nil && !strings.Contains(cm.Data["root-cert.pem"], "BEGIN CERTIFICATE") {
			err = errors.New("tampered root not repaired")
		}
		return err
	})
	// A workload's CSR is authenticated with a TokenReview.
	if _, err := c.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	requestWorkloadCert(t, c, m.Addr("grpc"), ns, "app")
	// The webhook configuration gets its caBundle.
	framework.Eventually(t, time.Minute, func() error {
		cfg, err := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "istio-validator-istio-system", metav1.GetOptions{})
		if err == nil && len(cfg.Webhooks[0].ClientConfig.CABundle) == 0 {
			err = errors.New("caBundle not set")
		}
		return err
	})
	// So does the injector's.
	framework.Eventually(t, time.Minute, func() error {
		cfg, err := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "istio-sidecar-injector", metav1.GetOptions{})
		if err == nil && len(cfg.Webhooks[0].ClientConfig.CABundle) == 0 {
			err = errors.New("injector caBundle not set")
		}
		return err
	})
	// Give the leader a renewal and the webhook controller a probe.
	var used map[string]bool
	var forbidden []string
	// Verbs only taken on rare paths (root rotation), with why.
	rare := map[string]string{"update /secrets": "CA root rotation, years apart"}
	framework.Eventually(t, time.Minute, func() error {
		used, forbidden = meshdRequests(t, auditLog)
		var unused []string
		for _, g := range grantedVerbs(t, c) {
			if !used[g] && rare[g] == "" {
				unused = append(unused, g)
			}
		}
		if len(unused) > 0 {
			return fmt.Errorf("granted but not (yet) used: %v", unused)
		}
		return nil
	})
	if len(forbidden) > 0 {
		t.Errorf("meshd was refused by RBAC (missing rules): %v", forbidden)
	}
	granted := map[string]bool{}
	for _, g := range grantedVerbs(t, c) {
		granted[g] = true
	}
	for u := range used {
		if !granted[u] && !strings.HasPrefix(u, "create /selfsubject") {
			t.Errorf("meshd used %q, which the manifests do not grant", u)
		}
	}
	if code, body, err := m.get("/ready"); err != nil || code != 200 {
		t.Fatalf("meshd with the manifests' account is not ready: %d %s %v", code, body, err)
	}
}

// requestWorkloadCert asks meshd's CA (plaintext port) for a certificate for
// ns/sa with a TokenRequest token, and returns the cert chain.
func requestWorkloadCert(t *testing.T, c *framework.Cluster, addr, ns, sa string) []string {
	t.Helper()
	tr, err := c.Kube.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"istio-ca"}, ExpirationSeconds: ptrTo[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var chain []string
	framework.Eventually(t, time.Minute, func() error {
		resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(bearer(t, tr.Status.Token), &pb.IstioCertificateRequest{
			Csr: string(citadelCSR(t, "spiffe://cluster.local/ns/"+ns+"/sa/"+sa)), ValidityDuration: 3600,
		})
		if err != nil {
			return err
		}
		chain = resp.CertChain
		return nil
	})
	return chain
}

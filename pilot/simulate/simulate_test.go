package simulate_test

import (
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/meshd/meshd/pilot/model"
	"github.com/meshd/meshd/pilot/simulate"
	"github.com/meshd/meshd/pilot/translate"
	"github.com/meshd/meshd/pkg/schema"
	"github.com/meshd/meshd/pkg/store"
)

// sidecar translates a golden scenario of pilot/translate (the same inputs
// the golden files are made from) and returns the sidecar's config.
func sidecar(t *testing.T, scenario string) *simulate.Config {
	t.Helper()
	data, err := os.ReadFile("../translate/testdata/in/" + scenario + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewMemory()
	var pd struct {
		ID       string         `json:"id"`
		Metadata map[string]any `json:"metadata"`
	}
	for _, doc := range strings.Split(string(data), "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		if strings.Contains(doc, "\nkind: Proxy") || strings.HasPrefix(strings.TrimSpace(doc), "kind: Proxy") || strings.Contains(doc, "kind: Proxy\n") {
			if err := yaml.Unmarshal([]byte(doc), &pd); err != nil {
				t.Fatal(err)
			}
			continue
		}
		obj, kind, err := schema.Decode([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Indexer(kind).Add(obj); err != nil {
			t.Fatal(err)
		}
	}
	st.MarkSynced()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	snap, _ := model.NewBuilder(log, model.Options{}).Build(nil, st, nil)
	p, err := model.NewProxy(pd.ID, pd.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	view := translate.New(log).View(snap, p.WithPod(st))
	var msgs []proto.Message
	for _, typ := range []string{translate.ListenerType, translate.RouteType, translate.ClusterType} {
		for _, r := range view.All(typ) {
			m, err := r.Message()
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, m)
		}
	}
	return simulate.NewConfig(msgs)
}

const (
	reviews   = "reviews.default.svc.cluster.local"
	reviewsV1 = "outbound|9080|v1|" + reviews
	reviewsV2 = "outbound|9080|v2|" + reviews
	reviewsC  = "outbound|9080||" + reviews
	ratingsC  = "outbound|9080||ratings.default.svc.cluster.local"
)

func req(path string, headers map[string]string) simulate.Request {
	return simulate.Request{Port: 9080, Authority: reviews + ":9080", Path: path, Headers: headers}
}

func run(t *testing.T, c *simulate.Config, r simulate.Request) *simulate.Result {
	t.Helper()
	res, err := c.Run(r)
	if err != nil {
		t.Fatalf("%s %s: %v (steps: %s)", r.Authority, r.Path, err, res)
	}
	return res
}

func wantCluster(t *testing.T, res *simulate.Result, name string) {
	t.Helper()
	if len(res.Clusters) != 1 || res.Clusters[0].Name != name {
		t.Errorf("went to %v, want %s (steps: %s)", res.Clusters, name, res)
	}
}

func TestRouting(t *testing.T) {
	t.Run("weighted split", func(t *testing.T) {
		res := run(t, sidecar(t, "vs-weighted-subsets"), req("/", nil))
		if len(res.Clusters) != 2 || res.Clusters[0].Percent != 80 || res.Clusters[1].Name != reviewsV2 {
			t.Errorf("clusters %v", res.Clusters)
		}
	})
	t.Run("relative weights", func(t *testing.T) {
		res := run(t, sidecar(t, "vs-relative-weights"), req("/", nil))
		if len(res.Clusters) != 2 || res.Clusters[0].Percent != 62.5 || res.Clusters[1].Percent != 37.5 {
			t.Errorf("clusters %v, want 62.5/37.5", res.Clusters)
		}
	})
	t.Run("uri matches", func(t *testing.T) {
		c := sidecar(t, "vs-uri-matches")
		wantCluster(t, run(t, c, req("/health", nil)), ratingsC)
		wantCluster(t, run(t, c, req("/healthz", nil)), reviewsC)
		wantCluster(t, run(t, c, req("/API/V2/x", nil)), reviewsV2)
		wantCluster(t, run(t, c, req("/items/42", nil)), reviewsV1)
		wantCluster(t, run(t, c, req("/items/abc", nil)), reviewsC)
	})
	t.Run("header matches", func(t *testing.T) {
		c := sidecar(t, "vs-header-matches")
		h := map[string]string{"end-user": "jason", "x-trace": "1", "x-group": "beta-3", "x-id": "ab12"}
		r := req("/?tier=gold", h)
		r.Authority = "240.0.0.20:9080"
		wantCluster(t, run(t, c, r), reviewsV1) // the authority does not start with "reviews"
		r.Authority = reviews + ":9080"
		wantCluster(t, run(t, c, r), reviewsV2)
		h2 := map[string]string{"end-user": "jason", "x-trace": "1", "x-group": "beta-3", "x-id": "ab12", "x-debug": "1"}
		wantCluster(t, run(t, c, req("/?tier=gold", h2)), reviewsV1)
		wantCluster(t, run(t, c, req("/?tier=silver", h)), reviewsV1)
		delete(h, "x-trace")
		wantCluster(t, run(t, c, req("/?tier=gold", h)), reviewsV1)
		post := req("/?tier=gold", map[string]string{"end-user": "jason", "x-trace": "1", "x-group": "beta-3", "x-id": "ab12"})
		post.Method = "POST"
		wantCluster(t, run(t, c, post), reviewsV1)
	})
	t.Run("seed: fault delay percentage", func(t *testing.T) {
		res := run(t, sidecar(t, "vs-fault-delay"), req("/", nil))
		d := res.Fault.GetDelay()
		if d.GetFixedDelay().AsDuration().Seconds() != 7 || d.GetPercentage().GetNumerator() != 100000 {
			t.Errorf("fault %v, want a 7s delay on 10%%", res.Fault)
		}
		wantCluster(t, res, reviewsC)
	})
	t.Run("fault abort", func(t *testing.T) {
		c := sidecar(t, "vs-fault-abort")
		if got := run(t, c, req("/grpc/x", nil)).Fault.GetAbort().GetGrpcStatus(); got != 14 {
			t.Errorf("grpc abort status %d, want 14", got)
		}
		if got := run(t, c, req("/x", nil)).Fault.GetAbort().GetHttpStatus(); got != 503 {
			t.Errorf("http abort status %d, want 503", got)
		}
	})
	t.Run("seed: two VirtualServices with overlapping prefixes", func(t *testing.T) {
		c := sidecar(t, "vs-two-overlapping-prefixes")
		// The older VirtualService's /api comes first and wins for /api/v2 too.
		wantCluster(t, run(t, c, req("/api/v2/items", nil)), reviewsV1)
		wantCluster(t, run(t, c, req("/api/x", nil)), reviewsV1)
		if _, err := c.Run(req("/other", nil)); err == nil {
			t.Errorf("/other: routed, want no route (404)")
		}
	})
	t.Run("timeout and retries", func(t *testing.T) {
		res := run(t, sidecar(t, "vs-timeout-retries"), req("/", nil))
		if res.Timeout.Seconds() != 5 || res.Retry.GetNumRetries().GetValue() != 3 || res.Retry.GetPerTryTimeout().AsDuration().Seconds() != 2 {
			t.Errorf("timeout %v retry %v", res.Timeout, res.Retry)
		}
		if !strings.Contains(res.Retry.RetryOn, "deadline-exceeded") || len(res.Retry.RetriableStatusCodes) != 1 {
			t.Errorf("retryOn %q codes %v", res.Retry.RetryOn, res.Retry.RetriableStatusCodes)
		}
	})
	t.Run("rewrite", func(t *testing.T) {
		c := sidecar(t, "vs-rewrite")
		res := run(t, c, req("/old/page", nil))
		if res.PathRewrite != "/new/page" || res.HostRewrite != "reviews-new.default.svc.cluster.local" {
			t.Errorf("rewrite %q host %q", res.PathRewrite, res.HostRewrite)
		}
		if got := run(t, c, req("/v1/a/b", nil)).PathRewrite; got != "/a/b" {
			t.Errorf("regex rewrite %q, want /a/b", got)
		}
	})
	t.Run("redirect", func(t *testing.T) {
		c := sidecar(t, "vs-redirect")
		rd := run(t, c, req("/legacy", nil)).Redirect
		if rd.GetPathRedirect() != "/v2" || rd.GetHostRedirect() != "ratings.default.svc.cluster.local" || rd.GetPortRedirect() != 8443 ||
			rd.GetSchemeRedirect() != "https" || rd.GetResponseCode() != route.RedirectAction_PERMANENT_REDIRECT {
			t.Errorf("redirect %v", rd)
		}
		if rd := run(t, c, req("/moved/x", nil)).Redirect; rd.GetResponseCode() != route.RedirectAction_MOVED_PERMANENTLY {
			t.Errorf("default redirect code %v", rd.GetResponseCode())
		}
		wantCluster(t, run(t, c, req("/legacy/x", nil)), reviewsC)
	})
	t.Run("direct response", func(t *testing.T) {
		c := sidecar(t, "vs-direct-response")
		dr := run(t, c, req("/teapot", nil)).DirectResponse
		if dr.GetStatus() != 418 || dr.GetBody().GetInlineString() != "I'm a teapot" {
			t.Errorf("direct response %v", dr)
		}
		wantCluster(t, run(t, c, req("/", nil)), reviewsC)
	})
	t.Run("mirror", func(t *testing.T) {
		c := sidecar(t, "vs-mirror")
		res := run(t, c, req("/one", nil))
		if len(res.Mirrors) != 1 || res.Mirrors[0].Name != ratingsC || res.Mirrors[0].Percent != 25 {
			t.Errorf("mirrors %v", res.Mirrors)
		}
		res = run(t, c, req("/two", nil))
		if len(res.Mirrors) != 2 || res.Mirrors[0].Name != reviewsV2 || math.Abs(res.Mirrors[0].Percent-5) > 1e-9 || res.Mirrors[1].Percent != 100 {
			t.Errorf("mirrors %v", res.Mirrors)
		}
		wantCluster(t, res, reviewsV1)
	})
	t.Run("headers", func(t *testing.T) {
		res := run(t, sidecar(t, "vs-headers"), req("/", nil))
		if res.RequestHeadersToAdd["x-route"] != "reviews" || len(res.Clusters) != 2 {
			t.Errorf("headers %v clusters %v", res.RequestHeadersToAdd, res.Clusters)
		}
	})
	t.Run("cors", func(t *testing.T) {
		res := run(t, sidecar(t, "vs-cors"), req("/", nil))
		if res.CORS.GetAllowMethods() != "GET,POST" || len(res.CORS.GetAllowOriginStringMatch()) != 2 || !res.CORS.GetAllowCredentials().GetValue() {
			t.Errorf("cors %v", res.CORS)
		}
	})
	t.Run("unknown subset drops only its route", func(t *testing.T) {
		c := sidecar(t, "vs-unknown-subset")
		wantCluster(t, run(t, c, req("/bad", nil)), reviewsV1)
	})
	t.Run("unknown host drops only its route", func(t *testing.T) {
		c := sidecar(t, "vs-unknown-host")
		wantCluster(t, run(t, c, req("/ghost", nil)), ratingsC)
	})
	t.Run("source namespace and port", func(t *testing.T) {
		wantCluster(t, run(t, sidecar(t, "vs-port-and-source-namespace"), req("/", nil)), reviewsV2)
	})
	t.Run("gateway-only VirtualService ignored", func(t *testing.T) {
		wantCluster(t, run(t, sidecar(t, "vs-gateway-only"), req("/", nil)), reviewsC)
	})
	t.Run("invalid VirtualService skipped", func(t *testing.T) {
		wantCluster(t, run(t, sidecar(t, "vs-invalid-skipped"), req("/", nil)), reviewsC)
	})
	t.Run("fqdn hosts and exportTo", func(t *testing.T) {
		c := sidecar(t, "vs-fqdn-and-exportto")
		wantCluster(t, run(t, c, req("/", nil)), ratingsC)
		r := req("/", nil)
		r.Authority = "ratings.default.svc.cluster.local"
		wantCluster(t, run(t, c, r), ratingsC)
	})
	t.Run("sourceLabels", func(t *testing.T) {
		// The proxy is app=productpage: the first route is its own.
		wantCluster(t, run(t, sidecar(t, "vs-source-labels"), req("/", nil)), reviewsV2)
	})
	t.Run("delegate", func(t *testing.T) {
		c := sidecar(t, "vs-delegate")
		wantCluster(t, run(t, c, req("/api/v2/x", nil)), reviewsV2)
		wantCluster(t, run(t, c, req("/api/x", map[string]string{"x-ratings": "1"})), ratingsC)
		// The header route of the delegate holds only under the root's /api.
		wantCluster(t, run(t, c, req("/other", map[string]string{"x-ratings": "1"})), reviewsV1)
		// Under /api but matching no delegate route: on to the root's next route.
		wantCluster(t, run(t, c, req("/api/x", nil)), reviewsV1)
	})
}

// TestIngressGateway walks a request entering Bookinfo's ingress gateway
// (a router proxy selected by examples/bookinfo/gateway.yaml's Gateway)
// through the routes of the VirtualService bound to it.
func TestIngressGateway(t *testing.T) {
	c := sidecar(t, "gateway-http")
	r := simulate.Request{Port: 8080, Authority: "bookinfo.example.com:8080", Path: "/productpage"}
	res := run(t, c, r)
	wantCluster(t, res, "outbound|9080||productpage.default.svc.cluster.local")
	if res.Listener != "0.0.0.0_8080" || res.RouteConfig != "http.8080" {
		t.Errorf("entered by listener %q, route %q; want 0.0.0.0_8080, http.8080", res.Listener, res.RouteConfig)
	}
	r.Path = "/reviews/1" // bound routes only: anything else finds no route
	if res, err := c.Run(r); err == nil {
		t.Errorf("%s reached %v, want no route", r.Path, res.Clusters)
	}

	// Of two VirtualServices bound to one Gateway, the older one's
	// overlapping prefix wins.
	c = sidecar(t, "gateway-overlapping-prefix")
	wantCluster(t, run(t, c, simulate.Request{Port: 80, Authority: "shop.example.com", Path: "/api/v1/x"}),
		"outbound|9080||productpage.default.svc.cluster.local")
}

// TestRegistryOnly: under a Sidecar's REGISTRY_ONLY policy an HTTP request
// to a host the mesh does not know is answered 502 instead of passing
// through, while a known service still routes; without the Sidecar the
// same request passes through.
func TestRegistryOnly(t *testing.T) {
	c := sidecar(t, "sidecar-registry-only")
	unknown := simulate.Request{Port: 80, Authority: "unknown.example.com", Path: "/"}
	res := run(t, c, unknown)
	if res.DirectResponse == nil || res.DirectResponse.Status != 502 {
		t.Errorf("request to an unknown host: %s, want a 502 direct response", res)
	}
	known := simulate.Request{Port: 80, Authority: "api.frontend.svc.cluster.local", Path: "/"}
	wantCluster(t, run(t, c, known), "outbound|80||api.frontend.svc.cluster.local")

	res = run(t, sidecar(t, "http-service"), simulate.Request{Port: 80, Authority: "unknown.example.com", Path: "/"})
	if len(res.Clusters) != 1 || res.Clusters[0].Name != "PassthroughCluster" {
		t.Errorf("without REGISTRY_ONLY an unknown host went to %v (%s), want PassthroughCluster", res.Clusters, res)
	}
}

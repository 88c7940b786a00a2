package bootstrap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	istioclient "istio.io/client-go/pkg/clientset/versioned"

	"github.com/meshd/meshd/citadel/ca"
	caserver "github.com/meshd/meshd/citadel/server"
	"github.com/meshd/meshd/citadel/servingcert"
	"github.com/meshd/meshd/citadel/token"
	"github.com/meshd/meshd/citadel/trustbundle"
	"github.com/meshd/meshd/galley/webhook"
	"github.com/meshd/meshd/galley/webhookconfig"
	"github.com/meshd/meshd/pilot/inject"
	pilotmodel "github.com/meshd/meshd/pilot/model"
	pilotxds "github.com/meshd/meshd/pilot/xds"
	"github.com/meshd/meshd/pkg/component"
	"github.com/meshd/meshd/pkg/leader"
	"github.com/meshd/meshd/pkg/source/configdir"
	"github.com/meshd/meshd/pkg/source/kube"
	"github.com/meshd/meshd/pkg/store"
	"github.com/meshd/meshd/telemetry"
	"github.com/meshd/meshd/telemetry/als"
)

// Server is a wired meshd: the store, the shared servers and every
// subsystem's components. Build it with New, bind with Listen, run with Run.
type Server struct {
	Options Options
	Log     *slog.Logger
	Store   *store.Store

	// Kube and Istio are the API clients; nil in file mode.
	Kube       kubernetes.Interface
	Istio      istioclient.Interface
	RestConfig *rest.Config

	// Registry holds every control-plane metric; served on /metrics.
	Registry *prometheus.Registry

	// GRPC serves plaintext xDS and CA on 15010; SecureGRPC the same over
	// TLS on 15012. Subsystems register their services on both.
	GRPC, SecureGRPC *grpc.Server
	// WebhookMux is served over HTTPS on 15017, MonitoringMux on 15014,
	// DebugMux on 8080.
	WebhookMux, MonitoringMux, DebugMux *http.ServeMux

	// Ready gates /ready.
	Ready *Readiness

	// authn authenticates callers of 15012 (mesh certificate or JWT).
	authn     []caserver.Authenticator
	manager   *component.Manager
	certs     *servingCert
	listeners map[string]net.Listener
}

// New builds a meshd from options without touching the network: clients,
// the store over its source, the servers, and the subsystems.
func New(opts Options, log *slog.Logger) (*Server, error) {
	if err := opts.Complete(); err != nil {
		return nil, err
	}
	s := &Server{
		Options:       opts,
		Log:           log,
		Registry:      prometheus.NewRegistry(),
		WebhookMux:    http.NewServeMux(),
		MonitoringMux: http.NewServeMux(),
		DebugMux:      http.NewServeMux(),
		Ready:         &Readiness{},
		listeners:     map[string]net.Listener{},
	}
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var elector component.Elector = component.AlwaysLeader{}
	var source component.Component
	if opts.FileMode() {
		src, err := configdir.New(log.With("source", "configdir"), opts.ConfigDir, s.Registry)
		if err != nil {
			return nil, err
		}
		s.Store, source = src.Store(), src
	} else {
		cfg, err := restConfig(opts.Kubeconfig)
		if err != nil {
			return nil, err
		}
		s.RestConfig = cfg
		if s.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
			return nil, fmt.Errorf("kubernetes client: %w", err)
		}
		if s.Istio, err = istioclient.NewForConfig(cfg); err != nil {
			return nil, fmt.Errorf("istio client: %w", err)
		}
		src, err := kube.New(log.With("source", "kube"), s.Kube, s.Istio, opts.Namespace)
		if err != nil {
			return nil, err
		}
		s.Store, source = src.Store(), src
		elector = &leader.Elector{Log: log, Client: s.Kube, Namespace: opts.Namespace, Name: "meshd", Identity: opts.PodName}
	}
	s.Ready.Add("store", func() error {
		if !s.Store.HasSynced() {
			return errors.New("store not synced")
		}
		return nil
	})

	s.certs = &servingCert{}
	kp := keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second,
		MaxConnectionAge: opts.MaxConnectionAge, MaxConnectionAgeGrace: 10 * time.Second}
	kep := keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}
	// pilot's codec writes xDS resources without copying them per proxy.
	codec := grpc.ForceServerCodecV2(pilotxds.Codec())
	s.GRPC = grpc.NewServer(grpc.KeepaliveParams(kp), grpc.KeepaliveEnforcementPolicy(kep), grpc.MaxConcurrentStreams(100000), codec)
	s.SecureGRPC = grpc.NewServer(grpc.Creds(credentials.NewTLS(s.certs.grpcTLS())), grpc.StreamInterceptor(s.authenticateXDS),
		grpc.KeepaliveParams(kp), grpc.KeepaliveEnforcementPolicy(kep), grpc.MaxConcurrentStreams(100000), codec)

	s.manager = component.NewManager(log, elector)
	s.manager.Add("source", source)
	s.routes()
	if err := s.wireSubsystems(); err != nil {
		return nil, err
	}
	return s, nil
}

// SetServingCertificate makes 15012 and 15017 present certificates from get
// (citadel's CA-issued certificate); rootPEM returns the root that verifies
// them.
func (s *Server) SetServingCertificate(get func(*tls.ClientHelloInfo) (*tls.Certificate, error), rootPEM func() ([]byte, error)) {
	s.certs.set(get, rootPEM)
}

// AddComponent registers a subsystem's component with the manager.
func (s *Server) AddComponent(name string, c component.Component) { s.manager.Add(name, c) }

func restConfig(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("no cluster: pass --kubeconfig FILE, or --config-dir DIR for file mode (%w)", err)
		}
	} else if cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "meshd"
	return cfg, nil
}

// Listen binds every listen address, so that a port in use is an error
// before anything starts. Addr reports what was bound (":0" picks a port).
func (s *Server) Listen() error {
	for name, addr := range map[string]string{
		"grpc": s.Options.GRPCAddr, "secure-grpc": s.Options.SecureGRPCAddr, "webhook": s.Options.WebhookAddr,
		"monitoring": s.Options.MonitoringAddr, "debug": s.Options.DebugAddr,
	} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen %s (%s): %w", name, addr, err)
		}
		s.listeners[name] = l
	}
	return nil
}

// Addr returns the bound address of a listener: grpc, secure-grpc, webhook,
// monitoring or debug. Valid after Listen.
func (s *Server) Addr(name string) string {
	if l, ok := s.listeners[name]; ok {
		return l.Addr().String()
	}
	return ""
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		_ = l.Close()
	}
}

// Run serves until ctx ends, then drains: gRPC streams are closed
// gracefully and HTTP servers shut down, within DrainTimeout.
func (s *Server) Run(ctx context.Context) error {
	if len(s.listeners) == 0 {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	s.manager.Add("grpc", s.grpcServer(s.GRPC, s.listeners["grpc"]))
	s.manager.Add("secure-grpc", s.grpcServer(s.SecureGRPC, s.listeners["secure-grpc"]))
	s.manager.Add("webhook", s.httpServer(s.WebhookMux, s.listeners["webhook"], s.certs.serverTLS()))
	s.manager.Add("monitoring", s.httpServer(s.MonitoringMux, s.listeners["monitoring"], nil))
	s.manager.Add("debug", s.httpServer(s.DebugMux, s.listeners["debug"], nil))
	s.Log.Info("meshd starting",
		"mode", map[bool]string{true: "file", false: "kubernetes"}[s.Options.FileMode()],
		"grpc", s.Addr("grpc"), "secure-grpc", s.Addr("secure-grpc"), "webhook", s.Addr("webhook"),
		"monitoring", s.Addr("monitoring"), "debug", s.Addr("debug"))
	err := s.manager.Run(ctx)
	s.Log.Info("meshd stopped")
	return err
}

func (s *Server) grpcServer(srv *grpc.Server, l net.Listener) component.Component {
	return component.Func(func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(l) }()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
		}
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(s.Options.DrainTimeout):
			srv.Stop()
		}
		return nil
	})
}

func (s *Server) httpServer(h http.Handler, l net.Listener, tlsConfig *tls.Config) component.Component {
	return component.Func(func(ctx context.Context) error {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsConfig,
			ErrorLog: slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug)}
		errc := make(chan error, 1)
		go func() {
			if tlsConfig != nil {
				errc <- srv.ServeTLS(l, "", "")
			} else {
				errc <- srv.Serve(l)
			}
		}()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), s.Options.DrainTimeout)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	})
}

func (s *Server) routes() {
	s.MonitoringMux.Handle("/metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{Registry: s.Registry}))
	s.DebugMux.Handle("/ready", s.Ready)
	s.DebugMux.HandleFunc("/debug/configz", s.configz)
	s.DebugMux.HandleFunc("/debug/pprof/", pprof.Index)
	s.DebugMux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	s.DebugMux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	s.DebugMux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	s.DebugMux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// wireSubsystems builds pilot, citadel, galley and telemetry over the shared
// store and servers. Each block registers its gRPC services, HTTP routes and
// components; nothing here starts anything.
func (s *Server) wireSubsystems() error {
	// --- citadel ---
	clog := s.Log.With("subsystem", "citadel")
	var storage ca.Storage
	if s.Options.FileMode() {
		storage = ca.NewDirStorage(s.Options.CADir, s.Options.CACertsDir)
	} else {
		storage = ca.NewSecretStorage(s.Options.Namespace, s.Store, s.Kube)
	}
	authority := ca.New(clog, storage, ca.Options{TrustDomain: s.Options.TrustDomain})
	authn := []caserver.Authenticator{caserver.CertAuthenticator(authority)}
	if s.Options.FileMode() {
		key, err := token.LoadOrCreateKey(token.KeyPath(s.Options.CADir))
		if err != nil {
			return fmt.Errorf("citadel: %w", err)
		}
		authn = append(authn, caserver.LocalJWTAuthenticator(token.NewVerifier(&key.PublicKey, nil), authority.TrustDomain()))
	} else {
		// One TokenReview per CSR: a storm of pod starts must not queue
		// behind the informers' client-side rate limit (the API server's
		// own max-in-flight limits still protect it).
		rc := rest.CopyConfig(s.RestConfig)
		rc.QPS, rc.Burst = 1000, 2000
		reviewer, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return fmt.Errorf("citadel: token review client: %w", err)
		}
		authn = append(authn, caserver.KubeJWTAuthenticator(reviewer, authority.TrustDomain(), s.Options.ClusterID))
	}
	s.authn = authn
	caSrv, err := caserver.New(clog, authority, authn, s.Store, s.Registry, caserver.Options{TrustedNodeAccounts: s.Options.CATrustedNodeAccounts})
	if err != nil {
		return fmt.Errorf("citadel: %w", err)
	}
	caSrv.Register(s.GRPC)
	caSrv.Register(s.SecureGRPC)
	serving := servingcert.New(clog, authority, servingcert.Options{Namespace: s.Options.Namespace, ExtraHosts: s.Options.CustomHosts})
	s.SetServingCertificate(serving.GetCertificate, func() ([]byte, error) { return authority.RootsPEM(), nil })
	s.certs.setClientRoots(serving.RootPool)
	s.AddComponent("citadel-ca", authority)
	s.AddComponent("citadel-serving-cert", serving)
	if !s.Options.FileMode() {
		s.AddComponent("citadel-root-publisher", trustbundle.New(clog, s.Store, s.Kube, authority))
	}
	s.Ready.Add("ca", func() error {
		select {
		case <-serving.Ready():
			return nil
		default:
			return errors.New("CA root and serving certificate not loaded")
		}
	})

	// --- pilot ---
	pilot := pilotxds.New(s.Log.With("subsystem", "pilot"), s.Store, s.Registry, pilotxds.Options{
		Mesh: pilotmodel.Options{DomainSuffix: "cluster.local", TrustDomain: s.Options.TrustDomain,
			ClusterID: s.Options.ClusterID, RootNamespace: s.Options.Namespace},
		// Sidecars stream access logs to meshd through the Service istiod.
		ControlPlaneAddress: "istiod." + s.Options.Namespace + ".svc:15010",
		DebounceAfter:       s.Options.DebounceAfter,
		DebounceMax:         s.Options.DebounceMax,
		InstanceID:          s.Options.PodName,
		RegistryOnly:        s.Options.OutboundTrafficPolicy == "REGISTRY_ONLY",
	})
	pilot.Register(s.GRPC)
	pilot.Register(s.SecureGRPC)
	pilot.Routes(s.DebugMux)
	s.AddComponent("pilot", pilot.Component())
	s.Ready.Add("pilot", func() error {
		if pilot.Snapshot() == nil {
			return errors.New("no mesh snapshot yet")
		}
		return nil
	})

	// --- galley ---
	glog := s.Log.With("subsystem", "galley")
	wh, err := webhook.New(glog, s.Registry, webhook.Options{})
	if err != nil {
		return fmt.Errorf("galley: %w", err)
	}
	wh.Routes(s.WebhookMux)
	if s.Kube != nil {
		s.AddComponent("galley-webhook-config", webhookconfig.New(glog, s.Kube, webhookconfig.Options{
			Name:           "istio-validator-" + s.Options.Namespace,
			CABundle:       s.certs.rootPEM,
			Served:         wh.Served(),
			ProbeNamespace: s.Options.Namespace,
		}))
	}

	// --- sidecar injector (istiod serves it beside validation) ---
	injector := inject.NewWebhook(s.Log.With("subsystem", "injector"), s.Registry, inject.Options{
		ProxyImage: s.Options.ProxyImage, DiscoveryAddress: "istiod." + s.Options.Namespace + ".svc:15012",
		ClusterID: s.Options.ClusterID, TrustDomain: s.Options.TrustDomain,
	})
	injector.Routes(s.WebhookMux)
	if s.Kube != nil {
		s.AddComponent("injector-webhook-config", inject.NewConfigKeeper(s.Log.With("subsystem", "injector"), s.Kube, "istio-sidecar-injector", s.certs.rootPEM))
	}

	// --- telemetry ---
	tel := telemetry.New(s.Log.With("subsystem", "telemetry"), s.Store, s.Registry,
		telemetry.Options{ALS: als.Options{ClusterID: s.Options.ClusterID}})
	tel.Register(s.GRPC)
	tel.Register(s.SecureGRPC)
	tel.Routes(s.MonitoringMux) // /stats/prometheus, /api/graph, /ui/graph
	s.AddComponent("telemetry", tel.Component())
	return nil
}

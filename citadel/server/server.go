// Package server serves Istio's certificate service,
// istio.v1.auth.IstioCertificateService/CreateCertificate: it authenticates
// the caller, decides which identity the certificate may carry, and has the
// CA sign the CSR.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"

	pb "istio.io/api/security/v1alpha1"

	"github.com/meshd/meshd/citadel/ca"
	"github.com/meshd/meshd/citadel/spiffe"
	"github.com/meshd/meshd/pkg/store"
)

// Request metadata keys, as istio-agent and ztunnel send them.
const (
	// ImpersonatedIdentity asks for a certificate for another identity; only
	// trusted node accounts (ztunnel) may, for workloads on their node.
	ImpersonatedIdentity = "ImpersonatedIdentity"
	// CertSigner asks for a Kubernetes CSR signer; meshd has none.
	CertSigner = "CertSigner"
)

// Options configure the server.
type Options struct {
	// TrustedNodeAccounts are the "namespace/serviceaccount" pairs allowed
	// to use ImpersonatedIdentity (Istio's CA_TRUSTED_NODE_ACCOUNTS).
	TrustedNodeAccounts []string
}

// Server implements IstioCertificateService.
type Server struct {
	pb.UnimplementedIstioCertificateServiceServer

	log     *slog.Logger
	ca      *ca.CA
	authn   []Authenticator
	store   *store.Store
	trusted map[string]bool
	m       *metrics
}

// New returns a server signing with c. Authenticators are tried in order;
// the first that recognises the caller wins. st (may be nil) is read to
// check that an impersonated identity runs on the caller's node. Metrics
// are registered with reg (may be nil).
func New(log *slog.Logger, c *ca.CA, authn []Authenticator, st *store.Store, reg prometheus.Registerer, opts Options) (*Server, error) {
	s := &Server{log: log, ca: c, authn: authn, store: st, trusted: map[string]bool{}}
	var errs *multierror.Error
	for i, a := range opts.TrustedNodeAccounts {
		ns, sa, ok := strings.Cut(a, "/")
		if !ok || ns == "" || sa == "" || strings.Contains(sa, "/") {
			errs = multierror.Append(errs, fmt.Errorf("trusted node account %d %q: want NAMESPACE/SERVICEACCOUNT", i, a))
			continue
		}
		s.trusted[a] = true
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg, c)
	if err != nil {
		return nil, err
	}
	s.m = m
	return s, nil
}

// Register adds the service to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	pb.RegisterIstioCertificateServiceServer(g, s)
}

// CreateCertificate signs a workload CSR for the authenticated caller.
func (s *Server) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	s.m.csr.Inc()
	log := s.log.With("client", peerAddr(ctx))
	caller, err := s.authenticate(ctx)
	if err != nil {
		s.m.authnFailure.Inc()
		log.Info("CSR refused: authentication failed", "error", err)
		return nil, status.Error(codes.Unauthenticated, "authentication failed: "+err.Error())
	}
	log = log.With("caller", caller.ID.String(), "authenticated_by", caller.Source)

	id := caller.ID
	fields := req.GetMetadata().GetFields()
	if v := fields[CertSigner].GetStringValue(); v != "" {
		s.m.signError("CSR_ERROR")
		return nil, status.Errorf(codes.InvalidArgument, "request metadata CertSigner %q: meshd signs with its own CA only", v)
	}
	if imp := fields[ImpersonatedIdentity].GetStringValue(); imp != "" {
		target, err := s.authorizeImpersonation(caller, imp)
		if err != nil {
			s.m.authnFailure.Inc()
			log.Warn("CSR refused: impersonation", "requested", imp, "error", err)
			return nil, status.Error(codes.PermissionDenied, "ImpersonatedIdentity refused: "+err.Error())
		}
		id = target
	}

	if req.ValidityDuration < 0 {
		s.m.signError("TTL_ERROR")
		return nil, status.Errorf(codes.InvalidArgument, "validity_duration %d: must not be negative", req.ValidityDuration)
	}
	// Cut absurd values before they overflow; the CA caps at its maximum anyway.
	secs := min(req.ValidityDuration, math.MaxInt64/int64(time.Second))
	iss, err := s.ca.SignWorkload([]byte(req.Csr), id, time.Duration(secs)*time.Second)
	if err != nil {
		code, label := codes.Internal, "CERT_GEN_ERROR"
		switch {
		case errors.Is(err, ca.ErrInvalidRequest):
			code, label = codes.InvalidArgument, "CSR_ERROR"
		case errors.Is(err, ca.ErrNotPermitted):
			code, label = codes.PermissionDenied, "CSR_ERROR"
		case errors.Is(err, ca.ErrNotReady):
			code, label = codes.Unavailable, "CA_NOT_READY"
		}
		s.m.signError(label)
		log.Info("CSR refused", "identity", id.String(), "error", err)
		return nil, status.Error(code, err.Error())
	}
	s.m.success.Inc()
	log.Debug("certificate issued", "identity", id.String(), "expires", iss.Leaf.NotAfter)
	return &pb.IstioCertificateResponse{CertChain: iss.CertChain()}, nil
}

func (s *Server) authenticate(ctx context.Context) (*Caller, error) {
	return Authenticate(ctx, s.authn)
}

// Authenticate runs authenticators in order; the first that accepts wins.
// When none does, the error says what each refused. Other gRPC services on
// 15012 (xDS) use it to require a mesh certificate or a token, as istiod does.
func Authenticate(ctx context.Context, authn []Authenticator) (*Caller, error) {
	var errs []string
	for _, a := range authn {
		c, err := a.Authenticate(ctx)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if c != nil {
			return c, nil
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("no credential: present a mesh client certificate or a service-account token (authorization: Bearer) with audience " + Audience)
	}
	return nil, errors.New(strings.Join(errs, "; "))
}

// authorizeImpersonation checks, as Istio's node authorizer does, that the
// caller is a trusted node account and that a pod with the requested
// identity runs on the caller's own node.
func (s *Server) authorizeImpersonation(caller *Caller, requested string) (spiffe.ID, error) {
	if !s.trusted[caller.ID.Namespace+"/"+caller.ID.ServiceAccount] {
		return spiffe.ID{}, fmt.Errorf("caller %s is not a trusted node account", caller.ID)
	}
	target, err := spiffe.Parse(requested)
	if err != nil {
		return spiffe.ID{}, err
	}
	if target.TrustDomain != s.ca.TrustDomain() {
		return spiffe.ID{}, fmt.Errorf("identity %s is outside trust domain %s", target, s.ca.TrustDomain())
	}
	if s.store == nil || caller.PodName == "" {
		return spiffe.ID{}, fmt.Errorf("cannot tell which node caller %s runs on: its credential is not bound to a pod", caller.ID)
	}
	pod, ok := s.store.Pods.Get(caller.ID.Namespace, caller.PodName)
	if !ok {
		return spiffe.ID{}, fmt.Errorf("caller's pod %s/%s not found", caller.ID.Namespace, caller.PodName)
	}
	if caller.PodUID != "" && string(pod.UID) != caller.PodUID {
		return spiffe.ID{}, fmt.Errorf("caller's pod %s/%s was re-created (uid %s, token bound to %s)", pod.Namespace, pod.Name, pod.UID, caller.PodUID)
	}
	if serviceAccountOf(pod) != caller.ID.ServiceAccount {
		return spiffe.ID{}, fmt.Errorf("caller's pod %s/%s runs as %s, not %s", pod.Namespace, pod.Name, serviceAccountOf(pod), caller.ID.ServiceAccount)
	}
	node := pod.Spec.NodeName
	if node == "" {
		return spiffe.ID{}, fmt.Errorf("caller's pod %s/%s is not scheduled on a node", pod.Namespace, pod.Name)
	}
	for _, p := range s.store.Pods.List(target.Namespace) {
		if p.Spec.NodeName == node && serviceAccountOf(p) == target.ServiceAccount && p.Status.Phase != corev1.PodFailed {
			return target, nil
		}
	}
	return spiffe.ID{}, fmt.Errorf("no pod of %s runs on node %s", target, node)
}

func serviceAccountOf(p *corev1.Pod) string {
	if p.Spec.ServiceAccountName == "" {
		return "default"
	}
	return p.Spec.ServiceAccountName
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

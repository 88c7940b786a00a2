package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/meshd/meshd/citadel/ca"
	"github.com/meshd/meshd/citadel/spiffe"
	"github.com/meshd/meshd/citadel/token"
)

// Audience is the token audience the CA requires, as Istio's.
const Audience = "istio-ca"

// ClusterIDHeader is the gRPC metadata key in which istio-agent names its
// cluster (sent as ClusterID; gRPC lower-cases keys).
const ClusterIDHeader = "clusterid"

// Caller is an authenticated client of the CA.
type Caller struct {
	// ID is the caller's identity: the only one it may get a certificate for,
	// unless it is a trusted node account impersonating a workload.
	ID spiffe.ID
	// Source says how the caller was authenticated, for logs.
	Source string
	// PodName and PodUID are the pod a Kubernetes token is bound to, when
	// the API server says so; impersonation needs them to find the node.
	PodName, PodUID string
}

// Authenticator recognises one kind of credential.
type Authenticator interface {
	// Authenticate returns the caller, or (nil, nil) when the request
	// carries no credential of this kind, or an error saying why the
	// credential it carries is refused.
	Authenticate(ctx context.Context) (*Caller, error)
}

// AuthenticatorFunc adapts a function to an Authenticator.
type AuthenticatorFunc func(ctx context.Context) (*Caller, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context) (*Caller, error) { return f(ctx) }

var _ Authenticator = AuthenticatorFunc(nil)

// CertAuthenticator accepts a current mesh certificate presented on the
// TLS connection: a client renewing its certificate. The chain is verified
// here against the CA's trust bundle, whatever the listener's TLS settings.
func CertAuthenticator(c *ca.CA) Authenticator {
	return AuthenticatorFunc(func(ctx context.Context) (*Caller, error) {
		p, ok := peer.FromContext(ctx)
		if !ok {
			return nil, nil
		}
		info, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok || len(info.State.PeerCertificates) == 0 {
			return nil, nil
		}
		certs := info.State.PeerCertificates
		roots := c.RootPool()
		if roots == nil {
			return nil, ca.ErrNotReady
		}
		inter := c.Intermediates()
		for _, ic := range certs[1:] {
			inter.AddCert(ic)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{
			Roots: roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}); err != nil {
			return nil, fmt.Errorf("client certificate: %v", err)
		}
		if len(certs[0].URIs) != 1 {
			return nil, fmt.Errorf("client certificate has %d URI SANs, want one SPIFFE ID", len(certs[0].URIs))
		}
		id, err := spiffe.FromURL(certs[0].URIs[0])
		if err != nil {
			return nil, fmt.Errorf("client certificate: %v", err)
		}
		if id.TrustDomain != c.TrustDomain() {
			return nil, fmt.Errorf("client certificate: identity %s is outside trust domain %s", id, c.TrustDomain())
		}
		return &Caller{ID: id, Source: "mesh certificate"}, nil
	})
}

// bearerToken returns the token of an "authorization: Bearer" header, ""
// when there is none.
func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", nil
	}
	if len(vals) > 1 {
		return "", errors.New("more than one authorization header")
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", errors.New("authorization header is not \"Bearer TOKEN\"")
	}
	return strings.TrimSpace(tok), nil
}

// clusterIDOf returns the ClusterID metadata, "" when absent.
func clusterIDOf(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(ClusterIDHeader); len(v) == 1 {
		return v[0]
	}
	return ""
}

// Token review extras Kubernetes sets for tokens bound to a pod.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// KubeJWTAuthenticator accepts a Kubernetes service-account token with
// audience istio-ca, checked by a TokenReview against the API server of
// clusterID. A request naming another cluster in its ClusterID metadata is
// refused: this meshd can review tokens of its own cluster only.
func KubeJWTAuthenticator(client kubernetes.Interface, trustDomain, clusterID string) Authenticator {
	return AuthenticatorFunc(func(ctx context.Context) (*Caller, error) {
		tok, err := bearerToken(ctx)
		if err != nil || tok == "" {
			return nil, err
		}
		if cid := clusterIDOf(ctx); cid != "" && cid != clusterID {
			return nil, fmt.Errorf("token from cluster %q (ClusterID metadata), but this meshd serves cluster %q", cid, clusterID)
		}
		review, err := client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
			Spec: authnv1.TokenReviewSpec{Token: tok, Audiences: []string{Audience}},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("token review failed: %v", err)
		}
		st := review.Status
		if !st.Authenticated {
			msg := st.Error
			if msg == "" {
				msg = "not authenticated"
			}
			return nil, fmt.Errorf("token refused by the API server: %s", msg)
		}
		if len(st.Audiences) > 0 && !slices.Contains(st.Audiences, Audience) {
			return nil, fmt.Errorf("token audiences %v do not include %s", st.Audiences, Audience)
		}
		if !slices.Contains(st.User.Groups, "system:serviceaccounts") {
			return nil, fmt.Errorf("token of %q is not a service-account token", st.User.Username)
		}
		parts := strings.Split(st.User.Username, ":")
		if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" {
			return nil, fmt.Errorf("token user %q is not system:serviceaccount:NAMESPACE:NAME", st.User.Username)
		}
		id := spiffe.ID{TrustDomain: trustDomain, Namespace: parts[2], ServiceAccount: parts[3]}
		if err := id.Validate(); err != nil {
			return nil, fmt.Errorf("token user %q: %v", st.User.Username, err)
		}
		c := &Caller{ID: id, Source: "kubernetes token"}
		if v := st.User.Extra[extraPodName]; len(v) == 1 {
			c.PodName = v[0]
		}
		if v := st.User.Extra[extraPodUID]; len(v) == 1 {
			c.PodUID = v[0]
		}
		return c, nil
	})
}

// LocalJWTAuthenticator accepts, in file mode, a token minted with meshd's
// own token key (meshctl token).
func LocalJWTAuthenticator(v *token.Verifier, trustDomain string) Authenticator {
	return AuthenticatorFunc(func(ctx context.Context) (*Caller, error) {
		tok, err := bearerToken(ctx)
		if err != nil || tok == "" {
			return nil, err
		}
		ns, sa, err := v.Verify(tok, Audience)
		if err != nil {
			return nil, err
		}
		id := spiffe.ID{TrustDomain: trustDomain, Namespace: ns, ServiceAccount: sa}
		if err := id.Validate(); err != nil {
			return nil, fmt.Errorf("token: %v", err)
		}
		return &Caller{ID: id, Source: "meshd token"}, nil
	})
}

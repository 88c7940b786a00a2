package bootstrap

import (
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	caserver "github.com/meshd/meshd/citadel/server"
)

// authenticateXDS guards xDS on 15012 as istiod does: the caller must present
// a mesh certificate or a service-account JWT. The CA service does its own
// authentication; plaintext 15010 is for local use and is not guarded.
func (s *Server) authenticateXDS(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if strings.HasPrefix(info.FullMethod, "/envoy.service.discovery.v3.") {
		if _, err := caserver.Authenticate(ss.Context(), s.authn); err != nil {
			return status.Errorf(codes.Unauthenticated, "xDS on the TLS port needs a mesh certificate or a service-account token: %v", err)
		}
	}
	return handler(srv, ss)
}

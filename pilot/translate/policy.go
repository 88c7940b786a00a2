package translate

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpopts "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshd/meshd/pilot/model"
)

// SDS secret names of the sidecar's workload certificate and mesh root.
const (
	SecretDefault = "default"
	SecretRootCA  = "ROOTCA"
)

// portPolicy is the traffic policy in force for one port of one subset:
// the DestinationRule's policy, overridden by its port-level settings, then
// by the subset's policy and the subset's port-level settings, each field
// on its own (a subset setting only its load balancer keeps the rule's
// connection pool).
type portPolicy struct {
	lb   *networking.LoadBalancerSettings
	pool *networking.ConnectionPoolSettings
	od   *networking.OutlierDetection
	tls  *networking.ClientTLSSettings
}

func (pp *portPolicy) apply(tp *networking.TrafficPolicy, port int32) {
	if tp == nil {
		return
	}
	pp.set(tp.LoadBalancer, tp.ConnectionPool, tp.OutlierDetection, tp.Tls)
	for _, pl := range tp.PortLevelSettings {
		if int32(pl.GetPort().GetNumber()) == port {
			pp.set(pl.LoadBalancer, pl.ConnectionPool, pl.OutlierDetection, pl.Tls)
		}
	}
}

func (pp *portPolicy) set(lb *networking.LoadBalancerSettings, pool *networking.ConnectionPoolSettings, od *networking.OutlierDetection, tls *networking.ClientTLSSettings) {
	if lb != nil {
		pp.lb = lb
	}
	if pool != nil {
		pp.pool = pool
	}
	if od != nil {
		pp.od = od
	}
	if tls != nil {
		pp.tls = tls
	}
}

// policyFor merges the policy of a DestinationRule (nil: none) for a port
// and an optional subset.
func policyFor(dr *drEntry, subset *networking.Subset, port int32) portPolicy {
	var pp portPolicy
	if dr != nil {
		pp.apply(dr.spec.TrafficPolicy, port)
	}
	if subset != nil {
		pp.apply(subset.TrafficPolicy, port)
	}
	return pp
}

// consistentHash returns the consistent-hash settings in force, if any.
func (pp portPolicy) consistentHash() *networking.LoadBalancerSettings_ConsistentHashLB {
	return pp.lb.GetConsistentHash()
}

// applyPolicy shapes an outbound cluster by a merged traffic policy.
// sni is the SNI an ISTIO_MUTUAL connection presents.
func applyPolicy(c *cluster.Cluster, pp portPolicy, svc *model.Service, h2, grpc bool, sni string) {
	applyLB(c, pp.lb, grpc)
	applyPool(c, pp.pool, h2, grpc)
	applyOutlier(c, pp.od, grpc)
	applyTLS(c, pp.tls, svc, grpc, sni)
}

func applyLB(c *cluster.Cluster, lb *networking.LoadBalancerSettings, grpc bool) {
	if lb == nil {
		return
	}
	if ch := lb.GetConsistentHash(); ch != nil {
		c.LbConfig = nil
		if mg := ch.GetMaglev(); mg != nil && !grpc {
			c.LbPolicy = cluster.Cluster_MAGLEV
			if mg.TableSize > 0 {
				c.LbConfig = &cluster.Cluster_MaglevLbConfig_{MaglevLbConfig: &cluster.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(mg.TableSize)}}
			}
			return
		}
		// grpc-go has no Maglev: a ring hash balances by the same keys.
		c.LbPolicy = cluster.Cluster_RING_HASH
		size := ch.GetRingHash().GetMinimumRingSize()
		if size == 0 {
			//lint:ignore SA1019 istiod still honours the deprecated top-level field; so must a drop-in.
			size = ch.GetMinimumRingSize()
		}
		if size == 0 {
			size = 1024
		}
		c.LbConfig = &cluster.Cluster_RingHashLbConfig_{RingHashLbConfig: &cluster.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(size)}}
		return
	}
	switch lb.GetSimple() {
	case networking.LoadBalancerSettings_ROUND_ROBIN:
		c.LbPolicy, c.LbConfig = cluster.Cluster_ROUND_ROBIN, nil
	case networking.LoadBalancerSettings_RANDOM:
		if !grpc { // grpc-go has no random policy: it keeps the default
			c.LbPolicy, c.LbConfig = cluster.Cluster_RANDOM, nil
		}
	case networking.LoadBalancerSettings_PASSTHROUGH:
		if !grpc { // grpc-go cannot forward to the original destination
			c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST}
			c.EdsClusterConfig, c.LoadAssignment = nil, nil
			c.LbPolicy, c.LbConfig = cluster.Cluster_CLUSTER_PROVIDED, nil
		}
	//lint:ignore SA1019 LEAST_CONN is istiod's deprecated alias of LEAST_REQUEST and still accepted.
	case networking.LoadBalancerSettings_LEAST_REQUEST, networking.LoadBalancerSettings_LEAST_CONN:
		applyDefaultLB(c)
	}
	if w := lb.GetWarmupDurationSecs(); w != nil && !grpc && (c.LbPolicy == cluster.Cluster_ROUND_ROBIN || c.LbPolicy == cluster.Cluster_LEAST_REQUEST) {
		sw := &cluster.Cluster_SlowStartConfig{SlowStartWindow: durationpb.New(w.AsDuration())}
		if c.LbPolicy == cluster.Cluster_ROUND_ROBIN {
			c.LbConfig = &cluster.Cluster_RoundRobinLbConfig_{RoundRobinLbConfig: &cluster.Cluster_RoundRobinLbConfig{SlowStartConfig: sw}}
		} else if lr := c.GetLeastRequestLbConfig(); lr != nil {
			lr.SlowStartConfig = sw
		}
	}
}

func applyPool(c *cluster.Cluster, pool *networking.ConnectionPoolSettings, h2, grpc bool) {
	if pool == nil {
		return
	}
	if grpc {
		// grpc-go reads only max_requests of the default priority.
		if n := pool.GetHttp().GetHttp2MaxRequests(); n > 0 {
			c.CircuitBreakers = &cluster.CircuitBreakers{Thresholds: []*cluster.CircuitBreakers_Thresholds{{MaxRequests: wrapperspb.UInt32(uint32(n))}}}
		}
		return
	}
	if c.CircuitBreakers == nil {
		c.CircuitBreakers = maxCircuitBreakers()
	}
	th := c.CircuitBreakers.Thresholds[0]
	if tcp := pool.Tcp; tcp != nil {
		if tcp.MaxConnections > 0 {
			th.MaxConnections = wrapperspb.UInt32(uint32(tcp.MaxConnections))
		}
		if tcp.ConnectTimeout != nil {
			c.ConnectTimeout = durationpb.New(tcp.ConnectTimeout.AsDuration())
		}
		if ka := tcp.TcpKeepalive; ka != nil {
			k := &core.TcpKeepalive{}
			if ka.Probes > 0 {
				k.KeepaliveProbes = wrapperspb.UInt32(ka.Probes)
			}
			if ka.Time != nil {
				k.KeepaliveTime = wrapperspb.UInt32(uint32(ka.Time.AsDuration() / time.Second))
			}
			if ka.Interval != nil {
				k.KeepaliveInterval = wrapperspb.UInt32(uint32(ka.Interval.AsDuration() / time.Second))
			}
			c.UpstreamConnectionOptions = &cluster.UpstreamConnectionOptions{TcpKeepalive: k}
		}
	}
	hp := pool.Http
	if hp == nil {
		return
	}
	if hp.Http1MaxPendingRequests > 0 {
		th.MaxPendingRequests = wrapperspb.UInt32(uint32(hp.Http1MaxPendingRequests))
	}
	if hp.Http2MaxRequests > 0 {
		th.MaxRequests = wrapperspb.UInt32(uint32(hp.Http2MaxRequests))
	}
	if hp.MaxRetries > 0 {
		th.MaxRetries = wrapperspb.UInt32(uint32(hp.MaxRetries))
	}
	common := &core.HttpProtocolOptions{}
	if hp.MaxRequestsPerConnection > 0 {
		common.MaxRequestsPerConnection = wrapperspb.UInt32(uint32(hp.MaxRequestsPerConnection))
	}
	if hp.IdleTimeout != nil {
		common.IdleTimeout = durationpb.New(hp.IdleTimeout.AsDuration())
	}
	if d := pool.GetTcp().GetMaxConnectionDuration(); d != nil {
		common.MaxConnectionDuration = durationpb.New(d.AsDuration())
	}
	h2 = h2 || hp.H2UpgradePolicy == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE
	h2opts := &core.Http2ProtocolOptions{}
	if hp.MaxConcurrentStreams > 0 {
		h2opts.MaxConcurrentStreams = wrapperspb.UInt32(uint32(hp.MaxConcurrentStreams))
	}
	if proto.Equal(common, &core.HttpProtocolOptions{}) && !h2 && !hp.UseClientProtocol {
		return
	}
	opts := &httpopts.HttpProtocolOptions{}
	if !proto.Equal(common, &core.HttpProtocolOptions{}) {
		opts.CommonHttpProtocolOptions = common
	}
	switch {
	case hp.UseClientProtocol:
		// Forward with the protocol the client used.
		opts.UpstreamProtocolOptions = &httpopts.HttpProtocolOptions_UseDownstreamProtocolConfig{UseDownstreamProtocolConfig: &httpopts.HttpProtocolOptions_UseDownstreamHttpConfig{
			HttpProtocolOptions: &core.Http1ProtocolOptions{}, Http2ProtocolOptions: h2opts,
		}}
	case h2:
		opts.UpstreamProtocolOptions = &httpopts.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: h2opts},
		}}
	default:
		opts.UpstreamProtocolOptions = &httpopts.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpopts.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &core.Http1ProtocolOptions{}},
		}}
	}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(opts),
	}
}

func applyOutlier(c *cluster.Cluster, od *networking.OutlierDetection, grpc bool) {
	if od == nil {
		return
	}
	o := &cluster.OutlierDetection{}
	if grpc {
		grpcOutlier(c, o, od)
		return
	}
	// Only the detectors the user turned on eject (Envoy enables 5xx by
	// default; Istio enforces exactly what is written).
	o.EnforcingConsecutive_5Xx = wrapperspb.UInt32(0)
	o.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(0)
	if v := od.Consecutive_5XxErrors; v != nil && v.Value > 0 {
		o.Consecutive_5Xx = wrapperspb.UInt32(v.Value)
		o.EnforcingConsecutive_5Xx = wrapperspb.UInt32(100)
	}
	if v := od.ConsecutiveGatewayErrors; v != nil && v.Value > 0 {
		o.ConsecutiveGatewayFailure = wrapperspb.UInt32(v.Value)
		o.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(100)
	}
	if od.Interval != nil {
		o.Interval = durationpb.New(od.Interval.AsDuration())
	}
	if od.BaseEjectionTime != nil {
		o.BaseEjectionTime = durationpb.New(od.BaseEjectionTime.AsDuration())
	}
	if od.MaxEjectionPercent > 0 {
		o.MaxEjectionPercent = wrapperspb.UInt32(uint32(od.MaxEjectionPercent))
	}
	c.OutlierDetection = o
	if od.MinHealthPercent > 0 {
		c.CommonLbConfig = &cluster.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: float64(od.MinHealthPercent)}}
	}
}

func applyTLS(c *cluster.Cluster, t *networking.ClientTLSSettings, svc *model.Service, grpc bool, sni string) {
	if t == nil || t.Mode == networking.ClientTLSSettings_DISABLE {
		return
	}
	common := &tlsv3.CommonTlsContext{}
	ctx := &tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: t.Sni}
	var sans []*tlsv3.SubjectAltNameMatcher
	for _, s := range t.SubjectAltNames {
		sans = append(sans, &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: s}}})
	}
	switch t.Mode {
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		if ctx.Sni == "" {
			ctx.Sni = sni
		}
		if grpc {
			// grpc-go takes certificates from its bootstrap's certificate
			// providers; istio-agent names the mesh one "default".
			common.TlsCertificateProviderInstance = &tlsv3.CertificateProviderPluginInstance{InstanceName: "default", CertificateName: "default"}
			common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: "default", CertificateName: "ROOTCA"},
				MatchTypedSubjectAltNames:     sans,
			}}
		} else {
			common.AlpnProtocols = []string{"istio-peer-exchange", "istio"}
			common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: SecretDefault, SdsConfig: adsSource()}}
			common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sans},
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: SecretRootCA, SdsConfig: adsSource()},
			}}
		}
	case networking.ClientTLSSettings_SIMPLE, networking.ClientTLSSettings_MUTUAL:
		if grpc {
			// grpc-go only takes certificates from certificate providers;
			// file paths and credentialName are the sidecar's business.
			return
		}
		if ctx.Sni == "" && svc != nil {
			ctx.Sni = svc.Hostname
		}
		vc := &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sans}
		if t.CaCertificates != "" {
			vc.TrustedCa = &core.DataSource{Specifier: &core.DataSource_Filename{Filename: t.CaCertificates}}
		}
		if t.CredentialName != "" {
			common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "kubernetes://" + t.CredentialName + "-cacert", SdsConfig: adsSource()}}
		} else if vc.TrustedCa != nil || len(sans) > 0 {
			common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
		}
		if t.Mode == networking.ClientTLSSettings_MUTUAL {
			switch {
			case t.CredentialName != "":
				common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: "kubernetes://" + t.CredentialName, SdsConfig: adsSource()}}
			case t.ClientCertificate != "":
				common.TlsCertificates = []*tlsv3.TlsCertificate{{
					CertificateChain: &core.DataSource{Specifier: &core.DataSource_Filename{Filename: t.ClientCertificate}},
					PrivateKey:       &core.DataSource{Specifier: &core.DataSource_Filename{Filename: t.PrivateKey}},
				}}
			}
		}
	default:
		return
	}
	c.TransportSocket = &core.TransportSocket{Name: "envoy.transport_sockets.tls",
		ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
}

// grpcOutlier expresses an outlier detection policy in what grpc-go
// implements (gRFC A50): it has no consecutive-error detectors, only
// success-rate and failure-percentage ejection. Consecutive errors become
// failure-percentage ejection: a host that failed at least half of at least
// N calls in an interval is ejected, N being the consecutive-error count;
// success-rate ejection (which needs five hosts) is turned off so that the
// policy means the same with two hosts as with ten.
func grpcOutlier(c *cluster.Cluster, o *cluster.OutlierDetection, od *networking.OutlierDetection) {
	o.EnforcingSuccessRate = wrapperspb.UInt32(0)
	n := uint32(0)
	if v := od.Consecutive_5XxErrors; v != nil && v.Value > 0 {
		n = v.Value
	}
	if v := od.ConsecutiveGatewayErrors; v != nil && v.Value > 0 && (n == 0 || v.Value < n) {
		n = v.Value
	}
	if n > 0 {
		o.EnforcingFailurePercentage = wrapperspb.UInt32(100)
		o.FailurePercentageThreshold = wrapperspb.UInt32(50)
		o.FailurePercentageMinimumHosts = wrapperspb.UInt32(2)
		o.FailurePercentageRequestVolume = wrapperspb.UInt32(n)
	}
	if od.Interval != nil {
		o.Interval = durationpb.New(od.Interval.AsDuration())
	}
	if od.BaseEjectionTime != nil {
		o.BaseEjectionTime = durationpb.New(od.BaseEjectionTime.AsDuration())
	}
	if od.MaxEjectionPercent > 0 {
		o.MaxEjectionPercent = wrapperspb.UInt32(uint32(od.MaxEjectionPercent))
	}
	c.OutlierDetection = o
}

// istioSNI is the SNI of an ISTIO_MUTUAL connection, as istiod names it.
func istioSNI(port int32, subset, host string) string {
	return fmt.Sprintf("outbound_.%d_.%s_.%s", port, subset, host)
}

// subsetEndpoints keeps the endpoints a subset's labels select.
func subsetEndpoints(eps []model.Endpoint, labels map[string]string) []model.Endpoint {
	if len(labels) == 0 {
		return eps
	}
	out := make([]model.Endpoint, 0, len(eps))
	for _, ep := range eps {
		if model.Selects(labels, ep.Labels) {
			out = append(out, ep)
		}
	}
	return out
}

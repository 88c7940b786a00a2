//lint:file-ignore SA1019 deprecated fields are still accepted, so their rules still apply, as in istiod

package validation

import (
	"math"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

func validateDestinationRule(r *report, p path, namespace string, dr *networking.DestinationRule) {
	r.err(p.f("host"), checkWildcardDomain(dr.Host))
	r.trafficPolicy(p.f("trafficPolicy"), namespace, dr.TrafficPolicy)
	names := map[string]bool{}
	for i, s := range dr.Subsets {
		sp := p.f("subsets").i(i)
		if s == nil {
			r.errorf(sp, "subset may not be null")
			continue
		}
		if names[s.Name] {
			r.errorf(sp.f("name"), "duplicate subset names: %s", s.Name)
		}
		names[s.Name] = true
		r.err(sp.f("name"), checkSubsetName(s.Name))
		r.labels(sp.f("labels"), s.Labels)
		r.trafficPolicy(sp.f("trafficPolicy"), namespace, s.TrafficPolicy)
	}
	r.exportTo(p.f("exportTo"), namespace, dr.ExportTo, false, dr.WorkloadSelector != nil)
	r.workloadSelector(p.f("workloadSelector"), dr.WorkloadSelector)
}

func (r *report) trafficPolicy(p path, namespace string, tp *networking.TrafficPolicy) {
	if tp == nil {
		return
	}
	if tp.OutlierDetection == nil && tp.ConnectionPool == nil && tp.LoadBalancer == nil && tp.Tls == nil &&
		tp.PortLevelSettings == nil && tp.Tunnel == nil && tp.ProxyProtocol == nil && tp.RetryBudget == nil {
		r.errorf(p, "traffic policy must have at least one field")
		return
	}
	if tp.Tunnel != nil && tp.ProxyProtocol != nil {
		r.errorf(p, "tunnel and proxyProtocol must not be set together")
		return
	}
	r.outlierDetection(p.f("outlierDetection"), tp.OutlierDetection)
	r.connectionPool(p.f("connectionPool"), tp.ConnectionPool)
	r.loadBalancer(p.f("loadBalancer"), tp.LoadBalancer, tp.OutlierDetection)
	r.clientTLS(p.f("tls"), namespace, tp.Tls)
	for i, pl := range tp.PortLevelSettings {
		pp := p.f("portLevelSettings").i(i)
		if pl == nil {
			r.errorf(pp, "traffic policy may not be null")
			continue
		}
		if pl.Port == nil {
			r.errorf(pp.f("port"), "portTrafficPolicy must have valid port")
		}
		if pl.OutlierDetection == nil && pl.ConnectionPool == nil && pl.LoadBalancer == nil && pl.Tls == nil {
			r.errorf(pp, "port traffic policy must have at least one field")
			continue
		}
		r.outlierDetection(pp.f("outlierDetection"), pl.OutlierDetection)
		r.connectionPool(pp.f("connectionPool"), pl.ConnectionPool)
		r.loadBalancer(pp.f("loadBalancer"), pl.LoadBalancer, pl.OutlierDetection)
		r.clientTLS(pp.f("tls"), namespace, pl.Tls)
	}
	if t := tp.Tunnel; t != nil {
		tpp := p.f("tunnel")
		if t.Protocol != "" && t.Protocol != "CONNECT" && t.Protocol != "POST" {
			r.errorf(tpp.f("protocol"), `tunnel protocol must be "CONNECT" or "POST"`)
		}
		if fqdnErr, ipErr := checkFQDN(t.TargetHost), checkIP(t.TargetHost); fqdnErr != nil && ipErr != nil {
			r.errorf(tpp.f("targetHost"), "tunnel target host must be valid FQDN or IP address: %v; %v", fqdnErr, ipErr)
		}
		if err := checkPort(int64(t.TargetPort)); err != nil {
			r.errorf(tpp.f("targetPort"), "tunnel target port is invalid: %v", err)
		}
	}
	if pp := tp.ProxyProtocol; pp != nil && pp.Version != 0 && pp.Version != 1 {
		r.errorf(p.f("proxyProtocol").f("version"), "proxy protocol version is invalid: %d", pp.Version)
	}
	if rb := tp.RetryBudget; rb != nil {
		// istiod leaves this to Envoy; a budget outside 0..100% is a mistake.
		if v := rb.Percent.GetValue(); rb.Percent != nil && (v < 0 || v > 100) {
			r.warnf(p.f("retryBudget").f("percent"), "retry budget percent %v is not in range 0..100", v)
		}
	}
}

func (r *report) outlierDetection(p path, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	r.duration(p.f("baseEjectionTime"), od.BaseEjectionTime)
	r.duration(p.f("interval"), od.Interval)
	if od.ConsecutiveErrors != 0 {
		r.warnf(p.f("consecutiveErrors"), "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead")
	}
	if !od.SplitExternalLocalOriginErrors && od.ConsecutiveLocalOriginFailures.GetValue() > 0 {
		r.errorf(p.f("consecutiveLocalOriginFailures"), "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false")
	}
	r.err(p.f("maxEjectionPercent"), checkPercent(od.MaxEjectionPercent))
	r.err(p.f("minHealthPercent"), checkPercent(od.MinHealthPercent))
}

func (r *report) connectionPool(p path, cp *networking.ConnectionPoolSettings) {
	if cp == nil {
		return
	}
	if cp.Http == nil && cp.Tcp == nil {
		r.errorf(p, "connection pool must have at least one field")
		return
	}
	if h := cp.Http; h != nil {
		hp := p.f("http")
		for _, f := range []struct {
			name string
			v    int32
			msg  string
		}{
			{"http1MaxPendingRequests", h.Http1MaxPendingRequests, "http1 max pending requests must be non-negative"},
			{"http2MaxRequests", h.Http2MaxRequests, "http2 max requests must be non-negative"},
			{"maxRequestsPerConnection", h.MaxRequestsPerConnection, "max requests per connection must be non-negative"},
			{"maxRetries", h.MaxRetries, "max retries must be non-negative"},
			{"maxConcurrentStreams", h.MaxConcurrentStreams, "max concurrent streams must be non-negative"},
		} {
			if f.v < 0 {
				r.errorf(hp.f(f.name), "%s", f.msg)
			}
		}
		r.duration(hp.f("idleTimeout"), h.IdleTimeout)
		if h.H2UpgradePolicy == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE && h.UseClientProtocol {
			r.errorf(hp.f("useClientProtocol"), "use client protocol must not be true when H2UpgradePolicy is UPGRADE")
		}
		if ka := h.Http2KeepAlive; ka != nil {
			kp := hp.f("http2KeepAlive")
			if ka.Interval == nil {
				r.errorf(kp.f("interval"), "http2 keepalive interval is required")
			}
			if ka.Timeout == nil {
				r.errorf(kp.f("timeout"), "http2 keepalive timeout is required")
			}
			r.duration(kp.f("interval"), ka.Interval)
			r.duration(kp.f("timeout"), ka.Timeout)
		}
	}
	if t := cp.Tcp; t != nil {
		tp := p.f("tcp")
		if t.MaxConnections < 0 {
			r.errorf(tp.f("maxConnections"), "max connections must be non-negative")
		}
		r.duration(tp.f("connectTimeout"), t.ConnectTimeout)
		r.duration(tp.f("maxConnectionDuration"), t.MaxConnectionDuration)
		// 0s disables the idle timeout.
		if t.IdleTimeout != nil && t.IdleTimeout.AsDuration().Milliseconds() != 0 {
			r.duration(tp.f("idleTimeout"), t.IdleTimeout)
		}
		if ka := t.TcpKeepalive; ka != nil {
			r.duration(tp.f("tcpKeepalive").f("time"), ka.Time)
			r.duration(tp.f("tcpKeepalive").f("interval"), ka.Interval)
		}
	}
}

func (r *report) loadBalancer(p path, lb *networking.LoadBalancerSettings, od *networking.OutlierDetection) {
	if lb == nil {
		return
	}
	if ch := lb.GetConsistentHash(); ch != nil {
		cp := p.f("consistentHash")
		if c := ch.GetHttpCookie(); c != nil {
			if c.GetName() == "" {
				r.errorf(cp.f("httpCookie").f("name"), "name required for HttpCookie")
			}
			seen := map[string]bool{}
			for i, a := range c.GetAttributes() {
				ap := cp.f("httpCookie").f("attributes").i(i)
				switch {
				case a.GetName() == "":
					r.errorf(ap.f("name"), "cookie attribute name cannot be empty")
				case seen[a.GetName()]:
					r.errorf(ap.f("name"), "duplicate cookie attribute name: %s", a.GetName())
				}
				seen[a.GetName()] = true
			}
		}
		if ch.MinimumRingSize != 0 {
			r.warnf(cp.f("minimumRingSize"), "consistent hash minimumRingSize is deprecated, use ringHash.minimumRingSize instead")
			if ch.GetHashAlgorithm() != nil {
				r.errorf(cp, "only one of minimumRingSize or maglev/ringHash can be specified")
			}
		}
		if ml := ch.GetMaglev(); ml != nil {
			mp := cp.f("maglev").f("tableSize")
			switch {
			case ml.TableSize == 0:
				r.errorf(mp, "tableSize must be set for maglev")
			case ml.TableSize >= 5000011:
				r.errorf(mp, "tableSize must be less than 5000011 for maglev")
			}
			if !isPrime(ml.TableSize) {
				r.errorf(mp, "tableSize must be a prime number for maglev")
			}
		}
	}
	if lb.LocalityLbSetting != nil && lb.ZoneAwareLbSetting != nil {
		r.errorf(p, "only one of localityLbSetting and zoneAwareLbSetting can be set")
	}
	r.localityLB(p.f("localityLbSetting"), lb.LocalityLbSetting, od)
	r.zoneAwareLB(p.f("zoneAwareLbSetting"), lb.ZoneAwareLbSetting, od)
	if w := lb.Warmup; w != nil {
		wp := p.f("warmup")
		if w.Duration == nil {
			r.errorf(wp.f("duration"), "duration is required")
		}
		r.duration(wp.f("duration"), w.Duration)
		if w.MinimumPercent.GetValue() > 100 {
			r.errorf(wp.f("minimumPercent"), "minimumPercent value should be less than or equal to 100")
		}
		if w.Aggression != nil && w.Aggression.GetValue() <= 0 {
			r.errorf(wp.f("aggression"), "aggression should be greater than 0")
		}
	}
}

// isPrime is Envoy's primality test for maglev table sizes (it treats 0..3
// as prime), so that meshd agrees with what Envoy will accept.
func isPrime(x uint64) bool {
	if x != 0 && x < 4 {
		return true
	}
	if x&1 == 0 {
		return false
	}
	limit := uint64(math.Sqrt(float64(x)))
	for f := uint64(3); f <= limit; f += 2 {
		if x%f == 0 {
			return false
		}
	}
	return true
}

// Topology labels that locality failover already orders by.
var topologyLabels = map[string]bool{
	"topology.kubernetes.io/region": true,
	"topology.kubernetes.io/zone":   true,
	"topology.istio.io/subzone":     true,
}

func (r *report) localityLB(p path, lb *networking.LocalityLoadBalancerSetting, od *networking.OutlierDetection) {
	if lb == nil {
		return
	}
	if len(lb.Distribute) > 0 && len(lb.Failover) > 0 {
		r.errorf(p, "can not simultaneously specify 'distribute' and 'failover'")
		return
	}
	if len(lb.Failover) > 0 {
		for i, l := range lb.FailoverPriority {
			if topologyLabels[l] {
				r.errorf(p.f("failoverPriority").i(i), "can not simultaneously set 'failover' and topology label '%s' in 'failover_priority'", l)
				return
			}
		}
	}
	var from []string
	for i, d := range lb.Distribute {
		dp := p.f("distribute").i(i)
		from = append(from, d.GetFrom())
		var total uint64
		var to []string
		for _, loc := range sortedKeys(d.GetTo()) {
			w := d.GetTo()[loc]
			if w == 0 || w > 100 {
				r.errorf(dp.f("to").k(loc), "locality weight must be in range [1, 100]")
				return
			}
			total += uint64(w)
			to = append(to, loc)
		}
		if total != 100 {
			r.errorf(dp.f("to"), "total locality weight %v != 100", total)
			return
		}
		r.err(dp.f("to"), checkLocalities(to))
	}
	r.err(p.f("distribute"), checkLocalities(from))
	if (len(lb.Failover) != 0 || len(lb.FailoverPriority) != 0) && od == nil {
		r.warnf(p, "outlier detection policy must be provided for failover")
	}
	for i, f := range lb.Failover {
		fp := p.f("failover").i(i)
		if f.GetFrom() == f.GetTo() {
			r.errorf(fp, "locality lb failover settings must specify different regions")
		}
		if strings.Contains(f.GetFrom(), "/") || strings.Contains(f.GetTo(), "/") {
			r.errorf(fp, "locality lb failover only specify region")
		}
		if strings.Contains(f.GetFrom(), "*") || strings.Contains(f.GetTo(), "*") {
			r.errorf(fp, "locality lb failover region should not contain '*' wildcard")
		}
	}
}

func (r *report) zoneAwareLB(p path, lb *networking.ZoneAwareLoadBalancerSetting, od *networking.OutlierDetection) {
	if lb == nil {
		return
	}
	for i, l := range lb.FailoverPriority {
		if topologyLabels[l] {
			r.errorf(p.f("failoverPriority").i(i), "'failover_priority' for zone aware lb must not use topology label '%s'; region- and zone-level routing are handled automatically", l)
		}
	}
	if (len(lb.Failover) != 0 || len(lb.FailoverPriority) != 0) && od == nil {
		r.warnf(p, "outlier detection policy must be provided for failover")
	}
	for i, f := range lb.Failover {
		fp := p.f("failover").i(i)
		if f.GetFrom() == f.GetTo() {
			r.errorf(fp, "zone aware lb failover settings must specify different regions")
		}
		if strings.Contains(f.GetFrom(), "/") || strings.Contains(f.GetTo(), "/") {
			r.errorf(fp, "zone aware lb failover only specifies region; zone and subzone failover are handled automatically")
		}
		if strings.Contains(f.GetFrom(), "*") || strings.Contains(f.GetTo(), "*") {
			r.errorf(fp, "zone aware lb failover region should not contain '*' wildcard")
		}
	}
}

// checkLocalities checks `region/zone/subzone` patterns: a `*` only at the
// end, no empty parts, and no two patterns covering the same locality.
func checkLocalities(locs []string) error {
	type zones map[string]map[string]bool
	seen := map[string]zones{}
	for _, l := range locs {
		if n := strings.Count(l, "*"); n > 0 && (n > 1 || !strings.HasSuffix(l, "*")) {
			return fmtErr("locality %s wildcard '*' number can not exceed 1 and must be in the end", l)
		}
		if _, all := seen["*"]; all {
			return fmtErr("locality %s overlap with previous specified ones", l)
		}
		parts := strings.SplitN(l, "/", 3)
		for _, part := range parts {
			if part == "" {
				return fmtErr("locality %s must not contain empty region/zone/subzone info", l)
			}
		}
		region := parts[0]
		switch len(parts) {
		case 1:
			if _, ok := seen[region]; ok {
				return fmtErr("locality %s overlap with previous specified ones", l)
			}
			seen[region] = zones{"*": {"*": true}}
		case 2:
			zone := parts[1]
			z, ok := seen[region]
			if !ok {
				seen[region] = zones{zone: {"*": true}}
				continue
			}
			if _, all := z["*"]; all {
				return fmtErr("locality %s overlap with previous specified ones", l)
			}
			if _, dup := z[zone]; dup {
				return fmtErr("locality %s overlap with previous specified ones", l)
			}
			z[zone] = map[string]bool{"*": true}
		case 3:
			zone, sub := parts[1], parts[2]
			z, ok := seen[region]
			if !ok {
				seen[region] = zones{zone: {sub: true}}
				continue
			}
			if _, all := z["*"]; all {
				return fmtErr("locality %s overlap with previous specified ones", l)
			}
			s, ok := z[zone]
			if !ok {
				z[zone] = map[string]bool{sub: true}
				continue
			}
			if s["*"] || s[sub] {
				return fmtErr("locality %s overlap with previous specified ones", l)
			}
			s[sub] = true
		}
	}
	return nil
}

// clientTLS checks the TLS a sidecar originates to a destination.
func (r *report) clientTLS(p path, namespace string, t *networking.ClientTLSSettings) {
	if t == nil {
		return
	}
	if rest, ok := strings.CutPrefix(t.CredentialName, "configmap://"); ok {
		ns, name, found := strings.Cut(rest, "/")
		switch {
		case !found || ns == "" || name == "":
			r.errorf(p.f("credentialName"), "invalid configmap:// credentialName %q: expected configmap://NAMESPACE/NAME", t.CredentialName)
		case ns != namespace || namespace == "":
			r.errorf(p.f("credentialName"), "invalid configmap:// credentialName: namespace must match the configuration namespace %q", namespace)
		}
	}
	if t.GetInsecureSkipVerify().GetValue() {
		switch t.Mode {
		case networking.ClientTLSSettings_SIMPLE:
			if t.CaCertificates != "" || t.CredentialName != "" || t.SubjectAltNames != nil {
				r.errorf(p, "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true")
			}
		case networking.ClientTLSSettings_MUTUAL:
			if t.CaCertificates != "" || t.SubjectAltNames != nil {
				r.errorf(p, "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true")
			}
		}
	}
	if (t.Mode == networking.ClientTLSSettings_SIMPLE || t.Mode == networking.ClientTLSSettings_MUTUAL) && t.CredentialName != "" {
		// The credential holds the certificates; inline ones would conflict.
		if t.ClientCertificate != "" || t.CaCertificates != "" || t.PrivateKey != "" || t.CaCrl != "" {
			r.errorf(p, "cannot specify client certificates or CA certificate or CA CRL If credentialName is set")
		}
		return
	}
	if t.Mode == networking.ClientTLSSettings_MUTUAL {
		if t.ClientCertificate == "" {
			r.errorf(p.f("clientCertificate"), "client certificate required for mutual tls")
		}
		if t.PrivateKey == "" {
			r.errorf(p.f("privateKey"), "private key required for mutual tls")
		}
	}
}

//lint:file-ignore SA1019 deprecated fields are still accepted, so their rules still apply, as in istiod

package validation

import (
	"net"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

func validateServiceEntry(r *report, p path, namespace string, se *networking.ServiceEntry) {
	r.networkingSelector(p.f("workloadSelector"), se.WorkloadSelector)
	if se.WorkloadSelector != nil && se.Endpoints != nil {
		r.errorf(p, "only one of WorkloadSelector or Endpoints is allowed in Service Entry")
	}
	if len(se.Hosts) == 0 {
		r.errorf(p.f("hosts"), "service entry must have at least one host")
	}
	for i, h := range se.Hosts {
		hp := p.f("hosts").i(i)
		if h == "*" {
			r.errorf(hp, "invalid host %s", h)
			continue
		}
		r.err(hp, checkWildcardDomain(h))
		if se.Resolution != networking.ServiceEntry_DYNAMIC_DNS {
			if err := checkPartialWildcard(h); err != nil {
				r.warnf(hp, "%v", err)
			}
		}
	}
	cidr := false
	for i, a := range se.Addresses {
		cidr = cidr || strings.Contains(a, "/")
		r.err(p.f("addresses").i(i), checkIPOrCIDR(a))
	}
	if cidr && se.Resolution != networking.ServiceEntry_NONE && se.Resolution != networking.ServiceEntry_STATIC {
		r.errorf(p.f("addresses"), "CIDR addresses are allowed only for NONE/STATIC resolution types")
	}

	portNames := map[string]bool{}
	portNumbers := map[uint32]bool{}
	for i, port := range se.Ports {
		pp := p.f("ports").i(i)
		if port == nil {
			r.errorf(pp, "service entry port may not be null")
			continue
		}
		if portNames[port.Name] {
			r.errorf(pp.f("name"), "service entry port name %q already defined", port.Name)
		}
		portNames[port.Name] = true
		if portNumbers[port.Number] {
			r.errorf(pp.f("number"), "service entry port %d already defined", port.Number)
		}
		portNumbers[port.Number] = true
		if port.TargetPort != 0 {
			r.err(pp.f("targetPort"), checkPort(int64(port.TargetPort)))
		}
		r.err(pp.f("name"), checkPortName(port.Name))
		r.err(pp.f("protocol"), checkProtocol(port.Protocol))
		r.err(pp.f("number"), checkPort(int64(port.Number)))
	}

	switch se.Resolution {
	case networking.ServiceEntry_NONE:
		if len(se.Endpoints) != 0 {
			r.errorf(p.f("endpoints"), "no endpoints should be provided for resolution type none")
		}
		if se.WorkloadSelector != nil {
			r.warnf(p.f("workloadSelector"), "workloadSelector should not be set when resolution mode is NONE")
		}
	case networking.ServiceEntry_STATIC:
		for i, e := range se.Endpoints {
			if e == nil {
				r.errorf(p.f("endpoints").i(i), "endpoint cannot be nil")
				continue
			}
			validateWorkloadEntry(r, p.f("endpoints").i(i), e, portNames, false)
		}
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		if len(se.Endpoints) == 0 {
			// Without endpoints the hosts themselves are resolved, so they
			// must be resolvable names: no wildcards.
			for i, h := range se.Hosts {
				if err := checkFQDN(h); err != nil {
					r.errorf(p.f("hosts").i(i), "hosts must be FQDN if no endpoints are provided for resolution mode %s: %v", se.Resolution, err)
					break
				}
			}
		}
		if se.Resolution == networking.ServiceEntry_DNS_ROUND_ROBIN && len(se.Endpoints) > 1 {
			r.errorf(p.f("endpoints"), "there must only be 0 or 1 endpoint for resolution mode %s", se.Resolution)
		}
		for i, e := range se.Endpoints {
			ep := p.f("endpoints").i(i)
			if e == nil {
				r.errorf(ep, "endpoint cannot be nil")
				continue
			}
			if !isIP(e.Address) && checkFQDN(e.Address) != nil {
				r.errorf(ep.f("address"), "endpoint address %q is not a valid FQDN or an IP address", e.Address)
			}
			r.labels(ep.f("labels"), e.Labels)
			for _, name := range sortedKeys(e.Ports) {
				if !portNames[name] {
					r.errorf(ep.f("ports").k(name), "endpoint port %v is not defined by the service entry", e.Ports[name])
				}
				r.err(ep.f("ports").k(name), checkPortName(name))
				r.err(ep.f("ports").k(name), checkPort(int64(e.Ports[name])))
			}
		}
		if len(se.Addresses) > 0 && len(se.Hosts) > 1 {
			for _, port := range se.Ports {
				if port != nil && isTCPProtocol(port.Protocol) {
					r.warnf(p.f("hosts"), "service entry can not have more than one host specified simultaneously with address and tcp port")
					break
				}
			}
		}
	case networking.ServiceEntry_DYNAMIC_DNS:
		for i, h := range se.Hosts {
			if !strings.HasPrefix(h, "*") {
				r.errorf(p.f("hosts").i(i), "host must be wildcarded for resolution mode %s", se.Resolution)
			}
		}
		if len(se.Addresses) != 0 {
			r.errorf(p.f("addresses"), "addresses cannot be set for resolution type %s; HTTP route domains are generated from the hosts", se.Resolution)
		}
		if len(se.Endpoints) != 0 {
			r.errorf(p.f("endpoints"), "endpoints cannot be set for resolution type %s; the destination address is resolved from the hosts", se.Resolution)
		}
		for i, port := range se.Ports {
			if port == nil {
				continue
			}
			switch strings.ToLower(port.Protocol) {
			case "http", "tls", "grpc", "http2":
			default:
				r.errorf(p.f("ports").i(i).f("protocol"), "only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type %s", se.Resolution)
			}
		}
		if se.Location == networking.ServiceEntry_MESH_INTERNAL && usesWaypoint(se, r) {
			r.errorf(p.f("location"), "location MESH_INTERNAL with resolution type %s is not supported when using waypoints", se.Resolution)
		}
	default:
		r.errorf(p.f("resolution"), "unsupported resolution type %s", se.Resolution)
	}

	// Several hosts on one plain TCP port cannot be told apart (no Host
	// header, no SNI), unless the hosts are ignored (resolution NONE).
	if se.Resolution != networking.ServiceEntry_NONE && len(se.Hosts) > 1 {
		for i, port := range se.Ports {
			if port != nil && !isHTTPProtocol(port.Protocol) && !isTLSProtocol(port.Protocol) {
				r.errorf(p.f("ports").i(i).f("protocol"), "multiple hosts provided with non-HTTP, non-TLS ports")
				break
			}
		}
	}
	r.exportTo(p.f("exportTo"), namespace, se.ExportTo, true, false)
}

// usesWaypoint is filled in by Validate from the object's labels; the spec
// alone cannot say. See validateServiceEntryMeta.
func usesWaypoint(_ *networking.ServiceEntry, r *report) bool { return r.waypoint }

// validateWorkloadEntry checks a WorkloadEntry, or an endpoint of a
// ServiceEntry (then servicePorts lists the entry's port names, and the
// address must be an IP unless fqdnAddresses).
func validateWorkloadEntry(r *report, p path, we *networking.WorkloadEntry, servicePorts map[string]bool, fqdnAddresses bool) {
	addr := we.Address
	if addr == "" {
		if we.Network == "" {
			r.errorf(p.f("address"), "address is required")
			return
		}
		r.warnf(p.f("address"), "address is unset with network %q", we.Network)
	}
	unix := false
	switch {
	case strings.HasPrefix(addr, unixPrefix):
		unix = true
		r.err(p.f("address"), checkUnixAddress(strings.TrimPrefix(addr, unixPrefix)))
		if len(we.Ports) != 0 {
			r.errorf(p.f("ports"), "unix endpoint %s must not include ports", addr)
		}
	case addr != "" && !isIP(addr):
		if !fqdnAddresses {
			r.errorf(p.f("address"), "endpoint address %q is not a valid IP address", addr)
		} else if checkFQDN(addr) != nil {
			r.errorf(p.f("address"), "endpoint address %q is not a valid FQDN or an IP address", addr)
		}
	}
	for _, name := range sortedKeys(we.Ports) {
		pp := p.f("ports").k(name)
		if servicePorts != nil && !servicePorts[name] {
			r.errorf(pp, "endpoint port %v is not defined by the service entry", we.Ports[name])
		}
		r.err(pp, checkPortName(name))
		r.err(pp, checkPort(int64(we.Ports[name])))
	}
	r.labels(p.f("labels"), we.Labels)
	if unix && servicePorts != nil && len(servicePorts) != 1 {
		r.errorf(p.f("address"), "exactly 1 service port required for unix endpoints")
	}
}

func validateWorkloadGroup(r *report, p path, wg *networking.WorkloadGroup) {
	if wg.Template == nil {
		r.errorf(p.f("template"), "template is required")
		return
	}
	// The template's address and ports are filled in per workload, so the
	// WorkloadEntry rules do not apply to it.
	if wg.Metadata != nil {
		r.labels(p.f("metadata").f("labels"), wg.Metadata.Labels)
	}
	pr := wg.Probe
	if pr == nil {
		return
	}
	pp := p.f("probe")
	for _, f := range []struct {
		name string
		v    int32
	}{
		{"periodSeconds", pr.PeriodSeconds}, {"initialDelaySeconds", pr.InitialDelaySeconds},
		{"timeoutSeconds", pr.TimeoutSeconds}, {"successThreshold", pr.SuccessThreshold},
		{"failureThreshold", pr.FailureThreshold},
	} {
		if f.v < 0 {
			r.errorf(pp.f(f.name), "%s must be non-negative", f.name)
		}
	}
	switch m := pr.HealthCheckMethod.(type) {
	case *networking.ReadinessProbe_HttpGet:
		h := m.HttpGet
		if h == nil {
			r.errorf(pp.f("httpGet"), "httpGet may not be nil")
			break
		}
		r.err(pp.f("httpGet").f("port"), checkPort(int64(h.Port)))
		if h.Scheme != "" && h.Scheme != "HTTP" && h.Scheme != "HTTPS" {
			r.errorf(pp.f("httpGet").f("scheme"), `httpGet.scheme must be one of "HTTPS", "HTTP"`)
		}
		for i, hd := range h.HttpHeaders {
			hp := pp.f("httpGet").f("httpHeaders").i(i)
			if hd == nil {
				r.errorf(hp, "invalid nil header")
				continue
			}
			if hd.Name == "" {
				r.errorf(hp.f("name"), "header name cannot be empty")
			} else if !probeHeaderNameRe.MatchString(hd.Name) {
				r.errorf(hp.f("name"), "header name %s is not a valid header name", hd.Name)
			}
		}
	case *networking.ReadinessProbe_TcpSocket:
		if m.TcpSocket == nil {
			r.errorf(pp.f("tcpSocket"), "tcpSocket may not be nil")
			break
		}
		r.err(pp.f("tcpSocket").f("port"), checkPort(int64(m.TcpSocket.Port)))
	case *networking.ReadinessProbe_Exec:
		if m.Exec == nil || len(m.Exec.Command) == 0 {
			r.errorf(pp.f("exec").f("command"), "exec.command is required")
		}
	default:
		// istiod's agent can run only these three kinds of probe.
		r.errorf(pp, "probe must set one of httpGet, tcpSocket or exec")
	}
}

func validateSidecar(r *report, p path, namespace string, sc *networking.Sidecar) {
	if sel := sc.WorkloadSelector; sel != nil {
		before := len(r.errs)
		r.selectorLabels(p.f("workloadSelector").f("labels"), sel.Labels)
		if len(r.errs) > before {
			return // istiod stops at a bad selector
		}
		if len(sel.Labels) == 0 {
			r.warnf(p.f("workloadSelector"), "sidecar: workload selector specified without labels, will be applied to all services in namespace")
		}
	}
	if len(sc.Egress) == 0 && len(sc.Ingress) == 0 && sc.OutboundTrafficPolicy == nil && sc.InboundConnectionPool == nil {
		r.errorf(p, "sidecar: empty configuration provided")
		return
	}

	ports := map[uint32]bool{}
	for i, in := range sc.Ingress {
		ip := p.f("ingress").i(i)
		if in == nil {
			r.errorf(ip, "sidecar: ingress may not be null")
			continue
		}
		if in.Port == nil {
			r.errorf(ip.f("port"), "sidecar: port is required for ingress listeners")
			continue
		}
		if in.Port.TargetPort > 0 {
			r.errorf(ip.f("port").f("targetPort"), "targetPort has no impact on Sidecars")
		}
		r.sidecarPort(ip.f("port"), in.Port)
		if in.Bind != "" {
			r.err(ip.f("bind"), checkIP(in.Bind))
		}
		if ports[in.Port.Number] {
			r.errorf(ip.f("port").f("number"), "sidecar: ports on IP bound listeners must be unique")
		}
		ports[in.Port.Number] = true
		r.defaultEndpoint(ip.f("defaultEndpoint"), in.DefaultEndpoint)
		if t := in.Tls; t != nil {
			tp := ip.f("tls")
			if len(t.SubjectAltNames) > 0 {
				r.errorf(tp.f("subjectAltNames"), "sidecar: subjectAltNames is not supported in ingress tls")
			}
			if t.HttpsRedirect {
				r.errorf(tp.f("httpsRedirect"), "sidecar: httpsRedirect is not supported")
			}
			if t.CredentialName != "" {
				r.errorf(tp.f("credentialName"), "sidecar: credentialName is not currently supported")
			}
			if len(t.CredentialNames) > 0 {
				r.errorf(tp.f("credentialNames"), "sidecar: credentialNames is not currently supported")
			}
			if len(t.TlsCertificates) > 0 {
				r.errorf(tp.f("tlsCertificates"), "sidecar: tlsCertificates is not currently supported")
			}
			if t.Mode == networking.ServerTLSSettings_ISTIO_MUTUAL || t.Mode == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
				r.errorf(tp.f("mode"), "configuration is invalid: cannot set mode to %s in sidecar ingress tls", t.Mode)
			}
			if !isTLSProtocol(in.Port.Protocol) {
				r.errorf(tp, "server cannot have TLS settings for non HTTPS/TLS ports")
			}
			r.serverTLS(tp, t)
		}
		r.connectionPool(ip.f("connectionPool"), in.ConnectionPool)
		if in.ConnectionPool != nil && in.ConnectionPool.Http != nil && !isHTTPProtocol(in.Port.Protocol) {
			r.warnf(ip.f("connectionPool").f("http"), "sidecar: HTTP connection pool settings are configured for port %d (%q) but its protocol is not HTTP (%s); only TCP settings will apply",
				in.Port.Number, in.Port.Name, in.Port.Protocol)
		}
	}
	r.connectionPool(p.f("inboundConnectionPool"), sc.InboundConnectionPool)

	ports = map[uint32]bool{}
	sockets := map[string]bool{}
	catchAll := false
	for i, eg := range sc.Egress {
		ep := p.f("egress").i(i)
		if eg == nil {
			r.errorf(ep, "egress listener may not be null")
			continue
		}
		if eg.Port == nil {
			// At most one listener without a port, and it must come last.
			switch {
			case catchAll:
				r.errorf(ep, "sidecar: egress can have only one listener with empty port")
				continue
			case i != len(sc.Egress)-1:
				r.errorf(ep, "sidecar: the egress listener with empty port should be the last listener in the list")
			default:
				catchAll = true
			}
		} else {
			if eg.Port.TargetPort > 0 {
				r.errorf(ep.f("port").f("targetPort"), "targetPort has no impact on Sidecars")
			}
			r.egressPort(ep, eg)
			if eg.Port.Number == 0 {
				if sockets[eg.Bind] {
					r.errorf(ep.f("bind"), "sidecar: unix domain socket values for listeners must be unique")
				}
				sockets[eg.Bind] = true
			} else {
				if ports[eg.Port.Number] {
					r.errorf(ep.f("port").f("number"), "sidecar: ports on IP bound listeners must be unique")
				}
				ports[eg.Port.Number] = true
			}
		}
		r.egressHosts(ep.f("hosts"), namespace, eg.Hosts)
	}
	if tp := sc.OutboundTrafficPolicy; tp != nil {
		op := p.f("outboundTrafficPolicy")
		switch tp.Mode {
		case networking.OutboundTrafficPolicy_REGISTRY_ONLY, networking.OutboundTrafficPolicy_ALLOW_ANY:
		default:
			r.errorf(op.f("mode"), "sidecar: outbound traffic policy mode %v is not supported in a Sidecar (ALLOW_ANY_DYNAMIC_DNS is only for MeshConfig)", tp.Mode)
			return
		}
		if ep := tp.EgressProxy; ep != nil {
			if tp.Mode != networking.OutboundTrafficPolicy_ALLOW_ANY {
				r.errorf(op.f("egressProxy"), "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode")
				return
			}
			r.err(op.f("egressProxy").f("host"), checkFQDN(ep.Host))
			if ep.Port == nil {
				r.errorf(op.f("egressProxy").f("port"), "sidecar: egress_proxy port must be non-nil")
				return
			}
			r.destination(op.f("egressProxy"), ep)
		}
	}
}

func (r *report) sidecarPort(p path, port *networking.SidecarPort) {
	if port.Name != "" {
		r.err(p.f("name"), checkPortName(port.Name))
	}
	r.err(p.f("protocol"), checkProtocol(port.Protocol))
	r.err(p.f("number"), checkPort(int64(port.Number)))
}

func (r *report) egressPort(p path, eg *networking.IstioEgressListener) {
	port := eg.Port
	if port.Number != 0 {
		r.sidecarPort(p.f("port"), port)
		if eg.Bind != "" {
			r.err(p.f("bind"), checkIP(eg.Bind))
		}
		return
	}
	// Port 0: a unix domain socket listener.
	if port.Name != "" {
		r.err(p.f("port").f("name"), checkPortName(port.Name))
	}
	r.err(p.f("port").f("protocol"), checkProtocol(port.Protocol))
	if rest, ok := strings.CutPrefix(eg.Bind, unixPrefix); ok {
		r.err(p.f("bind"), checkUnixAddress(rest))
	} else {
		r.errorf(p.f("bind"), "sidecar: ports with 0 value must have a unix domain socket bind address")
	}
	if eg.CaptureMode != networking.CaptureMode_DEFAULT && eg.CaptureMode != networking.CaptureMode_NONE {
		r.errorf(p.f("captureMode"), "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners")
	}
}

func (r *report) defaultEndpoint(p path, ep string) {
	if ep == "" {
		return
	}
	if rest, ok := strings.CutPrefix(ep, unixPrefix); ok {
		r.err(p, checkUnixAddress(rest))
		return
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		r.err(p, err)
	}
	switch host {
	case "", "127.0.0.1", "0.0.0.0", "::1", "::":
	default:
		r.errorf(p, "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset")
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		r.errorf(p, "sidecar: defaultEndpoint port (%s) is not a number: %v", port, err)
		return
	}
	r.err(p, checkPort(int64(n)))
}

// egressHosts checks `namespace/host` entries and warns about entries that
// an earlier one already covers.
func (r *report) egressHosts(p path, namespace string, hosts []string) {
	if len(hosts) == 0 {
		r.errorf(p, "sidecar: egress listener must contain at least one host")
		return
	}
	byNS := map[string]map[string]bool{}
	for i, h := range hosts {
		hp := p.i(i)
		if ns, svc, ok := strings.Cut(h, "/"); ok && !strings.HasPrefix(ns, "~") {
			if ns == "." {
				ns = namespace
			}
			if byNS[ns] == nil {
				byNS[ns] = map[string]bool{}
			}
			if svc != "*" && (byNS[ns][svc] || byNS[ns]["*"]) || svc == "*" && len(byNS[ns]) != 0 {
				r.warnf(hp, "duplicated egress host: %s", h)
			}
			byNS[ns][svc] = true
		}
		r.err(hp, checkNamespacedHost(h, false))
	}
	if byNS["*"]["*"] && len(byNS) != 1 {
		r.warnf(p, "`*/*` host select all resources, no other hosts can be added")
	}
}

package als

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslog "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"github.com/hashicorp/go-multierror"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshd/meshd/telemetry/provider"
	"github.com/meshd/meshd/telemetry/traffic"
)

// Envoy's passthrough clusters, which carry traffic to destinations the
// mesh does not know; the inbound ones face the workload.
var inboundPassthrough = map[string]bool{
	"InboundPassthroughCluster": true, "InboundPassthroughClusterIpv4": true, "InboundPassthroughClusterIpv6": true,
}

// maxErrors bounds the problems reported for one message, so that the log
// line stays a line.
const maxErrors = 5

// maxTrackedConnections bounds the TCP connections a stream remembers
// between their first and last entries.
const maxTrackedConnections = 65536

// decoder turns one stream's entries into records. It is used by one
// goroutine (the stream's) and keeps what must outlive a message: the
// reporting workload, lookup caches, and the byte counts of TCP
// connections still open.
type decoder struct {
	look  *lookups
	conns map[string]connBytes
	recs  []traffic.Record
}

type connBytes struct{ sent, received uint64 }

func newDecoder(look *lookups) *decoder {
	return &decoder{look: look, conns: map[string]connBytes{}}
}

// errorList gathers a message's problems into one line.
type errorList struct{ merr *multierror.Error }

func (e *errorList) add(format string, args ...any) {
	if e.merr == nil || len(e.merr.Errors) < maxErrors {
		e.merr = multierror.Append(e.merr, fmt.Errorf(format, args...))
	}
}

func (e *errorList) err() error {
	if e.merr == nil {
		return nil
	}
	e.merr.ErrorFormat = func(errs []error) string {
		parts := make([]string, len(errs))
		for i, err := range errs {
			parts[i] = err.Error()
		}
		return strings.Join(parts, "; ")
	}
	return e.merr
}

// decodeHTTP validates every entry of a message, then returns the records
// of those that complete a request. Nothing of an invalid message is used.
func (d *decoder) decodeHTTP(entries []*accesslog.HTTPAccessLogEntry, now time.Time) ([]traffic.Record, error) {
	if len(entries) == 0 {
		return nil, errors.New("http_logs.log_entry: empty")
	}
	var errs errorList
	for i, e := range entries {
		checkHTTP(&errs, i, e)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	d.recs = d.recs[:0]
	for _, e := range entries {
		if !finalHTTP(e.GetCommonProperties()) {
			continue
		}
		d.recs = append(d.recs, d.httpRecord(e, now))
	}
	return d.recs, nil
}

func checkHTTP(errs *errorList, i int, e *accesslog.HTTPAccessLogEntry) {
	if e == nil {
		errs.add("http_logs.log_entry[%d]: empty entry", i)
		return
	}
	if e.GetCommonProperties() == nil {
		errs.add("http_logs.log_entry[%d].common_properties: missing", i)
		return
	}
	checkCommon(errs, "http_logs", i, e.GetCommonProperties())
	if rc := e.GetResponse().GetResponseCode(); rc != nil && (rc.GetValue() > 599 || (rc.GetValue() != 0 && rc.GetValue() < 100)) {
		errs.add("http_logs.log_entry[%d].response.response_code: %d is not an HTTP status", i, rc.GetValue())
	}
}

// checkCommon checks what aggregation reads from the common properties.
// Messages are formatted only on failure: this runs for every entry.
func checkCommon(errs *errorList, kind string, i int, c *accesslog.AccessLogCommon) {
	checkDuration(errs, kind, i, "duration", c.GetDuration())
	checkDuration(errs, kind, i, "time_to_last_downstream_tx_byte", c.GetTimeToLastDownstreamTxByte())
}

func checkDuration(errs *errorList, kind string, i int, field string, d *durationpb.Duration) {
	if d == nil {
		return
	}
	if err := d.CheckValid(); err != nil {
		errs.add("%s.log_entry[%d].common_properties.%s: %v", kind, i, field, err)
	} else if d.AsDuration() < 0 {
		errs.add("%s.log_entry[%d].common_properties.%s: negative (%s)", kind, i, field, d.AsDuration())
	}
}

// finalHTTP is true for the entry that ends a request: Envoy may also log
// at its start and periodically, which must not count as more requests.
func finalHTTP(c *accesslog.AccessLogCommon) bool {
	//lint:ignore SA1019 Envoys before access_log_type mark periodic entries only this way.
	if c.GetIntermediateLogEntry() {
		return false
	}
	switch c.GetAccessLogType() {
	case accesslog.AccessLogType_NotSet, accesslog.AccessLogType_DownstreamEnd:
		return true
	}
	return false
}

func (d *decoder) httpRecord(e *accesslog.HTTPAccessLogEntry, now time.Time) traffic.Record {
	c := e.GetCommonProperties()
	r := traffic.Record{Kind: traffic.HTTP, Time: now}
	authority := e.GetRequest().GetAuthority()
	d.ends(&r.Labels, c, authority)

	code := e.GetResponse().GetResponseCode().GetValue()
	r.Labels.ResponseCode = codeStrings[code] // checkHTTP bounded code to 0..599
	r.Labels.RequestProtocol = traffic.ProtocolHTTP
	grpcStatus, isGRPC := e.GetResponse().GetResponseTrailers()[provider.GRPCStatus]
	if !isGRPC {
		grpcStatus, isGRPC = e.GetResponse().GetResponseHeaders()[provider.GRPCStatus]
	}
	if strings.HasPrefix(e.GetRequest().GetRequestHeaders()[provider.ContentType], "application/grpc") {
		isGRPC = true
	}
	if isGRPC {
		r.Labels.RequestProtocol = traffic.ProtocolGRPC
		r.Labels.GRPCResponseStatus = grpcStatus
	}

	switch {
	case c.GetTimeToLastDownstreamTxByte() != nil:
		r.DurationMillis = millis(c.GetTimeToLastDownstreamTxByte())
	case c.GetDuration() != nil:
		r.DurationMillis = millis(c.GetDuration())
	}
	req, resp := e.GetRequest(), e.GetResponse()
	r.RequestBytes = req.GetRequestHeadersBytes() + req.GetRequestBodyBytes()
	r.ResponseBytes = resp.GetResponseHeadersBytes() + resp.GetResponseBodyBytes()
	d.customTags(&r.Labels, c)
	r.Labels.Normalize()
	return r
}

// codeStrings spares a string allocation per entry for the status code.
var codeStrings = func() (out [600]string) {
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}()

func millis(d *durationpb.Duration) float64 {
	return float64(d.AsDuration()) / float64(time.Millisecond)
}

// decodeTCP validates every entry of a message, then returns records for
// connection opens, byte counts and closes.
func (d *decoder) decodeTCP(entries []*accesslog.TCPAccessLogEntry, now time.Time) ([]traffic.Record, error) {
	if len(entries) == 0 {
		return nil, errors.New("tcp_logs.log_entry: empty")
	}
	var errs errorList
	for i, e := range entries {
		switch {
		case e == nil:
			errs.add("tcp_logs.log_entry[%d]: empty entry", i)
		case e.GetCommonProperties() == nil:
			errs.add("tcp_logs.log_entry[%d].common_properties: missing", i)
		default:
			checkCommon(&errs, "tcp_logs", i, e.GetCommonProperties())
		}
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	d.recs = d.recs[:0]
	for _, e := range entries {
		if r, ok := d.tcpRecord(e, now); ok {
			d.recs = append(d.recs, r)
		}
	}
	return d.recs, nil
}

// tcpRecord folds one TCP entry. Envoy may log a connection when it opens
// (TcpUpstreamConnected / TcpConnectionStart), periodically, and when it
// ends; byte counts in its entries are totals so far, so the stream keeps
// each open connection's last totals (by stream_id) to count deltas, and
// counts the open once whether or not Envoy logged it.
func (d *decoder) tcpRecord(e *accesslog.TCPAccessLogEntry, now time.Time) (traffic.Record, bool) {
	c := e.GetCommonProperties()
	r := traffic.Record{Kind: traffic.TCP, Time: now}
	id := c.GetStreamId()
	sent, received := e.GetConnectionProperties().GetSentBytes(), e.GetConnectionProperties().GetReceivedBytes()
	prev, tracked := d.conns[id]
	if id == "" {
		tracked = false
	}
	switch c.GetAccessLogType() {
	case accesslog.AccessLogType_TcpUpstreamConnected, accesslog.AccessLogType_TcpConnectionStart:
		if id == "" || tracked {
			// Without an ID the end entry will count the open; a second
			// start for the same ID is a duplicate.
			return r, false
		}
		r.Opened = true
		d.track(id, connBytes{sent, received})
	case accesslog.AccessLogType_TcpPeriodic:
		if id != "" {
			if !tracked {
				r.Opened = true
			}
			d.track(id, connBytes{sent, received})
		}
	case accesslog.AccessLogType_TcpConnectionEnd, accesslog.AccessLogType_NotSet:
		r.Opened = !tracked
		r.Closed = true
		delete(d.conns, id)
	default:
		return r, false
	}
	r.SentBytes = sub(sent, prev.sent)
	r.ReceivedBytes = sub(received, prev.received)
	d.ends(&r.Labels, c, "")
	r.Labels.RequestProtocol = traffic.ProtocolTCP
	d.customTags(&r.Labels, c)
	r.Labels.Normalize()
	r.Labels.ResponseCode, r.Labels.GRPCResponseStatus = "", ""
	return r, true
}

func (d *decoder) track(id string, b connBytes) {
	if _, ok := d.conns[id]; !ok && len(d.conns) >= maxTrackedConnections {
		// Forget one connection: its end will count one open too many,
		// which beats unbounded memory for a proxy that never logs ends.
		for k := range d.conns {
			delete(d.conns, k)
			break
		}
	}
	d.conns[id] = b
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// ends fills reporter, both workloads, the destination service, the
// principals and the security policy of an entry. The reporting proxy is
// one end; the other is taken from the peer metadata Istio's metadata
// exchange left in filter state, or else from the store by address.
func (d *decoder) ends(l *traffic.Labels, c *accesslog.AccessLogCommon, authority string) {
	local := &d.look.local
	cluster := c.GetUpstreamCluster()
	cn := d.look.cluster(cluster)
	dir, port, host, ok := cn.dir, cn.port, cn.host, cn.ok
	inbound := false
	switch {
	case ok && dir == "inbound":
		inbound = true
	case ok && dir == "outbound":
	case inboundPassthrough[cluster]:
		inbound = true
	case cluster == "PassthroughCluster" || cluster == "BlackHoleCluster":
	default:
		// No cluster (no route, or an unfamiliar config): traffic addressed
		// to the workload's own IP is inbound.
		inbound = hasIP(local.IPs, ipOf(c.GetDownstreamLocalAddress()))
	}
	if inbound {
		l.Reporter = traffic.ReporterDestination
		setDestination(l, local)
		peer := d.peerFromFilterState(c, provider.DownstreamPeer)
		if !peer.known() {
			ip := ipOf(c.GetDownstreamDirectRemoteAddress())
			if ip == "" {
				ip = ipOf(c.GetDownstreamRemoteAddress())
			}
			peer = d.look.peer(ip)
		}
		setSource(l, &peer)
		tls := c.GetTlsProperties()
		l.SourcePrincipal = uriSAN(tls.GetPeerCertificateProperties())
		l.DestinationPrincipal = uriSAN(tls.GetLocalCertificateProperties())
		l.ConnectionSecurityPolicy = traffic.SecurityNone
		if l.SourcePrincipal != "" {
			l.ConnectionSecurityPolicy = traffic.SecurityMutualTLS
		}
		if port == 0 {
			port = int32(portOf(c.GetDownstreamLocalAddress()))
		}
		svc, found := d.look.host(authority)
		if !found {
			svc, found = d.look.inboundService(port)
		}
		if found {
			setService(l, svc)
		} else if authority != "" {
			l.DestinationService = stripPort(authority)
		}
	} else {
		l.Reporter = traffic.ReporterSource
		setSource(l, local)
		peer := d.peerFromFilterState(c, provider.UpstreamPeer)
		if !peer.known() {
			peer = d.look.peer(ipOf(c.GetUpstreamRemoteAddress()))
		}
		setDestination(l, &peer)
		// The upstream connection's certificates are not in the access
		// log: Istio's source-side principals and policy stay unknown.
		l.ConnectionSecurityPolicy = traffic.Unknown
		switch {
		case host != "":
			if svc, found := d.look.host(host); found {
				setService(l, svc)
			} else {
				l.DestinationService, l.DestinationServiceName = host, host
			}
		case ok:
			// outbound|PORT|SUBSET| with no host: nothing to name.
		default:
			l.DestinationServiceName = cluster
			if svc, found := d.look.host(authority); found {
				setService(l, svc)
			} else if authority != "" {
				l.DestinationService = stripPort(authority)
			}
		}
	}
	l.ResponseFlags = responseFlags(c.GetResponseFlags())
}

func setService(l *traffic.Labels, s serviceRef) {
	l.DestinationService, l.DestinationServiceName, l.DestinationServiceNamespace = s.Host, s.Name, s.Namespace
}

// customTags lets the access-log config set any Istio label outright
// (common_config.custom_tags named like the label), for what only the
// proxy knows; unknown tag names are ignored.
func (d *decoder) customTags(l *traffic.Labels, c *accesslog.AccessLogCommon) {
	for k, v := range c.GetCustomTags() {
		l.Set(k, v)
	}
}

func (d *decoder) peerFromFilterState(c *accesslog.AccessLogCommon, key string) Workload {
	a := c.GetFilterStateObjects()[key]
	if a == nil {
		return Workload{}
	}
	s, ok := unpackStruct(a)
	if !ok {
		return Workload{}
	}
	return d.look.r.fromPeerMetadata(s)
}

func unpackStruct(a *anypb.Any) (*structpb.Struct, bool) {
	s := &structpb.Struct{}
	if err := a.UnmarshalTo(s); err != nil {
		return nil, false
	}
	return s, true
}

func uriSAN(p *accesslog.TLSProperties_CertificateProperties) string {
	for _, san := range p.GetSubjectAltName() {
		if u := san.GetUri(); u != "" {
			return u
		}
	}
	return ""
}

func ipOf(a *core.Address) string {
	ip := a.GetSocketAddress().GetAddress()
	if _, err := netip.ParseAddr(ip); err != nil {
		return ""
	}
	return ip
}

func portOf(a *core.Address) uint32 { return a.GetSocketAddress().GetPortValue() }

func hasIP(ips []string, ip string) bool {
	if ip == "" {
		return false
	}
	for _, x := range ips {
		if x == ip {
			return true
		}
	}
	return false
}

// responseFlags renders Envoy's response flags in their short form, comma
// separated, or "-" for none, as Istio's response_flags label does.
func responseFlags(f *accesslog.ResponseFlags) string {
	if f == nil {
		return "-"
	}
	var out []string
	for _, x := range []struct {
		on   bool
		name string
	}{
		{f.GetFailedLocalHealthcheck(), "LH"}, {f.GetNoHealthyUpstream(), "UH"},
		{f.GetUpstreamRequestTimeout(), "UT"}, {f.GetLocalReset(), "LR"},
		{f.GetUpstreamRemoteReset(), "UR"}, {f.GetUpstreamConnectionFailure(), "UF"},
		{f.GetUpstreamConnectionTermination(), "UC"}, {f.GetUpstreamOverflow(), "UO"},
		{f.GetNoRouteFound(), "NR"}, {f.GetDelayInjected(), "DI"}, {f.GetFaultInjected(), "FI"},
		{f.GetRateLimited(), "RL"}, {f.GetUnauthorizedDetails() != nil, "UAEX"},
		{f.GetRateLimitServiceError(), "RLSE"}, {f.GetDownstreamConnectionTermination(), "DC"},
		{f.GetUpstreamRetryLimitExceeded(), "URX"}, {f.GetStreamIdleTimeout(), "SI"},
		{f.GetInvalidEnvoyRequestHeaders(), "IH"}, {f.GetDownstreamProtocolError(), "DPE"},
		{f.GetUpstreamMaxStreamDurationReached(), "UMSDR"}, {f.GetResponseFromCacheFilter(), "RFCF"},
		{f.GetNoFilterConfigFound(), "NFCF"}, {f.GetDurationTimeout(), "DT"},
		{f.GetUpstreamProtocolError(), "UPE"}, {f.GetNoClusterFound(), "NC"},
		{f.GetOverloadManager(), "OM"}, {f.GetDnsResolutionFailure(), "DF"},
		{f.GetDownstreamRemoteReset(), "DR"},
	} {
		if x.on {
			out = append(out, x.name)
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ",")
}

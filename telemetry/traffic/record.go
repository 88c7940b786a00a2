// Package traffic holds meshd's aggregation of mesh traffic: records of
// requests and connections, already labelled as Istio labels them, folded
// into Istio's standard metrics (istio_requests_total and friends) under a
// cap on the number of series.
//
// It knows nothing of Envoy or gRPC: the access-log server (telemetry/als)
// turns what proxies send into Records, and everything here is plain data.
package traffic

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Unknown is the value Istio gives a label it cannot determine.
const Unknown = "unknown"

// Reporter values: which side of a call a record comes from.
const (
	ReporterSource      = "source"
	ReporterDestination = "destination"
)

// Protocol values of request_protocol.
const (
	ProtocolHTTP = "http"
	ProtocolGRPC = "grpc"
	ProtocolTCP  = "tcp"
)

// Connection security policies, as the destination reports them; a source
// reporter always says "unknown", as in Istio.
const (
	SecurityMutualTLS = "mutual_tls"
	SecurityNone      = "none"
)

// Labels are Istio's standard metric labels. The struct is comparable, so a
// Labels value is itself the key of a series: one allocation-free map
// lookup per record.
type Labels struct {
	Reporter string

	SourceWorkload          string
	SourceWorkloadNamespace string
	SourcePrincipal         string
	SourceApp               string
	SourceVersion           string
	SourceCanonicalService  string
	SourceCanonicalRevision string
	SourceCluster           string

	DestinationWorkload          string
	DestinationWorkloadNamespace string
	DestinationPrincipal         string
	DestinationApp               string
	DestinationVersion           string
	DestinationService           string
	DestinationServiceName       string
	DestinationServiceNamespace  string
	DestinationCanonicalService  string
	DestinationCanonicalRevision string
	DestinationCluster           string

	RequestProtocol string
	// ResponseCode and GRPCResponseStatus are HTTP only; TCP series leave
	// them empty and do not carry the labels.
	ResponseCode             string
	GRPCResponseStatus       string
	ResponseFlags            string
	ConnectionSecurityPolicy string
}

// httpLabelNames and tcpLabelNames are the label names of the HTTP and TCP
// families, in the order values() returns them.
var (
	httpLabelNames = []string{
		"reporter",
		"source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
		"source_canonical_service", "source_canonical_revision", "source_cluster",
		"destination_workload", "destination_workload_namespace", "destination_principal", "destination_app",
		"destination_version", "destination_service", "destination_service_name", "destination_service_namespace",
		"destination_canonical_service", "destination_canonical_revision", "destination_cluster",
		"request_protocol", "response_flags", "connection_security_policy",
		"response_code", "grpc_response_status",
	}
	tcpLabelNames = httpLabelNames[:len(httpLabelNames)-2]
)

// values returns the label values in httpLabelNames order; TCP families
// take the first len(tcpLabelNames).
func (l *Labels) values() []string {
	return []string{
		l.Reporter,
		l.SourceWorkload, l.SourceWorkloadNamespace, l.SourcePrincipal, l.SourceApp, l.SourceVersion,
		l.SourceCanonicalService, l.SourceCanonicalRevision, l.SourceCluster,
		l.DestinationWorkload, l.DestinationWorkloadNamespace, l.DestinationPrincipal, l.DestinationApp,
		l.DestinationVersion, l.DestinationService, l.DestinationServiceName, l.DestinationServiceNamespace,
		l.DestinationCanonicalService, l.DestinationCanonicalRevision, l.DestinationCluster,
		l.RequestProtocol, l.ResponseFlags, l.ConnectionSecurityPolicy,
		l.ResponseCode, l.GRPCResponseStatus,
	}
}

// fields returns pointers to every label value, in httpLabelNames order;
// an array, so that the per-record Normalize does not allocate.
func (l *Labels) fields() [25]*string {
	return [25]*string{
		&l.Reporter,
		&l.SourceWorkload, &l.SourceWorkloadNamespace, &l.SourcePrincipal, &l.SourceApp, &l.SourceVersion,
		&l.SourceCanonicalService, &l.SourceCanonicalRevision, &l.SourceCluster,
		&l.DestinationWorkload, &l.DestinationWorkloadNamespace, &l.DestinationPrincipal, &l.DestinationApp,
		&l.DestinationVersion, &l.DestinationService, &l.DestinationServiceName, &l.DestinationServiceNamespace,
		&l.DestinationCanonicalService, &l.DestinationCanonicalRevision, &l.DestinationCluster,
		&l.RequestProtocol, &l.ResponseFlags, &l.ConnectionSecurityPolicy,
		&l.ResponseCode, &l.GRPCResponseStatus,
	}
}

// Set assigns the label called name (an Istio label name such as
// "source_cluster") and reports whether the name is one of Istio's.
func (l *Labels) Set(name, value string) bool {
	for i, n := range httpLabelNames {
		if n == name {
			*l.fields()[i] = value
			return true
		}
	}
	return false
}

// maxLabelLen bounds one label value: proxies are not trusted to send
// short strings, and Prometheus has to store whatever we expose.
const maxLabelLen = 256

// Normalize makes every value exposable: valid UTF-8, at most 256 bytes,
// and "unknown" where empty, except the two HTTP-only labels, which Istio
// leaves empty when they do not apply (grpc_response_status on plain HTTP).
func (l *Labels) Normalize() {
	fs := l.fields()
	for i, f := range &fs {
		v := *f
		if len(v) > maxLabelLen {
			v = v[:maxLabelLen]
		}
		if !utf8.ValidString(v) {
			v = strings.ToValidUTF8(v, "")
		}
		if v == "" && i < len(tcpLabelNames) {
			v = Unknown
		}
		*f = v
	}
}

// Kind says whether a record is an HTTP request or a TCP connection event.
type Kind uint8

// The record kinds.
const (
	HTTP Kind = iota + 1
	TCP
)

// Record is one observation, labelled. HTTP records are one completed
// request each; TCP records carry byte deltas and connection open/close
// events for one connection.
type Record struct {
	Kind   Kind
	Labels Labels
	// Time is when the record was observed; zero means now.
	Time time.Time

	// HTTP.
	DurationMillis float64
	RequestBytes   uint64
	ResponseBytes  uint64

	// TCP.
	Opened, Closed bool
	SentBytes      uint64
	ReceivedBytes  uint64
}

// Error reports whether an HTTP record counts as an error in the service
// graph: a 5xx, no response at all (code 0), or a gRPC status other than OK.
func (r *Record) Error() bool {
	if r.Kind != HTTP {
		return false
	}
	c := r.Labels.ResponseCode
	if c == "0" || c == Unknown || (len(c) == 3 && c[0] == '5') {
		return true
	}
	g := r.Labels.GRPCResponseStatus
	return g != "" && g != "0" && g != Unknown
}

// Sink receives batches of records. The slice is reused by the caller after
// Record returns: a Sink copies what it keeps.
type Sink interface {
	Record(batch []Record)
}

// Sinks fans a batch out to several sinks in order.
type Sinks []Sink

// Record passes batch to every sink.
func (s Sinks) Record(batch []Record) {
	for _, x := range s {
		x.Record(batch)
	}
}

var _ Sink = Sinks(nil)

// Package provider defines meshd's built-in telemetry extension provider,
// "meshd": an Envoy gRPC access logger (HTTP and TCP) whose service is
// meshd itself. It holds the contract between the sidecar config pilot
// generates and the access-log server in telemetry/als, and the pure
// decision of whether a proxy's Telemetry resources enable the provider.
package provider

import (
	"sort"

	telemetryapi "istio.io/api/telemetry/v1alpha1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"
)

// Name is the extension provider name a Telemetry resource references:
// spec.accessLogging[].providers[].name: meshd.
const Name = "meshd"

// The Envoy gRPC access-log config pilot generates for the provider
// (envoy.extensions.access_loggers.grpc.v3 Http/TcpGrpcAccessLogConfig)
// must log these, or meshd cannot label entries as Istio does.
const (
	// LogName is common_config.log_name.
	LogName = "meshd"
	// ClusterName is the cluster pointing back at meshd's gRPC port
	// (15010 plaintext, or 15012 with TLS), used as
	// common_config.grpc_service.envoy_grpc.cluster_name.
	ClusterName = "meshd-telemetry"
	// DownstreamPeer and UpstreamPeer are the filter-state keys under which
	// Istio's metadata exchange stores the peer's workload metadata;
	// common_config.filter_state_objects_to_log must list both.
	DownstreamPeer = "downstream_peer"
	UpstreamPeer   = "upstream_peer"
	// ContentType, logged as an additional request header, tells gRPC from
	// plain HTTP.
	ContentType = "content-type"
	// GRPCStatus, logged as an additional response header and trailer,
	// fills grpc_response_status.
	GRPCStatus = "grpc-status"
)

// FilterStateObjectsToLog, AdditionalRequestHeadersToLog,
// AdditionalResponseHeadersToLog and AdditionalResponseTrailersToLog are the
// lists to put in the access logger config.
var (
	FilterStateObjectsToLog         = []string{DownstreamPeer, UpstreamPeer}
	AdditionalRequestHeadersToLog   = []string{ContentType}
	AdditionalResponseHeadersToLog  = []string{GRPCStatus}
	AdditionalResponseTrailersToLog = []string{GRPCStatus}
)

// Decision says, per traffic direction, whether a provider's access logs
// are on for a proxy, and the CEL filter expression that guards them ("" for
// none). Client is the proxy's outbound traffic, Server its inbound.
type Decision struct {
	Client, Server             bool
	ClientFilter, ServerFilter string
}

// Any reports whether either direction is on.
func (d Decision) Any() bool { return d.Client || d.Server }

// MeshdAccessLogging is AccessLogging for the meshd provider.
func MeshdAccessLogging(telemetries []*telemetryv1.Telemetry, rootNamespace, namespace string, workloadLabels map[string]string) Decision {
	return AccessLogging(telemetries, rootNamespace, namespace, workloadLabels, Name)
}

// AccessLogging decides whether Telemetry resources turn on access logging
// by provider for a proxy in namespace with workloadLabels, as istiod does:
//
//   - the oldest Telemetry in rootNamespace with neither selector nor
//     targetRefs applies mesh-wide; then the oldest such one in the proxy's
//     namespace; then every one in the proxy's namespace whose selector
//     matches the labels (gateway-API gateways: whose targetRef names the
//     gateway), oldest first. Later levels override earlier ones.
//   - the providers in scope are those named by the last level that names
//     any; an entry without providers inherits the previous entry's;
//     disabled: true turns a provider off; match.mode limits an entry to
//     CLIENT or SERVER traffic.
//
// meshd has no MeshConfig defaultProviders, so without Telemetry resources
// nothing is logged. telemetries may be in any order (s.Telemetries.List("")).
func AccessLogging(telemetries []*telemetryv1.Telemetry, rootNamespace, namespace string, workloadLabels map[string]string, provider string) Decision {
	levels := applicable(telemetries, rootNamespace, namespace, workloadLabels)
	var d Decision
	if s, ok := mergeLogs(levels, telemetryapi.WorkloadMode_CLIENT)[provider]; ok && !s.disabled {
		d.Client, d.ClientFilter = true, s.filter
	}
	if s, ok := mergeLogs(levels, telemetryapi.WorkloadMode_SERVER)[provider]; ok && !s.disabled {
		d.Server, d.ServerFilter = true, s.filter
	}
	return d
}

// gatewayNameLabel marks the pods of a Kubernetes Gateway API gateway.
const gatewayNameLabel = "gateway.networking.k8s.io/gateway-name"

// applicable returns the accessLogging lists that apply, lowest precedence
// first.
func applicable(telemetries []*telemetryv1.Telemetry, root, namespace string, labels map[string]string) [][]*telemetryapi.AccessLogging {
	sorted := append([]*telemetryv1.Telemetry(nil), telemetries...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Namespace < b.Namespace
	})
	namespaceWide := func(ns string) *telemetryv1.Telemetry {
		for _, t := range sorted {
			if t.Namespace == ns && !targeted(t) {
				return t
			}
		}
		return nil
	}
	var levels [][]*telemetryapi.AccessLogging
	add := func(t *telemetryv1.Telemetry) {
		if t != nil && len(t.Spec.GetAccessLogging()) > 0 {
			levels = append(levels, t.Spec.GetAccessLogging())
		}
	}
	if root != "" {
		add(namespaceWide(root))
	}
	if namespace != root {
		add(namespaceWide(namespace))
	}
	for _, t := range sorted {
		if t.Namespace == namespace && targeted(t) && attaches(t, namespace, labels) {
			add(t)
		}
	}
	return levels
}

// targeted is true for a Telemetry scoped to workloads: by selector or targetRefs.
func targeted(t *telemetryv1.Telemetry) bool {
	return len(t.Spec.GetSelector().GetMatchLabels()) > 0 || len(targetRefs(t)) > 0
}

func targetRefs(t *telemetryv1.Telemetry) []string {
	var gateways []string
	refs := t.Spec.GetTargetRefs()
	if len(refs) == 0 && t.Spec.GetTargetRef() != nil {
		refs = append(refs, t.Spec.GetTargetRef())
	}
	for _, r := range refs {
		// Only Gateway targets can attach to a non-waypoint proxy; other
		// kinds still make the policy targeted (so selectors are ignored).
		if r.GetKind() == "Gateway" && r.GetGroup() == "gateway.networking.k8s.io" &&
			(r.GetNamespace() == "" || r.GetNamespace() == t.Namespace) {
			gateways = append(gateways, r.GetName())
		} else {
			gateways = append(gateways, "")
		}
	}
	return gateways
}

// attaches decides a workload-scoped Telemetry for a proxy: sidecars by
// selector (a policy with targetRefs never attaches to them), gateway-API
// gateways by targetRef name, or by selector when it has no targetRefs.
func attaches(t *telemetryv1.Telemetry, namespace string, labels map[string]string) bool {
	refs := targetRefs(t)
	gateway, isGateway := labels[gatewayNameLabel]
	if len(refs) == 0 {
		for k, v := range t.Spec.GetSelector().GetMatchLabels() {
			if have, ok := labels[k]; !ok || have != v {
				return false
			}
		}
		return true
	}
	if !isGateway || t.Namespace != namespace {
		return false
	}
	for _, name := range refs {
		if name != "" && name == gateway {
			return true
		}
	}
	return false
}

type loggingSpec struct {
	disabled bool
	filter   string
}

func matchMode(sel *telemetryapi.AccessLogging_LogSelector, mode telemetryapi.WorkloadMode) bool {
	return sel == nil || sel.GetMode() == telemetryapi.WorkloadMode_CLIENT_AND_SERVER || sel.GetMode() == mode
}

func providerNames(refs []*telemetryapi.ProviderRef) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		out = append(out, r.GetName())
	}
	return out
}

// mergeLogs folds the levels into the providers on for one mode.
func mergeLogs(levels [][]*telemetryapi.AccessLogging, mode telemetryapi.WorkloadMode) map[string]loggingSpec {
	providers := map[string]loggingSpec{}
	if len(levels) == 0 {
		return providers
	}
	// The last level that names providers (for this mode) decides which
	// are in scope; filters come from the last entry naming each.
	var inScope map[string]bool
	filters := map[string]loggingSpec{}
	for _, level := range levels {
		names := map[string]bool{}
		for _, l := range level {
			if !matchMode(l.GetMatch(), mode) {
				continue
			}
			for _, p := range providerNames(l.GetProviders()) {
				names[p] = true
				filters[p] = loggingSpec{filter: l.GetFilter().GetExpression()}
			}
		}
		if len(names) > 0 {
			inScope = names
		}
	}
	var parent []string
	for _, level := range levels {
		for _, l := range level {
			names := providerNames(l.GetProviders())
			if len(names) == 0 {
				names = parent
			}
			parent = names
			if !matchMode(l.GetMatch(), mode) {
				continue
			}
			for _, p := range names {
				if !inScope[p] {
					continue
				}
				if l.GetDisabled().GetValue() {
					providers[p] = loggingSpec{disabled: true}
					continue
				}
				providers[p] = filters[p]
			}
		}
	}
	return providers
}

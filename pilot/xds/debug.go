package xds

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	admin "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"

	"github.com/meshd/meshd/pilot/model"
	"github.com/meshd/meshd/pilot/translate"
)

// controlPlane identifies this instance the way istiod does, so that
// istioctl proxy-status can print the ISTIOD column.
func (s *Server) controlPlane() *core.ControlPlane {
	id, _ := json.Marshal(map[string]any{
		"Component": "istiod",
		"ID":        s.opts.InstanceID,
		"Info":      map[string]string{"version": s.opts.Version},
	})
	return &core.ControlPlane{Identifier: string(id)}
}

// respondDebug answers istio.io/debug/syncz (every proxy's sync status)
// and istio.io/debug/config_dump (one proxy's config, by ID). The caller
// holds no connection lock: this takes each in turn.
func (s *Server) respondDebug(_ *conn, typeURL string, names []string, send func([]*anypb.Any, string)) {
	version := time.Now().UTC().Format(time.RFC3339Nano)
	switch typeURL {
	case TypeSyncz:
		var out []*anypb.Any
		for _, cc := range s.ClientConfigs() {
			a, err := anypb.New(cc)
			if err != nil {
				s.metrics.internalErrors.Inc()
				continue
			}
			out = append(out, a)
		}
		send(out, version)
	case TypeConfigDump:
		if len(names) != 1 {
			s.log.Info("config_dump asks for one proxy ID", "got", names)
			send(nil, version)
			return
		}
		dump, err := s.ConfigDump(names[0])
		if err != nil {
			s.log.Info("config_dump", "error", err)
			send(nil, version)
			return
		}
		send(dump.Configs, version)
	default:
		send(nil, version)
	}
}

func debugName(typeURL string, i int, a *anypb.Any) string {
	if typeURL == TypeSyncz {
		var cc statusv3.ClientConfig
		if a.UnmarshalTo(&cc) == nil {
			return cc.GetNode().GetId()
		}
	}
	return fmt.Sprintf("%d", i)
}

// ClientConfigs returns one ClientConfig per connected proxy, with the
// status of each type it watches: SYNCED when it acked what was last
// sent, NOT SENT, STALE (sent, not yet acked) or ERROR (NACKed).
// Connection locks are taken one at a time.
func (s *Server) ClientConfigs() []*statusv3.ClientConfig {
	var out []*statusv3.ClientConfig
	for _, c := range s.connections() {
		c.mu.Lock()
		if c.proxy == nil || c.debugOnly {
			c.mu.Unlock()
			continue
		}
		meta, _ := structpb.NewStruct(map[string]any{
			model.MetaClusterID:    clusterID(c.proxy, s.opts.Mesh.ClusterID),
			model.MetaNamespace:    c.proxy.Namespace,
			model.MetaIstioVersion: c.proxy.IstioVersion,
			model.MetaGenerator:    c.proxy.Generator,
		})
		cc := &statusv3.ClientConfig{Node: &core.Node{Id: c.proxy.ID, Metadata: meta}}
		types := make([]string, 0, len(c.types))
		for t := range c.types {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			st := c.types[t]
			x := &statusv3.ClientConfig_GenericXdsConfig{
				TypeUrl:      t,
				VersionInfo:  st.versionAcked,
				ConfigStatus: configStatus(st.status()),
			}
			if !st.lastSent.IsZero() {
				x.LastUpdated = timestamppb.New(st.lastSent)
			}
			if st.lastError != "" {
				x.ErrorState = &admin.UpdateFailureState{LastUpdateAttempt: timestamppb.New(st.lastSent), Details: st.lastError}
			}
			cc.GenericXdsConfigs = append(cc.GenericXdsConfigs, x)
		}
		c.mu.Unlock()
		out = append(out, cc)
	}
	return out
}

func clusterID(p *model.Proxy, def string) string {
	if p.ClusterID != "" {
		return p.ClusterID
	}
	return def
}

func configStatus(s SyncStatus) statusv3.ConfigStatus {
	switch s {
	case Synced:
		return statusv3.ConfigStatus_SYNCED
	case Stale:
		return statusv3.ConfigStatus_STALE
	case Error:
		return statusv3.ConfigStatus_ERROR
	}
	return statusv3.ConfigStatus_NOT_SENT
}

// findConn finds a proxy's stream by POD.NAMESPACE or by full node ID; the
// most recent stream wins when a proxy reconnected.
func (s *Server) findConn(id string) *conn {
	var found *conn
	for _, c := range s.connections() {
		c.mu.Lock()
		if c.proxy != nil && !c.debugOnly && (c.proxy.ID == id || c.proxy.NodeID == id) {
			if found == nil || c.connectedAt.After(found.connectedAt) {
				found = c
			}
		}
		c.mu.Unlock()
	}
	return found
}

// ConfigDump returns the config a proxy holds, as Envoy's admin config
// dump: what was last sent to it of each type, at the current snapshot.
func (s *Server) ConfigDump(proxyID string) (*admin.ConfigDump, error) {
	c := s.findConn(proxyID)
	if c == nil {
		return nil, fmt.Errorf("no proxy %q is connected", proxyID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	view := s.currentView(c)
	if view == nil {
		return nil, fmt.Errorf("proxy %q: no config built yet", proxyID)
	}
	resources := func(typeURL string) ([]*translate.Resource, *typeState) {
		st := c.types[typeURL]
		if st == nil {
			return nil, nil
		}
		var names []string
		src := view
		switch {
		case st.whole && st.names == nil:
			return view.All(typeURL), st // a wildcard: everything
		case st.whole:
			names = st.names
		case st.known != nil: // Delta
			for n := range st.known {
				names = append(names, n)
			}
		default: // SotW EDS, RDS: the names asked for, as last sent
			names = append(names, st.reqNames...)
			if st.base != nil {
				src = st.base
			}
		}
		sort.Strings(names)
		var rs []*translate.Resource
		for _, n := range names {
			if r := src.Get(typeURL, n); r != nil {
				rs = append(rs, r)
			}
		}
		return rs, st
	}
	ts := func(st *typeState) *timestamppb.Timestamp {
		if st == nil || st.lastSent.IsZero() {
			return nil
		}
		return timestamppb.New(st.lastSent)
	}
	dump := &admin.ConfigDump{}

	crs, cst := resources(translate.ClusterType)
	cd := &admin.ClustersConfigDump{VersionInfo: versionSent(cst)}
	for _, r := range crs {
		cd.DynamicActiveClusters = append(cd.DynamicActiveClusters, &admin.ClustersConfigDump_DynamicCluster{
			VersionInfo: r.Version, Cluster: r.Any, LastUpdated: ts(cst)})
	}
	lrs, lst := resources(translate.ListenerType)
	ld := &admin.ListenersConfigDump{VersionInfo: versionSent(lst)}
	for _, r := range lrs {
		ld.DynamicListeners = append(ld.DynamicListeners, &admin.ListenersConfigDump_DynamicListener{
			Name: r.Name,
			ActiveState: &admin.ListenersConfigDump_DynamicListenerState{
				VersionInfo: r.Version, Listener: r.Any, LastUpdated: ts(lst)},
		})
	}
	rrs, rst := resources(translate.RouteType)
	rd := &admin.RoutesConfigDump{}
	for _, r := range rrs {
		rd.DynamicRouteConfigs = append(rd.DynamicRouteConfigs, &admin.RoutesConfigDump_DynamicRouteConfig{
			VersionInfo: r.Version, RouteConfig: r.Any, LastUpdated: ts(rst)})
	}
	ers, est := resources(translate.EndpointType)
	ed := &admin.EndpointsConfigDump{}
	for _, r := range ers {
		ed.DynamicEndpointConfigs = append(ed.DynamicEndpointConfigs, &admin.EndpointsConfigDump_DynamicEndpointConfig{
			VersionInfo: r.Version, EndpointConfig: r.Any, LastUpdated: ts(est)})
	}
	for _, msg := range []proto.Message{cd, ld, rd, ed} {
		a, err := anypb.New(msg)
		if err != nil {
			return nil, fmt.Errorf("packing config dump: %w", err)
		}
		dump.Configs = append(dump.Configs, a)
	}
	return dump, nil
}

func versionSent(st *typeState) string {
	if st == nil {
		return ""
	}
	return st.versionSent
}

// ---- HTTP debug endpoints -----------------------------------------------

// Routes adds /debug/syncz, /debug/config_dump and /debug/registryz.
func (s *Server) Routes(mux *http.ServeMux) {
	mux.HandleFunc("/debug/syncz", s.handleSyncz)
	mux.HandleFunc("/debug/config_dump", s.handleConfigDump)
	mux.HandleFunc("/debug/registryz", s.handleRegistryz)
}

// SyncStatusJSON is one row of /debug/syncz, in istiod's field names.
type SyncStatusJSON struct {
	ClusterID     string `json:"cluster_id,omitempty"`
	ProxyID       string `json:"proxy"`
	ProxyType     string `json:"proxy_type,omitempty"`
	ProxyVersion  string `json:"proxy_version,omitempty"`
	IstiodVersion string `json:"istiod_version,omitempty"`
	Generator     string `json:"generator,omitempty"`
	ClusterSent   string `json:"cluster_sent,omitempty"`
	ClusterAcked  string `json:"cluster_acked,omitempty"`
	ListenerSent  string `json:"listener_sent,omitempty"`
	ListenerAcked string `json:"listener_acked,omitempty"`
	RouteSent     string `json:"route_sent,omitempty"`
	RouteAcked    string `json:"route_acked,omitempty"`
	EndpointSent  string `json:"endpoint_sent,omitempty"`
	EndpointAcked string `json:"endpoint_acked,omitempty"`
	// Status is SYNCED, NOT SENT, STALE or ERROR per type (cds, lds, eds, rds).
	Status map[string]SyncStatus `json:"status"`
	// Errors holds the last NACK message per type, if any.
	Errors map[string]string `json:"errors,omitempty"`
}

// SyncStatuses returns the sync status of every connected proxy.
func (s *Server) SyncStatuses() []SyncStatusJSON {
	var out []SyncStatusJSON
	for _, c := range s.connections() {
		c.mu.Lock()
		if c.proxy == nil || c.debugOnly {
			c.mu.Unlock()
			continue
		}
		row := SyncStatusJSON{
			ClusterID: clusterID(c.proxy, s.opts.Mesh.ClusterID), ProxyID: c.proxy.ID, ProxyType: string(c.proxy.Type),
			ProxyVersion: c.proxy.IstioVersion, IstiodVersion: s.opts.Version, Generator: c.proxy.Generator,
			Status: map[string]SyncStatus{},
		}
		for _, t := range translate.Types {
			st := c.types[t]
			short := translate.ShortType(t)
			if st == nil {
				row.Status[short] = NotSent
				continue
			}
			row.Status[short] = st.status()
			if st.lastError != "" {
				if row.Errors == nil {
					row.Errors = map[string]string{}
				}
				row.Errors[short] = st.lastError
			}
			switch t {
			case translate.ClusterType:
				row.ClusterSent, row.ClusterAcked = st.nonceSent, st.nonceAcked
			case translate.ListenerType:
				row.ListenerSent, row.ListenerAcked = st.nonceSent, st.nonceAcked
			case translate.RouteType:
				row.RouteSent, row.RouteAcked = st.nonceSent, st.nonceAcked
			case translate.EndpointType:
				row.EndpointSent, row.EndpointAcked = st.nonceSent, st.nonceAcked
			}
		}
		c.mu.Unlock()
		out = append(out, row)
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) handleSyncz(w http.ResponseWriter, _ *http.Request) {
	rows := s.SyncStatuses()
	if rows == nil {
		rows = []SyncStatusJSON{}
	}
	writeJSON(w, rows)
}

func (s *Server) handleConfigDump(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("proxyID")
	if id == "" {
		http.Error(w, "missing query parameter proxyID (POD.NAMESPACE or the node ID)", http.StatusBadRequest)
		return
	}
	dump, err := s.ConfigDump(id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(dump)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// RegistryService is one row of /debug/registryz. The fields hostname,
// namespace, name, ports and endpoints keep the shape of the first
// registryz; the rest are additions.
type RegistryService struct {
	Hostname     string             `json:"hostname"`
	Namespace    string             `json:"namespace"`
	Name         string             `json:"name"`
	Kind         string             `json:"kind"`
	ClusterIP    string             `json:"clusterIP,omitempty"`
	Addresses    []string           `json:"addresses,omitempty"`
	Resolution   string             `json:"resolution"`
	MeshExternal bool               `json:"meshExternal,omitempty"`
	Headless     bool               `json:"headless,omitempty"`
	Ports        []RegistryPort     `json:"ports"`
	Endpoints    []RegistryEndpoint `json:"endpoints"`
}

// RegistryPort is a service port in /debug/registryz.
type RegistryPort struct {
	Name     string `json:"name"`
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
}

// RegistryEndpoint is an endpoint in /debug/registryz.
type RegistryEndpoint struct {
	Address        string `json:"address"`
	Port           int32  `json:"port"`
	Ready          bool   `json:"ready"`
	ServicePort    int32  `json:"servicePort"`
	Serving        bool   `json:"serving"`
	Terminating    bool   `json:"terminating,omitempty"`
	Locality       string `json:"locality,omitempty"`
	ServiceAccount string `json:"serviceAccount,omitempty"`
	Workload       string `json:"workload,omitempty"`
	// Pod is the Pod behind the endpoint, when there is one.
	Pod string `json:"pod,omitempty"`
}

// Registry lists the services of the current snapshot with their ports and endpoints.
func (s *Server) Registry() []RegistryService {
	snap := s.snap.Load()
	out := []RegistryService{}
	if snap == nil {
		return out
	}
	for _, svc := range snap.Services {
		row := RegistryService{
			Hostname: svc.Hostname, Namespace: svc.Namespace, Name: svc.Name, Kind: svc.Kind,
			ClusterIP: svc.ClusterIP, Addresses: svc.Addresses, Resolution: svc.Resolution.String(),
			MeshExternal: svc.MeshExternal, Headless: svc.Headless,
			Ports: []RegistryPort{}, Endpoints: []RegistryEndpoint{},
		}
		eps := snap.Endpoints(svc)
		for _, p := range svc.Ports {
			row.Ports = append(row.Ports, RegistryPort{Name: p.Name, Port: p.Port, Protocol: string(p.Protocol)})
			for _, e := range eps.For(p.Port) {
				ep := RegistryEndpoint{
					Address: e.Address, Port: e.Port, Ready: e.Ready, ServicePort: p.Port, Serving: e.Serving,
					Terminating: e.Terminating, Locality: strings.Trim(e.Locality.String(), "/"),
					ServiceAccount: e.ServiceAccount, Workload: e.Workload,
				}
				if e.FromPod {
					ep.Pod = e.Workload
				}
				row.Endpoints = append(row.Endpoints, ep)
			}
		}
		out = append(out, row)
	}
	return out
}

// handleRegistryz lists the registry, only namespace N's services with
// ?namespace=N.
func (s *Server) handleRegistryz(w http.ResponseWriter, r *http.Request) {
	reg := s.Registry()
	if ns := r.URL.Query().Get("namespace"); ns != "" {
		reg = slices.DeleteFunc(reg, func(rs RegistryService) bool { return rs.Namespace != ns })
	}
	writeJSON(w, reg)
}

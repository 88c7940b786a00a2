// Package cli holds meshctl's pilot commands: proxy-status and
// proxy-config, which ask meshd over ADS for its debug resources
// (istio.io/debug/syncz and istio.io/debug/config_dump), as istioctl does.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	admin "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"

	"github.com/meshd/meshd/pilot/xds"
)

// DefaultXDSAddress is meshd's plaintext xDS port on this machine.
const DefaultXDSAddress = "127.0.0.1:15010"

// debugNodeID identifies meshctl to the server; debug clients are not
// listed as proxies.
const debugNodeID = "sidecar~0.0.0.0~meshctl.default~default.svc.cluster.local"

type clientFlags struct {
	address string
	timeout time.Duration
}

func (f *clientFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.address, "xds-address", DefaultXDSAddress, "meshd xDS address (host:port)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for meshd")
}

// Commands returns every pilot command, for cmd/meshctl.
func Commands() []*cobra.Command {
	return []*cobra.Command{ProxyStatusCommand(), ProxyConfigCommand()}
}

// fetch asks meshd for one debug resource type over ADS and returns the
// first response.
func fetch(ctx context.Context, f *clientFlags, typeURL string, names []string) (*discovery.DiscoveryResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	cc, err := grpc.NewClient(f.address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connecting to meshd at %s: %w", f.address, err)
	}
	defer cc.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening an ADS stream to %s: %w", f.address, err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: debugNodeID}, TypeUrl: typeURL, ResourceNames: names}); err != nil {
		return nil, fmt.Errorf("asking %s for %s: %w", f.address, typeURL, err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("reading %s from %s: %w", typeURL, f.address, err)
	}
	_ = stream.CloseSend()
	return resp, nil
}

// ProxyStatusCommand is `meshctl proxy-status` (alias ps).
func ProxyStatusCommand() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:     "proxy-status",
		Aliases: []string{"ps"},
		Short:   "Show whether each connected proxy has the latest config (SYNCED, NOT SENT, STALE, ERROR)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := fetch(cmd.Context(), f, xds.TypeSyncz, nil)
			if err != nil {
				return err
			}
			return printStatus(cmd.OutOrStdout(), resp)
		},
	}
	f.add(cmd)
	return cmd
}

func printStatus(out io.Writer, resp *discovery.DiscoveryResponse) error {
	istiod := controlPlaneID(resp.GetControlPlane())
	type row struct{ name, cluster, cds, lds, eds, rds, version string }
	var rows []row
	for _, a := range resp.GetResources() {
		var cc statusv3.ClientConfig
		if err := a.UnmarshalTo(&cc); err != nil {
			return fmt.Errorf("decoding syncz: %w", err)
		}
		st := map[string]string{}
		for _, x := range cc.GetGenericXdsConfigs() {
			st[x.GetTypeUrl()] = statusName(x.GetConfigStatus())
		}
		get := func(t string) string {
			if s, ok := st[t]; ok {
				return s
			}
			return string(xds.NotSent)
		}
		meta := cc.GetNode().GetMetadata().GetFields()
		rows = append(rows, row{
			name: cc.GetNode().GetId(), cluster: meta["CLUSTER_ID"].GetStringValue(),
			cds: get(clusterType), lds: get(listenerType), eds: get(endpointType), rds: get(routeType),
			version: meta["ISTIO_VERSION"].GetStringValue(),
		})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
	w := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
	fmt.Fprintln(w, "NAME\tCLUSTER\tCDS\tLDS\tEDS\tRDS\tISTIOD\tVERSION")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.name, r.cluster, r.cds, r.lds, r.eds, r.rds, istiod, r.version)
	}
	return w.Flush()
}

const (
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	endpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	routeType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

func statusName(s statusv3.ConfigStatus) string {
	switch s {
	case statusv3.ConfigStatus_SYNCED:
		return string(xds.Synced)
	case statusv3.ConfigStatus_STALE:
		return string(xds.Stale)
	case statusv3.ConfigStatus_ERROR:
		return string(xds.Error)
	}
	return string(xds.NotSent)
}

func controlPlaneID(cp *core.ControlPlane) string {
	var id struct{ ID string }
	if cp == nil || json.Unmarshal([]byte(cp.GetIdentifier()), &id) != nil {
		return ""
	}
	return id.ID
}

// ProxyConfigCommand is `meshctl proxy-config clusters|listeners|routes|endpoints POD.NS`.
func ProxyConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "proxy-config",
		Aliases: []string{"pc"},
		Short:   "Show the config meshd sends to one proxy",
	}
	for _, kind := range []string{"clusters", "listeners", "routes", "endpoints"} {
		cmd.AddCommand(proxyConfigKind(kind))
	}
	return cmd
}

func proxyConfigKind(kind string) *cobra.Command {
	f := &clientFlags{}
	var output string
	short := strings.TrimSuffix(kind, "s")
	cmd := &cobra.Command{
		Use:     kind + " POD.NAMESPACE",
		Aliases: []string{short},
		Short:   "Show the " + kind + " of a proxy",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" && output != "yaml" {
				return fmt.Errorf("--output %q: want json or yaml (or nothing for a table)", output)
			}
			resp, err := fetch(cmd.Context(), f, xds.TypeConfigDump, []string{args[0]})
			if err != nil {
				return err
			}
			if len(resp.GetResources()) == 0 {
				return fmt.Errorf("meshd at %s has no connected proxy %q", f.address, args[0])
			}
			msgs, err := resourcesOf(kind, resp.GetResources())
			if err != nil {
				return err
			}
			if output != "" {
				return printRaw(cmd.OutOrStdout(), msgs, output)
			}
			return printTable(cmd.OutOrStdout(), kind, msgs)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml (default: a table)")
	return cmd
}

// resourcesOf picks the resources of one kind out of a config dump.
func resourcesOf(kind string, configs []*anypb.Any) ([]proto.Message, error) {
	var out []proto.Message
	unpack := func(a *anypb.Any) error {
		if a == nil {
			return nil
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("decoding %s: %w", a.GetTypeUrl(), err)
		}
		out = append(out, m)
		return nil
	}
	for _, c := range configs {
		m, err := c.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("decoding config dump section %s: %w", c.GetTypeUrl(), err)
		}
		var errs []error
		switch d := m.(type) {
		case *admin.ClustersConfigDump:
			if kind == "clusters" {
				for _, x := range d.GetDynamicActiveClusters() {
					errs = append(errs, unpack(x.GetCluster()))
				}
			}
		case *admin.ListenersConfigDump:
			if kind == "listeners" {
				for _, x := range d.GetDynamicListeners() {
					errs = append(errs, unpack(x.GetActiveState().GetListener()))
				}
			}
		case *admin.RoutesConfigDump:
			if kind == "routes" {
				for _, x := range d.GetDynamicRouteConfigs() {
					errs = append(errs, unpack(x.GetRouteConfig()))
				}
			}
		case *admin.EndpointsConfigDump:
			if kind == "endpoints" {
				for _, x := range d.GetDynamicEndpointConfigs() {
					errs = append(errs, unpack(x.GetEndpointConfig()))
				}
			}
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func printRaw(out io.Writer, msgs []proto.Message, format string) error {
	list := make([]json.RawMessage, 0, len(msgs))
	for _, m := range msgs {
		b, err := protojson.Marshal(m)
		if err != nil {
			return err
		}
		list = append(list, b)
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
	} else {
		b = append(b, '\n')
	}
	_, err = out.Write(b)
	return err
}

func printTable(out io.Writer, kind string, msgs []proto.Message) error {
	w := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	switch kind {
	case "clusters":
		fmt.Fprintln(w, "SERVICE FQDN\tPORT\tSUBSET\tDIRECTION\tTYPE")
		for _, m := range msgs {
			c := m.(*cluster.Cluster)
			fqdn, port, subset, dir := c.GetName(), "-", "-", "-"
			if parts := strings.Split(c.GetName(), "|"); len(parts) == 4 {
				dir, port, subset, fqdn = parts[0], parts[1], dash(parts[2]), dash(parts[3])
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", fqdn, port, subset, dir, c.GetType())
		}
	case "listeners":
		fmt.Fprintln(w, "NAME\tADDRESS\tPORT\tMATCH\tDESTINATION")
		for _, m := range msgs {
			l := m.(*listener.Listener)
			addr := l.GetAddress().GetSocketAddress()
			port := "-"
			if addr != nil {
				port = fmt.Sprint(addr.GetPortValue())
			}
			if l.GetApiListener() != nil {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", l.GetName(), "-", port, "ALL", "Route: "+apiRoute(l))
				continue
			}
			chains := l.GetFilterChains()
			if l.GetDefaultFilterChain() != nil {
				chains = append(chains, l.GetDefaultFilterChain())
			}
			for _, fc := range chains {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", l.GetName(), dash(addr.GetAddress()), port, chainMatch(fc), chainDestination(fc))
			}
		}
	case "routes":
		fmt.Fprintln(w, "NAME\tVHOST NAME\tDOMAINS\tMATCH\tDESTINATION")
		for _, m := range msgs {
			rc := m.(*route.RouteConfiguration)
			for _, vh := range rc.GetVirtualHosts() {
				domains := vh.GetDomains()
				d := strings.Join(domains, ", ")
				if len(domains) > 2 {
					d = fmt.Sprintf("%s + %d more...", domains[0], len(domains)-1)
				}
				for _, r := range vh.GetRoutes() {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", rc.GetName(), vh.GetName(), d, routeMatch(r), r.GetRoute().GetCluster())
				}
			}
		}
	case "endpoints":
		fmt.Fprintln(w, "ENDPOINT\tSTATUS\tLOCALITY\tCLUSTER")
		for _, m := range msgs {
			cla := m.(*endpoint.ClusterLoadAssignment)
			for _, l := range cla.GetEndpoints() {
				loc := strings.Trim(strings.Join([]string{l.GetLocality().GetRegion(), l.GetLocality().GetZone(), l.GetLocality().GetSubZone()}, "/"), "/")
				for _, e := range l.GetLbEndpoints() {
					sa := e.GetEndpoint().GetAddress().GetSocketAddress()
					fmt.Fprintf(w, "%s:%d\t%s\t%s\t%s\n", sa.GetAddress(), sa.GetPortValue(), e.GetHealthStatus(), dash(loc), cla.GetClusterName())
				}
			}
		}
	}
	return w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func apiRoute(l *listener.Listener) string {
	var m hcm.HttpConnectionManager
	if l.GetApiListener().GetApiListener().UnmarshalTo(&m) != nil {
		return "-"
	}
	return m.GetRds().GetRouteConfigName()
}

func chainMatch(fc *listener.FilterChain) string {
	m := fc.GetFilterChainMatch()
	switch {
	case m == nil:
		return "ALL"
	case len(m.GetServerNames()) > 0:
		return "SNI: " + strings.Join(m.GetServerNames(), ",")
	case m.GetDestinationPort() != nil:
		return fmt.Sprintf("Port: %d", m.GetDestinationPort().GetValue())
	case len(m.GetPrefixRanges()) > 0:
		var p []string
		for _, r := range m.GetPrefixRanges() {
			p = append(p, fmt.Sprintf("%s/%d", r.GetAddressPrefix(), r.GetPrefixLen().GetValue()))
		}
		return "Addr: " + strings.Join(p, ",")
	}
	return "ALL"
}

func chainDestination(fc *listener.FilterChain) string {
	for _, f := range fc.GetFilters() {
		var h hcm.HttpConnectionManager
		if f.GetTypedConfig().UnmarshalTo(&h) == nil {
			if rds := h.GetRds(); rds != nil {
				return "Route: " + rds.GetRouteConfigName()
			}
			return "Inline Route: " + h.GetRouteConfig().GetName()
		}
		var t tcpproxy.TcpProxy
		if f.GetTypedConfig().UnmarshalTo(&t) == nil {
			return "Cluster: " + t.GetCluster()
		}
	}
	return "-"
}

func routeMatch(r *route.Route) string {
	m := r.GetMatch()
	switch {
	case m.GetPrefix() != "":
		return m.GetPrefix() + "*"
	case m.GetPath() != "":
		return m.GetPath()
	case m.GetSafeRegex() != nil:
		return m.GetSafeRegex().GetRegex()
	}
	return "-"
}

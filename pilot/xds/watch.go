package xds

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/meshd/meshd/pilot/model"
	"github.com/meshd/meshd/pilot/translate"
)

// The server is its own go-control-plane cache and callbacks: the cache
// answers watches from the current snapshot, the callbacks keep the
// per-stream state (nonces, ACKs, NACKs) that syncz reports.
var (
	_ cache.Cache         = (*Server)(nil)
	_ serverv3.Callbacks  = (*Server)(nil)
	_ cache.Response      = (*sotwResponse)(nil)
	_ cache.DeltaResponse = (*deltaResponse)(nil)
)

// sent is what the send callback needs to know about a response.
type sent struct {
	typeURL string
	names   []string
	known   map[string]string
	version string
	size    int
	first   time.Time
	// whole marks a whole-state response (no per-resource map kept);
	// subKey is what its subscription asked for; base is the view a
	// per-resource SotW response (EDS, RDS) brings the proxy up to.
	whole    bool
	subKey   string
	subNames []string
	base     *translate.View
	count    int
}

// ---- stream callbacks -------------------------------------------------

// OnStreamOpen registers a SotW stream.
func (s *Server) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	s.addConn(connKey{false, id}, ctx)
	return nil
}

// OnDeltaStreamOpen registers a Delta stream.
func (s *Server) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	s.addConn(connKey{true, id}, ctx)
	return nil
}

func (s *Server) addConn(k connKey, ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[k] = newConn(k, ctx)
}

// OnStreamClosed forgets a SotW stream.
func (s *Server) OnStreamClosed(id int64, _ *core.Node) { s.removeConn(connKey{false, id}) }

// OnDeltaStreamClosed forgets a Delta stream.
func (s *Server) OnDeltaStreamClosed(id int64, _ *core.Node) { s.removeConn(connKey{true, id}) }

func (s *Server) removeConn(k connKey) {
	s.mu.Lock()
	c := s.conns[k]
	delete(s.conns, k)
	s.mu.Unlock()
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.types {
		st.sotw, st.delta = nil, nil
	}
	if c.proxy != nil {
		s.metrics.xdsClients.WithLabelValues(c.proxy.IstioVersion).Dec()
		s.log.Info("proxy disconnected", "proxy", c.proxy.ID, "delta", k.delta, "stream", k.id, "connectedFor", time.Since(c.connectedAt).Round(time.Millisecond))
	}
}

// OnStreamRequest identifies the proxy on its first request and records
// ACKs and NACKs.
func (s *Server) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	c := s.conn(connKey{false, id})
	if c == nil {
		return status.Error(codes.Internal, "request on an unknown stream")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := s.identify(c, req.GetNode(), req.GetTypeUrl()); err != nil {
		return err
	}
	s.recordReply(c, req.GetTypeUrl(), req.GetResponseNonce(), req.GetVersionInfo(), req.GetErrorDetail())
	if c.proxy != nil && !isDebugType(req.GetTypeUrl()) {
		c.state(req.GetTypeUrl()).reqNames = req.GetResourceNames()
	}
	s.pending.Store(req, c)
	return nil
}

// OnStreamDeltaRequest is OnStreamRequest for Delta streams.
func (s *Server) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	c := s.conn(connKey{true, id})
	if c == nil {
		return status.Error(codes.Internal, "request on an unknown stream")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := s.identify(c, req.GetNode(), req.GetTypeUrl()); err != nil {
		return err
	}
	s.recordReply(c, req.GetTypeUrl(), req.GetResponseNonce(), "", req.GetErrorDetail())
	s.pending.Store(req, c)
	return nil
}

// identify reads the proxy from the node of the stream's first request;
// c.mu must be held. A node ID that does not parse ends the stream with
// InvalidArgument. Clients that open with a debug type (meshctl, istioctl)
// are served without a proxy identity.
func (s *Server) identify(c *conn, node *core.Node, typeURL string) error {
	if c.proxy != nil || (c.debugOnly && isDebugType(typeURL)) {
		return nil
	}
	if isDebugType(typeURL) {
		c.debugOnly = true
		return nil
	}
	if node.GetId() == "" {
		return status.Error(codes.InvalidArgument, "the first request on a stream must carry the node (with its ID)")
	}
	p, err := model.NewProxy(node.GetId(), node.GetMetadata().AsMap())
	if err != nil {
		s.log.Warn("refusing xDS stream", "peer", c.peer, "error", err)
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if l := node.GetLocality(); l != nil {
		p.Locality = model.Locality{Region: l.GetRegion(), Zone: l.GetZone(), SubZone: l.GetSubZone()}
	}
	c.proxy = p.WithPod(s.store)
	c.debugOnly = false
	s.metrics.xdsClients.WithLabelValues(c.proxy.IstioVersion).Inc()
	s.log.Info("proxy connected", "proxy", c.proxy.ID, "node", c.proxy.NodeID, "namespace", c.proxy.Namespace,
		"generator", c.proxy.Generator, "hasPod", c.proxy.HasPod, "delta", c.key.delta, "peer", c.peer)
	return nil
}

// recordReply records an ACK or a NACK of the response with that nonce;
// c.mu must be held. A NACK leaves the server's idea of what the client
// has unchanged, so nothing is resent until the config changes again: the
// client stays on its last accepted config.
func (s *Server) recordReply(c *conn, typeURL, nonce, version string, nack *rpcstatus.Status) {
	if nonce == "" || c.proxy == nil {
		return
	}
	st := c.state(typeURL)
	if nonce != st.nonceSent {
		return // a reply to an older response, superseded
	}
	if nack != nil {
		st.lastError = nack.GetMessage()
		short := translate.ShortType(typeURL)
		s.metrics.rejects.WithLabelValues(short).Inc()
		if g, ok := s.metrics.typeRejects[short]; ok {
			g.WithLabelValues(c.proxy.ID, truncate(nack.GetMessage(), 128)).Set(1)
		}
		s.log.Warn("proxy rejected config (NACK); it keeps its last accepted config",
			"proxy", c.proxy.ID, "type", short, "nonce", nonce, "resources", sentSummary(st), "error", nack.GetMessage())
		return
	}
	st.nonceAcked, st.lastAcked = nonce, time.Now()
	if version != "" {
		st.versionAcked = version
	} else {
		st.versionAcked = st.versionSent
	}
	st.lastError = ""
	if t0, ok := st.pushStart[nonce]; ok && !t0.IsZero() {
		s.metrics.convergence.Observe(time.Since(t0).Seconds())
	}
	clear(st.pushStart)
}

// sentSummary names (some of) the resources of the last response of a type.
func sentSummary(st *typeState) string {
	names := st.names
	if names == nil && st.known != nil {
		for n := range st.known {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	if names == nil && !st.whole {
		names = st.reqNames
	}
	switch {
	case names == nil && st.whole:
		return "all (wildcard)"
	case len(names) > 10:
		return fmt.Sprintf("%s and %d more", strings.Join(names[:10], ", "), len(names)-10)
	}
	return strings.Join(names, ", ")
}

// OnStreamResponse records what was sent, just before it goes out.
func (s *Server) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	s.recordSent(connKey{false, id}, resp, resp.GetNonce())
}

// OnStreamDeltaResponse is OnStreamResponse for Delta streams.
func (s *Server) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	s.recordSent(connKey{true, id}, resp, resp.GetNonce())
}

func (s *Server) recordSent(k connKey, resp any, nonce string) {
	v, ok := s.inflight.LoadAndDelete(resp)
	if !ok {
		return
	}
	m := v.(*sent)
	c := s.conn(k)
	if c == nil || isDebugType(m.typeURL) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state(m.typeURL)
	st.nonceSent, st.versionSent, st.lastSent = nonce, m.version, time.Now()
	st.known, st.names, st.whole, st.subKey, st.subNames, st.base = m.known, m.names, m.whole, m.subKey, m.subNames, m.base
	st.sentOnce = true
	clear(st.pushStart)
	st.pushStart[nonce] = m.first
	short := translate.ShortType(m.typeURL)
	s.metrics.pushes.WithLabelValues(short).Inc()
	s.metrics.configSize.WithLabelValues(short).Observe(float64(m.size))
}

// OnFetchRequest refuses REST: pilot serves xDS over gRPC streams only.
func (s *Server) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error {
	return status.Error(codes.Unimplemented, "REST xDS is not served; use ADS")
}

// OnFetchResponse is unused.
func (s *Server) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

// Fetch refuses REST.
func (s *Server) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("REST xDS is not served; use ADS")
}

// ---- watches ------------------------------------------------------------

// CreateWatch answers a SotW request at once when the proxy lacks
// something, and otherwise parks it until a push has something new.
func (s *Server) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	v, ok := s.pending.LoadAndDelete(req)
	if !ok {
		s.metrics.internalErrors.Inc()
		return nil, status.Error(codes.Internal, "watch for an unknown request")
	}
	c := v.(*conn)
	w := &sotwWatch{req: req, sub: sub, ch: ch}
	typeURL := req.GetTypeUrl()
	if isDebugType(typeURL) {
		// Debug answers read other connections: hold no lock of our own.
		s.respondDebug(c, typeURL, req.GetResourceNames(), func(rs []*anypb.Any, version string) {
			deliver(c, ch, cache.Response(&sotwResponse{s: s, req: req, version: version, resources: rs,
				meta: &sent{typeURL: typeURL, version: version}}))
		})
		return func() {}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state(typeURL)
	st.sotw, st.delta = nil, nil
	s.respondSotw(c, st, w, s.currentPushStart(), hint{})
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if st.sotw == w {
			st.sotw = nil
		}
	}, nil
}

// CreateDeltaWatch is CreateWatch for Delta streams.
func (s *Server) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, ch chan cache.DeltaResponse) (func(), error) {
	v, ok := s.pending.LoadAndDelete(req)
	if !ok {
		s.metrics.internalErrors.Inc()
		return nil, status.Error(codes.Internal, "watch for an unknown request")
	}
	c := v.(*conn)
	w := &deltaWatch{req: req, sub: sub, ch: ch}
	typeURL := req.GetTypeUrl()
	if isDebugType(typeURL) {
		names := make([]string, 0, len(sub.SubscribedResources()))
		for n := range sub.SubscribedResources() {
			names = append(names, n)
		}
		sort.Strings(names)
		s.respondDebug(c, typeURL, names, func(rs []*anypb.Any, version string) {
			var res []*discovery.Resource
			for i, a := range rs {
				res = append(res, &discovery.Resource{Name: debugName(typeURL, i, a), Version: version, Resource: a})
			}
			deliver(c, ch, cache.DeltaResponse(&deltaResponse{s: s, req: req, version: version, resources: res,
				next: map[string]string{}, meta: &sent{typeURL: typeURL, version: version}}))
		})
		return func() {}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state(typeURL)
	st.sotw, st.delta = nil, nil
	s.respondDelta(c, st, w, s.currentPushStart(), hint{})
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if st.delta == w {
			st.delta = nil
		}
	}, nil
}

// deliver hands a response to the stream without ever blocking the push:
// a watch is answered once, so the channel normally has room; if a client
// watches more types than the server buffers, a goroutine waits for room
// or for the stream's end.
func deliver[R any](c *conn, ch chan R, r R) {
	select {
	case ch <- r:
	default:
		go func() {
			select {
			case ch <- r:
			case <-c.ctx.Done():
			}
		}()
	}
}

// allRequired marks the types whose SotW responses must hold every
// resource (a missing one means deleted); for the others a response may
// carry just what changed.
func allRequired(typeURL string) bool {
	return typeURL == translate.ClusterType || typeURL == translate.ListenerType
}

// wanted returns the resources a subscription covers, sorted by name.
// Large subscriptions (a sidecar's EDS: every cluster) are matched by
// walking the proxy's sorted set rather than sorting the names asked for.
func wanted(v *translate.View, typeURL string, sub cache.Subscription) []*translate.Resource {
	if !isKnownType(typeURL) {
		return nil
	}
	if sub.IsWildcard() {
		return v.All(typeURL)
	}
	subscribed := sub.SubscribedResources()
	all := v.All(typeURL)
	if len(subscribed) == 0 {
		return nil
	}
	if len(subscribed)*8 < len(all) {
		names := make([]string, 0, len(subscribed))
		for n := range subscribed {
			names = append(names, n)
		}
		sort.Strings(names)
		out := make([]*translate.Resource, 0, len(names))
		for _, n := range names {
			if r := v.Get(typeURL, n); r != nil {
				out = append(out, r)
			}
		}
		return out
	}
	out := make([]*translate.Resource, 0, len(subscribed))
	for _, r := range all {
		if _, ok := subscribed[r.Name]; ok {
			out = append(out, r)
		}
	}
	if len(out) < len(subscribed) {
		// Names no set holds but the view answers on request (proxyless
		// gRPC aliases and inbound listeners).
		have := make(map[string]bool, len(out))
		for _, r := range out {
			have[r.Name] = true
		}
		extra := false
		for n := range subscribed {
			if !have[n] {
				if r := v.Get(typeURL, n); r != nil {
					out, extra = append(out, r), true
				}
			}
		}
		if extra {
			sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		}
	}
	return out
}

func versionOf(rs []*translate.Resource) string { return translate.VersionOf(rs) }

// respondSotw answers w if the proxy lacks anything it covers, else parks
// it; c.mu must be held. It reports whether a response was sent.
func (s *Server) respondSotw(c *conn, st *typeState, w *sotwWatch, first time.Time, h hint) bool {
	view := s.ensureView(c)
	if view == nil {
		st.sotw = w
		return false
	}
	st.view = view
	t0 := time.Now()
	typeURL := w.req.GetTypeUrl()
	if h.only && st.sentOnce {
		if !h.relevant(w.sub) {
			st.sotw = w
			return false
		}
		if !allRequired(typeURL) && !w.sub.IsWildcard() {
			return s.respondSotwPartial(c, st, w, first, h, view, t0)
		}
	}
	if allRequired(typeURL) || w.sub.IsWildcard() {
		return s.respondSotwWhole(c, st, w, first, wanted(view, typeURL, w.sub), t0)
	}
	// EDS and RDS: what the proxy has is the content of the view last
	// sent (st.base) for the names it then asked for (st.subKey). The
	// common case is an ACK of the last response while the view is still
	// the one it was built from: nothing can be missing, and with a
	// thousand names per ACK the comparison below is not free; nor is
	// hashing the names, which the shared list usually spares.
	key := st.subKey
	if !st.sentOnce || !sameSlice(w.req.GetResourceNames(), st.subNames) {
		key = subscriptionKey(w.sub)
	}
	same := st.sentOnce && st.base != nil && key == st.subKey
	if same && st.base == view {
		st.sotw = w
		return false
	}
	if same {
		// The view moved on since the last response (a push happened while
		// it was in flight): only what changed between the two can be
		// missing, and proxies sharing the views share that comparison.
		if names, all := view.Changed(st.base, typeURL, s.ackDiffer()); !all {
			return s.respondSotwPartial(c, st, w, first, hint{only: true, names: names}, view, t0)
		}
	}
	rs := wanted(view, typeURL, w.sub)
	if !same {
		s.sendSotw(c, st, w, rs, versionOf(rs), view, key, first, t0)
		return true
	}
	var send []*translate.Resource
	for _, r := range rs {
		if b := st.base.Get(typeURL, r.Name); b == nil || b.Version != r.Version {
			send = append(send, r)
		}
	}
	if len(send) == 0 {
		st.sotw = w
		return false
	}
	s.sendSotw(c, st, w, send, nextVersion(st.versionSent, send), view, key, first, t0)
	return true
}

// sendSotw hands a per-resource (EDS, RDS) response to the stream; c.mu
// must be held.
func (s *Server) sendSotw(c *conn, st *typeState, w *sotwWatch, send []*translate.Resource, version string, view *translate.View, key string, first, t0 time.Time) {
	typeURL := w.req.GetTypeUrl()
	anys := make([]*anypb.Any, len(send))
	size := 0
	for i, r := range send {
		anys[i] = r.Any
		size += r.Size()
	}
	st.sotw = nil
	deliver(c, w.ch, cache.Response(&sotwResponse{s: s, req: w.req, version: version, resources: anys,
		meta: &sent{typeURL: typeURL, version: version, size: size, first: first, subKey: key, subNames: w.req.GetResourceNames(), base: view, count: len(send)}}))
	s.metrics.pushTime.WithLabelValues(translate.ShortType(typeURL)).Observe(time.Since(t0).Seconds())
}

// nextVersion derives the version after a partial response from the
// version before it and what changed.
func nextVersion(prev string, changed []*translate.Resource) string {
	h := xxhash.New()
	h.WriteString(prev)
	for _, r := range changed {
		h.WriteString(r.Name)
		h.WriteString("\x00")
		h.WriteString(r.Version)
		h.WriteString("\x00")
	}
	return hex.EncodeToString(h.Sum(nil))
}

// respondSotwWhole answers a wildcard subscription, or one of a type whose
// every response holds the whole state (CDS, LDS): the proxy lacks
// nothing when the state's version and the names asked for are those last
// sent. No per-resource map is kept for these, which is most of what a
// sidecar would otherwise cost in memory; c.mu must be held.
func (s *Server) respondSotwWhole(c *conn, st *typeState, w *sotwWatch, first time.Time, rs []*translate.Resource, t0 time.Time) bool {
	typeURL := w.req.GetTypeUrl()
	var version string
	if w.sub.IsWildcard() {
		version = st.view.Version(typeURL) // hashed once per shared set
	} else {
		version = versionOf(rs)
	}
	key := subscriptionKey(w.sub)
	if st.sentOnce && version == st.versionSent && key == st.subKey {
		st.sotw = w
		return false
	}
	anys := make([]*anypb.Any, len(rs))
	var names []string
	if !w.sub.IsWildcard() {
		names = make([]string, len(rs))
	}
	size := 0
	for i, r := range rs {
		anys[i] = r.Any
		if names != nil {
			names[i] = r.Name
		}
		size += r.Size()
	}
	st.sotw = nil
	deliver(c, w.ch, cache.Response(&sotwResponse{s: s, req: w.req, version: version, resources: anys,
		meta: &sent{typeURL: typeURL, names: names, version: version, size: size, first: first, subKey: key, whole: true}}))
	s.metrics.pushTime.WithLabelValues(translate.ShortType(typeURL)).Observe(time.Since(t0).Seconds())
	return true
}

// sameSlice reports whether a and b are the very same list.
func sameSlice(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// subscriptionKey summarizes what a subscription asks for. It combines
// the names' hashes in an order-free way, so no sorting is needed.
func subscriptionKey(sub cache.Subscription) string {
	if sub.IsWildcard() {
		return "*"
	}
	var sum, xor uint64
	for n := range sub.SubscribedResources() {
		v := xxhash.Sum64String(n)
		sum += v
		xor ^= v * 0x9e3779b97f4a7c15
	}
	return fmt.Sprintf("%d:%x:%x", len(sub.SubscribedResources()), sum, xor)
}

// respondDelta answers w with the resources whose version the client does
// not have and the names it has that are gone, or parks it; c.mu must be held.
func (s *Server) respondDelta(c *conn, st *typeState, w *deltaWatch, first time.Time, h hint) bool {
	view := s.ensureView(c)
	if view == nil {
		st.delta = w
		return false
	}
	st.view = view
	t0 := time.Now()
	typeURL := w.req.GetTypeUrl()
	if h.only && st.sentOnce {
		return s.respondDeltaPartial(c, st, w, first, h, view, t0)
	}
	// An ACK (no names subscribed or unsubscribed) after the last response
	// was sent from this very view lacks nothing; after a newer push, only
	// what changed between the two views can be missing. Either way the
	// whole subscription need not be walked, for each of a thousand ACKs.
	if st.sentOnce && st.base != nil && len(w.req.GetResourceNamesSubscribe()) == 0 && len(w.req.GetResourceNamesUnsubscribe()) == 0 {
		if st.base == view {
			st.delta = w
			return false
		}
		if names, all := view.Changed(st.base, typeURL, s.ackDiffer()); !all {
			return s.respondDeltaPartial(c, st, w, first, hint{only: true, names: names}, view, t0)
		}
	}
	rs := wanted(view, typeURL, w.sub)
	returned := w.sub.ReturnedResources()
	var res []*discovery.Resource
	var names []string
	size := 0
	next := make(map[string]string, len(rs))
	for _, r := range rs {
		next[r.Name] = r.Version
		if returned[r.Name] != r.Version {
			res = append(res, &discovery.Resource{Name: r.Name, Version: r.Version, Resource: r.Any})
			names = append(names, r.Name)
			size += r.Size()
		}
	}
	var removed []string
	subscribed := w.sub.SubscribedResources()
	for n := range returned {
		if _, ok := next[n]; ok {
			continue
		}
		if _, sub := subscribed[n]; sub || w.sub.IsWildcard() {
			removed = append(removed, n)
		}
	}
	sort.Strings(removed)
	if st.sentOnce && len(res) == 0 && len(removed) == 0 {
		st.delta = w
		return false
	}
	version := versionOf(rs)
	st.delta = nil
	deliver(c, w.ch, cache.DeltaResponse(&deltaResponse{s: s, req: w.req, version: version, resources: res, removed: removed, next: next,
		meta: &sent{typeURL: typeURL, names: names, known: next, version: version, size: size, first: first, base: view}}))
	s.metrics.pushTime.WithLabelValues(translate.ShortType(typeURL)).Observe(time.Since(t0).Seconds())
	return true
}

// hint narrows a push: when only is set, just the named resources may
// have changed since the view the proxy was last answered from.
type hint struct {
	only  bool
	names []string
}

// relevant reports whether any hinted name is covered by the subscription.
func (h hint) relevant(sub cache.Subscription) bool {
	if sub.IsWildcard() {
		return len(h.names) > 0
	}
	subscribed := sub.SubscribedResources()
	for _, n := range h.names {
		if _, ok := subscribed[n]; ok {
			return true
		}
	}
	return false
}

// respondSotwPartial sends, for a push that changed only the hinted names,
// the subscribed ones whose version the proxy does not have (EDS and RDS
// only, which SotW lets a server send in part); c.mu must be held.
func (s *Server) respondSotwPartial(c *conn, st *typeState, w *sotwWatch, first time.Time, h hint, view *translate.View, t0 time.Time) bool {
	typeURL := w.req.GetTypeUrl()
	if st.base == nil {
		// Nothing recorded to compare with: compare in full.
		return s.respondSotw(c, st, w, first, hint{})
	}
	subscribed := w.sub.SubscribedResources()
	var changed []*translate.Resource
	for _, n := range h.names {
		if _, ok := subscribed[n]; !ok {
			continue
		}
		r := view.Get(typeURL, n)
		if r == nil {
			continue // SotW cannot remove an EDS or RDS resource; CDS and LDS do
		}
		if b := st.base.Get(typeURL, n); b == nil || b.Version != r.Version {
			changed = append(changed, r)
		}
	}
	if len(changed) == 0 {
		st.sotw = w
		return false
	}
	// A parked watch has the subscription its last response was sent for.
	s.sendSotw(c, st, w, changed, nextVersion(st.versionSent, changed), view, st.subKey, first, t0)
	return true
}

// respondDeltaPartial is respondDelta for a push that changed only the
// hinted names; c.mu must be held.
func (s *Server) respondDeltaPartial(c *conn, st *typeState, w *deltaWatch, first time.Time, h hint, view *translate.View, t0 time.Time) bool {
	typeURL := w.req.GetTypeUrl()
	returned := w.sub.ReturnedResources()
	subscribed := w.sub.SubscribedResources()
	var res []*discovery.Resource
	var names, removed []string
	size := 0
	for _, n := range h.names {
		if _, ok := subscribed[n]; !ok && !w.sub.IsWildcard() {
			continue
		}
		r := view.Get(typeURL, n)
		switch {
		case r != nil && returned[n] != r.Version:
			res = append(res, &discovery.Resource{Name: n, Version: r.Version, Resource: r.Any})
			names = append(names, n)
			size += r.Size()
		case r == nil:
			if _, had := returned[n]; had {
				removed = append(removed, n)
			}
		}
	}
	if len(res) == 0 && len(removed) == 0 {
		st.delta = w
		return false
	}
	next := maps.Clone(returned)
	for _, r := range res {
		next[r.Name] = r.Version
	}
	for _, n := range removed {
		delete(next, n)
	}
	vh := xxhash.New()
	vh.WriteString(st.versionSent)
	for _, r := range res {
		vh.WriteString(r.Name + "\x00" + r.Version + "\x00")
	}
	for _, n := range removed {
		vh.WriteString(n + "\x00-\x00")
	}
	version := hex.EncodeToString(vh.Sum(nil))
	st.delta = nil
	deliver(c, w.ch, cache.DeltaResponse(&deltaResponse{s: s, req: w.req, version: version, resources: res, removed: removed, next: next,
		meta: &sent{typeURL: typeURL, names: names, known: next, version: version, size: size, first: first, base: view}}))
	s.metrics.pushTime.WithLabelValues(translate.ShortType(typeURL)).Observe(time.Since(t0).Seconds())
	return true
}

// ---- responses ----------------------------------------------------------

type sotwResponse struct {
	s         *Server
	req       *cache.Request
	version   string
	resources []*anypb.Any
	returned  map[string]string
	meta      *sent
}

func (r *sotwResponse) GetDiscoveryResponse() (*discovery.DiscoveryResponse, error) {
	out := &discovery.DiscoveryResponse{
		VersionInfo:  r.version,
		Resources:    r.resources,
		TypeUrl:      r.req.GetTypeUrl(),
		ControlPlane: r.s.controlPlane(),
	}
	r.s.inflight.Store(out, r.meta)
	return out, nil
}
func (r *sotwResponse) GetRequest() *discovery.DiscoveryRequest { return r.req }
func (r *sotwResponse) GetVersion() (string, error)             { return r.version, nil }
func (r *sotwResponse) GetResponseVersion() string              { return r.version }
func (r *sotwResponse) GetReturnedResources() map[string]string { return r.returned }
func (r *sotwResponse) GetContext() context.Context             { return context.Background() }

type deltaResponse struct {
	s         *Server
	req       *cache.DeltaRequest
	version   string
	resources []*discovery.Resource
	removed   []string
	next      map[string]string
	meta      *sent
}

func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discovery.DeltaDiscoveryResponse, error) {
	out := &discovery.DeltaDiscoveryResponse{
		SystemVersionInfo: r.version,
		Resources:         r.resources,
		RemovedResources:  r.removed,
		TypeUrl:           r.req.GetTypeUrl(),
		ControlPlane:      r.s.controlPlane(),
	}
	r.s.inflight.Store(out, r.meta)
	return out, nil
}
func (r *deltaResponse) GetDeltaRequest() *discovery.DeltaDiscoveryRequest { return r.req }
func (r *deltaResponse) GetSystemVersion() (string, error)                 { return r.version, nil }
func (r *deltaResponse) GetResponseVersion() string                        { return r.version }
func (r *deltaResponse) GetNextVersionMap() map[string]string              { return r.next }
func (r *deltaResponse) GetReturnedResources() map[string]string           { return r.next }
func (r *deltaResponse) GetContext() context.Context                       { return context.Background() }

package xds

import (
	"context"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/peer"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/meshd/meshd/pilot/model"
	"github.com/meshd/meshd/pilot/translate"
)

// DebugTypePrefix starts the type URLs of istiod's debug resources.
const DebugTypePrefix = "istio.io/debug/"

// Debug type URLs served over ADS, as istioctl asks for them.
const (
	TypeSyncz      = DebugTypePrefix + "syncz"
	TypeConfigDump = DebugTypePrefix + "config_dump"
)

func isDebugType(t string) bool { return strings.HasPrefix(t, DebugTypePrefix) }

// connKey identifies a stream: SotW and Delta streams are numbered apart.
type connKey struct {
	delta bool
	id    int64
}

// conn is one ADS stream and what pilot knows about it.
type conn struct {
	key         connKey
	ctx         context.Context
	peer        string
	connectedAt time.Time

	mu sync.Mutex
	// proxy is set by the first request; nil for debug-only clients.
	proxy *model.Proxy
	// debugOnly is true for clients (meshctl, istioctl) that only ask for
	// debug types; they are left out of syncz.
	debugOnly bool
	view      *translate.View
	types     map[string]*typeState
}

// typeState is the per-type-URL record of one stream.
type typeState struct {
	// watch is the open (parked) watch, nil while a response is in flight.
	sotw  *sotwWatch
	delta *deltaWatch

	nonceSent, nonceAcked     string
	versionSent, versionAcked string
	lastError                 string
	lastSent, lastAcked       time.Time
	// view is the view this type was last compared against: a push needs
	// to look only at what changed since.
	view *translate.View
	// known is what the client was last sent (name -> version) for types
	// answered resource by resource (EDS, RDS); whole-state responses keep
	// only their names (none for wildcards), subKey and versionSent.
	known  map[string]string
	names  []string
	whole  bool
	subKey string
	// base is, for SotW EDS and RDS, the view whose resources the proxy
	// has for the names it asked for (one shared view, not a map per proxy).
	base *translate.View
	// subNames are the names of the request subKey was computed from, as
	// decoded (pilot's codec shares identical lists between requests, so
	// an ACK naming the same resources carries this very slice).
	subNames []string
	// reqNames are the names of the latest request (for debug dumps).
	reqNames []string
	// sentOnce is true after the first response of this type.
	sentOnce bool
	// pushStart maps an unacknowledged nonce to the time the change that
	// caused it was first seen, for pilot_proxy_convergence_time.
	pushStart map[string]time.Time
}

type sotwWatch struct {
	req *cache.Request
	sub cache.Subscription
	ch  chan cache.Response
}

type deltaWatch struct {
	req *cache.DeltaRequest
	sub cache.Subscription
	ch  chan cache.DeltaResponse
}

func newConn(key connKey, ctx context.Context) *conn {
	c := &conn{key: key, ctx: ctx, connectedAt: time.Now(), types: map[string]*typeState{}}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		c.peer = p.Addr.String()
	}
	return c
}

// state returns the record for a type URL; c.mu must be held.
func (c *conn) state(typeURL string) *typeState {
	s := c.types[typeURL]
	if s == nil {
		s = &typeState{pushStart: map[string]time.Time{}}
		c.types[typeURL] = s
	}
	return s
}

// SyncStatus is istiod's status of one type on one stream.
type SyncStatus string

// The statuses istioctl proxy-status prints.
const (
	Synced  SyncStatus = "SYNCED"
	NotSent SyncStatus = "NOT SENT"
	Stale   SyncStatus = "STALE"
	Error   SyncStatus = "ERROR"
)

func (s *typeState) status() SyncStatus {
	switch {
	case s.lastError != "":
		return Error
	case s.nonceSent == "":
		return NotSent
	case s.nonceAcked == s.nonceSent:
		return Synced
	}
	return Stale
}

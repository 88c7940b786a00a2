package load

import (
	"hash/maphash"
	"slices"
)

// nameSeed hashes resource names for the held-cluster and held-CLA sets:
// 1000 proxies x 1000+ clusters must not keep a million name strings
// alive twice over. A collision (2^-64 per pair) would only miscount one
// proxy's coverage.
var nameSeed = maphash.MakeSeed()

func nameKey(name string) uint64 { return maphash.String(nameSeed, name) }

// facts is what one proxy holds, reduced to what the scenarios judge: which
// mesh services its clusters and load assignments cover, which routes its
// listeners name, and which of those routes carry the marker weight. Both
// the SotW and the Delta stream update it through put/drop events, so
// "converged" means the same for both. Only the stream goroutine touches it.
type facts struct {
	hosts map[string]int // mesh host -> service index (shared, read-only)

	clusters   map[uint64]int32 // held mesh cluster -> service index
	cdsPerHost []uint16         // held clusters per service
	cdsHosts   int              // services with at least one held cluster

	claims     map[uint64]int32 // held mesh load assignment -> service index
	edsPerHost []uint16
	edsHosts   int

	listeners map[string][]string // held listener -> route names it uses
	routes    map[string]bool     // held route -> carries the marker weight
	markers   int                 // held routes carrying the marker weight
}

func newFacts(hosts map[string]int) *facts {
	return &facts{
		hosts:      hosts,
		clusters:   map[uint64]int32{},
		cdsPerHost: make([]uint16, len(hosts)),
		claims:     map[uint64]int32{},
		edsPerHost: make([]uint16, len(hosts)),
		listeners:  map[string][]string{},
		routes:     map[string]bool{},
	}
}

// meshHost parses Istio's "outbound|port|subset|host" cluster name and
// reports the mesh service it names.
func (f *facts) meshHost(name string) (int, bool) {
	// Split by hand: this runs for every cluster of every response.
	var cut [3]int
	n := 0
	for i := 0; i < len(name) && n < 3; i++ {
		if name[i] == '|' {
			cut[n] = i
			n++
		}
	}
	if n < 3 || name[:cut[0]] != "outbound" {
		return 0, false
	}
	host := name[cut[2]+1:]
	for i := 0; i < len(host); i++ {
		if host[i] == '|' {
			return 0, false
		}
	}
	i, ok := f.hosts[host]
	return i, ok
}

// putKeyed adds name to a held set keyed by hash, counting per service;
// it reports whether the name is new.
func putKeyed(set map[uint64]int32, per []uint16, covered *int, host int, name string) bool {
	k := nameKey(name)
	if _, ok := set[k]; ok {
		return false
	}
	set[k] = int32(host)
	if per[host] == 0 {
		*covered++
	}
	per[host]++
	return true
}

func dropKeyed(set map[uint64]int32, per []uint16, covered *int, name string) bool {
	k := nameKey(name)
	host, ok := set[k]
	if !ok {
		return false
	}
	delete(set, k)
	per[host]--
	if per[host] == 0 {
		*covered--
	}
	return true
}

// putCluster records a held cluster; it reports whether the cluster is a
// mesh cluster not held before (a Delta client then subscribes to its EDS).
func (f *facts) putCluster(name string) bool {
	h, ok := f.meshHost(name)
	return ok && putKeyed(f.clusters, f.cdsPerHost, &f.cdsHosts, h, name)
}

// dropCluster forgets a cluster; it reports whether it was held.
func (f *facts) dropCluster(name string) bool {
	return dropKeyed(f.clusters, f.cdsPerHost, &f.cdsHosts, name)
}

// clearClusters empties the cluster set: a SotW CDS response replaces it.
func (f *facts) clearClusters() {
	clear(f.clusters)
	clear(f.cdsPerHost)
	f.cdsHosts = 0
}

func (f *facts) putCLA(name string) {
	if h, ok := f.meshHost(name); ok {
		putKeyed(f.claims, f.edsPerHost, &f.edsHosts, h, name)
	}
}

func (f *facts) dropCLA(name string) { dropKeyed(f.claims, f.edsPerHost, &f.edsHosts, name) }

func (f *facts) holdsCLA(name string) bool {
	_, ok := f.claims[nameKey(name)]
	return ok
}

// keepCLAs drops the load assignments not in names: a SotW client that
// stops asking for a cluster's endpoints no longer holds them.
func (f *facts) keepCLAs(names []string) {
	keep := make(map[uint64]bool, len(names))
	for _, n := range names {
		keep[nameKey(n)] = true
	}
	for k, h := range f.claims {
		if !keep[k] {
			delete(f.claims, k)
			f.edsPerHost[h]--
			if f.edsPerHost[h] == 0 {
				f.edsHosts--
			}
		}
	}
}

func (f *facts) putListener(name string, routes []string) { f.listeners[name] = routes }
func (f *facts) dropListener(name string)                 { delete(f.listeners, name) }

// putRoute records a held route and whether it carries the marker weight.
func (f *facts) putRoute(name string, marker bool) {
	if old, ok := f.routes[name]; ok && old {
		f.markers--
	}
	f.routes[name] = marker
	if marker {
		f.markers++
	}
}

func (f *facts) dropRoute(name string) {
	if m, ok := f.routes[name]; ok {
		if m {
			f.markers--
		}
		delete(f.routes, name)
	}
}

// keepRoutes drops the routes not in names (no listener uses them any more).
func (f *facts) keepRoutes(names []string) {
	for r := range f.routes {
		if _, ok := slices.BinarySearch(names, r); !ok {
			f.dropRoute(r)
		}
	}
}

// routeNames is the sorted union of the routes the held listeners use:
// the RDS names a client subscribes to.
func (f *facts) routeNames() []string {
	seen := map[string]bool{}
	var out []string
	for _, rs := range f.listeners {
		for _, r := range rs {
			if !seen[r] {
				seen[r] = true
				out = append(out, r)
			}
		}
	}
	slices.Sort(out)
	return out
}

// routesHeld reports whether every route a held listener uses is held.
func (f *facts) routesHeld() bool {
	for _, rs := range f.listeners {
		for _, r := range rs {
			if _, ok := f.routes[r]; !ok {
				return false
			}
		}
	}
	return true
}

// sidecarFull reports whether a sidecar holds a full config: clusters and
// load assignments for every mesh service, and every route its listeners
// use (lds says it ACKed listeners at all).
func (f *facts) sidecarFull(lds bool) bool {
	n := len(f.hosts)
	return lds && f.cdsHosts >= n && f.edsHosts >= n && f.routesHeld()
}

package graph

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// DefaultWindow is the window of /api/graph when none is asked for.
const DefaultWindow = 5 * time.Minute

//go:embed ui/graph.html
var page []byte

// pageCSP forbids the page any origin but meshd's own: it is inline,
// fetches only /api/graph, and must work with no internet at all.
const pageCSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:"

// Routes serves /api/graph and /ui/graph on mux.
func (g *Graph) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/graph", g.serveAPI)
	mux.HandleFunc("GET /ui/graph", serveUI)
}

// serveAPI answers GET /api/graph?window=5m[&namespace=NS]: the graph over
// the window, restricted to edges touching NS when given.
func (g *Graph) serveAPI(w http.ResponseWriter, r *http.Request) {
	window := DefaultWindow
	if v := r.URL.Query().Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < g.opts.Slot || d > g.opts.MaxWindow {
			http.Error(w, fmt.Sprintf("window: want a duration from %s to %s (like 5m), got %q", g.opts.Slot, g.opts.MaxWindow, v), http.StatusBadRequest)
			return
		}
		window = d
	}
	res := g.Query(window)
	if ns := r.URL.Query().Get("namespace"); ns != "" {
		res = res.inNamespace(ns)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	_ = enc.Encode(res)
}

// inNamespace keeps the edges with an end in ns, and their nodes.
func (r Result) inNamespace(ns string) Result {
	keep := map[string]bool{}
	ends := map[string]string{}
	for _, n := range r.Nodes {
		ends[n.ID] = n.Namespace
	}
	edges := []Edge{}
	for _, e := range r.Edges {
		if ends[e.Source] == ns || ends[e.Target] == ns {
			edges = append(edges, e)
			keep[e.Source], keep[e.Target] = true, true
		}
	}
	nodes := []Node{}
	for _, n := range r.Nodes {
		if keep[n.ID] {
			nodes = append(nodes, n)
		}
	}
	r.Nodes, r.Edges = nodes, edges
	return r
}

func serveUI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(page)
}

package xds_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshd/meshd/pilot/translate"
	"github.com/meshd/meshd/pilot/xds"
)

func get(t *testing.T, mux *http.ServeMux, url string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, url, nil))
	return rec.Code, rec.Body.String()
}

func TestDebugHTTP(t *testing.T) {
	e := newEnv(t)
	mux := http.NewServeMux()
	e.srv.Routes(mux)
	c := e.sotw(node(sidecarID, map[string]any{"ISTIO_VERSION": "1.28.0"}))
	c.request(translate.ClusterType)
	c.ack(c.expect(translate.ClusterType))
	eventually(t, "cds SYNCED", func() bool { return e.status("client-1.default", "cds") == xds.Synced })

	code, body := get(t, mux, "/debug/syncz")
	var rows []xds.SyncStatusJSON
	if err := json.Unmarshal([]byte(body), &rows); code != 200 || err != nil || len(rows) != 1 {
		t.Fatalf("syncz %d %v:\n%s", code, err, body)
	}
	if r := rows[0]; r.ProxyID != "client-1.default" || r.Status["cds"] != xds.Synced || r.Status["lds"] != xds.NotSent || r.ProxyVersion != "1.28.0" {
		t.Fatalf("syncz row %+v", r)
	}

	code, body = get(t, mux, "/debug/config_dump?proxyID=client-1.default")
	if code != 200 || !strings.Contains(body, "ClustersConfigDump") || !strings.Contains(body, echoCluster) {
		t.Fatalf("config_dump %d:\n%s", code, body)
	}
	if code, _ := get(t, mux, "/debug/config_dump?proxyID=nobody.default"); code != http.StatusNotFound {
		t.Fatalf("config_dump of an unknown proxy: %d, want 404", code)
	}
	if code, _ := get(t, mux, "/debug/config_dump"); code != http.StatusBadRequest {
		t.Fatalf("config_dump without proxyID: %d, want 400", code)
	}

	code, body = get(t, mux, "/debug/registryz")
	var reg []map[string]any
	if err := json.Unmarshal([]byte(body), &reg); code != 200 || err != nil || len(reg) != 1 {
		t.Fatalf("registryz %d %v:\n%s", code, err, body)
	}
	for _, k := range []string{"hostname", "namespace", "name", "ports", "endpoints"} {
		if _, ok := reg[0][k]; !ok {
			t.Fatalf("registryz entry lacks %q: %v", k, reg[0])
		}
	}
	ep := reg[0]["endpoints"].([]any)[0].(map[string]any)
	if ep["address"] != "192.0.2.1" || ep["ready"] != true || ep["port"] != 7070.0 {
		t.Fatalf("registryz endpoint %v", ep)
	}
	for ns, want := range map[string]int{"default": 1, "elsewhere": 0} {
		code, body = get(t, mux, "/debug/registryz?namespace="+ns)
		if err := json.Unmarshal([]byte(body), &reg); code != 200 || err != nil || len(reg) != want {
			t.Fatalf("registryz?namespace=%s: %d %v, want %d services:\n%s", ns, code, err, want, body)
		}
	}
}

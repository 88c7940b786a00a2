package spiffe

import "testing"

func TestParseRoundTrip(t *testing.T) {
	id := ID{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "bookinfo-productpage"}
	got, err := Parse(id.String())
	if err != nil {
		t.Fatal(err)
	}
	if got != id {
		t.Fatalf("Parse(%q) = %+v", id.String(), got)
	}
	if id.URL().String() != id.String() {
		t.Fatalf("URL() = %q, String() = %q", id.URL(), id.String())
	}
}

func TestParseRefuses(t *testing.T) {
	for name, s := range map[string]string{
		"scheme":        "https://cluster.local/ns/a/sa/b",
		"short path":    "spiffe://cluster.local/ns/a",
		"wrong keyword": "spiffe://cluster.local/namespace/a/sa/b",
		"extra segment": "spiffe://cluster.local/ns/a/sa/b/c",
		"empty ns":      "spiffe://cluster.local/ns//sa/b",
		"no domain":     "spiffe:///ns/a/sa/b",
		"query":         "spiffe://cluster.local/ns/a/sa/b?x=1",
		"port":          "spiffe://cluster.local:80/ns/a/sa/b",
	} {
		if id, err := Parse(s); err == nil {
			t.Errorf("%s: Parse(%q) = %+v, want error", name, s, id)
		}
	}
}

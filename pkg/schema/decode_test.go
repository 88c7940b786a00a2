package schema

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

func TestDecode(t *testing.T) {
	tests := map[string]struct {
		doc     string
		kind    string
		wantErr []string // substrings, all must appear
	}{
		"virtual service": {
			doc: `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - timeout: 1500ms
    route:
    - destination: {host: reviews, subset: v1}
      weight: 80
`,
			kind: "VirtualService",
		},
		"older api version decodes to the same kind": {
			doc:  "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews}\n",
			kind: "DestinationRule",
		},
		"service": {
			doc:  "apiVersion: v1\nkind: Service\nmetadata: {name: r}\nspec: {ports: [{name: http, port: 9080}]}\n",
			kind: "Service",
		},
		"misspelled spec field names its path": {
			doc: `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      wieght: 80
`,
			wantErr: []string{"spec.http[0].route[0].wieght: unknown field"},
		},
		"every error at once": {
			doc:     "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec: {hostz: [a], http: [{timeout: 10}]}\n",
			wantErr: []string{"spec.hostz: unknown field", "spec.http[0].timeout: expected a duration string"},
		},
		"bad duration": {
			doc:     "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: a, trafficPolicy: {outlierDetection: {interval: fast}}}\n",
			wantErr: []string{`spec.trafficPolicy.outlierDetection.interval: invalid duration "fast"`},
		},
		"bad enum": {
			doc:     "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: a, trafficPolicy: {loadBalancer: {simple: FASTEST}}}\n",
			wantErr: []string{`spec.trafficPolicy.loadBalancer.simple: unknown value "FASTEST"`},
		},
		"wrong scalar type": {
			doc:     "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}, weight: heavy}]}]}\n",
			wantErr: []string{"spec.http[0].route[0].weight: expected an integer"},
		},
		"unknown metadata field": {
			doc:     "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: r, lables: {a: b}}\nspec: {}\n",
			wantErr: []string{`metadata: unknown field "lables"`},
		},
		"unknown top-level field": {
			doc:     "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: r}\nspecs: {}\n",
			wantErr: []string{`unknown field "specs"`},
		},
		"unknown core field names its path": {
			doc:     "apiVersion: v1\nkind: Service\nmetadata: {name: r}\nspec: {ports: [{name: http, prot: 9080}]}\n",
			wantErr: []string{`unknown field "spec.ports[0].prot"`},
		},
		"core type error names the field": {
			doc:     "apiVersion: v1\nkind: Service\nmetadata: {name: r}\nspec: {ports: [{name: http, port: web}]}\n",
			wantErr: []string{"spec.ports.port"},
		},
		"unknown kind": {
			doc:     "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: r}\n",
			wantErr: []string{"unknown kind apps/v1 Deployment"},
		},
		"no kind": {
			doc:     "metadata: {name: r}\n",
			wantErr: []string{"apiVersion and kind are required"},
		},
		"not yaml": {
			doc:     "kind: [\n",
			wantErr: []string{"not valid YAML"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			obj, kind, err := Decode([]byte(tt.doc))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("Decode succeeded, want error containing %q", tt.wantErr)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if kind.Name != tt.kind || obj.GetObjectKind().GroupVersionKind().Kind != tt.kind {
				t.Fatalf("kind = %s (%v), want %s", kind.Name, obj.GetObjectKind().GroupVersionKind(), tt.kind)
			}
		})
	}
}

func TestDecodeKeepsIstioMeaning(t *testing.T) {
	obj, _, err := Decode([]byte(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - timeout: 5m
    fault: {delay: {fixedDelay: 7s, percentage: {value: 50}}}
    route: [{destination: {host: reviews, subset: v2}, weight: 30}]
`))
	if err != nil {
		t.Fatal(err)
	}
	vs := obj.(*networkingv1.VirtualService)
	r := vs.Spec.Http[0]
	if r.Timeout.AsDuration().Minutes() != 5 || r.Fault.Delay.GetFixedDelay().AsDuration().Seconds() != 7 ||
		r.Fault.Delay.Percentage.Value != 50 || r.Route[0].Weight != 30 || r.Route[0].Destination.Subset != "v2" {
		t.Fatalf("decoded spec lost meaning: %v", r)
	}
	if vs.Namespace != "shop" || vs.APIVersion != "networking.istio.io/v1" {
		t.Fatalf("metadata: %s/%s %s", vs.Namespace, vs.Name, vs.APIVersion)
	}
	svc, _, err := Decode([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: r}\nspec: {ports: [{name: http, port: 9080}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if svc.(*corev1.Service).Spec.Ports[0].Port != 9080 {
		t.Fatal("service port lost")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: [a], http: [{timeout: 1s}]}\n"))
	f.Add([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: r}\nspec: {ports: [{port: 1}]}\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		obj, _, err := Decode(doc)
		if err == nil && obj == nil {
			t.Fatal("nil object without error")
		}
	})
}

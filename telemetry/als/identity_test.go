package als

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestWorkloadName(t *testing.T) {
	owned := func(kind, name string, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Name: name + "-xyz12", Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{Kind: kind, Name: name, Controller: ptr.To(true)}},
		}}
	}
	tests := map[string]struct {
		pod  *corev1.Pod
		want string
	}{
		"deployment":           {owned("ReplicaSet", "reviews-v1-7d9f8c6b5", map[string]string{"pod-template-hash": "7d9f8c6b5"}), "reviews-v1"},
		"bare replicaset":      {owned("ReplicaSet", "reviews-v1", nil), "reviews-v1"},
		"statefulset":          {owned("StatefulSet", "mysql", nil), "mysql"},
		"cronjob":              {owned("Job", "backup-28930560", nil), "backup"},
		"job":                  {owned("Job", "migrate", nil), "migrate"},
		"bare pod":             {&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "debug"}}, "debug"},
		"non-controller owner": {&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", OwnerReferences: []metav1.OwnerReference{{Kind: "Node", Name: "n1"}}}}, "p"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := workloadName(tc.pod); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestServiceByHost(t *testing.T) {
	r := &resolver{store: bookinfoStore(t), domain: DefaultClusterDomain, clusterID: DefaultClusterID}
	tests := map[string]struct {
		host, ns string
		want     string
	}{
		"fqdn":                 {"reviews.default.svc.cluster.local", "", "reviews.default.svc.cluster.local reviews default"},
		"fqdn with port":       {"reviews.default.svc.cluster.local:9080", "", "reviews.default.svc.cluster.local reviews default"},
		"name.namespace":       {"ratings.default", "", "ratings.default.svc.cluster.local ratings default"},
		"name.namespace.svc":   {"ratings.default.svc", "", "ratings.default.svc.cluster.local ratings default"},
		"short name":           {"details:9080", "default", "details.default.svc.cluster.local details default"},
		"short name elsewhere": {"details", "other", ""},
		"an IP":                {"192.0.2.12:9080", "default", ""},
		"outside the mesh":     {"example.com", "default", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := ""
			if s, ok := r.serviceByHost(tc.host, tc.ns); ok {
				got = s.Host + " " + s.Name + " " + s.Namespace
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

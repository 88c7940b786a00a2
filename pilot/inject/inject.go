// Package inject is the sidecar injector: the mutating admission webhook
// (/inject on the webhook port, as istiod's) that adds Istio's proxy to the
// pods of namespaces labelled istio-injection=enabled (the
// MutatingWebhookConfiguration selects them) and rewrites their HTTP, TCP
// and gRPC probes to go through the proxy's agent, which still runs the
// application's own check.
package inject

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// The names and ports Istio's injection template uses: pilot-agent and
// tools like istioctl look for them.
const (
	ProxyContainer = "istio-proxy"
	InitContainer  = "istio-init"
	// AgentPort is pilot-agent's status port, which serves the rewritten
	// probes (/app-health/CONTAINER/readyz|livez|startupz).
	AgentPort = 15020
	// ReadyPort serves the proxy's own readiness (/healthz/ready).
	ReadyPort = 15021
	proxyUID  = 1337

	injectKey  = "sidecar.istio.io/inject"
	statusKey  = "sidecar.istio.io/status"
	probersEnv = "ISTIO_KUBE_APP_PROBERS"
)

// Options configure what is injected.
type Options struct {
	// ProxyImage is Istio's proxy image (pilot-agent and Envoy).
	ProxyImage string
	// DiscoveryAddress is where proxies reach meshd for xDS and
	// certificates (istiod.NAMESPACE.svc:15012).
	DiscoveryAddress string
	ClusterID        string
	TrustDomain      string
}

// Decision says whether a pod gets a proxy, and why not.
type Decision struct {
	Inject bool
	Reason string // when not injected
}

// Decide applies the pod-level rules the webhook configuration's
// selectors cannot: an explicit opt-out, host networking, a pod injected
// already.
func Decide(pod *corev1.Pod) Decision {
	for _, m := range []map[string]string{pod.Labels, pod.Annotations} {
		if v, ok := m[injectKey]; ok && v == "false" {
			return Decision{Reason: injectKey + "=false"}
		}
	}
	switch {
	case pod.Spec.HostNetwork:
		return Decision{Reason: "host network"}
	case slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == ProxyContainer }):
		return Decision{Reason: "already injected"}
	}
	return Decision{Inject: true}
}

// Mutate returns pod with the proxy injected: the istio-init and
// istio-proxy containers, their volumes, rewritten probes, and Istio's
// labels and annotations. pod is not changed.
func Mutate(pod *corev1.Pod, o Options) (*corev1.Pod, error) {
	out := pod.DeepCopy()
	apps := make([]string, 0, len(out.Spec.Containers))
	var ports []corev1.ContainerPort
	probers := map[string]prober{}
	for i := range out.Spec.Containers {
		c := &out.Spec.Containers[i]
		apps = append(apps, c.Name)
		ports = append(ports, c.Ports...)
		for _, pr := range []struct {
			kind  string
			probe *corev1.Probe
		}{{"readyz", c.ReadinessProbe}, {"livez", c.LivenessProbe}, {"startupz", c.StartupProbe}} {
			if pr.probe == nil {
				continue
			}
			path := "/app-health/" + c.Name + "/" + pr.kind
			p, ok, err := agentProber(c, pr.probe)
			if err != nil {
				return nil, fmt.Errorf("container %s %s probe: %w", c.Name, strings.TrimSuffix(pr.kind, "z"), err)
			}
			if !ok {
				continue // exec probes run in the container, untouched
			}
			probers[path] = p
			pr.probe.ProbeHandler = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromInt32(AgentPort), Scheme: corev1.URISchemeHTTP,
			}}
		}
	}
	env, err := proxyEnv(o, apps, ports, probers)
	if err != nil {
		return nil, err
	}
	resources := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	out.Spec.InitContainers = append(out.Spec.InitContainers, corev1.Container{
		Name:  InitContainer,
		Image: o.ProxyImage,
		// Outbound traffic to 15001, inbound to 15006, except the proxy's
		// own (uid 1337) and the agent's and Envoy's ports.
		Args: []string{"istio-iptables", "-p", "15001", "-z", "15006", "-u", fmt.Sprint(proxyUID), "-m", "REDIRECT",
			"-i", "*", "-x", "", "-b", "*", "-d", fmt.Sprintf("15090,%d,%d", ReadyPort, AgentPort), "--log_output_level=default:info"},
		Resources: resources,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false), Privileged: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(false),
			RunAsUser: ptr.To[int64](0), RunAsGroup: ptr.To[int64](0), RunAsNonRoot: ptr.To(false),
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
		},
	})
	out.Spec.Containers = append(out.Spec.Containers, corev1.Container{
		Name:  ProxyContainer,
		Image: o.ProxyImage,
		Args: []string{"proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
			"--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"},
		Ports: []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090, Protocol: corev1.ProtocolTCP}},
		Env:   env,
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(ReadyPort)}},
			InitialDelaySeconds: 0, PeriodSeconds: 15, TimeoutSeconds: 3, FailureThreshold: 4,
		},
		StartupProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(ReadyPort)}},
			PeriodSeconds: 1, TimeoutSeconds: 3, FailureThreshold: 600,
		},
		Resources: resources,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false), Privileged: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
			RunAsUser: ptr.To[int64](proxyUID), RunAsGroup: ptr.To[int64](proxyUID), RunAsNonRoot: ptr.To(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "workload-socket", MountPath: "/var/run/secrets/workload-spiffe-uds"},
			{Name: "credential-socket", MountPath: "/var/run/secrets/credential-uds"},
			{Name: "workload-certs", MountPath: "/var/run/secrets/workload-spiffe-credentials"},
			{Name: "istiod-ca-cert", MountPath: "/var/run/secrets/istio"},
			{Name: "istio-data", MountPath: "/var/lib/istio/data"},
			{Name: "istio-envoy", MountPath: "/etc/istio/proxy"},
			{Name: "istio-token", MountPath: "/var/run/secrets/tokens"},
			{Name: "istio-podinfo", MountPath: "/etc/istio/pod"},
		},
	})
	out.Spec.Volumes = append(out.Spec.Volumes, proxyVolumes()...)

	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels["security.istio.io/tlsMode"] = "istio"
	if _, ok := out.Labels["service.istio.io/canonical-name"]; !ok {
		out.Labels["service.istio.io/canonical-name"] = canonicalName(pod)
	}
	if _, ok := out.Labels["service.istio.io/canonical-revision"]; !ok {
		out.Labels["service.istio.io/canonical-revision"] = firstOf(pod.Labels, "latest", "service.istio.io/canonical-revision", "app.kubernetes.io/version", "version")
	}
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	status, _ := json.Marshal(map[string]any{
		"initContainers": []string{InitContainer}, "containers": []string{ProxyContainer},
		"volumes": volumeNames(), "imagePullSecrets": nil, "revision": "default",
	})
	out.Annotations[statusKey] = string(status)
	out.Annotations["kubectl.kubernetes.io/default-container"] = apps[0]
	for k, v := range map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": fmt.Sprint(AgentPort), "prometheus.io/path": "/stats/prometheus"} {
		if _, ok := out.Annotations[k]; !ok {
			out.Annotations[k] = v
		}
	}
	return out, nil
}

// prober is one entry of ISTIO_KUBE_APP_PROBERS: the application's own
// check, which pilot-agent runs when the kubelet calls the rewritten path.
type prober struct {
	HTTPGet        *corev1.HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket      *corev1.TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC           *corev1.GRPCAction      `json:"grpc,omitempty"`
	TimeoutSeconds int32                   `json:"timeoutSeconds,omitempty"`
}

// agentProber turns a probe into the check pilot-agent runs on its
// behalf, with a named port resolved to the container's number; ok is
// false for probes the agent does not run (exec).
func agentProber(c *corev1.Container, p *corev1.Probe) (prober, bool, error) {
	out := prober{TimeoutSeconds: p.TimeoutSeconds}
	switch {
	case p.HTTPGet != nil:
		h := p.HTTPGet.DeepCopy()
		port, err := resolvePort(c, h.Port)
		if err != nil {
			return out, false, err
		}
		h.Port = port
		out.HTTPGet = h
	case p.TCPSocket != nil:
		t := p.TCPSocket.DeepCopy()
		port, err := resolvePort(c, t.Port)
		if err != nil {
			return out, false, err
		}
		t.Port = port
		out.TCPSocket = t
	case p.GRPC != nil:
		out.GRPC = p.GRPC.DeepCopy()
	default:
		return out, false, nil
	}
	return out, true, nil
}

func resolvePort(c *corev1.Container, port intstr.IntOrString) (intstr.IntOrString, error) {
	if port.Type == intstr.Int {
		return port, nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return intstr.FromInt32(p.ContainerPort), nil
		}
	}
	return port, fmt.Errorf("port %q is not a named port of the container", port.StrVal)
}

func proxyEnv(o Options, apps []string, ports []corev1.ContainerPort, probers map[string]prober) ([]corev1.EnvVar, error) {
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
	}
	limit := func(name string, r corev1.ResourceName) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: ProxyContainer, Resource: "limits." + string(r)}}}
	}
	podPorts, err := json.Marshal(ports)
	if err != nil {
		return nil, err
	}
	proxyConfig, err := json.Marshal(map[string]string{"discoveryAddress": o.DiscoveryAddress})
	if err != nil {
		return nil, err
	}
	env := []corev1.EnvVar{
		{Name: "PILOT_CERT_PROVIDER", Value: "istiod"},
		{Name: "CA_ADDR", Value: o.DiscoveryAddress},
		field("POD_NAME", "metadata.name"),
		field("POD_NAMESPACE", "metadata.namespace"),
		field("INSTANCE_IP", "status.podIP"),
		field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		field("HOST_IP", "status.hostIP"),
		field("ISTIO_META_NODE_NAME", "spec.nodeName"),
		limit("ISTIO_CPU_LIMIT", corev1.ResourceCPU),
		limit("GOMEMLIMIT", corev1.ResourceMemory),
		limit("GOMAXPROCS", corev1.ResourceCPU),
		{Name: "PROXY_CONFIG", Value: string(proxyConfig)},
		{Name: "ISTIO_META_POD_PORTS", Value: string(podPorts)},
		{Name: "ISTIO_META_APP_CONTAINERS", Value: strings.Join(apps, ",")},
		{Name: "ISTIO_META_CLUSTER_ID", Value: o.ClusterID},
		{Name: "ISTIO_META_INTERCEPTION_MODE", Value: "REDIRECT"},
		{Name: "ISTIO_META_MESH_ID", Value: o.TrustDomain},
		{Name: "TRUST_DOMAIN", Value: o.TrustDomain},
	}
	if len(probers) > 0 {
		b, err := json.Marshal(probers) // keys sorted: a pod always gets the same patch
		if err != nil {
			return nil, err
		}
		env = append(env, corev1.EnvVar{Name: probersEnv, Value: string(b)})
	}
	return env, nil
}

func proxyVolumes() []corev1.Volume {
	empty := func(name string, medium corev1.StorageMedium) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: medium}}}
	}
	return []corev1.Volume{
		empty("workload-socket", ""),
		empty("credential-socket", ""),
		empty("workload-certs", ""),
		empty("istio-envoy", corev1.StorageMediumMemory),
		empty("istio-data", ""),
		{Name: "istio-podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
		}}}},
		// The token the agent presents to the CA: audience istio-ca.
		{Name: "istio-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
			ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "istio-ca", ExpirationSeconds: ptr.To[int64](43200), Path: "istio-token"},
		}}}}},
		{Name: "istiod-ca-cert", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "istio-ca-root-cert"},
		}}},
	}
}

func volumeNames() []string {
	var names []string
	for _, v := range proxyVolumes() {
		names = append(names, v.Name)
	}
	return names
}

// canonicalName is the workload's name for telemetry: its app label, as
// Istio picks it, else the pod's name without its generated suffix.
func canonicalName(pod *corev1.Pod) string {
	if n := firstOf(pod.Labels, "", "app.kubernetes.io/name", "app"); n != "" {
		return n
	}
	if pod.GenerateName != "" {
		return strings.TrimSuffix(pod.GenerateName, "-")
	}
	return pod.Name
}

func firstOf(m map[string]string, def string, keys ...string) string {
	for _, k := range keys {
		if v := m[k]; v != "" {
			return v
		}
	}
	return def
}

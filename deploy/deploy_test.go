// Package deploy holds the Kubernetes manifests, the Helm chart, the
// container image definition and the Collector configuration; its test
// checks them with the real helm CLI and the Kubernetes API types.
package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

const chart = "helm/porttrace"

// Capabilities is the DaemonSet's and the systemd unit's set.
var Capabilities = []corev1.Capability{"BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"}

// decode decodes every document of a multi-document YAML stream strictly
// (an unknown or misspelt field is an error) into the API type of its
// kind, and returns them.
func decode(t *testing.T, stream []byte) []any {
	t.Helper()
	var out []any
	for _, doc := range bytes.Split(stream, []byte("\n---")) {
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("%v:\n%s", err, doc)
		}
		if string(j) == "null" {
			continue
		}
		var meta struct{ APIVersion, Kind string }
		json.Unmarshal(j, &meta)
		var obj any
		switch meta.APIVersion + " " + meta.Kind {
		case "v1 Namespace":
			obj = &corev1.Namespace{}
		case "v1 ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "v1 Service":
			obj = &corev1.Service{}
		case "apps/v1 DaemonSet":
			obj = &appsv1.DaemonSet{}
		case "monitoring.coreos.com/v1 ServiceMonitor":
			obj = &monitoringv1.ServiceMonitor{}
		case "monitoring.coreos.com/v1 PodMonitor":
			obj = &monitoringv1.PodMonitor{}
		case "networking.k8s.io/v1 NetworkPolicy":
			obj = &networkingv1.NetworkPolicy{}
		default:
			t.Fatalf("unexpected object %s %s", meta.APIVersion, meta.Kind)
		}
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.DisallowUnknownFields()
		if err := dec.Decode(obj); err != nil {
			t.Fatalf("%s %s: %v\n%s", meta.APIVersion, meta.Kind, err, doc)
		}
		out = append(out, obj)
	}
	return out
}

func helm(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(testnet.RequireTool(t, "helm"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func one[T any](t *testing.T, objs []any) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T, want 1", len(found), zero)
	}
	return found[0]
}

// TestChart: helm lint, and helm template with the default values and
// with the options set, each object decoded strictly; the DaemonSet is
// what porttrace needs on a node.
func TestChart(t *testing.T) {
	helm(t, "lint", "--strict", chart)
	objs := decode(t, helm(t, "template", "porttrace", chart, "--namespace", "porttrace"))
	ds := one[*appsv1.DaemonSet](t, objs)
	checkDaemonSet(t, ds, "/run/containerd/containerd.sock")
	if c := ds.Spec.Template.Spec.Containers[0]; slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--otlp") }) {
		t.Errorf("OTLP on by default: %v", c.Args)
	}
	svc := one[*corev1.Service](t, objs)
	if svc.Spec.ClusterIP != "None" || svc.Spec.Ports[0].Port != 9464 {
		t.Errorf("service %+v: want headless on 9464", svc.Spec)
	}

	objs = decode(t, helm(t, "template", "porttrace", chart, "--namespace", "obs",
		"--set", "serviceMonitor.enabled=true,metricsPort=9500,criSocket=/run/crio/crio.sock,otlp.endpoint=http://otel-collector:4318,image.tag=v9",
		"--set", "nodeSelector.pool=edge"))
	ds = one[*appsv1.DaemonSet](t, objs)
	checkDaemonSet(t, ds, "/run/crio/crio.sock")
	c := ds.Spec.Template.Spec.Containers[0]
	for _, want := range []string{"--metrics-addr=:9500", "--otlp-endpoint=http://otel-collector:4318", "--cri-socket=/run/crio/crio.sock"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v lack %s", c.Args, want)
		}
	}
	if c.Image != "ghcr.io/porttrace/porttrace:v9" || ds.Spec.Template.Spec.NodeSelector["pool"] != "edge" || ds.Namespace != "obs" {
		t.Errorf("image %s, node selector %v, namespace %s", c.Image, ds.Spec.Template.Spec.NodeSelector, ds.Namespace)
	}
	sm := one[*monitoringv1.ServiceMonitor](t, objs)
	if ep := sm.Spec.Endpoints; len(ep) != 1 || ep[0].Port != "metrics" || ep[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v", ep)
	}

	objs = decode(t, helm(t, "template", "porttrace", chart, "--set", "criSocket="))
	c = one[*appsv1.DaemonSet](t, objs).Spec.Template.Spec.Containers[0]
	if !slices.Contains(c.Args, "--cri-socket=none") || len(c.VolumeMounts) != 4 {
		t.Errorf("without a CRI socket: args %v, %d mounts", c.Args, len(c.VolumeMounts))
	}
}

func checkDaemonSet(t *testing.T, ds *appsv1.DaemonSet, socket string) {
	t.Helper()
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	if !pod.HostPID || pod.HostNetwork {
		t.Errorf("hostPID %v, hostNetwork %v: want the host's processes, the pod's own network", pod.HostPID, pod.HostNetwork)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || !slices.Equal(sc.Capabilities.Add, Capabilities) ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("security context %+v: want unprivileged with %v", sc, Capabilities)
	}
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly {
			t.Errorf("%s is mounted read-write", m.MountPath)
		}
		mounts[m.MountPath] = true
	}
	for _, p := range []string{"/sys/fs/cgroup", "/sys/kernel/btf", "/run/netns", "/sys/kernel/tracing", socket} {
		if !mounts[p] {
			t.Errorf("%s not mounted", p)
		}
	}
	port := c.Ports[0].ContainerPort
	if lp := c.LivenessProbe; lp == nil || lp.HTTPGet == nil || lp.HTTPGet.Path != "/healthz" || lp.HTTPGet.Port.String() != "metrics" {
		t.Errorf("liveness probe %+v: want /healthz on the metrics port", lp)
	}
	if rp := c.ReadinessProbe; rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz" || rp.HTTPGet.Port.String() != "metrics" {
		t.Errorf("readiness probe %+v: want /readyz on the metrics port", rp)
	}
	if !slices.Contains(c.Args, fmt.Sprintf("--metrics-addr=:%d", port)) ||
		ds.Spec.Template.Annotations["prometheus.io/port"] != fmt.Sprint(port) || ds.Spec.Template.Annotations["prometheus.io/scrape"] != "true" {
		t.Errorf("args %v, annotations %v: want /metrics on %d, annotated for scraping", c.Args, ds.Spec.Template.Annotations, port)
	}
	if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("resources %+v: want requests and limits", c.Resources)
	}
	if len(pod.Tolerations) == 0 || pod.Tolerations[0].Operator != corev1.TolerationOpExists {
		t.Errorf("tolerations %+v: want every node", pod.Tolerations)
	}
}

// TestManifests: deploy/kubernetes is the chart rendered with its default
// values (make manifests), and decodes strictly.
func TestManifests(t *testing.T) {
	for file, args := range map[string][]string{
		"porttrace.yaml":      {"template", "porttrace", chart, "--namespace", "porttrace"},
		"servicemonitor.yaml": {"template", "porttrace", chart, "--namespace", "porttrace", "--set", "serviceMonitor.enabled=true", "--show-only", "templates/servicemonitor.yaml"},
	} {
		b, err := os.ReadFile(filepath.Join("kubernetes", file))
		if err != nil {
			t.Fatal(err)
		}
		objs := decode(t, b)
		if !bytes.Contains(b, helm(t, args...)) {
			t.Errorf("kubernetes/%s is not the chart's output: run make manifests", file)
		}
		if file == "porttrace.yaml" {
			one[*corev1.Namespace](t, objs)
			checkDaemonSet(t, one[*appsv1.DaemonSet](t, objs), "/run/containerd/containerd.sock")
		}
	}
}

// TestChartValues: the values fleet users of porttrace's peers expect,
// each rendered where Kubernetes reads it; priorityClassName is empty by
// default; a NetworkPolicy lets in only the peers named, and is refused
// without any.
func TestChartValues(t *testing.T) {
	ds := one[*appsv1.DaemonSet](t, decode(t, helm(t, "template", "porttrace", chart)))
	if p := ds.Spec.Template.Spec.PriorityClassName; p != "" {
		t.Errorf("priorityClassName %q by default, want none", p)
	}
	if u := ds.Spec.UpdateStrategy; u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil || u.RollingUpdate.MaxUnavailable.IntValue() != 1 {
		t.Errorf("update strategy %+v, want rolling, one node at a time", u)
	}
	values := filepath.Join(t.TempDir(), "values.yaml")
	os.WriteFile(values, []byte(`
priorityClassName: system-node-critical
extraEnv:
  - name: OTEL_EXPORTER_OTLP_HEADERS
    valueFrom: {secretKeyRef: {name: otlp-auth, key: headers}}
envFrom: [{secretRef: {name: otlp}}]
extraVolumes: [{name: ca, configMap: {name: ca-bundle}}]
extraVolumeMounts: [{name: ca, mountPath: /etc/porttrace/ca, readOnly: true}]
appArmorProfile: {type: Localhost, localhostProfile: porttrace}
seLinuxOptions: {type: spc_t}
updateStrategy: {type: OnDelete}
podMonitor: {enabled: true, interval: 30s}
networkPolicy:
  enabled: true
  from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
      podSelector: {matchLabels: {app.kubernetes.io/name: prometheus}}
`), 0o644)
	objs := decode(t, helm(t, "template", "porttrace", chart, "--namespace", "porttrace", "-f", values))
	ds = one[*appsv1.DaemonSet](t, objs)
	checkDaemonSet(t, ds, "/run/containerd/containerd.sock")
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e := env["OTEL_EXPORTER_OTLP_HEADERS"]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "otlp-auth" || env["K8S_NODE_NAME"].ValueFrom == nil {
		t.Errorf("env %+v: want the chart's and OTEL_EXPORTER_OTLP_HEADERS from the secret", c.Env)
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "otlp" {
		t.Errorf("envFrom %+v", c.EnvFrom)
	}
	if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == "ca" && v.ConfigMap != nil }) ||
		!slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "ca" && m.MountPath == "/etc/porttrace/ca" }) {
		t.Errorf("volumes %+v, mounts %+v: want the extra CA volume mounted", pod.Volumes, c.VolumeMounts)
	}
	sc := c.SecurityContext
	if sc.AppArmorProfile == nil || sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeLocalhost || *sc.AppArmorProfile.LocalhostProfile != "porttrace" ||
		sc.SELinuxOptions == nil || sc.SELinuxOptions.Type != "spc_t" {
		t.Errorf("security context %+v: want the AppArmor profile and SELinux type given", sc)
	}
	if pod.PriorityClassName != "system-node-critical" || ds.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType {
		t.Errorf("priority class %q, update strategy %+v", pod.PriorityClassName, ds.Spec.UpdateStrategy)
	}
	pm := one[*monitoringv1.PodMonitor](t, objs)
	if ep := pm.Spec.PodMetricsEndpoints; len(ep) != 1 || ep[0].Port == nil || *ep[0].Port != "metrics" || ep[0].Path != "/metrics" || ep[0].Interval != "30s" ||
		!maps.Equal(pm.Spec.Selector.MatchLabels, ds.Spec.Selector.MatchLabels) {
		t.Errorf("PodMonitor %+v: want the DaemonSet's pods' metrics port every 30s", pm.Spec)
	}
	np := one[*networkingv1.NetworkPolicy](t, objs)
	if !maps.Equal(np.Spec.PodSelector.MatchLabels, ds.Spec.Selector.MatchLabels) || !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) ||
		len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 1 || np.Spec.Ingress[0].From[0].NamespaceSelector == nil ||
		len(np.Spec.Ingress[0].Ports) != 1 || np.Spec.Ingress[0].Ports[0].Port.String() != "metrics" {
		t.Errorf("NetworkPolicy %+v: want ingress to the metrics port from the monitoring namespace's Prometheus only", np.Spec)
	}
	out, err := exec.Command(testnet.RequireTool(t, "helm"), "template", "porttrace", chart, "--set", "networkPolicy.enabled=true").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "networkPolicy.from must name who may scrape") {
		t.Errorf("a NetworkPolicy without peers: %v\n%s", err, out)
	}
}

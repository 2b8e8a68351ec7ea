// Package deploy holds the Kubernetes manifests, the Helm chart, the
// container image definition and the Collector configuration; its test
// checks them with the real helm CLI and the Kubernetes API types.
package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/porttrace/porttrace/internal/testnet"
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

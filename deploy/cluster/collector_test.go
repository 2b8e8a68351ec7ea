package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/testkit/otlptest"
)

// collectorListen is where the Collector takes the agents' OTLP/HTTP: the
// CNI bridge's own address (node.sh's ptcni0), which the agent's pod
// reaches through its default route, and nothing outside the node.
const collectorListen = "10.244.77.1:14318"

// startCollector runs the Collector of deploy/collector (built by
// .ci/fleet-deps) on the node with deploy/collector/otel-collector.yaml,
// its k8sattributes processor reading this API server as the service
// account of deploy/collector/rbac.yaml (a token from kubectl create
// token, in a kubeconfig of its own), and its export sent over OTLP/HTTP
// to rcv instead of Prometheus. It stops with the test.
func startCollector(t *testing.T, n *node, rcv *otlptest.Receiver) {
	t.Helper()
	otelcol, err := exec.LookPath("otelcol-porttrace")
	if err != nil {
		t.Fatal("otelcol-porttrace is missing: run .ci/fleet-deps")
	}
	n.kubectl("create", "namespace", "observability")
	n.kubectl("apply", "-f", "../collector/rbac.yaml")
	token := strings.TrimSpace(n.kubectl("-n", "observability", "create", "token", "otel-collector", "--duration", "1h"))
	kubeconfig := filepath.Join(n.run, "collector-kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:16443", insecure-skip-tls-verify: true}}]
users: [{name: otel-collector, user: {token: %q}}]
contexts: [{name: local, context: {cluster: local, user: otel-collector}}]
current-context: local
`, token)
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// The account may read pods, and nothing it was not given.
	for verb, want := range map[string]string{"list pods": "yes", "list secrets": "no"} {
		out, _ := exec.Command(filepath.Join(n.bin, "kubectl"), append([]string{"--kubeconfig", kubeconfig, "auth", "can-i", "--all-namespaces"}, strings.Fields(verb)...)...).Output()
		if got := strings.TrimSpace(string(out)); got != want {
			t.Fatalf("the Collector's account: can-i %s = %q, want %s", verb, got, want)
		}
	}

	otlptest.StartCollector(t, otelcol, filepath.Join(n.run, "collector"), collectorConfig(t, rcv.HTTP()),
		[]string{"KUBECONFIG=" + kubeconfig}, collectorListen)
}

// collectorConfig is deploy/collector/otel-collector.yaml as shipped, but
// for where it listens (the bridge, HTTP only), how k8sattributes finds
// the API server (KUBECONFIG: the node has no in-cluster Service route)
// and where it exports (the test's OTLP receiver, not Prometheus).
func collectorConfig(t *testing.T, export string) []byte {
	t.Helper()
	return otlptest.ReadCollectorConfig(t, "../collector/otel-collector.yaml", func(c otlptest.CollectorConfig) {
		c.Get("receivers", "otlp")["protocols"] = map[string]any{"http": map[string]any{"endpoint": collectorListen}}
		c.Get("processors", "k8sattributes")["auth_type"] = "kubeConfig"
		c["exporters"] = map[string]any{"otlphttp": map[string]any{"endpoint": export, "compression": "none"}}
		c.Get("service", "pipelines", "metrics")["exporters"] = []any{"otlphttp"}
	})
}

// exported sums, over the series of metric that match attrs on their data
// points and res on their resource, each series' latest value (exports
// are cumulative). It also returns the resources seen, for a failure.
func exported(rcv *otlptest.Receiver, metric string, res, attrs map[string]string) (int, []string) {
	last := map[string]float64{}
	seen := map[string]bool{}
	for _, p := range rcv.All(metric) {
		if !otlptest.Includes(p.Attrs, attrs) {
			continue
		}
		seen[fmt.Sprint(p.Resource)] = true
		if otlptest.Includes(p.Resource, res) {
			last[fmt.Sprint(p.Resource, p.Attrs)] = p.Value
		}
	}
	var sum float64
	for _, v := range last {
		sum += v
	}
	var resources []string
	for r := range seen {
		resources = append(resources, r)
	}
	sort.Strings(resources)
	return int(sum), resources
}

// checkCollector waits until the Collector's export holds the client
// pod's failed connects, failed of them, on resources that k8sattributes
// named from the API server: the pod (uid, the API server's), its
// namespace and its container (nc's id, as the API server has it: the
// processor names a one-container pod's container even without it).
// porttrace puts only k8s.pod.uid and container.id where groupbyattrs
// moves them to the resource (the names it has from the runtime stay on
// the data points), so the names on the resource can come only from
// k8sattributes.
func checkCollector(t *testing.T, rcv *otlptest.Receiver, uid, containerID string, failed int) {
	t.Helper()
	pod := map[string]string{"k8s.pod.uid": uid, "k8s.pod.name": "client", "k8s.namespace.name": "shop"}
	container := map[string]string{"k8s.container.name": "nc", "container.id": containerID}
	for k, v := range pod {
		container[k] = v
	}
	for _, c := range []struct {
		metric     string
		res, attrs map[string]string
	}{
		{"porttrace.process.connect.failures", container, map[string]string{"error.type": "EADDRNOTAVAIL"}},
		{"porttrace.connect.failures", pod, map[string]string{"error.type": "EADDRNOTAVAIL", "server.port": "8080"}},
	} {
		var got int
		var seen []string
		if err := otlptest.Eventually(60*time.Second, func() bool {
			got, seen = exported(rcv, c.metric, c.res, c.attrs)
			return got == failed
		}); err != nil {
			t.Errorf("the Collector exported %d of %s on a resource with %v, want the client's %d; resources seen:\n%s",
				got, c.metric, c.res, failed, strings.Join(seen, "\n"))
			continue
		}
		t.Logf("the Collector's k8sattributes: %s = %d on %v", c.metric, got, c.res)
	}
}

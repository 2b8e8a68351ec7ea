package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/otlptest"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// TestCollectorPipeline runs deploy/collector/otel-collector.yaml for real:
// an OpenTelemetry Collector built by the official builder (.ci/fleet-deps)
// receives the agent's OTLP on loopback, moves k8s.pod.uid to the resource
// (groupbyattrs) and remote-writes to Debian's Prometheus 2.42. A client
// in a pod's cgroup exhausts a port space; Prometheus must hold its
// failures, per space and per pod, as the client counted them. The
// k8sattributes processor is left out: it needs a Kubernetes API server
// (TestCluster, deploy/cluster, runs it against one); the pod's names
// come from the CRI server instead.
func TestCollectorPipeline(t *testing.T) {
	testnet.RequireRoot(t)
	otelcol := testnet.RequireTool(t, "otelcol-porttrace")
	prom := startPrometheus(t, testnet.RequireTool(t, "prometheus"), "", "--web.enable-remote-write-receiver", "--enable-feature=native-histograms")

	grpcAddr, httpAddr := freePort(t), freePort(t)
	cfg := collectorConfig(t, grpcAddr, httpAddr, prom.url+"/api/v1/write")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	col := exec.Command(otelcol, "--config", filepath.Join(dir, "config.yaml"))
	log, _ := os.Create(filepath.Join(dir, "log"))
	col.Stdout, col.Stderr = log, log
	if err := col.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		col.Process.Kill()
		col.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Logf("collector log:\n%s\nconfig:\n%s", b, cfg)
		}
	})
	if err := otlptest.Eventually(30*time.Second, func() bool {
		c, err := net.Dial("tcp", httpAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}); err != nil {
		t.Fatal("the Collector never listened")
	}

	pod := &fakePod{uid: "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", container: strings.Repeat("ef56", 16), name: "api-7d9f", ns: "shop", cname: "envoy"}
	pod.mount = cgroup2Mount(t)
	pod.dir = filepath.Join(pod.mount, "kubepods.slice", "kubepods-besteffort.slice",
		"kubepods-besteffort-pod"+strings.ReplaceAll(pod.uid, "-", "_")+".slice", "cri-containerd-"+pod.container+".scope")
	makeCgroup(t, pod.dir)
	socket := startCRI(t, pod)
	// The agent sees every port space of the machine, and other tests'
	// exhausted spaces could fold the client's into its namespace's
	// "other" series (TestSeriesKeepCountsWhenRelabelled): with room for
	// a thousand spaces of their own, the client's space always has its.
	agent := startAgent(t, nil, "--otlp-endpoint", "http://"+httpAddr, "--export-interval", "1s", "--cri-socket", socket, "--metric-spaces", "1000")

	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	var cl *testnet.Client
	inCgroup(t, pod, func() { cl = ns.StartClient(t, churn.Config{Target: dst, Count: 25, Close: churn.CloseFin}) })
	res := cl.Wait(t)
	if res.Failures[testnet.EADDRNOTAVAIL] != 15 {
		t.Fatalf("setup: client %+v, want 15 EADDRNOTAVAIL", res)
	}
	byPod := fmt.Sprintf(`porttrace_process_connect_failures_total{k8s_pod_uid=%q,k8s_pod_name=%q,k8s_namespace_name=%q,k8s_container_name=%q,error_type="EADDRNOTAVAIL"}`,
		pod.uid, pod.name, pod.ns, pod.cname)
	prom.waitValue(t, byPod, 15)
	// The port space's own series, named by its pod: every label given,
	// so that no other series of the namespace can answer.
	space := fmt.Sprintf(`porttrace_netns="%d",porttrace_port_space_kind="connect",server_port="8080",k8s_pod_uid=%q,k8s_pod_name=%q,k8s_namespace_name=%q`,
		ns.Inode, pod.uid, pod.name, pod.ns)
	bySpace := fmt.Sprintf(`porttrace_connect_failures_total{%s,error_type="EADDRNOTAVAIL"}`, space)
	prom.waitValue(t, bySpace, 15)
	for q, want := range map[string]float64{
		fmt.Sprintf(`porttrace_ports_usable{%s}`, space):           10,
		fmt.Sprintf(`porttrace_connect_attempts_total{%s}`, space): 25,
		// The exponential histogram, as a native histogram: every attempt
		// searched for a port.
		fmt.Sprintf(`histogram_count(porttrace_port_alloc_duration_seconds{%s})`, space): 25,
	} {
		prom.waitValue(t, q, int(want))
	}
	t.Logf("Prometheus via the Collector: %s = 15 and %s = 15, as the client saw", byPod, bySpace)
	agent.stop(t)
}

// collectorConfig is deploy/collector/otel-collector.yaml on loopback,
// without k8sattributes and with the Collector's own telemetry off.
func collectorConfig(t *testing.T, grpcAddr, httpAddr, remoteWrite string) []byte {
	t.Helper()
	b, err := os.ReadFile("../../../deploy/collector/otel-collector.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	get := func(m any, keys ...string) map[string]any {
		for _, k := range keys {
			m = m.(map[string]any)[k]
		}
		return m.(map[string]any)
	}
	protos := get(c, "receivers", "otlp", "protocols")
	get(protos, "grpc")["endpoint"] = grpcAddr
	get(protos, "http")["endpoint"] = httpAddr
	get(c, "exporters", "prometheus_remote_write")["endpoint"] = remoteWrite
	delete(get(c, "processors"), "k8sattributes")
	metrics := get(c, "service", "pipelines", "metrics")
	procs := metrics["processors"].([]any)
	metrics["processors"] = slices.DeleteFunc(procs, func(p any) bool { return p == "k8sattributes" })
	if len(metrics["processors"].([]any)) != len(procs)-1 {
		t.Fatal("deploy/collector/otel-collector.yaml: no k8sattributes in the metrics pipeline")
	}
	get(c, "service")["telemetry"] = map[string]any{"metrics": map[string]any{"level": "none"}}
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

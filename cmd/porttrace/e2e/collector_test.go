package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
	otlptest.StartCollector(t, otelcol, t.TempDir(), cfg, nil, httpAddr)

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
	return otlptest.ReadCollectorConfig(t, "../../../deploy/collector/otel-collector.yaml", func(c otlptest.CollectorConfig) {
		protos := c.Get("receivers", "otlp", "protocols")
		protos["grpc"].(map[string]any)["endpoint"] = grpcAddr
		protos["http"].(map[string]any)["endpoint"] = httpAddr
		c.Get("exporters", "prometheus_remote_write")["endpoint"] = remoteWrite
		delete(c.Get("processors"), "k8sattributes")
		metrics := c.Get("service", "pipelines", "metrics")
		procs := metrics["processors"].([]any)
		metrics["processors"] = slices.DeleteFunc(procs, func(p any) bool { return p == "k8sattributes" })
		if len(metrics["processors"].([]any)) != len(procs)-1 {
			t.Fatal("deploy/collector/otel-collector.yaml: no k8sattributes in the metrics pipeline")
		}
	})
}

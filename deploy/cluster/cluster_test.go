// Package cluster holds the single-node Kubernetes of the cluster test
// (node.sh, kubelet.yaml, the CNI configuration) and the test itself.
package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/testkit/otlptest"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// clientPorts is the client pod's ip_local_port_range: 10 ports, and it
// opens 15 connections that it holds, so 5 find no port.
const clientPorts = "40000 40009"

// sidecarRefused is how many connect()s the client pod's second container
// makes to a closed port of the server pod.
const sidecarRefused = 3

type node struct {
	t        *testing.T
	run, bin string
}

func (n *node) kubectl(args ...string) string {
	n.t.Helper()
	out, err := exec.Command(filepath.Join(n.bin, "kubectl"), append([]string{"--kubeconfig", n.run + "/kubeconfig"}, args...)...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// image builds a one-file image of the static busybox with buildah and
// saves it for ctr to import.
func image(t *testing.T, name, archive string, entrypoint string) {
	t.Helper()
	c := strings.TrimSpace(sh(t, "buildah", "from", "--quiet", "scratch"))
	defer exec.Command("buildah", "rm", c).Run()
	sh(t, "buildah", "copy", "--quiet", c, "/bin/busybox", "/bin/busybox")
	sh(t, "buildah", "config", "--entrypoint", entrypoint, c)
	sh(t, "buildah", "commit", "--quiet", c, name)
	t.Cleanup(func() { exec.Command("buildah", "rmi", "-f", name).Run() })
	sh(t, "buildah", "push", "--quiet", name, "oci-archive:"+archive+":"+name)
}

// TestCluster: a single-node Kubernetes from .ci/k8s-deps' parts;
// porttrace's image built with make image; helm install of the chart with
// its defaults but the local image and this node's containerd socket.
// The DaemonSet's pod runs the agent with exactly the chart's security
// context (not privileged). A client pod holds 15 connections to a server
// pod with 10 ports, so 5 connect()s fail with EADDRNOTAVAIL; Prometheus
// from Debian, scraping the agent's pod (found through the API server),
// must hold those 5 under the client's pod, namespace and
// container, for the process and for the pod's port space; the pod's
// second container's refused connects under its own container. kubectl delete
// and helm uninstall leave no pod or container; stopping the node leaves
// no process, mount, interface, network namespace or NAT rule. Beside
// that, the Collector's k8sattributes must name the client's failures
// from the API server (collector_test.go), and the node's NAT space its
// masqueraded connections to an upstream off the node (nat_test.go).
// Run by make test-cluster.
func TestCluster(t *testing.T) {
	if os.Getenv("PORTTRACE_CLUSTER") != "1" {
		t.Skip("the cluster test runs with PORTTRACE_CLUSTER=1 (make test-cluster)")
	}
	testnet.RequireRoot(t)
	for _, tool := range []string{"buildah", "helm", "prometheus", "etcd", "containerd", "ctr", "openssl"} {
		testnet.RequireTool(t, tool)
	}
	start := time.Now()
	out := sh(t, "sh", "../../.ci/k8s-deps")
	bin := strings.TrimSpace(strings.TrimPrefix(out[strings.LastIndex(out, "K8S_BIN="):], "K8S_BIN="))
	t.Logf("parts ready in %s", time.Since(start).Round(time.Second))
	run, err := os.MkdirTemp("", "porttrace-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, run: run, bin: bin}
	t0 := time.Now()
	image(t, "localhost/pause:local", run+"/pause.tar", `["/bin/busybox","sleep","2147483647"]`)
	image(t, "localhost/busybox:local", run+"/busybox.tar", `["/bin/busybox"]`)
	tag := fmt.Sprintf("localhost/porttrace:cluster-%d", os.Getpid())
	sh(t, "make", "-C", "../..", "image", "IMAGE="+tag, "IMAGE_TAR="+run+"/porttrace.tar")
	t.Cleanup(func() { exec.Command("buildah", "rmi", "-f", tag).Run() })
	t.Logf("images built in %s", time.Since(t0).Round(time.Second))

	t0 = time.Now()
	cmd := exec.Command("sh", "node.sh", "start", run)
	cmd.Env = append(os.Environ(), "K8S_BIN="+bin)
	startOut, startErr := cmd.CombinedOutput()
	t.Cleanup(func() { stopNode(t, run) })
	if startErr != nil {
		logs, _ := exec.Command("sh", "-c", "tail -n 20 "+run+"/log/*.log").CombinedOutput()
		t.Fatalf("node.sh start: %v\n%s\n%s", startErr, startOut, logs)
	}
	t.Logf("node Ready in %s", time.Since(t0).Round(time.Second))
	sock := run + "/containerd/containerd.sock"
	for _, tar := range []string{"busybox.tar", "porttrace.tar"} {
		sh(t, "ctr", "-a", sock, "-n", "k8s.io", "images", "import", run+"/"+tar)
	}

	repo, imageTag, _ := strings.Cut(tag, ":")
	t0 = time.Now()
	helm := exec.Command("helm", "install", "porttrace", "../helm/porttrace", "--namespace", "porttrace", "--create-namespace",
		"--set", "image.repository="+repo+",image.tag="+imageTag+",image.pullPolicy=Never,criSocket="+sock,
		"--set", "otlp.endpoint=http://"+collectorListen+",otlp.exportInterval=1s")
	helm.Env = append(os.Environ(), "KUBECONFIG="+run+"/kubeconfig")
	if out, err := helm.CombinedOutput(); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	agentIP := n.waitRunning("porttrace", "app.kubernetes.io/name=porttrace")
	var sc map[string]any
	json.Unmarshal([]byte(n.kubectl("-n", "porttrace", "get", "pods", "-o", "jsonpath={.items[0].spec.containers[0].securityContext}")), &sc)
	if sc["privileged"] != false || fmt.Sprint(sc["capabilities"]) != "map[add:[BPF PERFMON NET_ADMIN SYS_ADMIN SYS_PTRACE DAC_READ_SEARCH] drop:[ALL]]" {
		t.Errorf("the agent's security context %v: want the chart's, not privileged", sc)
	}
	if err := otlptest.Eventually(60*time.Second, func() bool {
		resp, err := http.Get("http://" + agentIP + ":9464/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}); err != nil {
		t.Fatalf("the agent's /healthz never answered 200:\n%s", n.kubectl("-n", "porttrace", "describe", "pods"))
	}
	t.Logf("agent's pod healthy in %s after helm install", time.Since(t0).Round(time.Second))
	prom := startPrometheus(t, run, agentIP+":9464")
	t0 = time.Now()
	rcv := otlptest.Start(t)
	startCollector(t, n, rcv)
	t.Logf("Collector listening in %s", time.Since(t0).Round(time.Second))
	host := hostNetns(t)
	up := startUpstream(t)

	n.kubectl("create", "namespace", "shop")
	n.apply(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"server","namespace":"shop"},"spec":{"containers":[
		{"name":"httpd","image":"localhost/busybox:local","imagePullPolicy":"Never","args":["httpd","-f","-p","8080"]}]}}`)
	serverIP := n.waitRunning("shop", "")
	// Each nc toward the server pod holds its connection 20 s; the ones
	// that find no port say so. Beside them, upConns toward the upstream
	// off the node, through the masquerade, held 40 s.
	script := fmt.Sprintf(`for i in $(seq 15); do (sleep 20 | nc %s 8080 2>&1 | grep -c 'Cannot assign requested address' | sed 's/^/server /') & done; `+
		`for i in $(seq %d); do (sleep 40 | nc %s %d >/dev/null 2>&1) & done; wait`, serverIP, upConns, upAddr, upPort)
	// A second container connects too, refused by the server pod's port
	// 9 (a port space of its own): on this node the cgroup paths carry no
	// pod UID, and the pod's namespace is the pod's only by the UID the
	// runtime gives both containers.
	sidecar := fmt.Sprintf(`sleep 2; for i in $(seq %d); do nc %s 9 </dev/null; done; sleep 30`, sidecarRefused, serverIP)
	t0 = time.Now()
	n.apply(fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"client","namespace":"shop","labels":{"app":"client"}},"spec":{"restartPolicy":"Never",
		"securityContext":{"sysctls":[{"name":"net.ipv4.ip_local_port_range","value":%q}]},
		"containers":[{"name":"nc","image":"localhost/busybox:local","imagePullPolicy":"Never","command":["/bin/busybox","sh","-c",%q]},
		{"name":"sidecar","image":"localhost/busybox:local","imagePullPolicy":"Never","command":["/bin/busybox","sh","-c",%q]}]}}`, clientPorts, script, sidecar))
	checkNAT(t, prom, up, host, n.waitRunning("shop", "app=client"))
	t.Logf("NAT space checked %s after the client pod was applied", time.Since(t0).Round(time.Second))
	t0 = time.Now()
	var failed int
	if err := otlptest.Eventually(90*time.Second, func() bool {
		logs, _ := filepath.Glob(run + "/pod-logs/shop_client_*/nc/0.log")
		if len(logs) != 1 {
			return false
		}
		b, _ := os.ReadFile(logs[0])
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if strings.Contains(l, " server ") {
				lines = append(lines, l)
			}
		}
		if len(lines) < 15 {
			return false
		}
		failed = 0
		for _, l := range lines {
			if strings.HasSuffix(l, " server 1") {
				failed++
			}
		}
		return true
	}); err != nil {
		t.Fatalf("the client pod did not finish:\n%s", n.kubectl("-n", "shop", "describe", "pods"))
	}
	if failed != 5 {
		t.Fatalf("setup: the client saw %d EADDRNOTAVAIL, want 5 (15 connections, 10 ports)", failed)
	}
	pod := `k8s_pod_name="client",k8s_namespace_name="shop"`
	for q, want := range map[string]int{
		`sum(porttrace_process_connect_failures_total{` + pod + `,k8s_container_name="nc",error_type="EADDRNOTAVAIL"})`:     failed,
		`sum(porttrace_connect_failures_total{` + pod + `,error_type="EADDRNOTAVAIL",server_port="8080"})`:                  failed,
		`sum(porttrace_process_connect_failures_total{` + pod + `,k8s_container_name="sidecar",error_type="ECONNREFUSED"})`: sidecarRefused,
	} {
		prom.waitValue(t, q, want)
	}
	t.Logf("Prometheus holds the client's %d EADDRNOTAVAIL under its pod, namespace and container, its two containers seen", failed)
	checkCollector(t, rcv, n.kubectl("-n", "shop", "get", "pod", "client", "-o", "jsonpath={.metadata.uid}"),
		strings.TrimPrefix(n.kubectl("-n", "shop", "get", "pod", "client", "-o", `jsonpath={.status.containerStatuses[?(@.name=="nc")].containerID}`), "containerd://"), failed)
	t.Logf("client's failures in, Prometheus and the Collector checked in %s", time.Since(t0).Round(time.Second))

	t0 = time.Now()

	n.kubectl("delete", "namespace", "shop", "--wait=true", "--timeout=90s")
	uninstall := exec.Command("helm", "uninstall", "porttrace", "--namespace", "porttrace", "--wait", "--timeout", "90s")
	uninstall.Env = helm.Env
	if out, err := uninstall.CombinedOutput(); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	if err := otlptest.Eventually(90*time.Second, func() bool {
		pods := strings.TrimSpace(n.kubectl("get", "pods", "-A", "-o", "name"))
		tasks, _ := exec.Command("ctr", "-a", sock, "-n", "k8s.io", "tasks", "ls", "-q").Output()
		return pods == "" && strings.TrimSpace(string(tasks)) == ""
	}); err != nil {
		tasks, _ := exec.Command("ctr", "-a", sock, "-n", "k8s.io", "tasks", "ls").CombinedOutput()
		t.Errorf("left after kubectl delete and helm uninstall: pods %q, tasks:\n%s", n.kubectl("get", "pods", "-A", "-o", "name"), tasks)
	}
	t.Logf("kubectl delete and helm uninstall, nothing left, in %s", time.Since(t0).Round(time.Second))
	t.Logf("cluster test: %s in all", time.Since(start).Round(time.Second))
}

func (n *node) apply(manifest string) {
	n.t.Helper()
	f := filepath.Join(n.run, fmt.Sprintf("manifest-%d.json", time.Now().UnixNano()))
	os.WriteFile(f, []byte(manifest), 0o600)
	n.kubectl("apply", "-f", f)
}

// waitRunning waits for the first pod of the namespace (matching
// selector, if any) to run, and returns its IP.
func (n *node) waitRunning(ns, selector string) string {
	n.t.Helper()
	args := []string{"-n", ns, "get", "pods", "-o", "jsonpath={.items[0].status.phase} {.items[0].status.podIP}"}
	if selector != "" {
		args = append(args, "-l", selector)
	}
	var ip string
	if err := otlptest.Eventually(120*time.Second, func() bool {
		out, err := exec.Command(filepath.Join(n.bin, "kubectl"), append([]string{"--kubeconfig", n.run + "/kubeconfig"}, args...)...).Output()
		f := strings.Fields(string(out))
		if err != nil || len(f) != 2 || f[0] != "Running" {
			return false
		}
		ip = f[1]
		return true
	}); err != nil {
		n.t.Fatalf("no pod running in %s:\n%s", ns, n.kubectl("-n", ns, "describe", "pods"))
	}
	return ip
}

// stopNode stops the node and checks that nothing is left: no process
// that node.sh started, no mount under its directory, no bridge.
func stopNode(t *testing.T, run string) {
	pids, _ := os.ReadFile(run + "/pids")
	t0 := time.Now()
	if out, err := exec.Command("sh", "node.sh", "stop", run).CombinedOutput(); err != nil {
		t.Errorf("node.sh stop: %v\n%s", err, out)
	}
	t.Logf("node stopped in %s", time.Since(t0).Round(time.Second))
	for _, line := range strings.Split(strings.TrimSpace(string(pids)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if pid, _ := strconv.Atoi(f[1]); pid > 0 {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				t.Errorf("%s (pid %d) still runs after node.sh stop", f[0], pid)
			}
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	if strings.Contains(string(mounts), " "+run+"/") {
		t.Errorf("mounts under %s left after node.sh stop", run)
	}
	if exec.Command("ip", "link", "show", "ptcni0").Run() == nil {
		t.Error("the CNI bridge ptcni0 is left after node.sh stop")
	}
	if _, err := os.Stat(run); err == nil {
		t.Errorf("%s is left after node.sh stop", run)
	}
	if nat, _ := exec.Command("iptables", "-t", "nat", "-S").Output(); strings.Contains(string(nat), "porttrace-test") {
		t.Error("the CNI's masquerade rules are left after node.sh stop")
	}
	if exec.Command("ip", "link", "show", upLink).Run() == nil {
		t.Errorf("the upstream's link %s is left", upLink)
	}
	if netns, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(netns), "cni-") || strings.Contains(string(netns), "porttrace-node-") {
		t.Errorf("pod network namespaces are left after node.sh stop:\n%s", netns)
	}
}

// prometheus is Debian's Prometheus scraping the agent's pod, which the
// test found through the API server. (Debian builds Prometheus without
// Kubernetes service discovery, so the target is static: the pod's IP and
// the metrics port, as a PodMonitor would select them.)
type prometheus struct{ url string }

func startPrometheus(t *testing.T, run, target string) *prometheus {
	t.Helper()
	dir, err := os.MkdirTemp("", "porttrace-cluster-prometheus-")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("global: {scrape_interval: 1s}\nscrape_configs:\n- job_name: porttrace\n  static_configs: [{targets: ['%s']}]\n", target)
	os.WriteFile(dir+"/prometheus.yml", []byte(cfg), 0o600)
	ln := "127.0.0.1:19090"
	cmd := exec.Command("prometheus", "--config.file", dir+"/prometheus.yml", "--storage.tsdb.path", dir+"/data", "--web.listen-address", ln)
	t.Cleanup(func() { os.RemoveAll(dir) })
	otlptest.StartLogged(t, cmd, dir+"/log", "prometheus")
	p := &prometheus{url: "http://" + ln}
	if err := otlptest.Eventually(30*time.Second, func() bool {
		resp, err := http.Get(p.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}); err != nil {
		b, _ := os.ReadFile(dir + "/log")
		t.Fatalf("Prometheus never became ready:\n%s", b)
	}
	return p
}

// waitValue waits until the query gives one sample of want.
func (p *prometheus) waitValue(t *testing.T, q string, want int) {
	t.Helper()
	var last string
	if err := otlptest.Eventually(60*time.Second, func() bool {
		resp, err := http.Get(p.url + "/api/v1/query?" + url.Values{"query": {q}}.Encode())
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				Result []struct{ Value []any }
			}
		}
		json.NewDecoder(resp.Body).Decode(&body)
		if len(body.Data.Result) != 1 || len(body.Data.Result[0].Value) != 2 {
			last = fmt.Sprintf("%+v", body.Data.Result)
			return false
		}
		last = fmt.Sprint(body.Data.Result[0].Value[1])
		return last == strconv.Itoa(want)
	}); err != nil {
		t.Errorf("Prometheus: %s = %s, want %d", q, last, want)
	}
}

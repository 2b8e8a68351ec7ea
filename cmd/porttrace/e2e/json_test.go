package e2e

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/frame"
	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// startLines runs porttrace with args, collecting stdout's lines, and
// returns once stderr says it traces (unless quiet: then after 3 s).
func startLines(t *testing.T, quiet bool, args ...string) (cmd *exec.Cmd, lines func() []string, stderr *strings.Builder) {
	t.Helper()
	cmd = exec.Command(binary, args...)
	out, _ := cmd.StdoutPipe()
	stderr = &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var got []string
	done := make(chan bool)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			got = append(got, sc.Text())
		}
		close(done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !quiet && !strings.Contains(stderr.String(), "tracing with the") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if quiet {
		time.Sleep(3 * time.Second)
	}
	return cmd, func() []string { cmd.Process.Signal(syscall.SIGINT); <-done; cmd.Wait(); return got }, stderr
}

// TestTopStream: top --json --stream prints one JSON frame per line every
// --interval until SIGINT; -q leaves stderr without the backend line.
func TestTopStream(t *testing.T) {
	testnet.RequireRoot(t)
	_, lines, stderr := startLines(t, true, "top", "--json", "--stream", "--interval", "1s", "-q", "--cri-socket", "none")
	time.Sleep(3 * time.Second)
	got := lines()
	if len(got) < 3 {
		t.Fatalf("%d lines in about 6 s at 1 s intervals:\n%s\n%s", len(got), strings.Join(got, "\n"), stderr)
	}
	for i, l := range got {
		var f frame.Frame
		if err := json.Unmarshal([]byte(l), &f); err != nil || f.Summary == nil {
			t.Fatalf("line %d is not a frame: %v\n%.300s", i, err, l)
		}
	}
	if strings.Contains(stderr.String(), "tracing with") || strings.Contains(stderr.String(), "refused") {
		t.Errorf("-q, yet stderr says:\n%s", stderr)
	}
}

// TestBackendOneLine: what the backend is, and why better ones were
// refused, is one line of stderr.
func TestBackendOneLine(t *testing.T) {
	testnet.RequireRoot(t)
	out, _ := exec.Command(binary, "trace", "--duration", "1s").CombinedOutput()
	var about []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "backend") {
			about = append(about, l)
		}
	}
	if len(about) != 1 || !strings.HasPrefix(about[0], "porttrace: tracing with the ") {
		t.Errorf("lines about backends:\n%s", strings.Join(about, "\n"))
	}
}

// TestTraceNamesPods: trace --json gives each event of a client that runs
// in a pod's container cgroup the container's id, the pod's UID, and the
// names the CRI server knows; the UID from the runtime's label where the
// cgroup path has none (the kubelet's cgroupfs driver without per-QoS
// cgroups, as on TestCluster's node).
func TestTraceNamesPods(t *testing.T) {
	testnet.RequireRoot(t)
	v2 := cgroup2Mount(t)
	uid := "3c1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
	for name, path := range map[string]func(container string) string{
		"systemd": func(c string) string {
			return filepath.Join("kubepods.slice", "kubepods-pod"+strings.ReplaceAll(uid, "-", "_")+".slice", "cri-containerd-"+c+".scope")
		},
		"no pod in the path": func(c string) string { return filepath.Join("kubepods", c) },
	} {
		t.Run(name, func(t *testing.T) {
			p := &fakePod{uid: uid, container: strings.Repeat("be57", 16), name: "api-2", ns: "shop", cname: "api", mount: v2}
			p.dir = filepath.Join(v2, path(p.container))
			testTraceNamesPod(t, p)
		})
	}
}

func testTraceNamesPod(t *testing.T, p *fakePod) {
	makeCgroup(t, p.dir)
	socket := startCRI(t, p)
	_, lines, stderr := startLines(t, false, "trace", "--json", "--cri-socket", socket)
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	var cl *testnet.Client
	inCgroup(t, p, func() { cl = ns.StartClient(t, churn.Config{Target: dst, Count: 5, Close: churn.CloseFin}) })
	cl.Wait(t)
	time.Sleep(time.Second)
	n := 0
	for _, l := range lines() {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if e["pid"] != float64(cl.Cmd.Process.Pid) {
			continue
		}
		n++
		want := map[string]string{"container_id": p.container, "k8s_pod_uid": p.uid, "k8s_pod_name": "api-2", "k8s_namespace_name": "shop", "k8s_container_name": "api"}
		for k, v := range want {
			if e[k] != v {
				t.Errorf("event %s: %s = %v, want %s", l, k, e[k], v)
				break
			}
		}
	}
	if n < 5 {
		t.Errorf("%d events of the client's 5 connections:\n%s", n, stderr)
	}
}

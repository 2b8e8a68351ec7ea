package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/otlptest"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// fakePod is a pod as the kubelet would lay out its cgroups.
type fakePod struct {
	uid, container  string // the pod's UID, the container's full id
	mount, dir      string // a hierarchy's mount; the container's cgroup under it
	name, ns, cname string // what the CRI server says, "" if it does not know it
}

// TestAgentNamesPods: clients run in the cgroups a kubelet makes, the
// systemd driver's and the cgroupfs driver's, on the cgroup2 mount (v1
// paths are checked by internal/cgroup's unit test), each exhausting its
// own port space. The agent's failure counts must carry their containers' ids and pods' UIDs, and the names that a CRI
// server (the official cri-api service) gives for the one it knows. With
// no CRI socket, the ids and UIDs stay and the agent says why names lack.
func TestAgentNamesPods(t *testing.T) {
	testnet.RequireRoot(t)
	v2 := cgroup2Mount(t)
	fs := &fakePod{uid: "9a8b7c6d-5e4f-4321-8fed-cba987654321", container: strings.Repeat("cd34", 16)}
	sd := &fakePod{uid: "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", container: strings.Repeat("ab12", 16),
		name: "web-0", ns: "shop", cname: "nginx"}
	sd.mount, fs.mount = v2, v2
	sd.dir = filepath.Join(v2, "kubepods.slice", "kubepods-burstable.slice",
		"kubepods-burstable-pod"+strings.ReplaceAll(sd.uid, "-", "_")+".slice", "cri-containerd-"+sd.container+".scope")
	fs.dir = filepath.Join(v2, "kubepods", "besteffort", "pod"+fs.uid, fs.container)
	for _, p := range []*fakePod{sd, fs} {
		makeCgroup(t, p.dir)
	}
	socket := startCRI(t, sd)

	rcv := otlptest.Start(t)
	agent := startAgent(t, nil, "--otlp-endpoint", rcv.GRPC(), "--otlp-protocol", "grpc", "--export-interval", "1s", "--cri-socket", socket, "--metric-attributes", "process.pid")
	// Each client is done within milliseconds, before the agent reads its
	// first event: the event's cgroup id must name its container.
	pids := map[*fakePod]string{}
	for _, p := range []*fakePod{sd, fs} {
		ns := testnet.New(t, 40000, 40009)
		dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
		var cl *testnet.Client
		inCgroup(t, p, func() { cl = ns.StartClient(t, churn.Config{Target: dst, Count: 25, Close: churn.CloseFin}) })
		if res := cl.Wait(t); res.Failures[testnet.EADDRNOTAVAIL] != 15 {
			t.Fatalf("setup: client %+v, want 15 EADDRNOTAVAIL", res)
		}
		pids[p] = fmt.Sprint(cl.Cmd.Process.Pid)
		// The port space is the pod's: its namespace is.
		space := map[string]string{"porttrace.netns": fmt.Sprint(ns.Inode), "k8s.pod.uid": p.uid}
		if p.name != "" {
			space["k8s.pod.name"], space["k8s.namespace.name"] = p.name, p.ns
		}
		if err := otlptest.Eventually(20*time.Second, func() bool {
			got := otlptest.With(rcv.Last("porttrace.connect.failures"), space)
			h := otlptest.With(rcv.Last("porttrace.port_alloc.duration"), space)
			return len(got) == 1 && got[0].Value == 15 && len(h) == 1 && h[0].Count == 25
		}); err != nil {
			t.Errorf("no failures and port searches of the space labelled %v: %+v", space,
				otlptest.With(rcv.Last("porttrace.connect.failures"), map[string]string{"porttrace.netns": fmt.Sprint(ns.Inode)}))
		}
		want := map[string]string{"process.pid": pids[p], "container.id": p.container, "k8s.pod.uid": p.uid}
		if p.name != "" {
			want["k8s.pod.name"], want["k8s.namespace.name"], want["k8s.container.name"] = p.name, p.ns, p.cname
		}
		var got []otlptest.Point
		err := otlptest.Eventually(20*time.Second, func() bool {
			got = otlptest.With(rcv.Last("porttrace.process.connect.failures"), want)
			return len(got) == 1 && got[0].Value == 15
		})
		if err != nil {
			t.Errorf("%s: want the client's 15 failures with %v; got %+v\nall: %+v", p.dir, want,
				got, otlptest.With(rcv.Last("porttrace.process.connect.failures"), map[string]string{"process.pid": pids[p]}))
		} else if p.name == "" && got[0].Attrs["k8s.pod.name"] != "" {
			t.Errorf("a pod the runtime does not know got a name: %v", got[0].Attrs)
		}
	}
	for _, l := range rcv.Logs() {
		if p := map[string]*fakePod{pids[sd]: sd, pids[fs]: fs}[l.Attrs["process.pid"]]; p != nil && l.Attrs["k8s.pod.uid"] != p.uid {
			t.Errorf("failure record %v lacks pod %s", l.Attrs, p.uid)
		}
	}
	agent.stop(t)

	// No runtime: UIDs and ids, and one line saying why names lack.
	rcv2 := otlptest.Start(t)
	missing := filepath.Join(t.TempDir(), "absent.sock")
	agent = startAgent(t, nil, "--otlp-endpoint", rcv2.GRPC(), "--otlp-protocol", "grpc", "--export-interval", "1s", "--cri-socket", missing, "--metric-attributes", "process.pid")
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	var cl *testnet.Client
	inCgroup(t, sd, func() { cl = ns.StartClient(t, churn.Config{Target: dst, Count: 12, Close: churn.CloseFin}) })
	if res := cl.Wait(t); res.Failed() != 2 {
		t.Fatalf("setup: client %+v, want 2 failures", res)
	}
	want := map[string]string{"process.pid": fmt.Sprint(cl.Cmd.Process.Pid), "container.id": sd.container, "k8s.pod.uid": sd.uid}
	otlptest.Wait(t, "failures without a runtime", func() bool {
		got := otlptest.With(rcv2.Last("porttrace.process.connect.failures"), want)
		return len(got) == 1 && got[0].Value == 2 && got[0].Attrs["k8s.pod.name"] == ""
	})
	agent.waitLine(t, "pods are named by UID only")
	agent.stop(t)
}

// cgroup2Mount is where the cgroup2 hierarchy is mounted.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup2" {
			return f[1]
		}
	}
	t.Fatal("no cgroup2 mount")
	return ""
}

// makeCgroup makes dir and its parents, removed after the test.
func makeCgroup(t *testing.T, dir string) {
	t.Helper()
	var made []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		made = append(made, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, d := range made { // deepest first
			for i := 0; os.Remove(d) != nil && i < 50; i++ {
				time.Sleep(100 * time.Millisecond) // a client still exiting
			}
		}
	})
}

// inCgroup runs start with the test process in p's container cgroup, so
// that the processes it starts are born there, and moves the test process
// back where it was.
func inCgroup(t *testing.T, p *fakePod, start func()) {
	t.Helper()
	home := filepath.Join(p.mount, ownCgroup(t))
	self := []byte(fmt.Sprint(os.Getpid()))
	if err := os.WriteFile(filepath.Join(p.dir, "cgroup.procs"), self, 0); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := os.WriteFile(filepath.Join(home, "cgroup.procs"), self, 0); err != nil {
			t.Fatal(err)
		}
	}()
	start()
}

// ownCgroup is the test process's cgroup v2.
func ownCgroup(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			return path
		}
	}
	t.Fatal("no cgroup v2 of ours")
	return ""
}

// startCRI serves the CRI runtime service on a unix socket, knowing the
// containers of pods; it returns the socket's path.
func startCRI(t *testing.T, pods ...*fakePod) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cri.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtime.RegisterRuntimeServiceServer(srv, &criServer{pods: pods})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return path
}

type criServer struct {
	runtime.UnimplementedRuntimeServiceServer
	pods []*fakePod
}

func (s *criServer) ListContainers(context.Context, *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	var out []*runtime.Container
	for _, p := range s.pods {
		out = append(out, &runtime.Container{
			Id: p.container, PodSandboxId: "sandbox-" + p.uid,
			Metadata: &runtime.ContainerMetadata{Name: p.cname},
			State:    runtime.ContainerState_CONTAINER_RUNNING,
			Labels: map[string]string{"io.kubernetes.pod.name": p.name, "io.kubernetes.pod.namespace": p.ns,
				"io.kubernetes.pod.uid": p.uid, "io.kubernetes.container.name": p.cname},
		})
	}
	return &runtime.ListContainersResponse{Containers: out}, nil
}

// TestTopNamesPods: top shows the pod of each process, named by the CRI
// server where it knows the pod, by UID where not, and --pod and
// --k8s-namespace keep that pod's processes and port spaces only.
func TestTopNamesPods(t *testing.T) {
	testnet.RequireRoot(t)
	v2 := cgroup2Mount(t)
	named := &fakePod{uid: "1f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", container: strings.Repeat("ef56", 16), name: "api-1", ns: "shop", cname: "api"}
	bare := &fakePod{uid: "2a8b7c6d-5e4f-4321-8fed-cba987654321", container: strings.Repeat("7a89", 16)}
	named.mount, bare.mount = v2, v2
	named.dir = filepath.Join(v2, "kubepods.slice", "kubepods-pod"+strings.ReplaceAll(named.uid, "-", "_")+".slice", "cri-containerd-"+named.container+".scope")
	bare.dir = filepath.Join(v2, "kubepods", "besteffort", "pod"+bare.uid, bare.container)
	for _, p := range []*fakePod{named, bare} {
		makeCgroup(t, p.dir)
	}
	socket := startCRI(t, named)
	for _, tc := range []struct {
		args []string
		keep []*fakePod
	}{
		{nil, []*fakePod{named, bare}},
		{[]string{"--pod", "api-1"}, []*fakePod{named}},
		{[]string{"--k8s-namespace", "shop"}, []*fakePod{named}},
		{[]string{"--pod", bare.uid}, []*fakePod{bare}},
	} {
		top := startTop(t, "5m", append([]string{"--cri-socket", socket}, tc.args...)...)
		pids := map[uint32]*fakePod{}
		inos := map[uint32]*fakePod{}
		for _, p := range []*fakePod{named, bare} {
			ns := testnet.New(t, 40000, 40009)
			dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
			var cl *testnet.Client
			inCgroup(t, p, func() { cl = ns.StartClient(t, churn.Config{Target: dst, Count: 12, Close: churn.CloseFin}) })
			cl.Wait(t)
			pids[uint32(cl.Cmd.Process.Pid)], inos[ns.Inode] = p, p
		}
		snap := top.done(t)
		seen := map[*fakePod]bool{}
		for _, pr := range snap.Processes {
			p := pids[pr.PID]
			if p == nil {
				if len(tc.args) > 0 {
					t.Errorf("%v keeps pid %d (%s), not in the pod", tc.args, pr.PID, pr.Comm)
				}
				continue
			}
			seen[p] = true
			wantName, wantNS := p.name, p.ns
			if pr.PodUID != p.uid || pr.PodName != wantName || pr.PodNamespace != wantNS || pr.Container != p.container[:12] {
				t.Errorf("%v: process %d: pod %q %q/%q container %q; want %s %q/%q %s", tc.args, pr.PID, pr.PodUID, pr.PodNamespace, pr.PodName, pr.Container,
					p.uid, wantNS, wantName, p.container[:12])
			}
		}
		for _, p := range tc.keep {
			if !seen[p] {
				t.Errorf("%v: the client of pod %s is missing", tc.args, p.uid)
			}
		}
		for _, sp := range snap.Spaces {
			p := inos[sp.Netns]
			if p != nil && !slices.Contains(tc.keep, p) {
				t.Errorf("%v keeps %s of another pod", tc.args, sp.Where())
			}
			// The pod's namespace is labelled by the pod.
			want := "pod " + bare.uid
			if p == named {
				want = "shop/api-1"
			}
			if p != nil && sp.Pod != want {
				t.Errorf("%s labelled %q, want %q", sp.Where(), sp.Pod, want)
			}
		}
	}
}

// TestRecordNamesPods: a capture keeps where its processes ran; report
// shows a client's pod UID, container and cgroup path, though the client
// had exited before the round that named its cgroup.
func TestRecordNamesPods(t *testing.T) {
	testnet.RequireRoot(t)
	v2 := cgroup2Mount(t)
	p := &fakePod{uid: "3c1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", container: strings.Repeat("bc23", 16), mount: v2}
	p.dir = filepath.Join(v2, "kubepods", "burstable", "pod"+p.uid, p.container)
	makeCgroup(t, p.dir)
	file := filepath.Join(t.TempDir(), "pods.ptcap")
	rec, _ := startRecord(t, "-o", file)
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	var cl *testnet.Client
	inCgroup(t, p, func() { cl = ns.StartClient(t, churn.Config{Target: dst, Count: 12, Close: churn.CloseFin}) })
	cl.Wait(t)
	time.Sleep(6 * time.Second) // a round of socket tables, which names the cgroup
	rec.Process.Signal(syscall.SIGINT)
	rec.Wait()
	r := runReport(t, file)
	for _, pr := range r.Final.Processes {
		if pr.PID != uint32(cl.Cmd.Process.Pid) {
			continue
		}
		want := strings.TrimPrefix(p.dir, v2)
		if pr.PodUID != p.uid || pr.Container != p.container[:12] || pr.CgroupPath != want {
			t.Errorf("client in the report: pod %q container %q cgroup %q; want %s %s %s", pr.PodUID, pr.Container, pr.CgroupPath, p.uid, p.container[:12], want)
		}
		return
	}
	t.Errorf("the client %d is not in the report", cl.Cmd.Process.Pid)
}

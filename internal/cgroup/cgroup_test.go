package cgroup

import (
	"fmt"
	"testing"
)

func TestParse(t *testing.T) {
	id := "3f4e1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"
	uid := "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
	sd := "0f1e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b" // the systemd driver's spelling
	static := "6f2c1a0b9e8d7c6b5a4f3e2d1c0b9a8f"
	pod := Workload{ContainerID: id, PodUID: uid}
	for _, tc := range []struct {
		in   string
		want Workload
	}{
		{"0::/system.slice/nginx.service\n", Workload{}},
		{"", Workload{}},
		// Docker, outside Kubernetes: systemd and cgroupfs drivers, v1 and v2.
		{"0::/system.slice/docker-" + id + ".scope\n", Workload{ContainerID: id}},
		{"12:pids:/docker/" + id + "\n0::/docker/" + id + "\n", Workload{ContainerID: id}},
		// containerd, systemd driver, cgroup v2: each QoS class.
		{"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + sd + ".slice/cri-containerd-" + id + ".scope\n", pod},
		{"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + sd + ".slice/cri-containerd-" + id + ".scope\n", pod},
		{"0::/kubepods.slice/kubepods-pod" + sd + ".slice/cri-containerd-" + id + ".scope\n", pod},
		// CRI-O, systemd driver; kind's nested kubelet.slice.
		{"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + sd + ".slice/crio-" + id + ".scope\n", pod},
		{"0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + sd + ".slice/cri-containerd-" + id + ".scope\n", pod},
		// cgroupfs driver, cgroup v1 (containerd, Docker via cri-dockerd)
		// and v2 (CRI-O).
		{"11:memory:/kubepods/burstable/pod" + uid + "/" + id + "\n1:name=systemd:/kubepods/burstable/pod" + uid + "/" + id + "\n0::/\n", pod},
		{"0::/kubepods/pod" + uid + "/crio-" + id + "\n", pod},
		{"0::/kubepods/besteffort/pod" + uid + "/" + id + "\n", pod},
		// A static pod's UID is a hash.
		{"0::/kubepods/burstable/pod" + static + "/" + id + "\n", Workload{ContainerID: id, PodUID: static}},
		// The pod's cgroup itself is no container.
		{"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + sd + ".slice\n", Workload{}},
	} {
		if got := Parse(tc.in); got.ContainerID != tc.want.ContainerID || got.PodUID != tc.want.PodUID {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	for in, want := range map[string]string{
		"0::/system.slice/nginx.service\n":  "/system.slice/nginx.service",
		"12:pids:/docker/x\n0::/docker/x\n": "/docker/x",
		"11:memory:/kubepods/burstable/podu/c\n1:name=systemd:/kubepods/burstable/podu/c\n0::/\n": "/kubepods/burstable/podu/c",
		"": "",
	} {
		if got := Parse(in).Path; got != want {
			t.Errorf("Parse(%q).Path = %q, want %q", in, got, want)
		}
	}
}

// TestNetnsPodsRuntimeUID: on a node whose cgroup paths carry no pod UID,
// a pod's two containers make its namespace the pod's once the runtime
// gives their UID, even when it answers after they were seen; what no
// answer changes (a process in no container, two UIDs from the paths,
// more than MaxContainers containers) makes it no pod's.
func TestNetnsPodsRuntimeUID(t *testing.T) {
	const uid = "11111111-2222-4333-8444-555555555555"
	answers := false
	pods := NewNetnsPods(func(container string) string {
		if answers && (container == "cccccccccccc" || container == "c3c3c3c3c3c3") {
			return uid
		}
		return ""
	})
	c, c3 := Process{Container: "cccccccccccc", Path: "/kubepods/besteffort/x"}, Process{Container: "c3c3c3c3c3c3"}
	pods.Note(1, c)
	pods.Note(1, c3)
	pods.Note(1, c) // again: remembered once
	if p, ok := pods.Pod(1); ok {
		t.Errorf("before the runtime answers: pod %+v, want none", p)
	}
	answers = true
	if p, ok := pods.Pod(1); !ok || p.PodUID != uid || p.Container != c.Container {
		t.Errorf("once the runtime answers: %+v %v, want %s's pod %s", p, ok, c.Container, uid)
	}
	pods.Note(1, Process{}) // a process in no container: the host's namespace
	if p, ok := pods.Pod(1); ok {
		t.Errorf("with a process in no container: pod %+v, want none", p)
	}
	pods.Note(2, Process{Container: "aaaaaaaaaaaa", PodUID: uid})
	pods.Note(2, Process{Container: "bbbbbbbbbbbb", PodUID: "66666666-7777-4888-8999-aaaaaaaaaaaa"})
	pods.Note(2, Process{Container: "cccccccccccc"})
	if p, ok := pods.Pod(2); ok {
		t.Errorf("two pods by their paths: pod %+v, want none", p)
	}
	for i := range MaxContainers + 1 {
		pods.Note(3, Process{Container: fmt.Sprintf("%012x", i), PodUID: uid})
		if _, ok := pods.Pod(3); ok != (i < MaxContainers) {
			t.Fatalf("%d containers of one pod: a pod's %v", i+1, ok)
		}
	}
	if len(pods.seen[3].procs) != 0 {
		t.Errorf("a namespace of no pod keeps %d processes", len(pods.seen[3].procs))
	}
}

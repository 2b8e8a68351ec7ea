package cgroup

import "testing"

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

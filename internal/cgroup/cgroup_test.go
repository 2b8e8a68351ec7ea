package cgroup

import "testing"

func TestFromCgroupFile(t *testing.T) {
	id := "3f4e1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"
	for _, tc := range []struct{ in, want string }{
		{"0::/system.slice/nginx.service\n", ""},
		{"0::/system.slice/docker-" + id + ".scope\n", id[:12]},
		{"12:pids:/docker/" + id + "\n0::/docker/" + id + "\n", id[:12]},
		{"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-" + id + ".scope\n", id[:12]},
		{"", ""},
	} {
		if got := FromCgroupFile(tc.in); got != tc.want {
			t.Errorf("FromCgroupFile(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

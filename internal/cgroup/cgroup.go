// Package cgroup names the container a process runs in, from its cgroup
// path, the way container runtimes name their cgroups.
package cgroup

import (
	"fmt"
	"os"
	"regexp"
)

// A container id is 64 hex digits in the cgroup path of every common
// runtime: /docker/ID, docker-ID.scope, cri-containerd-ID.scope,
// crio-ID.scope, libpod-ID.scope, /kubepods/.../ID.
var containerID = regexp.MustCompile(`[0-9a-f]{64}`)

// Container returns the short (12-digit) id of pid's container, or "" when
// it runs in none or has exited.
func Container(pid uint32) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return ""
	}
	return FromCgroupFile(string(b))
}

// FromCgroupFile finds the container id in the text of /proc/PID/cgroup.
func FromCgroupFile(s string) string {
	ids := containerID.FindAllString(s, -1)
	if len(ids) == 0 {
		return ""
	}
	return ids[len(ids)-1][:12] // the innermost
}

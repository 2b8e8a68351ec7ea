// Package cgroup names the container and Kubernetes pod a process runs in,
// from its cgroup path, the way container runtimes and the kubelet name
// their cgroups. It reads /proc only; names (pod, namespace, container)
// come from the container runtime (internal/cri).
package cgroup

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
)

// Workload is what a cgroup path tells of a process: its container's id
// (64 hex digits) and its pod's UID, each "" when there is none.
type Workload struct {
	ContainerID string
	PodUID      string
}

// A container id is 64 hex digits in the cgroup path of every common
// runtime: /docker/ID, docker-ID.scope, cri-containerd-ID.scope,
// crio-ID.scope, libpod-ID.scope, /kubepods/.../podUID/ID.
var containerID = regexp.MustCompile(`[0-9a-f]{64}`)

// The kubelet names a pod's cgroup pod<UID>: kubepods-burstable-pod<UID>.slice
// with the systemd driver, where the UID's dashes become underscores, and
// /kubepods/burstable/pod<UID> with cgroupfs. A static pod's UID is a
// 32-digit hash without dashes.
var podUID = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32})(?:\.slice)?/`)

// Parse reads the text of /proc/PID/cgroup: cgroup v2 (0::/path), v1
// (N:controllers:/path) or both. The innermost container id and pod UID of
// any hierarchy win.
func Parse(s string) Workload {
	var w Workload
	for line := range strings.SplitSeq(s, "\n") {
		_, path, ok := strings.Cut(line, ":")
		if _, path, ok = strings.Cut(path, ":"); !ok {
			continue
		}
		if ids := containerID.FindAllString(path, -1); len(ids) > 0 {
			w.ContainerID = ids[len(ids)-1]
		}
		if m := podUID.FindAllStringSubmatch(path+"/", -1); len(m) > 0 {
			w.PodUID = strings.ReplaceAll(m[len(m)-1][1], "_", "-")
		}
	}
	if w.ContainerID == "" {
		w.PodUID = "" // a pod's own cgroup holds no process but the sandbox's
	}
	return w
}

// MaxKnown bounds the containers Lookup remembers.
const MaxKnown = 4096

var known = struct {
	sync.RWMutex
	m map[string]Workload // by short id
}{m: map[string]Workload{}}

// Container returns the short (12-digit) id of pid's container, or "" when
// it runs in none or has exited; the container's full id and pod are then
// known to Lookup. It reads /proc/PID/cgroup.
func Container(pid uint32) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return ""
	}
	w := Parse(string(b))
	if w.ContainerID == "" {
		return ""
	}
	short := w.ContainerID[:12]
	known.Lock()
	if _, ok := known.m[short]; !ok && len(known.m) >= MaxKnown {
		for k := range known.m { // forget one: it will be read again
			delete(known.m, k)
			break
		}
	}
	known.m[short] = w
	known.Unlock()
	return short
}

// Lookup returns the workload of a container that Container named, by its
// short id.
func Lookup(short string) (Workload, bool) {
	known.RLock()
	defer known.RUnlock()
	w, ok := known.m[short]
	return w, ok
}

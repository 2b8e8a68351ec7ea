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
// (64 hex digits) and its pod's UID, each "" when there is none, and the
// path itself (the cgroup v2 one where there is one).
type Workload struct {
	ContainerID string
	PodUID      string
	Path        string
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
		_, rest, _ := strings.Cut(line, ":")
		hier, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		// The unified hierarchy's path, unless it is the bare root of
		// a hybrid host; then the first v1 hierarchy's.
		if hier == "" && path != "/" || w.Path == "" {
			w.Path = path
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

// Container returns the short (12-digit) id of the container of process
// pid, whose cgroup v2 id (the event's, bpf_get_current_cgroup_id) is
// cgroupID, or "" when it runs in none; the container's full id and pod
// are then known to Lookup. The cgroup id names the container even after
// the process has exited; /proc/PID/cgroup serves where it does not (a
// host with cgroup v1 only, or the id is 0).
func Container(pid uint32, cgroupID uint64) string {
	return Of(pid, cgroupID).Container
}

// Process is a process's cgroup path, the short id of its container and
// its pod's UID ("" for none).
type Process struct {
	Path      string
	Container string
	PodUID    string
}

// Of is Container with the cgroup path as well.
func Of(pid uint32, cgroupID uint64) Process {
	w := byID(cgroupID)
	if w.ContainerID == "" {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); err == nil {
			w = Parse(string(b))
		}
	}
	if w.ContainerID == "" {
		return Process{Path: w.Path}
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
	return Process{Path: w.Path, Container: short, PodUID: w.PodUID}
}

// Lookup returns the workload of a container that Container named, by its
// short id.
func Lookup(short string) (Workload, bool) {
	known.RLock()
	defer known.RUnlock()
	w, ok := known.m[short]
	return w, ok
}

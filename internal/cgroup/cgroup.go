// Package cgroup names the container and Kubernetes pod a process runs in,
// from its cgroup path, the way container runtimes and the kubelet name
// their cgroups. It reads /proc only; names (pod, namespace, container)
// come from the container runtime (internal/cri).
package cgroup

import (
	"fmt"
	"os"
	"regexp"
	"slices"
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

// MaxKnown bounds the containers a Resolver remembers.
const MaxKnown = 4096

// Process is where a process runs: its cgroup path, the short (12-digit)
// id of its container and its Kubernetes pod's UID, each "" for none. It
// is the one type that names a workload; summaries and captures carry it.
type Process struct {
	Path      string
	Container string
	PodUID    string
}

// PodKey tells pods apart: by UID, else (a cgroup layout without the pod,
// such as the kubelet's cgroupfs driver without per-QoS cgroups) by the
// container, so that two containers of such a pod count as two pods and
// their namespace is labelled with neither, rather than wrongly; "" for a
// process in no container.
func (p Process) PodKey() string {
	if p.PodUID != "" {
		return p.PodUID
	}
	if p.Container != "" {
		return "container " + p.Container
	}
	return ""
}

// Resolver tells where processes run, from their cgroups, and remembers
// the containers it named (MaxKnown at most) so that Lookup finds their
// full ids by the short ones summaries carry. Its methods are safe for
// concurrent use; the zero value is not: use NewResolver.
type Resolver struct {
	mu    sync.RWMutex
	known map[string]Workload // by short id
}

// NewResolver returns a Resolver that knows no container yet.
func NewResolver() *Resolver { return &Resolver{known: map[string]Workload{}} }

// Container returns the short (12-digit) id of the container of process
// pid, whose cgroup v2 id (the event's, bpf_get_current_cgroup_id) is
// cgroupID, or "" when it runs in none; the container's full id and pod
// are then known to Lookup. The cgroup id names the container even after
// the process has exited; /proc/PID/cgroup serves where it does not (a
// host with cgroup v1 only, or the id is 0).
func (r *Resolver) Container(pid uint32, cgroupID uint64) string {
	return r.Of(pid, cgroupID).Container
}

// Of is Container with the cgroup path and the pod's UID as well.
func (r *Resolver) Of(pid uint32, cgroupID uint64) Process {
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
	r.mu.Lock()
	if _, ok := r.known[short]; !ok && len(r.known) >= MaxKnown {
		for k := range r.known { // forget one: it will be read again
			delete(r.known, k)
			break
		}
	}
	r.known[short] = w
	r.mu.Unlock()
	return Process{Path: w.Path, Container: short, PodUID: w.PodUID}
}

// Lookup returns the workload of a container that Container or Of named,
// by its short id.
func (r *Resolver) Lookup(short string) (Workload, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	w, ok := r.known[short]
	return w, ok
}

// NetnsPods labels network namespaces by pod, the one place porttrace
// does: every container of a pod shares one network namespace, so a
// namespace is a pod's when every process seen in it is that pod's (by
// PodKey, with the pod UID that the container runtime gives a container
// whose cgroup path has none). A namespace in which processes of two
// pods, or of a pod and of none, are seen (the host's, with hostNetwork
// pods) belongs to no pod. The live view labels each summary's namespaces
// with a fresh one; the exporter keeps one fed from events. Safe for
// concurrent use.
type NetnsPods struct {
	podUID func(container string) string
	mu     sync.RWMutex
	seen   map[uint32]*netnsSeen // by namespace inode
}

// netnsSeen: the distinct processes seen in a namespace, or shared once
// it is known to be no single pod's.
type netnsSeen struct {
	procs  []Process
	shared bool
}

// MaxContainers bounds the containers NetnsPods remembers in one
// namespace; a namespace with more belongs to no pod.
const MaxContainers = 32

// NewNetnsPods returns a NetnsPods that has seen no process. podUID, if
// not nil, gives the pod UID that the container runtime knows for a
// container, by its short id ("" when it does not know it): nodes whose
// cgroup paths carry no pod UID (the kubelet's cgroupfs driver without
// per-QoS cgroups) tell a pod's containers apart from other pods' only
// by it. It is asked each time Pod is, as the runtime may answer late.
func NewNetnsPods(podUID func(container string) string) *NetnsPods {
	return &NetnsPods{podUID: podUID, seen: map[uint32]*netnsSeen{}}
}

// Note says that process p was seen in namespace netns.
func (n *NetnsPods) Note(netns uint32, p Process) {
	p.Path = "" // the container and pod tell workloads apart
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.seen[netns]
	if s == nil {
		s = &netnsSeen{}
		n.seen[netns] = s
	}
	if s.shared || slices.Contains(s.procs, p) {
		return
	}
	// What no later answer of the runtime changes: a process in no
	// container, or two pod UIDs from the cgroup paths.
	otherPod := func(q Process) bool { return q.PodUID != "" && q.PodUID != p.PodUID }
	if p.Container == "" || p.PodUID != "" && slices.ContainsFunc(s.procs, otherPod) || len(s.procs) == MaxContainers {
		s.procs, s.shared = nil, true
		return
	}
	s.procs = append(s.procs, p)
}

// Pod is a process of the pod namespace netns belongs to, its PodUID
// filled in from the runtime where its cgroup path has none; false when
// the namespace belongs to no pod (shared, only processes in no
// container, or not seen).
func (n *NetnsPods) Pod(netns uint32) (Process, bool) {
	n.mu.RLock()
	var procs []Process
	if s := n.seen[netns]; s != nil {
		procs = s.procs[:len(s.procs):len(s.procs)] // Note only appends
	}
	n.mu.RUnlock()
	if len(procs) == 0 {
		return Process{}, false
	}
	pod := n.withUID(procs[0])
	for _, p := range procs[1:] {
		if n.withUID(p).PodKey() != pod.PodKey() {
			return Process{}, false
		}
	}
	return pod, pod.PodKey() != ""
}

// withUID is p with the runtime's pod UID where its cgroup path has none.
func (n *NetnsPods) withUID(p Process) Process {
	if p.PodUID == "" && p.Container != "" && n.podUID != nil {
		p.PodUID = n.podUID(p.Container)
	}
	return p
}

package export

import (
	"sync"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/cri"
	"github.com/porttrace/porttrace/internal/event"
)

// maxSeen bounds the (namespace, cgroup) pairs netnsPods remembers.
const maxSeen = 16384

// netnsPods knows which pod owns a network namespace: every container of
// a pod shares one, so its port spaces are the pod's. A namespace in which
// processes of two pods, or of a pod and of none, make connections (the
// host's, with hostNetwork pods) belongs to no pod.
type netnsPods struct {
	names func(string) (cri.Names, bool)

	mu   sync.RWMutex
	pod  map[uint32]cgroup.Workload // by namespace inode; zero when shared
	seen map[netnsCgroup]bool
}

type netnsCgroup struct {
	netns  uint32
	cgroup uint64
}

func newNetnsPods(names func(string) (cri.Names, bool)) *netnsPods {
	return &netnsPods{names: names, pod: map[uint32]cgroup.Workload{}, seen: map[netnsCgroup]bool{}}
}

// observe notes the pod of the event's process, once per namespace and
// cgroup: on the event path, a map lookup.
func (n *netnsPods) observe(e *event.Event) {
	k := netnsCgroup{e.Netns, e.CgroupID}
	n.mu.RLock()
	done := n.seen[k]
	n.mu.RUnlock()
	if done {
		return
	}
	var w cgroup.Workload
	if short := cgroup.Container(e.PID, e.CgroupID); short != "" {
		w, _ = cgroup.Lookup(short)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.seen) >= maxSeen {
		clear(n.seen)
	}
	n.seen[k] = true
	if cur, ok := n.pod[e.Netns]; !ok {
		n.pod[e.Netns] = w
	} else if podKey(cur) != podKey(w) {
		n.pod[e.Netns] = cgroup.Workload{}
	}
}

// podKey tells pods apart: by UID, else (a cgroup layout without the pod,
// such as the kubelet's cgroupfs driver without per-QoS cgroups) by the
// container, so that two containers of such a pod count as two pods and
// their namespace is labelled with neither, rather than wrongly.
func podKey(w cgroup.Workload) string {
	if w.PodUID != "" {
		return w.PodUID
	}
	if w.ContainerID != "" {
		return "container " + w.ContainerID
	}
	return ""
}

// attrs are the pod attributes of a namespace's port spaces: its UID
// where the cgroup path or the runtime gives it, and its name and
// namespace when the runtime tells them; none when the namespace is no
// single pod's.
func (n *netnsPods) attrs(netns uint32) []attribute.KeyValue {
	if n == nil {
		return nil
	}
	n.mu.RLock()
	w := n.pod[netns]
	n.mu.RUnlock()
	if podKey(w) == "" {
		return nil
	}
	var attrs []attribute.KeyValue
	if w.PodUID != "" {
		attrs = append(attrs, semconv.K8SPodUID(w.PodUID))
	}
	if n.names == nil {
		return attrs
	}
	if names, ok := n.names(w.ContainerID); ok && names.Pod != "" {
		if w.PodUID == "" && names.PodUID != "" {
			attrs = append(attrs, semconv.K8SPodUID(names.PodUID)) // the cgroup path lacks it
		}
		attrs = append(attrs, semconv.K8SPodName(names.Pod), semconv.K8SNamespaceName(names.Namespace))
	}
	return attrs
}

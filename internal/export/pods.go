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

// netnsPods knows where the processes of events run (where, a resolver
// the command passes in), their Kubernetes names (names), and which pod
// owns a network namespace, as cgroup.NetnsPods tells from the processes
// that make connections in it.
type netnsPods struct {
	names func(string) (cri.Names, bool)
	where *cgroup.Resolver
	pods  *cgroup.NetnsPods

	mu   sync.RWMutex
	seen map[netnsCgroup]bool
}

type netnsCgroup struct {
	netns  uint32
	cgroup uint64
}

func newNetnsPods(names func(string) (cri.Names, bool), where *cgroup.Resolver) *netnsPods {
	return &netnsPods{names: names, where: where, pods: cgroup.NewNetnsPods(), seen: map[netnsCgroup]bool{}}
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
	w := n.where.Of(e.PID, e.CgroupID)
	n.mu.Lock()
	if len(n.seen) >= maxSeen {
		clear(n.seen)
	}
	n.seen[k] = true
	n.mu.Unlock()
	n.pods.Note(e.Netns, cgroup.Process{Container: w.Container, PodUID: w.PodUID})
}

// attrs are the pod attributes of a namespace's port spaces: its UID
// where the cgroup path or the runtime gives it, and its name and
// namespace when the runtime tells them; none when the namespace is no
// single pod's.
func (n *netnsPods) attrs(netns uint32) []attribute.KeyValue {
	if n == nil {
		return nil
	}
	p, ok := n.pods.Pod(netns)
	if !ok {
		return nil
	}
	var attrs []attribute.KeyValue
	if p.PodUID != "" {
		attrs = append(attrs, semconv.K8SPodUID(p.PodUID))
	}
	if n.names == nil {
		return attrs
	}
	w, ok := n.where.Lookup(p.Container)
	if !ok {
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

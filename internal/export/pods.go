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
// that make connections in it and the pod UIDs the runtime gives their
// containers.
type netnsPods struct {
	names func(string) (cri.Names, bool)
	where *cgroup.Resolver
	// named gives a container's names by its short id; nil without a
	// runtime.
	named func(short string) (cri.Names, bool)
	pods  *cgroup.NetnsPods

	mu   sync.RWMutex
	seen map[netnsCgroup]bool
}

type netnsCgroup struct {
	netns  uint32
	cgroup uint64
}

func newNetnsPods(names func(string) (cri.Names, bool), where *cgroup.Resolver) *netnsPods {
	n := &netnsPods{names: names, where: where, seen: map[netnsCgroup]bool{}}
	if names != nil {
		n.named = func(short string) (cri.Names, bool) {
			w, ok := where.Lookup(short)
			if !ok {
				return cri.Names{}, false
			}
			return names(w.ContainerID)
		}
	}
	n.pods = cgroup.NewNetnsPods(func(short string) string {
		if n.named == nil {
			return ""
		}
		names, _ := n.named(short)
		return names.PodUID
	})
	return n
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
	if n.named == nil {
		return attrs
	}
	if names, ok := n.named(p.Container); ok && names.Pod != "" {
		attrs = append(attrs, semconv.K8SPodName(names.Pod), semconv.K8SNamespaceName(names.Namespace))
	}
	return attrs
}

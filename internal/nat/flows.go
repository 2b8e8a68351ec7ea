package nat

import (
	"net/netip"
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/window"
)

// Per-flow figures come from the fentry and kprobe backends' NAT events
// (event.NAT): each source-translated flow that conntrack confirmed or
// refused, with the NAT's port search time. They are counted per NAT
// space and per client over the last minute, by the events' own seconds.

// Bounds of what the flows keep: spaces (across namespaces), clients per
// space, refused original tuples per space. Past them, flows are counted
// in the tracker's DroppedFlows only.
const (
	maxFlowSpaces  = 4096
	maxFlowClients = 256
	maxFailedFlows = 4096
)

type flowKey struct {
	netns uint32
	space spaceKey
}

// flowSpace is one NAT space's flows over the last minute.
type flowSpace struct {
	flows, failures window.Counter
	latency         window.Sketch
	clients         map[netip.Addr]*window.Counter // refused flows by client address
	failed          map[netip.AddrPort]int64       // refused original source -> last second seen
	last            int64
}

// Observe takes one event; only NAT events count. Safe to call between
// Adds and Summaries, not concurrently with them.
func (tr *Tracker) Observe(e *event.Event) {
	if e.Kind != event.NAT {
		return
	}
	sec := e.Time.Unix()
	k := flowKey{e.Netns, spaceKey{e.Proto, e.NATSrc.Addr(), e.Dst}}
	f := tr.flows[k]
	if f == nil {
		if len(tr.flows) >= maxFlowSpaces {
			tr.DroppedFlows++
			return
		}
		f = &flowSpace{clients: map[netip.Addr]*window.Counter{}, failed: map[netip.AddrPort]int64{}}
		tr.flows[k] = f
	}
	f.last = max(f.last, sec)
	tr.flowSec = max(tr.flowSec, sec)
	f.flows.Add(sec, 1)
	f.latency.Add(sec, e.Latency)
	if e.Flags&event.InsertFailed == 0 {
		return
	}
	f.failures.Add(sec, 1)
	c := f.clients[e.Src.Addr()]
	if c == nil && len(f.clients) < maxFlowClients {
		c = &window.Counter{}
		f.clients[e.Src.Addr()] = c
	}
	if c != nil {
		c.Add(sec, 1)
	}
	if _, ok := f.failed[e.Src]; ok || len(f.failed) < maxFailedFlows {
		f.failed[e.Src] = sec
	}
}

// fill sets s's per-flow figures from f as of now (a second), and each
// refused client's count; a client that holds no port is added, its
// namespace from owner.
func (f *flowSpace) fill(s *Space, now int64, owner map[netip.Addr]uint32) {
	s.Flows = f.flows.Recent(now, window.Span)
	s.Failures = f.failures.Recent(now, window.Span)
	s.AllocLatency = f.latency.Summary(now)
	for _, sec := range f.failed {
		if now-sec < window.Span {
			s.FailedFlows++
		}
	}
	for addr, c := range f.clients {
		n := c.Recent(now, window.Span)
		if n == 0 {
			continue
		}
		i := clientIndex(s.Clients, addr)
		if i < 0 {
			s.Clients = append(s.Clients, Client{Addr: addr, Netns: owner[addr]})
			i = len(s.Clients) - 1
		}
		s.Clients[i].Failures = n
	}
}

func clientIndex(cs []Client, a netip.Addr) int {
	for i := range cs {
		if cs[i].Addr == a {
			return i
		}
	}
	return -1
}

// expireFlows forgets the spaces with no flow for a minute, and the
// refused tuples seen no more in that minute.
func (tr *Tracker) expireFlows(now int64) {
	for k, f := range tr.flows {
		if now-f.last >= window.Span {
			delete(tr.flows, k)
			continue
		}
		for src, sec := range f.failed {
			if now-sec >= window.Span {
				delete(f.failed, src)
			}
		}
	}
}

// flowNow is the second the per-flow figures are as of: the latest
// reading's or event's, whichever is later.
func (tr *Tracker) flowNow(readAt time.Time) int64 {
	return max(readAt.Unix(), tr.flowSec)
}

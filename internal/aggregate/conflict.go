package aggregate

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/summary"
	"github.com/porttrace/porttrace/internal/window"
)

// conflict is a named port that bind() could not take.
type conflict struct {
	addr   netip.AddrPort
	by     ProcKey
	holder *ProcKey
	count  window.Counter
}

// maxConflicts bounds the ports remembered per namespace.
const maxConflicts = 64

func (n *nsState) conflict(sec int64, e *event.Event, by ProcKey, holder *ProcKey) {
	port := e.Src.Port()
	c := n.conflicts[port]
	if c == nil {
		if len(n.conflicts) >= maxConflicts {
			return
		}
		c = &conflict{}
		n.conflicts[port] = c
	}
	c.addr, c.by = e.Src, by
	if holder != nil {
		c.holder = holder
	}
	c.count.Add(sec, 1)
}

func (n *nsState) conflictList(now int64) []summary.Conflict {
	out := []summary.Conflict{}
	for port, c := range n.conflicts {
		r := summary.Conflict{Addr: c.addr.String(), Port: port, By: summary.ProcRef{PID: c.by.PID, Comm: c.by.Comm.String()},
			Last60: c.count.Sum(now, 60), Total: c.count.Total}
		if c.holder != nil {
			r.Holder = &summary.ProcRef{PID: c.holder.PID, Comm: c.holder.Comm.String()}
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(x, y summary.Conflict) int { return cmp.Compare(x.Port, y.Port) })
	return out
}

package aggregate

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/window"
)

// conflict is a named port that bind() could not take.
type conflict struct {
	addr   netip.AddrPort
	by     ProcKey
	holder *ProcKey
	count  window.Counter
}

// Conflict is a bind() to a named port that failed with EADDRINUSE, and
// who held the port, where porttrace knows: typically a service whose port
// is inside ip_local_port_range, taken by an outgoing connection.
type Conflict struct {
	Addr   string   `json:"addr"` // what bind() asked for
	Port   uint16   `json:"port"`
	By     ProcRef  `json:"by"`
	Holder *ProcRef `json:"holder"` // nil: unknown (a listener, or older than porttrace)
	Last60 uint64   `json:"last_60s"`
	Total  uint64   `json:"total"`
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

func (n *nsState) conflictList(now int64) []Conflict {
	out := []Conflict{}
	for port, c := range n.conflicts {
		r := Conflict{Addr: c.addr.String(), Port: port, By: ProcRef{PID: c.by.PID, Comm: c.by.Comm.String()},
			Last60: c.count.Sum(now, 60), Total: c.count.Total}
		if c.holder != nil {
			r.Holder = &ProcRef{PID: c.holder.PID, Comm: c.holder.Comm.String()}
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(x, y Conflict) int { return cmp.Compare(x.Port, y.Port) })
	return out
}

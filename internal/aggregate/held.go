package aggregate

import (
	"cmp"
	"slices"
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/summary"
)

// maxHolders bounds the holders a space's summary lists.
const maxHolders = 8

// holderKey is one process's open sockets in one TCP state.
type holderKey struct {
	state event.TCPState
	proc  *proc // nil: owner unknown
}

type holderStat struct {
	n      int
	oldest int64 // UnixNano of the oldest start porttrace saw; 0: none seen
}

// heldBy is what holds a space's ports through open sockets, by state and
// process, as of the last Tick.
type heldBy map[holderKey]*holderStat

// held sorts every followed socket with a port by space, state and
// owner: one pass over the sockets, once a second.
func (f *follower) held() map[*space]heldBy {
	out := map[*space]heldBy{}
	for _, o := range f.socks {
		if o.port == 0 || o.state == 0 {
			continue
		}
		h := out[o.space]
		if h == nil {
			h = heldBy{}
			out[o.space] = h
		}
		k := holderKey{o.state, o.proc}
		st := h[k]
		if st == nil {
			st = &holderStat{}
			h[k] = st
		}
		st.n++
		if o.start != 0 && (st.oldest == 0 || o.start < st.oldest) {
			st.oldest = o.start
		}
	}
	return out
}

// summary lists the holders, most sockets first, and counts the sockets
// by state; at is the moment ages are taken at.
func (h heldBy) summary(at time.Time) (map[string]int, []summary.Holder) {
	states := map[string]int{}
	var out []summary.Holder
	for k, st := range h {
		states[k.state.String()] += st.n
		x := summary.Holder{State: k.state.String(), Sockets: st.n}
		if k.proc != nil {
			x.PID, x.Comm = k.proc.key.PID, k.proc.key.Comm.String()
		}
		if st.oldest != 0 {
			x.Oldest = max(at.Sub(time.Unix(0, st.oldest)).Seconds(), 0)
		}
		out = append(out, x)
	}
	slices.SortFunc(out, func(x, y summary.Holder) int {
		return cmp.Or(cmp.Compare(y.Sockets, x.Sockets), cmp.Compare(x.State, y.State), cmp.Compare(x.PID, y.PID))
	})
	if len(out) > maxHolders {
		out = out[:maxHolders]
	}
	return states, out
}

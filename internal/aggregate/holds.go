package aggregate

import (
	"math"

	"github.com/porttrace/porttrace/internal/summary"
	"github.com/porttrace/porttrace/internal/window"
)

// hold is what holds one port of a port space: open sockets, and a
// time-wait socket until the second it returns.
type hold struct {
	twDue int32 // the second the time-wait socket returns; 0: none
	live  uint16
	bound bool // the time-wait socket's port was taken by bind()
	// fin: the time-wait socket is in the FIN_WAIT2 substate, an orphan
	// whose peer never closed; tcp_tw_reuse never takes it over.
	fin bool
}

// holds are a port space's ports, port by port, so that the same port is
// never counted twice: a time-wait socket that the kernel hands to a new
// connection (tcp_tw_reuse) or that a socket table lists again is the same
// port. Keys are the port in the low 16 bits and, for sockets folded into
// "other", the id of the space they came from above.
type holds struct {
	m        map[uint64]hold
	due      map[int64][]uint64 // time-wait ports by the second they return
	tw       int                // ports with a time-wait socket
	fin      int                // ... of which in the FIN_WAIT2 substate
	total    *int               // time-wait ports of every space, for the bound
	ns       *int               // ... of the space's namespace (nil for "other")
	released window.Counter     // time-wait sockets whose timer fired
	reused   window.Counter     // time-wait sockets taken over by a new connection
	expired  int64              // every due second up to this one is done
}

func (h *holds) init(total *int) {
	h.m, h.due, h.total = map[uint64]hold{}, map[int64][]uint64{}, total
}

func (h *holds) set(k uint64, x hold) {
	if x.live == 0 && x.twDue == 0 {
		delete(h.m, k)
		return
	}
	h.m[k] = x
}

// open counts a socket on the port. A time-wait socket there is the one
// the kernel just took over: it is gone. It returns whether it took one
// bound by bind().
func (h *holds) open(sec int64, k uint64) (tookBound bool) {
	x := h.m[k]
	if x.twDue != 0 {
		tookBound = x.bound
		h.dropFin(&x)
		x.twDue, x.bound = 0, false
		h.tw--
		h.count(-1)
		h.reused.Add(sec, 1)
	}
	x.live++
	h.set(k, x)
	return tookBound
}

// close releases a socket on the port.
func (h *holds) close(k uint64) {
	x, ok := h.m[k]
	if !ok || x.live == 0 {
		return
	}
	x.live--
	h.set(k, x)
}

// count adds d time-wait ports to the totals.
func (h *holds) count(d int) {
	*h.total += d
	if h.ns != nil {
		*h.ns += d
	}
}

// dropFin forgets that x's time-wait socket was an orphan.
func (h *holds) dropFin(x *hold) {
	if x.fin {
		h.fin--
		x.fin = false
	}
}

// timeWait puts the port in TIME_WAIT (or, fin, the FIN_WAIT2 substate)
// until due, as seen at now. A port already there is the same time-wait
// socket, seen again: it keeps its timer. It returns whether it is new;
// beyond limit time-wait ports in all it is not taken.
func (h *holds) timeWait(now int64, k uint64, due int64, bound, fin bool, limit int) bool {
	x := h.m[k]
	due = min(due, now+summary.TimeWaitLen+1) // TIME_WAIT lasts no longer, whatever a table says
	if due <= now || x.twDue != 0 || *h.total >= limit {
		if x.twDue != 0 && bound && !x.bound {
			x.bound = true
			h.set(k, x)
		}
		return false
	}
	h.tw++
	h.count(1)
	x.twDue, x.bound = int32(due), bound
	if x.fin = fin; fin {
		h.fin++
	}
	h.due[due] = append(h.due[due], k)
	h.set(k, x)
	return true
}

// expire returns every time-wait port due by now to the pool, calling fn
// for each one bound by bind().
func (h *holds) expire(now int64, fn func(k uint64)) {
	if h.expired == 0 {
		h.expired = now - summary.TimeWaitLen - 1
	}
	if now-h.expired > int64(len(h.due)) {
		// A leap: visit the seconds that have ports due, not every second
		// in between.
		for sec := range h.due {
			if sec <= now {
				h.expireAt(sec, fn)
			}
		}
		h.expired = max(h.expired, now)
		return
	}
	for sec := h.expired + 1; sec <= now; sec++ {
		h.expireAt(sec, fn)
	}
	h.expired = max(h.expired, now)
}

// expireAt returns the time-wait ports due at sec.
func (h *holds) expireAt(sec int64, fn func(k uint64)) {
	for _, k := range h.due[sec] {
		x := h.m[k]
		if int64(x.twDue) != sec {
			continue // taken over
		}
		if x.bound && fn != nil {
			fn(k)
		}
		h.dropFin(&x)
		x.twDue, x.bound = 0, false
		h.tw--
		h.count(-1)
		h.released.Add(sec, 1)
		h.set(k, x)
	}
	delete(h.due, sec)
}

// resetTimeWait forgets every time-wait port, before a socket table lists
// them again; it returns which were bound, to carry that over.
func (h *holds) resetTimeWait() map[uint64]bool {
	bound := map[uint64]bool{}
	for k, x := range h.m {
		if x.twDue == 0 {
			continue
		}
		if x.bound {
			bound[k] = true
		}
		x.twDue, x.bound, x.fin = 0, false, false
		h.set(k, x)
	}
	h.count(-h.tw)
	h.tw, h.fin = 0, 0
	clear(h.due)
	return bound
}

// resetLive forgets the open sockets, before they are counted again.
func (h *holds) resetLive() {
	for k, x := range h.m {
		x.live = 0
		h.set(k, x)
	}
}

// live is the number of open sockets.
func (h *holds) live() int {
	n := 0
	for _, x := range h.m {
		n += int(x.live)
	}
	return n
}

// merge moves o's ports into h (an evicted space into "other").
func (h *holds) merge(o *holds, now int64) {
	type tw struct {
		k          uint64
		due        int64
		bound, fin bool
	}
	var tws []tw
	for k, x := range o.m {
		for range x.live {
			h.open(now, k)
		}
		if x.twDue != 0 {
			tws = append(tws, tw{k, int64(x.twDue), x.bound, x.fin})
		}
	}
	o.resetTimeWait()
	for _, t := range tws {
		h.timeWait(now, t.k, t.due, t.bound, t.fin, math.MaxInt)
	}
	h.released.Merge(&o.released, now)
	h.reused.Merge(&o.reused, now)
}

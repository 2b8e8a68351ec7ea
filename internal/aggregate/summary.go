package aggregate

import (
	"cmp"
	"slices"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/summary"
	"github.com/porttrace/porttrace/internal/window"
)

func rates(c *window.Counter, now int64) summary.Rates {
	return summary.Rates{S1: c.Rate(now, 1), S10: c.Rate(now, 10), S60: c.Rate(now, 60)}
}

func failureSummaries(m failures, now int64) []summary.Failure {
	out := []summary.Failure{}
	for f, c := range m {
		out = append(out, summary.Failure{Errno: event.ErrnoName(f.errno), Exhaustion: f.exhaustion, Rates: rates(c, now), Last: c.Sum(now, 60), Total: c.Total})
	}
	// Exhaustion first: it is what porttrace is for.
	slices.SortFunc(out, func(x, y summary.Failure) int {
		if x.Exhaustion != y.Exhaustion {
			if x.Exhaustion {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(y.Total, x.Total), cmp.Compare(x.Errno, y.Errno))
	})
	return out
}

// Summary is what the aggregator holds as of its last Tick, port spaces by
// urgency and processes by churn; Tick first to age it to a moment.
func (a *Aggregator) Summary() *summary.Summary {
	r := &summary.Summary{Time: a.tickedAt, Seconds: a.now, Events: a.events, Lost: a.lost, Untracked: a.follower.untracked,
		Dropped: summary.Dropped{Namespaces: a.namespaces.dropped, ClockSteps: a.steps, LastStep: a.lastStep}}
	tw := map[uint32]int{}
	for k, s := range a.spaces {
		tw[k.Netns] += s.ports.tw
	}
	r.Netns = a.netnsSummaries(tw)
	r.Spaces = a.spaceSummaries(tw)
	r.Processes = a.processSummaries()
	return r
}

// netnsSummaries are the namespaces whose settings are known, by inode,
// with tw their time-wait ports.
func (a *Aggregator) netnsSummaries(tw map[uint32]int) []summary.NetnsSummary {
	out := []summary.NetnsSummary{}
	for ino, n := range a.ns {
		if !n.known {
			continue
		}
		st := n.settings
		st.Names = append([]string{}, st.Names...)
		out = append(out, summary.NetnsSummary{Settings: st, Usable: st.Usable(), TimeWait: tw[ino],
			Listeners: append([]summary.Listener{}, n.listeners...), Conflicts: n.conflictList(a.now), Gone: n.gone})
	}
	slices.SortFunc(out, func(x, y summary.NetnsSummary) int { return cmp.Compare(x.Inode, y.Inode) })
	return out
}

// spaceSummaries are the port spaces by urgency, "other" among them if it
// holds anything, with their occupancy as of the last Tick.
func (a *Aggregator) spaceSummaries(tw map[uint32]int) []summary.SpaceSummary {
	out := []summary.SpaceSummary{}
	for _, s := range a.spaces {
		out = append(out, a.spaceSummary(s, false, a.occ[s], tw))
	}
	if a.other.conns.Total > 0 || len(a.other.ports.m) > 0 {
		out = append(out, a.spaceSummary(a.other, true, a.occ[a.other], tw))
	}
	procCount := a.procCounts()
	for i := range out {
		sp := &out[i]
		s := a.other
		if !sp.Other {
			sp.ProcessCount = max(procCount[sp.Key], len(sp.Processes))
			s = a.lookup(sp.Key)
		}
		if h := a.held[s]; len(h) > 0 {
			sp.States, sp.Holders = h.summary(a.tickedAt)
		}
	}
	slices.SortFunc(out, summary.ByUrgency)
	return out
}

// procCounts is how many processes connected in each space over the last
// minute.
func (a *Aggregator) procCounts() map[summary.SpaceKey]int {
	out := map[summary.SpaceKey]int{}
	for _, p := range a.procs {
		for k, c := range p.spaces {
			if c.Sum(a.now, 60) > 0 {
				out[k]++
			}
		}
	}
	return out
}

// processSummaries are the processes, busiest first, "other" among them
// if it connected.
func (a *Aggregator) processSummaries() []summary.ProcessSummary {
	out := []summary.ProcessSummary{}
	for _, p := range a.procs {
		out = append(out, a.processSummary(p, false))
	}
	if a.otherProc.conns.Total > 0 {
		out = append(out, a.processSummary(a.otherProc, true))
	}
	slices.SortFunc(out, func(x, y summary.ProcessSummary) int {
		return cmp.Or(cmp.Compare(y.Conns.S10, x.Conns.S10), cmp.Compare(y.Total, x.Total), cmp.Compare(x.PID, y.PID))
	})
	return out
}

func (a *Aggregator) spaceSummary(s *space, other bool, o occupancy, tw map[uint32]int) summary.SpaceSummary {
	now := a.now
	r := summary.SpaceSummary{
		Key: s.key, Other: other, Netns: s.key.Netns,
		Conns: rates(&s.conns, now), Failures: failureSummaries(s.fails, now),
		TWIn: rates(&s.twIn, now), Released: rates(&s.ports.released, now), Reused: rates(&s.ports.reused, now),
		TimeWait: o.tw - o.fin, FinWait2: o.fin, Reusable: o.reusable, Live: o.live, Bound: o.bound, Used: o.used,
		PeerCloseWait: s.peerCloseWait,
		UsedMax60:     max(o.used, maxUsed(&s.used, now)),
		AllocLatency:  s.latency.Summary(now), Lifetime: s.lifetime.Summary(now),
		Closed60:   s.closed.Sum(now, 60),
		TotalConns: s.conns.Total, TotalTWIn: s.twIn.Total,
	}
	r.Name = "(other port spaces)"
	if !other {
		r.Name = s.key.String()
		r.Src = s.key.Src.String()
		if !s.key.IsBindPool() {
			r.Dst = s.key.Dst.String()
		}
	}
	if n := s.conns.Sum(now, 60); n > 0 {
		r.BoundPct = 100 * float64(s.bound.Sum(now, 60)) / float64(n)
	}
	for _, f := range s.fails {
		r.TotalFailures += f.Total
	}
	if r.Closed60 > 0 {
		r.ShortPct = 100 * float64(s.short.Sum(now, 60)) / float64(r.Closed60)
	}
	a.headroom(s, &r, tw[s.key.Netns])
	lastExhaustion(s.lastFull, now, &r)
	r.Processes = a.procRefs(s)
	return r
}

// lastExhaustion fills in when, within the last minute, a call last
// failed for want of a port, and what was taken then.
func lastExhaustion(m exhaustionMark, now int64, r *summary.SpaceSummary) {
	if m.n == 0 || now-m.at >= 60 {
		return
	}
	ago := float64(now - m.at)
	r.LastExhaustion, r.UsedAtExhaustion = &ago, m.used
}

func maxUsed(g *window.Gauge, now int64) int {
	m, _ := g.Max(now, 60)
	return m
}

// headroom fills in the space's size, how full it is, and when it runs out
// at the rate it filled over the last 10 s (or over what has been seen of
// them).
func (a *Aggregator) headroom(s *space, r *summary.SpaceSummary, nsTimeWait int) {
	n := a.ns[s.key.Netns]
	if n == nil || r.Other {
		return
	}
	r.Gone = n.gone
	if !n.known {
		return
	}
	a.usable(s, n, r)
	if r.Usable == 0 || n.gone {
		return
	}
	r.UsedPct = 100 * float64(r.Used) / float64(r.Usable)
	// Settings that events contradict are being read again: fullness
	// against them proves nothing until then.
	r.Exhausted = exhaustionFailures(r) > 0 || r.Used >= r.Usable && a.trulyFull(s, r, n) && !n.stale
	if r.Exhausted {
		zero := 0.0
		r.ETA = &zero
		return
	}
	if r.Used < r.Usable { // full, yet calls succeed: nothing left to run out of
		a.eta(s, r, n, nsTimeWait)
	}
}

// usable is the space's size: the namespace's range minus its reserved
// ports, or the window of its sockets' own IP_LOCAL_PORT_RANGE.
func (a *Aggregator) usable(s *space, n *nsState, r *summary.SpaceSummary) {
	r.Usable = n.settings.Usable()
	if lo, hi, ok := a.portWindow(s, n); ok {
		r.Usable = windowUsable(n, lo, hi)
		p := s.sockRange.proc
		r.SocketRange = &summary.SocketRange{Low: s.sockRange.r[0], High: s.sockRange.r[1], SearchLow: lo, SearchHigh: hi,
			By: summary.ProcRef{PID: p.PID, Comm: p.Comm.String()}}
	}
}

// eta fills in the fill rate of a space with room left, and when it runs
// out at that rate.
func (a *Aggregator) eta(s *space, r *summary.SpaceSummary, n *nsState, nsTimeWait int) {
	slope, ok := s.used.Slope(a.now, 10)
	if !ok {
		slope, ok = s.fillSince(a.now)
	}
	if !ok {
		return
	}
	r.FillRate = slope
	// Past tcp_max_tw_buckets, closing sockets skip TIME_WAIT: a space
	// filling by TIME_WAIT stops short of full.
	if max := n.settings.MaxTWBuckets; max > 0 && r.TimeWait > 0 && nsTimeWait+(r.Usable-r.Used) > max {
		r.TWCapped = true
		return
	}
	// Every recent attempt failed, and not for want of a port: what
	// filled the space before says nothing about when it runs out.
	if allFailing(r) {
		return
	}
	if slope > 0 {
		eta := float64(r.Usable-r.Used) / slope
		r.ETA = &eta
	}
}

// trulyFull tells whether a space whose every port is used has none left
// for the next call. A bind() pool whose ports are held in TIME_WAIT is
// not, with ip_autobind_reuse=1: bind() with SO_REUSEADDR hands them out;
// it is full only when its open sockets and listeners take every port
// (or a call failed, which the caller checks).
//
// A connect space whose attempts mostly bind() first is full for a port
// search that its callers do not make: their ports come from the pool,
// which says whether it runs out.
func (a *Aggregator) trulyFull(s *space, r *summary.SpaceSummary, n *nsState) bool {
	if !s.key.IsBindPool() {
		return r.BoundPct < viaBindPct
	}
	if n.settings.AutobindReuse == 0 {
		return true
	}
	return r.Used-r.TimeWait-r.FinWait2 >= r.Usable
}

// viaBindPct is the share of a connect space's attempts, in percent, from
// sockets bound before connect() above which its ports are the pool's.
const viaBindPct = 50

// exhaustionFailures is the rate of r's failures for want of a port over
// the last 10 s.
func exhaustionFailures(r *summary.SpaceSummary) float64 {
	return r.SumFailures(func(f summary.Failure) bool { return f.Exhaustion }).Rates.S10
}

// allFailing reports whether the last second (or 10 s) had attempts and
// as many failures that were not for want of a port.
func allFailing(r *summary.SpaceSummary) bool {
	other := r.SumFailures(func(f summary.Failure) bool { return !f.Exhaustion }).Rates
	return r.Conns.S1 > 0 && other.S1 >= r.Conns.S1 || r.Conns.S10 > 0 && other.S10 >= r.Conns.S10
}

func (a *Aggregator) procRefs(s *space) []summary.ProcRef {
	out := []summary.ProcRef{}
	for k, st := range s.procs {
		ref := summary.ProcRef{PID: k.PID, Comm: k.Comm.String(), Conns60: st.conns.Sum(a.now, 60),
			Failed60: st.fails.Sum(a.now, 60), Sockets: st.held}
		if p := a.procs[k]; p != nil {
			ref.Container, ref.PodUID = p.cgroup.Container, p.cgroup.PodUID
		}
		out = append(out, ref)
	}
	slices.SortFunc(out, func(x, y summary.ProcRef) int {
		return cmp.Or(cmp.Compare(y.Failed60, x.Failed60), cmp.Compare(y.Conns60, x.Conns60),
			cmp.Compare(y.Sockets, x.Sockets), cmp.Compare(x.PID, y.PID))
	})
	return out
}

func (a *Aggregator) processSummary(p *proc, other bool) summary.ProcessSummary {
	r := summary.ProcessSummary{
		PID: p.key.PID, Comm: p.key.Comm.String(), CgroupID: p.key.CgroupID, CgroupPath: p.cgroup.Path, Container: p.cgroup.Container, PodUID: p.cgroup.PodUID, Other: other,
		Conns: rates(&p.conns, a.now), Failures: failureSummaries(p.fails, a.now), TWIn: rates(&p.twIn, a.now), Total: p.conns.Total, TotalTWIn: p.twIn.Total,
	}
	type kc struct {
		k summary.SpaceKey
		n uint64
	}
	var sp []kc
	r.Spaces = []string{}
	for k, c := range p.spaces {
		sp = append(sp, kc{k, c.Sum(a.now, 60)})
	}
	slices.SortFunc(sp, func(x, y kc) int { return cmp.Compare(y.n, x.n) })
	for _, s := range sp {
		r.Spaces = append(r.Spaces, s.k.String())
	}
	return r
}

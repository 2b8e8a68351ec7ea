package aggregate

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/window"
)

// Windows are the spans every rate is given over, in seconds.
var Windows = [3]int{1, 10, 60}

// Rates is a count per second over each of Windows, in complete seconds.
type Rates struct {
	S1  float64 `json:"1s"`
	S10 float64 `json:"10s"`
	S60 float64 `json:"60s"`
}

func rates(c *window.Counter, now int64) Rates {
	return Rates{c.Rate(now, 1), c.Rate(now, 10), c.Rate(now, 60)}
}

// Failure is a count of one kind of failed call.
type Failure struct {
	Errno string `json:"errno"`
	// Exhaustion: no port was left (connect()'s port search failed, or a
	// bind() pool was empty). An EADDRNOTAVAIL without it had no usable
	// source address, and an EADDRINUSE a named port already taken.
	Exhaustion bool   `json:"exhaustion"`
	Rates      Rates  `json:"per_second"`
	Last       uint64 `json:"last_60s"`
	Total      uint64 `json:"total"`
}

func failureSummaries(m failures, now int64) []Failure {
	out := []Failure{}
	for f, c := range m {
		out = append(out, Failure{Errno: event.ErrnoName(f.errno), Exhaustion: f.exhaustion, Rates: rates(c, now), Last: c.Sum(now, 60), Total: c.Total})
	}
	// Exhaustion first: it is what porttrace is for.
	slices.SortFunc(out, func(x, y Failure) int {
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

// ProcRef names a process in a port space's row.
type ProcRef struct {
	PID       uint32 `json:"pid"`
	Comm      string `json:"comm"`
	Container string `json:"container,omitempty"`
	PodUID    string `json:"k8s_pod_uid,omitempty"`
	// PodName and PodNamespace come from the container runtime (live
	// fills them in where a CRI socket answers).
	PodName      string `json:"k8s_pod_name,omitempty"`
	PodNamespace string `json:"k8s_namespace_name,omitempty"`
	Conns60      uint64 `json:"connections_60s"`
	Failed60     uint64 `json:"failures_60s"`
	// Sockets is how many of the space's open sockets a socket table
	// showed it holding, for sockets older than porttrace.
	Sockets int `json:"sockets,omitempty"`
}

// SpaceSummary is one port space.
type SpaceSummary struct {
	Key   SpaceKey `json:"-"`
	Name  string   `json:"name"`            // as diagnosis findings name it
	Other bool     `json:"other,omitempty"` // keys beyond the limits, together
	Netns uint32   `json:"netns"`
	// Pod is the Kubernetes pod whose network namespace this is (its
	// namespace/name, else "pod UID"), where every process seen in the
	// namespace belongs to that one pod.
	Pod       string    `json:"k8s_pod,omitempty"`
	Src       string    `json:"src"`
	Dst       string    `json:"dst"` // "" for a bind() pool
	Processes []ProcRef `json:"processes"`
	// ProcessCount is how many processes made attempts here in the last
	// minute; Processes lists at most 8 of them. A lower bound: a process
	// remembers its 8 busiest spaces.
	ProcessCount int `json:"process_count"`

	Conns Rates `json:"connections_per_second"`
	// BoundPct is the share of the last minute's attempts whose socket
	// had its port from bind() before connect().
	BoundPct float64   `json:"bound_percent"`
	Failures []Failure `json:"failures"`
	TWIn     Rates     `json:"time_wait_entries_per_second"`
	Released Rates     `json:"time_wait_released_per_second"`
	// Reused is the time-wait sockets that connect() took over
	// (tcp_tw_reuse), per second.
	Reused Rates `json:"time_wait_reused_per_second"`
	// TimeWait is the time-wait sockets in the TIME_WAIT substate holding
	// this space's ports (ss's TIME-WAIT); Reusable of them, connect() may
	// take over (TakeOver: tcp_tw_reuse, older than tcp_tw_reuse_delay):
	// they count as free in Used.
	TimeWait int `json:"time_wait"`
	Reusable int `json:"time_wait_reusable"`
	// FinWait2 is the orphans holding ports: time-wait sockets in the
	// FIN_WAIT2 substate (ss's FIN-WAIT-2 with no process), whose client
	// closed and whose peer never did. They count as used: tcp_tw_reuse
	// never takes them over; each goes after tcp_fin_timeout. The kernel's
	// socket table tells them from TIME_WAIT: between two tables, new
	// ones are taken for what the space's were at the last.
	FinWait2 int `json:"fin_wait2_orphans"`
	// PeerCloseWait is the peer's sockets in CLOSE_WAIT toward this space
	// at the last socket table, where the peer is in the same namespace:
	// connections this side closed and the peer never did.
	PeerCloseWait int `json:"peer_close_wait,omitempty"`
	// SocketRange is set when the space's sockets carry their own
	// IP_LOCAL_PORT_RANGE (an attempt of the last minute did, read by the
	// probe at SYN_SENT): then Usable and Used are those of its window.
	SocketRange *SocketRange `json:"socket_port_range,omitempty"`
	Live        int          `json:"live"`
	// States counts the open sockets holding this space's ports by TCP
	// state, as the last socket table showed them (CLOSE_WAIT, FIN_WAIT2
	// of a half-closed socket...) or events since (SYN_SENT, ESTABLISHED).
	States map[string]int `json:"open_states,omitempty"`
	// Holders are those sockets by state and owning process, most first
	// (at most 8).
	Holders []Holder `json:"holders,omitempty"`
	// Bound is the ports that sockets hold by bind() in the namespace
	// (listeners, bind-before-connect sockets): connect() skips them for
	// every destination.
	Bound int `json:"bound"`
	// Used is the ports a new connect() (bind() for a pool) cannot have:
	// a set of usable ports, so never more than Usable.
	Used int `json:"used"`
	// UsedMax60 is the most ports Used was at any second of the last
	// minute (sampled at each Tick).
	UsedMax60 int      `json:"used_max_60s"`
	Usable    int      `json:"usable"` // 0 when the namespace's settings are unknown
	UsedPct   float64  `json:"used_percent"`
	FillRate  float64  `json:"fill_per_second"` // net change of Used over 10 s
	ETA       *float64 `json:"eta_seconds"`     // nil: not filling
	Exhausted bool     `json:"exhausted"`
	// Gone: the namespace is gone (for less than GoneFor): its figures are
	// history, no port is in use, and it runs out of nothing.
	Gone bool `json:"netns_gone,omitempty"`
	// TWCapped: the namespace's time-wait sockets are near
	// tcp_max_tw_buckets, past which closed ports skip TIME_WAIT: the space
	// cannot fill by TIME_WAIT, and there is no ETA.
	TWCapped bool `json:"time_wait_capped,omitempty"`

	AllocLatency Durations `json:"alloc_latency"`
	Lifetime     Durations `json:"lifetime"`
	Closed60     uint64    `json:"closed_60s"`
	ShortPct     float64   `json:"short_lived_percent"` // of Closed60, under 1 s

	TotalConns    uint64 `json:"total_connections"`
	TotalFailures uint64 `json:"total_failures"`
	TotalTWIn     uint64 `json:"total_time_wait_entries"`
}

// Where names the space uniquely: the same addresses may exist in several
// namespaces.
func (r *SpaceSummary) Where() string {
	return fmt.Sprintf("%s (netns %d)", r.Name, r.Netns)
}

// SocketRange is a process's IP_LOCAL_PORT_RANGE (setsockopt, Linux 6.3+)
// and the ports it leaves connect() for those sockets.
type SocketRange struct {
	// Low and High are the option as set (0: that bound unset).
	Low  uint16 `json:"low"`
	High uint16 `json:"high"`
	// SearchLow and SearchHigh are the ports the kernel searches: each of
	// the option's bounds that lies inside the namespace's range.
	SearchLow  int     `json:"search_low"`
	SearchHigh int     `json:"search_high"`
	By         ProcRef `json:"process"` // the process that set it
}

// SumFailures adds up the space's failures that match (all of them for
// nil): their rates, last minute and total, as one Failure without an
// errno.
func (r *SpaceSummary) SumFailures(match func(Failure) bool) Failure {
	return SumFailures(r.Failures, match)
}

// SumFailures adds up the failures of fs that match (all of them for nil).
func SumFailures(fs []Failure, match func(Failure) bool) Failure {
	var sum Failure
	for _, f := range fs {
		if match == nil || match(f) {
			sum.Rates.S1 += f.Rates.S1
			sum.Rates.S10 += f.Rates.S10
			sum.Rates.S60 += f.Rates.S60
			sum.Last += f.Last
			sum.Total += f.Total
		}
	}
	return sum
}

func exhaustion(f Failure) bool { return f.Exhaustion }

// FailRate is the failures per second over 10 s, all errnos.
func (r *SpaceSummary) FailRate() float64 { return r.SumFailures(nil).Rates.S10 }

// Failed60 is the failures of the last minute, all errnos.
func (r *SpaceSummary) Failed60() uint64 { return r.SumFailures(nil).Last }

// Errno is the failures of one errno over the last minute.
func (r *SpaceSummary) Errno(name string) uint64 {
	return r.SumFailures(func(f Failure) bool { return f.Errno == name }).Last
}

// Exhaustion60 is the last minute's failures for want of a port.
func (r *SpaceSummary) Exhaustion60() uint64 { return r.SumFailures(exhaustion).Last }

// NoAddress60 is the last minute's EADDRNOTAVAIL that had no usable
// source address, with no port search at all.
func (r *SpaceSummary) NoAddress60() uint64 {
	return r.SumFailures(func(f Failure) bool { return !f.Exhaustion && f.Errno == "EADDRNOTAVAIL" }).Last
}

// ExhaustionErrno is the errno a caller sees when the space has no port
// left: connect() fails with EADDRNOTAVAIL, bind() with EADDRINUSE.
func (r *SpaceSummary) ExhaustionErrno() string {
	if r.Dst == "" && !r.Other {
		return "EADDRINUSE"
	}
	return "EADDRNOTAVAIL"
}

// exhaustionFailures is the rate of failures for want of a port over the
// last 10 s.
func (r *SpaceSummary) exhaustionFailures() float64 { return r.SumFailures(exhaustion).Rates.S10 }

// Command is the processes of one task name among a space's ProcRefs.
type Command struct {
	Comm string
	PIDs []uint32
}

// String is "nginx[812]" for one process, "nginx(3)" for several.
func (c Command) String() string {
	if len(c.PIDs) == 1 {
		return fmt.Sprintf("%s[%d]", c.Comm, c.PIDs[0])
	}
	return fmt.Sprintf("%s(%d)", c.Comm, len(c.PIDs))
}

// Commands groups refs by task name, in the order each name first appears
// (the refs' own: most failures first).
func Commands(refs []ProcRef) []Command {
	var out []Command
	at := map[string]int{}
	for _, p := range refs {
		i, ok := at[p.Comm]
		if !ok {
			i, at[p.Comm] = len(out), len(out)
			out = append(out, Command{Comm: p.Comm})
		}
		out[i].PIDs = append(out[i].PIDs, p.PID)
	}
	return out
}

// ProcessSummary is one process.
type ProcessSummary struct {
	PID        uint32 `json:"pid"`
	Comm       string `json:"comm"`
	CgroupID   uint64 `json:"cgroup_id"`
	CgroupPath string `json:"cgroup_path"` // as /proc/PID/cgroup gives it; "" where unknown
	Container  string `json:"container,omitempty"`
	PodUID     string `json:"k8s_pod_uid,omitempty"`
	// PodName and PodNamespace: as in ProcRef.
	PodName      string    `json:"k8s_pod_name,omitempty"`
	PodNamespace string    `json:"k8s_namespace_name,omitempty"`
	Other        bool      `json:"other,omitempty"`
	Conns        Rates     `json:"connections_per_second"`
	Failures     []Failure `json:"failures"`
	TWIn         Rates     `json:"time_wait_entries_per_second"`
	Spaces       []string  `json:"port_spaces"`
	Total        uint64    `json:"total_connections"`
	TotalTWIn    uint64    `json:"total_time_wait_entries"`
}

// Pod names the process's pod as an operator does: namespace/name, else
// "pod UID"; "" for none.
func (r *ProcRef) Pod() string { return podName(r.PodNamespace, r.PodName, r.PodUID) }

// Workload is where the process runs, as an operator names it: its pod
// (as ProcRef.Pod), else its container's short id; "" for neither.
func (p *ProcessSummary) Workload() string {
	return cmp.Or(podName(p.PodNamespace, p.PodName, p.PodUID), p.Container)
}

func podName(namespace, name, uid string) string {
	switch {
	case name != "":
		return namespace + "/" + name
	case uid != "":
		return "pod " + uid
	}
	return ""
}

// Summary is everything the aggregator knows at one moment.
type Summary struct {
	Time      time.Time        `json:"time"`
	Seconds   int64            `json:"seconds"` // complete seconds observed
	Netns     []NetnsSummary   `json:"netns"`
	Events    uint64           `json:"events"`
	Lost      uint64           `json:"lost_events"`
	Untracked uint64           `json:"untracked_sockets"`
	Dropped   Dropped          `json:"dropped"`
	Spaces    []SpaceSummary   `json:"port_spaces"`
	Processes []ProcessSummary `json:"processes"`
}

// Dropped is what porttrace's bounds left out of the figures, and the
// clock steps it took out (docs/reliability.md): all zero for sane input.
type Dropped struct {
	// Namespaces counts events and socket tables of namespaces beyond
	// Limits.Namespaces.
	Namespaces uint64 `json:"namespaces"`
	// Cgroups counts cgroups a capture named beyond the report's bound.
	Cgroups uint64 `json:"cgroups"`
	// Sockets counts sockets of a capture's socket tables beyond the
	// reader's bound on a round.
	Sockets uint64 `json:"sockets"`
	// ClockSteps counts times more than MaxStep away from the clock,
	// either way; LastStep is the last one's size.
	ClockSteps uint64        `json:"clock_steps"`
	LastStep   time.Duration `json:"last_clock_step_ns"`
	// Rows counts a report's rows beyond its bounds: timeline steps,
	// spaces kept after their namespace ended, peaks.
	Rows uint64 `json:"report_rows"`
}

// String says what was dropped in one line; "" for nothing.
func (d Dropped) String() string {
	var parts []string
	for _, c := range []struct {
		n    uint64
		what string
	}{{d.Namespaces, "events or socket tables of namespaces beyond the bound"}, {d.Cgroups, "cgroups beyond the bound"},
		{d.Sockets, "sockets of socket tables beyond the bound"}, {d.Rows, "report rows beyond the bound"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	if d.ClockSteps > 0 {
		parts = append(parts, fmt.Sprintf("%d clock steps taken out (the last %s)", d.ClockSteps, d.LastStep))
	}
	return strings.Join(parts, "; ")
}

// NetnsSummary is a network namespace's settings and its ports per space.
type NetnsSummary struct {
	netns.Settings
	Usable int `json:"usable_ports"`
	// Pod: as SpaceSummary.Pod.
	Pod string `json:"k8s_pod,omitempty"`
	// TimeWait is every time-wait socket of the namespace that porttrace
	// follows, against tcp_max_tw_buckets.
	TimeWait  int        `json:"time_wait"`
	Listeners []Listener `json:"listeners"`
	// Conflicts are bind()s to a named port that failed with EADDRINUSE.
	Conflicts []Conflict `json:"bind_conflicts"`
	// Gone: as SpaceSummary.Gone.
	Gone bool `json:"gone,omitempty"`
}

// Summary is what the aggregator holds as of its last Tick, port spaces by
// urgency and processes by churn; Tick first to age it to a moment.
func (a *Aggregator) Summary() *Summary {
	r := &Summary{Time: a.tickedAt, Seconds: a.now, Events: a.events, Lost: a.lost, Untracked: a.untracked, Dropped: a.dropped,
		Netns: []NetnsSummary{}, Spaces: []SpaceSummary{}, Processes: []ProcessSummary{}}
	occ := a.occ // as of the last Tick
	tw := map[uint32]int{}
	for k, s := range a.spaces {
		tw[k.Netns] += s.ports.tw
	}
	for ino, n := range a.ns {
		if !n.known {
			continue
		}
		st := n.settings
		st.Names = append([]string{}, st.Names...)
		r.Netns = append(r.Netns, NetnsSummary{Settings: st, Usable: st.Usable(), TimeWait: tw[ino],
			Listeners: append([]Listener{}, n.listeners...), Conflicts: n.conflictList(a.now), Gone: n.gone})
	}
	slices.SortFunc(r.Netns, func(x, y NetnsSummary) int { return cmp.Compare(x.Inode, y.Inode) })
	for _, s := range a.spaces {
		r.Spaces = append(r.Spaces, a.spaceSummary(s, false, occ[s], tw))
	}
	if a.other.conns.Total > 0 || len(a.other.ports.m) > 0 {
		r.Spaces = append(r.Spaces, a.spaceSummary(a.other, true, occ[a.other], tw))
	}
	procCount := map[SpaceKey]int{}
	for _, p := range a.procs {
		for k, c := range p.spaces {
			if c.Sum(a.now, 60) > 0 {
				procCount[k]++
			}
		}
	}
	for i := range r.Spaces {
		sp := &r.Spaces[i]
		if !sp.Other {
			sp.ProcessCount = max(procCount[sp.Key], len(sp.Processes))
		}
		s := a.lookup(sp.Key)
		if sp.Other {
			s = a.other
		}
		if h := a.held[s]; len(h) > 0 {
			sp.States, sp.Holders = h.summary(a.tickedAt)
		}
	}
	slices.SortFunc(r.Spaces, ByUrgency)
	for _, p := range a.procs {
		r.Processes = append(r.Processes, a.processSummary(p, false))
	}
	if a.otherProc.conns.Total > 0 {
		r.Processes = append(r.Processes, a.processSummary(a.otherProc, true))
	}
	slices.SortFunc(r.Processes, func(x, y ProcessSummary) int {
		return cmp.Or(cmp.Compare(y.Conns.S10, x.Conns.S10), cmp.Compare(y.Total, x.Total), cmp.Compare(x.PID, y.PID))
	})
	return r
}

// ByUrgency orders port spaces as an operator would look at them: failing
// now, then soonest to run out, then fullest, then busiest.
func ByUrgency(x, y SpaceSummary) int {
	eta := func(r SpaceSummary) float64 {
		if r.ETA == nil {
			return math.Inf(1)
		}
		return *r.ETA
	}
	return cmp.Or(
		cmp.Compare(y.FailRate(), x.FailRate()),
		cmp.Compare(eta(x), eta(y)),
		cmp.Compare(y.UsedPct, x.UsedPct),
		cmp.Compare(y.Conns.S10, x.Conns.S10),
		cmp.Compare(x.Src+x.Dst, y.Src+y.Dst),
	)
}

func (a *Aggregator) spaceSummary(s *space, other bool, o occupancy, tw map[uint32]int) SpaceSummary {
	now := a.now
	r := SpaceSummary{
		Key: s.key, Other: other, Netns: s.key.Netns,
		Conns: rates(&s.conns, now), Failures: failureSummaries(s.fails, now),
		TWIn: rates(&s.twIn, now), Released: rates(&s.ports.released, now), Reused: rates(&s.ports.reused, now),
		TimeWait: o.tw - o.fin, FinWait2: o.fin, Reusable: o.reusable, Live: o.live, Bound: o.bound, Used: o.used,
		PeerCloseWait: s.peerCloseWait,
		UsedMax60:     max(o.used, maxUsed(&s.used, now)),
		AllocLatency:  s.latency.summary(now), Lifetime: s.lifetime.summary(now),
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
	r.Processes = a.procRefs(s)
	return r
}

func maxUsed(g *window.Gauge, now int64) int {
	m, _ := g.Max(now, 60)
	return m
}

// headroom fills in the space's size, how full it is, and when it runs out
// at the rate it filled over the last 10 s (or over what has been seen of
// them).
func (a *Aggregator) headroom(s *space, r *SpaceSummary, nsTimeWait int) {
	n := a.ns[s.key.Netns]
	if n == nil || r.Other {
		return
	}
	r.Gone = n.gone
	if !n.known {
		return
	}
	r.Usable = n.settings.Usable()
	if lo, hi, ok := a.portWindow(s, n); ok {
		r.Usable = windowUsable(n, lo, hi)
		p := s.sockRange.proc
		r.SocketRange = &SocketRange{Low: s.sockRange.r[0], High: s.sockRange.r[1], SearchLow: lo, SearchHigh: hi,
			By: ProcRef{PID: p.PID, Comm: p.Comm.String()}}
	}
	if r.Usable == 0 || n.gone {
		return
	}
	r.UsedPct = 100 * float64(r.Used) / float64(r.Usable)
	// Settings that events contradict are being read again: fullness
	// against them proves nothing until then.
	r.Exhausted = r.exhaustionFailures() > 0 || r.Used >= r.Usable && a.trulyFull(s, r, n) && !n.stale
	if r.Exhausted {
		zero := 0.0
		r.ETA = &zero
		return
	}
	if r.Used >= r.Usable {
		return // full, yet calls succeed: nothing left to run out of
	}
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
	if r.allFailing() {
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
func (a *Aggregator) trulyFull(s *space, r *SpaceSummary, n *nsState) bool {
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

// allFailing reports whether the last second (or 10 s) had attempts and
// as many failures that were not for want of a port.
func (r *SpaceSummary) allFailing() bool {
	other := r.SumFailures(func(f Failure) bool { return !f.Exhaustion }).Rates
	return r.Conns.S1 > 0 && other.S1 >= r.Conns.S1 || r.Conns.S10 > 0 && other.S10 >= r.Conns.S10
}

func (a *Aggregator) procRefs(s *space) []ProcRef {
	out := []ProcRef{}
	for k, st := range s.procs {
		ref := ProcRef{PID: k.PID, Comm: k.Comm.String(), Conns60: st.conns.Sum(a.now, 60),
			Failed60: st.fails.Sum(a.now, 60), Sockets: st.held}
		if p := a.procs[k]; p != nil {
			ref.Container, ref.PodUID = p.cgroup.Container, p.cgroup.PodUID
		}
		out = append(out, ref)
	}
	slices.SortFunc(out, func(x, y ProcRef) int {
		return cmp.Or(cmp.Compare(y.Failed60, x.Failed60), cmp.Compare(y.Conns60, x.Conns60),
			cmp.Compare(y.Sockets, x.Sockets), cmp.Compare(x.PID, y.PID))
	})
	return out
}

func (a *Aggregator) processSummary(p *proc, other bool) ProcessSummary {
	r := ProcessSummary{
		PID: p.key.PID, Comm: p.key.Comm.String(), CgroupID: p.key.CgroupID, CgroupPath: p.cgroup.Path, Container: p.cgroup.Container, PodUID: p.cgroup.PodUID, Other: other,
		Conns: rates(&p.conns, a.now), Failures: failureSummaries(p.fails, a.now), TWIn: rates(&p.twIn, a.now), Total: p.conns.Total, TotalTWIn: p.twIn.Total,
	}
	type kc struct {
		k SpaceKey
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

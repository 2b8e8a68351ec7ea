// Package summary holds the values that leave porttrace's model: what the
// aggregator (internal/aggregate) knows at one moment, port spaces,
// processes and namespaces with their figures, and their JSON. Packages
// that only read figures (diagnose, frame, view, export, capture) import
// this package, not the aggregator.
package summary

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/porttrace/porttrace/internal/netns"
)

// Windows are the spans every rate is given over, in seconds.
var Windows = [3]int{1, 10, 60}

// Rates is a count per second over each of Windows, in complete seconds.
type Rates struct {
	S1  float64 `json:"1s"`
	S10 float64 `json:"10s"`
	S60 float64 `json:"60s"`
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
	UsedMax60 int `json:"used_max_60s"`
	// LastExhaustion is the seconds since the last call that failed for
	// want of a port, within the last minute (nil: none), and
	// UsedAtExhaustion the ports Used as of that second: what the kernel
	// found taken. Used may be lower since while the failures still
	// count (Exhausted holds for 10 s after them): ports went back, or
	// time-wait sockets grew older than tcp_tw_reuse_delay and may now
	// be taken over (FreedSince).
	LastExhaustion   *float64 `json:"last_exhaustion_ago_seconds,omitempty"`
	UsedAtExhaustion int      `json:"used_at_last_exhaustion,omitempty"`
	Usable           int      `json:"usable"` // 0 when the namespace's settings are unknown
	UsedPct          float64  `json:"used_percent"`
	FillRate         float64  `json:"fill_per_second"` // net change of Used over 10 s
	ETA              *float64 `json:"eta_seconds"`     // nil: not filling
	Exhausted        bool     `json:"exhausted"`
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

// FreedSince tells a space exhausted by calls that failed for want of a
// port whose ports were freed since: Used is lower now than when they
// failed. Its figures then are UsedAtExhaustion, LastExhaustion seconds
// ago (0: within the second).
func (r *SpaceSummary) FreedSince() bool {
	return r.Exhausted && r.LastExhaustion != nil && r.Used < r.UsedAtExhaustion
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

// Holder is one process's open sockets in one TCP state in a port space.
type Holder struct {
	State   string `json:"state"` // as ss names it: ESTABLISHED, CLOSE_WAIT, SYN_SENT...
	PID     uint32 `json:"pid,omitempty"`
	Comm    string `json:"comm,omitempty"` // "" where no owner is known
	Sockets int    `json:"sockets"`
	// Oldest is how long, in seconds, the oldest of them has been open,
	// where porttrace saw it connect; 0 where it was older than porttrace.
	Oldest float64 `json:"oldest_seconds,omitempty"`
}

// Listener is a listening socket, and who owns it where the socket table
// could tell.
type Listener struct {
	Addr netip.AddrPort `json:"addr"`
	PID  uint32         `json:"pid,omitempty"`
	Comm string         `json:"comm,omitempty"`
}

// Durations is a distribution reduced to what a table shows.
type Durations struct {
	Count uint64        `json:"count"`
	P50   time.Duration `json:"p50_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
}

// TimeWaitLen is how long a port stays in TIME_WAIT: TCP_TIMEWAIT_LEN, fixed
// in the kernel.
const TimeWaitLen = 60

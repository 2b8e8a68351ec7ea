// Package report replays a capture through the aggregator and the
// diagnosis: the figures `top` shows live, for an incident recorded earlier,
// plus a timeline of how it unfolded.
package report

import (
	"errors"
	"io"
	"math"
	"slices"
	"time"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/frame"
	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/summary"
)

// Step is the timeline's resolution.
const Step = 10 * time.Second

// MaxMemory is the memory that building a report or replaying a capture
// aims to stay under, whatever the capture holds: the aggregator's limits
// and the bounds below are derived from it (Bounds), and the commands give
// it to the Go runtime as its soft memory limit. 256 MiB by default;
// `--max-memory` raises it.
var MaxMemory int64 = 256 << 20

// Bounds of a report beyond the aggregator's: cgroups named, timeline
// steps, and spaces kept past their namespace's end and per-space peaks.
// What goes beyond is counted in Summary.Dropped.
const (
	maxCgroups = 4096
	maxSteps   = 1 << 16 // 7.5 days of 10 s steps with activity
	maxKept    = 4096
)

// Bounds are the aggregator's limits and the capture reader's bound on a
// round for a memory budget: the defaults' socket limit (1M, ~190 MiB
// filled) is scaled to a quarter of the budget.
func Bounds(budget int64) (aggregate.Limits, int) {
	l := aggregate.DefaultLimits
	l.Sockets = int(min(int64(l.Sockets), max(budget/1024, 1<<12)))
	return l, int(min(max(budget/1024, 1<<12), 1<<21))
}

// Point is one step of the timeline.
type Point struct {
	Time     time.Time `json:"time"`
	Conns    uint64    `json:"connections"`
	Failures uint64    `json:"failures"`
	// The fullest port space at the step's end.
	Space    string  `json:"fullest_port_space,omitempty"`
	UsedPct  float64 `json:"used_percent"`
	TimeWait int     `json:"time_wait"`
}

// Report is a capture, summarised.
type Report struct {
	Header   capture.Header   `json:"header"`
	Trailer  *capture.Trailer `json:"trailer"` // nil: recording did not end cleanly
	Events   uint64           `json:"events"`
	Failures uint64           `json:"failures"`
	Start    time.Time        `json:"start"`
	End      time.Time        `json:"end"`
	Damage   string           `json:"damage,omitempty"` // why reading stopped early
	Final    *summary.Summary `json:"final"`
	// Peak is the step with the most failures (its time, processes and
	// namespaces), with each port space as it was at its own worst step:
	// the most failures of its own, then the fullest. The diagnosis is
	// made from it, so each space's advice quotes its own worst moment,
	// and a filter keeps each kept space's own moment.
	Peak *summary.Summary `json:"peak"`
	// WorstAt is when each port space's worst step ended, by its Where name.
	WorstAt map[string]time.Time `json:"worst_at,omitempty"`
	// PeakUsed is each port space's highest USED% at any second, by its
	// Where name.
	PeakUsed map[string]float64 `json:"peak_used_percent"`
	Findings []diagnose.Finding `json:"diagnosis"`
	Timeline []Point            `json:"timeline"`
	// NAT is the source NAT port spaces and conntrack tables at the
	// capture's conntrack round where the fullest NAT space was fullest
	// (then insert_failed rose the most), the rise counted over the
	// minute before it; nil when the capture has no conntrack rounds.
	// Its findings are in Findings.
	NAT *nat.Summary `json:"nat,omitempty"`
}

// Build reads the capture to its end, or to its first damaged block, which
// Damage then describes: a cut-off capture is reported up to the cut.
func Build(r io.Reader) (*Report, error) {
	cr, err := capture.NewReader(r)
	if err != nil {
		return nil, err
	}
	h := cr.Header
	_, cr.MaxRoundSockets = Bounds(MaxMemory)
	cr.MaxRoundEntries = cr.MaxRoundSockets
	rep := &Report{Header: h}
	b := &builder{feed: newFeed(h), rep: rep, gone: map[string]summary.SpaceSummary{}}
	var ev event.Event
	for {
		rec, err := cr.Next(&ev)
		if err == io.EOF {
			break
		}
		if err != nil {
			var be *capture.BlockError
			if !errors.As(err, &be) {
				return nil, err
			}
			rep.Damage = err.Error()
			break
		}
		b.record(rec)
	}
	rep.Trailer = cr.Trailer
	if rep.Start.IsZero() {
		rep.Start, rep.End = h.Start, h.Start
	}
	// The trailer's end counts unless it is far from the last record (a
	// clock step, or a damaged file).
	if t := rep.Trailer; t != nil && t.End.After(rep.End) && t.End.Sub(rep.End) < time.Hour {
		rep.End = t.End
	}
	b.finish(rep.End)
	b.agg.SetLost(lostOf(rep.Trailer))
	b.agg.Tick(rep.End)
	rep.Final = b.agg.Summary()
	b.keepGone(rep.Final)
	annotate(rep.Final, b.cgroups)
	annotate(rep.Peak, b.cgroups)
	// The advice is about the incident: the step with the most failures,
	// or the end if nothing failed.
	d := &rep.Final.Dropped
	d.Cgroups, d.Sockets, d.Rows = b.droppedCgroups, cr.DroppedSockets, b.droppedRows
	rep.Findings = diagnose.Diagnose(rep.Final)
	host := rep.Final
	if rep.Peak != nil {
		rep.Peak.Lost = rep.Final.Lost
		b.eachAtWorst(rep.Peak)
		annotate(rep.Peak, b.cgroups)
		rep.Findings = diagnose.Diagnose(rep.Peak)
		host = rep.Peak
	}
	if w := b.nat.worst; w != nil {
		rep.NAT = w.Named(frame.NATNames(rep.Final, b.nat.names))
		rep.Findings = append(rep.Findings, diagnose.NAT(rep.NAT, host)...)
	}
	return rep, nil
}

func lostOf(t *capture.Trailer) uint64 {
	if t == nil {
		return 0
	}
	return t.Lost
}

// feed gives a capture's records to an aggregator as the live monitor
// gave them: each second of the capture is ticked before its first record
// (occupancy sampled, TIME_WAIT expired), and the rounds' cgroups are kept
// to name processes with.
type feed struct {
	agg            *aggregate.Aggregator
	cgroups        map[uint64]cgroup.Process // named by the rounds so far, maxCgroups at most
	droppedCgroups uint64
	origin         time.Time // the aggregator's second 0
	second         int64     // the last second ticked
	nat            *natFeed
}

func newFeed(h capture.Header) *feed {
	limits, _ := Bounds(MaxMemory)
	agg := aggregate.New(h.Start, limits, nil)
	agg.SetNetns(h.Netns)
	return &feed{agg: agg, cgroups: map[uint64]cgroup.Process{}, origin: h.Start, nat: newNATFeed()}
}

func (f *feed) apply(rec capture.Record) {
	if t := recordTime(rec); !t.IsZero() {
		// Any other second, later or (a clock step) earlier, is ticked:
		// the aggregator takes steps out.
		if sec := int64(t.Sub(f.origin) / time.Second); sec != f.second {
			f.agg.Tick(t)
			f.second = sec
		}
	}
	switch {
	case rec.SyncBegin:
		f.agg.BeginSync()
	case rec.Round != nil:
		f.agg.SetNetns(rec.Round.Netns)
		f.agg.Sync(rec.Round.Tables)
		f.nat.round(rec.Round)
		for id, c := range rec.Round.Cgroups {
			if _, ok := f.cgroups[id]; ok || len(f.cgroups) < maxCgroups {
				f.cgroups[id] = c
			} else {
				f.droppedCgroups++
			}
		}
	case rec.Conntrack != nil:
		f.nat.conntrack(rec.Conntrack)
	case rec.Event != nil:
		f.agg.Add(rec.Event)
		f.nat.tr.Observe(rec.Event)
	}
}

// annotate says where each process ran, from the cgroups the capture's
// rounds named (a process is often seen before the round that names its
// cgroup).
func annotate(r *summary.Summary, cgroups map[uint64]cgroup.Process) {
	if r == nil {
		return
	}
	byPID := map[uint32]cgroup.Process{}
	for i := range r.Processes {
		p := &r.Processes[i]
		if c, ok := cgroups[p.CgroupID]; ok && p.CgroupPath == "" {
			p.CgroupPath, p.Container, p.PodUID = c.Path, c.Container, c.PodUID
		}
		byPID[p.PID] = cgroup.Process{Path: p.CgroupPath, Container: p.Container, PodUID: p.PodUID}
	}
	for i := range r.Spaces {
		for j := range r.Spaces[i].Processes {
			ref := &r.Spaces[i].Processes[j]
			if c, ok := byPID[ref.PID]; ok && ref.Container == "" {
				ref.Container, ref.PodUID = c.Container, c.PodUID
			}
		}
	}
}

// recordTime is when a record happened; zero for a sync marker.
func recordTime(rec capture.Record) time.Time {
	switch {
	case rec.Round != nil:
		return rec.Round.Time
	case rec.Conntrack != nil:
		return rec.Conntrack.Time
	case rec.Event != nil:
		return rec.Event.Time
	}
	return time.Time{}
}

// builder feeds the aggregator in capture order and cuts the timeline into
// steps from the first record on; steps where nothing happened are skipped.
type builder struct {
	*feed
	rep      *Report
	next     time.Time // end of the current step
	cur      Point
	peakFail uint64
	// gone is the last step's summary of each space whose namespace had
	// gone: the aggregator forgets it GoneFor later, the report does not.
	gone        map[string]summary.SpaceSummary
	droppedRows uint64 // steps, gone spaces, worst moments and peaks beyond the bounds
	// worst is each space at its worst step so far.
	worst map[string]atStep
}

// atStep is a space as a step's end saw it.
type atStep struct {
	space summary.SpaceSummary
	at    time.Time
}

// worse reports whether x is a worse moment than y: more failures in its
// step, then fuller.
func worse(x, y *summary.SpaceSummary) bool {
	fx, fy := x.SumFailures(nil).Rates.S10, y.SumFailures(nil).Rates.S10
	if fx != fy {
		return fx > fy
	}
	return x.UsedPct > y.UsedPct
}

// noteWorst keeps each space of r that is at its worst so far.
func (b *builder) noteWorst(r *summary.Summary, at time.Time) {
	if b.worst == nil {
		b.worst = map[string]atStep{}
	}
	for i := range r.Spaces {
		s := &r.Spaces[i]
		w, ok := b.worst[s.Where()]
		if ok && worse(s, &w.space) || !ok && b.room(len(b.worst)) {
			b.worst[s.Where()] = atStep{*s, at}
		}
	}
}

// eachAtWorst puts each space of r as it was at its own worst step.
func (b *builder) eachAtWorst(r *summary.Summary) {
	seen := map[string]bool{}
	for i := range r.Spaces {
		if w, ok := b.worst[r.Spaces[i].Where()]; ok {
			r.Spaces[i] = w.space
		}
		seen[r.Spaces[i].Where()] = true
	}
	for name, w := range b.worst {
		if !seen[name] && !w.space.Other {
			r.Spaces = append(r.Spaces, w.space)
		}
	}
	slices.SortFunc(r.Spaces, summary.ByUrgency)
	b.rep.WorstAt = map[string]time.Time{}
	for _, s := range r.Spaces {
		if w, ok := b.worst[s.Where()]; ok {
			b.rep.WorstAt[s.Where()] = w.at
		}
	}
}

// keepGone adds to r the spaces of namespaces gone during the capture that
// the aggregator has forgotten since, as the last step saw them.
func (b *builder) keepGone(r *summary.Summary) {
	for i := range r.Spaces {
		delete(b.gone, r.Spaces[i].Where())
	}
	for _, s := range b.gone {
		r.Spaces = append(r.Spaces, s)
	}
	slices.SortFunc(r.Spaces, summary.ByUrgency)
}

func (b *builder) record(rec capture.Record) {
	if t := recordTime(rec); !t.IsZero() {
		if b.rep.Start.IsZero() {
			b.rep.Start, b.rep.End, b.next = t, t, t.Add(Step)
		}
		b.advance(t)
		if t.After(b.rep.End) {
			b.rep.End = t
		}
	}
	b.apply(rec)
	e := rec.Event
	if e == nil {
		return
	}
	b.rep.Events++
	if e.Attempt() {
		b.cur.Conns++
	}
	if e.Failed() {
		b.cur.Failures++
		b.rep.Failures++
	}
}

// advance closes the steps that end by t.
func (b *builder) advance(t time.Time) {
	for !t.Before(b.next) {
		if b.cur.Conns == 0 && b.cur.Failures == 0 {
			// Nothing happened: jump to the step that holds t.
			k := int64(t.Sub(b.next)/Step) + 1
			b.next = b.next.Add(time.Duration(min(k, math.MaxInt64/int64(Step))) * Step)
			return
		}
		b.closeStep()
	}
}

func (b *builder) closeStep() {
	b.agg.Tick(b.next)
	r := b.agg.Summary()
	b.cur.Time = b.next
	if b.rep.PeakUsed == nil {
		b.rep.PeakUsed = map[string]float64{}
	}
	for i := range r.Spaces {
		s := &r.Spaces[i]
		if s.UsedPct > b.cur.UsedPct || b.cur.Space == "" {
			b.cur.Space, b.cur.UsedPct, b.cur.TimeWait = s.Where(), s.UsedPct, s.TimeWait
		}
		peak := s.UsedPct
		if s.Usable > 0 {
			peak = 100 * float64(s.UsedMax60) / float64(s.Usable)
		}
		if pk, ok := b.rep.PeakUsed[s.Where()]; ok && peak > pk || !ok && b.room(len(b.rep.PeakUsed)) {
			b.rep.PeakUsed[s.Where()] = peak
		}
		if _, ok := b.gone[s.Where()]; s.Gone && (ok || b.room(len(b.gone))) {
			b.gone[s.Where()] = *s
		}
	}
	b.noteWorst(r, b.next)
	if b.cur.Failures > b.peakFail {
		b.peakFail, b.rep.Peak = b.cur.Failures, r
	}
	if len(b.rep.Timeline) < maxSteps {
		b.rep.Timeline = append(b.rep.Timeline, b.cur)
	} else {
		b.droppedRows++
	}
	b.cur = Point{}
	b.next = b.next.Add(Step)
}

// room says whether a map of n rows takes one more, counting it dropped
// if not.
func (b *builder) room(n int) bool {
	if n < maxKept {
		return true
	}
	b.droppedRows++
	return false
}

func (b *builder) finish(end time.Time) {
	if b.next.IsZero() {
		return
	}
	b.advance(end)
	if b.cur.Conns > 0 || b.cur.Failures > 0 {
		b.next = end // a partial step, up to the end
		b.closeStep()
	}
}

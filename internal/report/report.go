// Package report replays a capture through the aggregator and the
// diagnosis: the figures `top` shows live, for an incident recorded earlier,
// plus a timeline of how it unfolded.
package report

import (
	"errors"
	"io"
	"time"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/event"
)

// Step is the timeline's resolution.
const Step = 10 * time.Second

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
	Header   capture.Header     `json:"header"`
	Trailer  *capture.Trailer   `json:"trailer"` // nil: recording did not end cleanly
	Events   uint64             `json:"events"`
	Failures uint64             `json:"failures"`
	Start    time.Time          `json:"start"`
	End      time.Time          `json:"end"`
	Damage   string             `json:"damage,omitempty"` // why reading stopped early
	Final    *aggregate.Report  `json:"final"`
	Peak     *aggregate.Report  `json:"peak"` // at the step with the most failures
	Findings []diagnose.Finding `json:"diagnosis"`
	Timeline []Point            `json:"timeline"`
}

// Build reads the capture to its end, or to its first damaged block, which
// Damage then describes: a cut-off capture is reported up to the cut.
func Build(r io.Reader) (*Report, error) {
	cr, err := capture.NewReader(r)
	if err != nil {
		return nil, err
	}
	h := cr.Header
	agg := aggregate.New(h.Start, aggregate.DefaultLimits, nil)
	agg.SetNetns(h.Netns)
	agg.BeginSync()
	agg.Sync(h.Tables)
	rep := &Report{Header: h, Start: h.Start, End: h.Start}
	p := newPlayer(agg, h.Start, rep)
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
		if rec.Snapshot != nil {
			p.snapshot(*rec.Snapshot)
			continue
		}
		p.event(&ev)
	}
	rep.Trailer = cr.Trailer
	if rep.Trailer != nil && rep.Trailer.End.After(rep.End) {
		rep.End = rep.Trailer.End
	}
	p.finish(rep.End)
	agg.SetLost(lostOf(rep.Trailer))
	rep.Final = agg.Report(rep.End)
	// The advice is about the incident: the step with the most failures,
	// or the end if nothing failed.
	rep.Findings = diagnose.Diagnose(rep.Final)
	if rep.Peak != nil {
		rep.Findings = diagnose.Diagnose(rep.Peak)
	}
	return rep, nil
}

func lostOf(t *capture.Trailer) uint64 {
	if t == nil {
		return 0
	}
	return t.Lost
}

// player feeds the aggregator in capture order and cuts the timeline.
type player struct {
	agg      *aggregate.Aggregator
	rep      *Report
	next     time.Time // end of the current step
	cur      Point
	peakFail uint64
	snaps    []aggregate.Snapshot // consecutive snapshots: one Sync
}

func newPlayer(agg *aggregate.Aggregator, start time.Time, rep *Report) *player {
	return &player{agg: agg, rep: rep, next: start.Add(Step), cur: Point{Time: start}}
}

func (p *player) event(e *event.Event) {
	p.flushSnapshots()
	p.advance(e.Time)
	p.agg.Add(e)
	p.rep.Events++
	if e.Time.After(p.rep.End) {
		p.rep.End = e.Time
	}
	if e.Kind == event.State && e.NewState == event.SynSent {
		p.cur.Conns++
	}
	if e.Failed() && (e.Kind == event.Connect || e.Kind == event.Bind) {
		p.cur.Failures++
		p.rep.Failures++
	}
}

func (p *player) snapshot(s aggregate.Snapshot) {
	p.snaps = append(p.snaps, s)
}

func (p *player) flushSnapshots() {
	if len(p.snaps) > 0 {
		p.agg.BeginSync()
		p.agg.Sync(p.snaps)
		p.snaps = nil
	}
}

// advance closes every step that ends before t.
func (p *player) advance(t time.Time) {
	for !t.Before(p.next) {
		p.closeStep()
	}
}

func (p *player) closeStep() {
	r := p.agg.Report(p.next)
	p.cur.Time = p.next
	for i := range r.Spaces {
		if s := &r.Spaces[i]; s.UsedPct > p.cur.UsedPct || p.cur.Space == "" {
			p.cur.Space, p.cur.UsedPct, p.cur.TimeWait = s.Where(), s.UsedPct, s.TimeWait
		}
	}
	if p.cur.Failures > p.peakFail {
		p.peakFail, p.rep.Peak = p.cur.Failures, r
	}
	p.rep.Timeline = append(p.rep.Timeline, p.cur)
	p.cur = Point{}
	p.next = p.next.Add(Step)
}

func (p *player) finish(end time.Time) {
	p.flushSnapshots()
	p.advance(end)
	if p.cur.Conns > 0 || p.cur.Failures > 0 {
		p.next = end // a partial step, up to the end
		p.closeStep()
	}
}

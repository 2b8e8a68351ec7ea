package report

import (
	"errors"
	"io"
	"time"

	"github.com/porttrace/porttrace/internal/frame"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/event"
)

// Player replays a capture at speed times real time, for the live view:
// each Frame feeds the records up to the capture time that has come,
// from the first record on.
type Player struct {
	r *capture.Reader
	*feed
	speed   float64
	clock   func() time.Time
	begun   time.Time // wall clock at the first Frame
	start   time.Time // capture time of the first record
	last    time.Time // of the last record played
	ev      event.Event
	pending capture.Record // read but not yet due
	have    bool
	done    string // why playing ended, once it has
}

// NewPlayer reads the capture's header and first record; clock is time.Now
// but in tests.
func NewPlayer(r io.Reader, speed float64, clock func() time.Time) (*Player, error) {
	cr, err := capture.NewReader(r)
	if err != nil {
		return nil, err
	}
	h := cr.Header
	_, cr.MaxRoundSockets = Bounds(MaxMemory)
	cr.MaxRoundEntries = cr.MaxRoundSockets
	p := &Player{r: cr, feed: newFeed(h), speed: speed, clock: clock, start: h.Start, last: h.Start}
	p.read()
	for p.have && recordTime(p.pending).IsZero() { // a marker first
		p.apply(p.pending)
		p.read()
	}
	if p.have {
		p.start = recordTime(p.pending)
	}
	return p, nil
}

// Header is the capture's header.
func (p *Player) Header() capture.Header { return p.r.Header }

// Frame plays up to the capture time that corresponds to now; once the
// capture is over, time stops at its last record.
func (p *Player) Frame() frame.Frame {
	now := p.clock()
	if p.begun.IsZero() {
		p.begun = now
	}
	at := p.play(p.start.Add(time.Duration(float64(now.Sub(p.begun)) * p.speed)))
	if p.done != "" && at.After(p.last) {
		at = p.last
	}
	if p.r.Trailer != nil {
		p.agg.SetLost(p.r.Trailer.Lost)
	}
	p.agg.Tick(at)
	rep := p.agg.Summary()
	rep.Dropped.Cgroups, rep.Dropped.Sockets = p.droppedCgroups, p.r.DroppedSockets
	annotate(rep, p.cgroups)
	s := frame.Frame{Summary: rep, Findings: diagnose.Diagnose(rep)}
	if n := p.nat.summary(); n != nil {
		s.NAT = n.Named(frame.NATNames(rep, p.nat.names))
		s.Findings = append(s.Findings, diagnose.NAT(s.NAT, rep)...)
	}
	if p.done != "" {
		s.Warning = "replay: " + p.done
	}
	return s
}

func (p *Player) read() {
	rec, err := p.r.Next(&p.ev)
	switch {
	case errors.Is(err, io.EOF):
		p.done, p.have = "end of the capture", false
	case err != nil:
		p.done, p.have = "the capture stops early: "+err.Error(), false
	default:
		p.pending, p.have = rec, true
	}
}

// play feeds the records due by until, and returns until with the clock
// steps it met taken out: a record more than aggregate.MaxStep after the
// last one played, or MaxStepBack before, moves the replay's start, so
// that it comes a second after the last one played and the rest follows at
// speed (a capture with a ten-year step replays in seconds, not ten years).
func (p *Player) play(until time.Time) time.Time {
	for p.have {
		t := recordTime(p.pending)
		if gap := t.Sub(p.last); !t.IsZero() && (gap > aggregate.MaxStep || gap < -aggregate.MaxStepBack) {
			shift := gap - time.Second
			p.start, until = p.start.Add(shift), until.Add(shift)
		}
		if t.After(until) {
			return until
		}
		if !t.IsZero() {
			p.last = t
		}
		p.apply(p.pending)
		p.read()
	}
	return until
}

package report

import (
	"errors"
	"io"
	"time"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/live"
)

// Player replays a capture at speed times real time, for the live view:
// each Snapshot feeds the events up to the capture time that has come.
type Player struct {
	r       *capture.Reader
	agg     *aggregate.Aggregator
	speed   float64
	clock   func() time.Time
	begun   time.Time // wall clock at the first Snapshot
	start   time.Time // capture time at the start
	ev      event.Event
	pending *capture.Record // read but not yet due
	snaps   []aggregate.Snapshot
	done    string // why playing ended, once it has
}

// NewPlayer reads the capture's header; clock is time.Now but in tests.
func NewPlayer(r io.Reader, speed float64, clock func() time.Time) (*Player, error) {
	cr, err := capture.NewReader(r)
	if err != nil {
		return nil, err
	}
	h := cr.Header
	agg := aggregate.New(h.Start, aggregate.DefaultLimits, nil)
	agg.SetNetns(h.Netns)
	agg.BeginSync()
	agg.Sync(h.Tables)
	return &Player{r: cr, agg: agg, speed: speed, clock: clock, start: h.Start}, nil
}

// Header is the capture's header.
func (p *Player) Header() capture.Header { return p.r.Header }

// Snapshot plays up to the capture time that corresponds to now.
func (p *Player) Snapshot() live.Snapshot {
	now := p.clock()
	if p.begun.IsZero() {
		p.begun = now
	}
	at := p.start.Add(time.Duration(float64(now.Sub(p.begun)) * p.speed))
	p.play(at)
	if p.done != "" && p.r.Trailer != nil && at.After(p.r.Trailer.End) {
		at = p.r.Trailer.End
	}
	if p.r.Trailer != nil {
		p.agg.SetLost(p.r.Trailer.Lost)
	}
	rep := p.agg.Report(at)
	s := live.Snapshot{Report: rep, Findings: diagnose.Diagnose(rep)}
	if p.done != "" {
		s.Warning = "replay: " + p.done
	}
	return s
}

func (p *Player) play(until time.Time) {
	for p.done == "" {
		if p.pending == nil {
			rec, err := p.r.Next(&p.ev)
			switch {
			case errors.Is(err, io.EOF):
				p.done = "end of the capture"
				continue
			case err != nil:
				p.done = "the capture stops early: " + err.Error()
				continue
			}
			p.pending = &rec
		}
		if s := p.pending.Snapshot; s != nil {
			if s.Time.After(until) {
				return
			}
			// The namespaces' tables come one after another: one Sync.
			p.snaps = append(p.snaps, *s)
		} else {
			if p.ev.Time.After(until) {
				return
			}
			p.sync()
			p.agg.Add(&p.ev)
		}
		p.pending = nil
	}
	p.sync()
}

func (p *Player) sync() {
	if len(p.snaps) > 0 {
		p.agg.BeginSync()
		p.agg.Sync(p.snaps)
		p.snaps = nil
	}
}

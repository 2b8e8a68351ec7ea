package aggregate

import "time"

// MaxStep and MaxStepBack are how far a time may be ahead of the
// aggregator's clock, or behind it, before it is taken for a clock step
// (an NTP step, a forged capture) rather than time passing or events
// arriving out of order: the clock then goes on from where it was, and
// the step is counted (Summary.Dropped). Live, Tick runs every second; a
// capture has a round every 5 s; events reach the aggregator out of order
// by milliseconds. Whatever the step, nothing walks the seconds between.
const (
	MaxStep     = time.Hour
	MaxStepBack = time.Hour
)

// clock is the aggregator's time, the events' own: whole seconds since
// start, which moves when a step of the wall clock is taken out.
type clock struct {
	start    time.Time
	now      int64     // the latest second an event or a Tick reached
	tickedAt time.Time // the latest time given to Tick
	steps    uint64    // clock steps taken out
	lastStep time.Duration
}

// second is t's second since start; 0 for a time before it.
func (c *clock) second(t time.Time) int64 {
	return max(int64(t.Sub(c.start)/time.Second), 0)
}

// advance moves the clock to t, if t is later, and returns t's second,
// after a clock step is taken out: a t more than MaxStep ahead of the
// clock or MaxStepBack behind moves the origin so that t is now.
func (c *clock) advance(t time.Time) int64 {
	d := t.Sub(c.start.Add(time.Duration(c.now) * time.Second))
	if d > MaxStep || d < -MaxStepBack {
		c.steps++
		c.lastStep = d.Round(time.Second)
		c.start = t.Add(-time.Duration(c.now) * time.Second)
		c.tickedAt = t
		return c.now
	}
	sec := c.second(t)
	c.now = max(c.now, sec)
	return sec
}

// tick moves the clock to t, the moment a summary is of.
func (c *clock) tick(t time.Time) {
	c.advance(t)
	if t.After(c.tickedAt) {
		c.tickedAt = t
	}
}

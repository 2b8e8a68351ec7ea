// Package window holds the rolling per-second counts behind every rate
// porttrace shows. Time is a second index (seconds since the aggregator
// started), so a replayed capture and a live run compute the same figures.
package window

// Span is how far back any window reaches: the longest window is 60 s.
const Span = 60

// slots holds Span complete seconds plus the one still filling.
const slots = Span + 1

// Counter counts occurrences per second over the last Span seconds.
type Counter struct {
	buckets [slots]uint32
	head    int64 // the newest second held; older ones are at head-1 ...
	Total   uint64
}

// advance moves the head to sec, zeroing the seconds it passes over.
func (c *Counter) advance(sec int64) {
	if sec <= c.head {
		return
	}
	if sec-c.head >= slots {
		c.buckets = [slots]uint32{}
	} else {
		for s := c.head + 1; s <= sec; s++ {
			c.buckets[s%slots] = 0
		}
	}
	c.head = sec
}

// Add counts n occurrences in second sec. Seconds older than the window
// still count toward Total.
func (c *Counter) Add(sec int64, n uint32) {
	c.Total += uint64(n)
	c.advance(sec)
	if sec > c.head-slots {
		c.buckets[sec%slots] += n
	}
}

// Sum is the count over the w complete seconds before now (now itself is
// still filling and not included).
func (c *Counter) Sum(now int64, w int) uint64 {
	c.advance(now)
	var n uint64
	for s := now - int64(min(w, Span)); s < now; s++ {
		if s >= 0 {
			n += uint64(c.buckets[s%slots])
		}
	}
	return n
}

// Recent is the count over the w seconds up to now, the one still filling
// included: for ranking what is active right now, not for rates.
func (c *Counter) Recent(now int64, w int) uint64 {
	return c.Sum(now, w-1) + c.current(now)
}

// current is the count of second now so far.
func (c *Counter) current(now int64) uint64 {
	c.advance(now)
	if now != c.head {
		return 0
	}
	return uint64(c.buckets[now%slots])
}

// Rate is Sum per second. Before w seconds have passed since the start it
// divides by the seconds there were, so the first figures are not diluted.
func (c *Counter) Rate(now int64, w int) float64 {
	d := min(int64(w), now)
	if d <= 0 {
		return 0
	}
	return float64(c.Sum(now, w)) / float64(d)
}

// Merge adds o's counts into c, as when an evicted key folds into "other".
func (c *Counter) Merge(o *Counter, now int64) {
	c.advance(now)
	o.advance(now)
	for i := range c.buckets {
		c.buckets[i] += o.buckets[i]
	}
	c.Total += o.Total
}

// Expiry tracks a population whose members leave at a known second: ports
// in TIME_WAIT, each due to return to the pool when its timer fires.
type Expiry struct {
	buckets [expirySlots]uint32 // by due second; TIME_WAIT lasts 60 s
	next    int64               // the first second not yet expired
	size    int
	// Released counts members per second as they expire: the drain rate.
	Released Counter
}

const expirySlots = Span + 4

// Advance expires every member due at or before now.
func (e *Expiry) Advance(now int64) {
	if now-e.next >= expirySlots {
		// Every slot is due: one pass over them, not a step per second
		// of a leap.
		for s := e.next; s < e.next+expirySlots; s++ {
			if n := e.buckets[s%expirySlots]; n > 0 {
				e.size -= int(n)
				e.Released.Add(s, n)
				e.buckets[s%expirySlots] = 0
			}
		}
		e.next = now + 1
		return
	}
	for ; e.next <= now; e.next++ {
		i := e.next % expirySlots
		if n := e.buckets[i]; n > 0 {
			e.size -= int(n)
			e.Released.Add(e.next, n)
			e.buckets[i] = 0
		}
	}
}

// Add records n members due at second due, as seen at now. A due second
// already past is ignored; one beyond the span is held at the span's end.
func (e *Expiry) Add(now, due int64, n uint32) {
	e.Advance(now)
	if due < e.next {
		return
	}
	due = min(due, e.next+expirySlots-1)
	e.buckets[due%expirySlots] += n
	e.size += int(n)
}

// Size is the population at the last Advance or Add.
func (e *Expiry) Size() int { return e.size }

// Reset forgets the population (not Released), before it is rebuilt from a
// fresh count of the real sockets.
func (e *Expiry) Reset() {
	e.buckets = [expirySlots]uint32{}
	e.size = 0
}

// Merge moves o's members into e.
func (e *Expiry) Merge(o *Expiry, now int64) {
	e.Advance(now)
	o.Advance(now)
	for s := o.next; s < o.next+expirySlots; s++ {
		if n := o.buckets[s%expirySlots]; n > 0 {
			e.Add(now, s, n)
		}
	}
	e.Released.Merge(&o.Released, now)
}

// Gauge keeps a value sampled once per second, to measure its trend.
type Gauge struct {
	samples [Span]int32
	seen    [Span]int64 // second+1 at which each slot was written, 0 if never
}

// Set records the value at second sec.
func (g *Gauge) Set(sec int64, v int) {
	g.samples[sec%Span] = int32(v)
	g.seen[sec%Span] = sec + 1
}

// Slope is the value's change per second over about w seconds up to now:
// from the newest sample at or before now-w (at most 5 s older), or failing
// that the oldest since, to the newest at or before now. False when the
// samples span less than minSpan seconds.
func (g *Gauge) Slope(now int64, w int) (float64, bool) {
	if w <= 0 || w+gaugeSlack >= Span {
		return 0, false
	}
	end, ok := g.latest(now, now-int64(w)+1)
	if !ok {
		return 0, false
	}
	begin, ok := g.latest(now-int64(w), now-int64(w)-gaugeSlack)
	if !ok || end-begin < minSpan { // younger than w: use what there is
		begin, ok = g.earliest(now-int64(w)+1, end-minSpan)
	}
	if !ok {
		return 0, false
	}
	return float64(g.samples[end%Span]-g.samples[begin%Span]) / float64(end-begin), true
}

// Max is the largest value sampled in the w seconds up to now; false when
// none was.
func (g *Gauge) Max(now int64, w int) (int, bool) {
	best, ok := 0, false
	for s := now; s > now-int64(min(w, Span)) && s >= 0; s-- {
		if g.seen[s%Span] == s+1 && (!ok || int(g.samples[s%Span]) > best) {
			best, ok = int(g.samples[s%Span]), true
		}
	}
	return best, ok
}

// gaugeSlack is how far a sample may stray from where Slope wants it, for
// samples taken by a caller that ticks late now and then.
const gaugeSlack = 5

// minSpan is the shortest history a slope is computed from.
const minSpan = 3

// earliest is the oldest sampled second in [from, to].
func (g *Gauge) earliest(from, to int64) (int64, bool) {
	for s := max(from, 0); s <= to; s++ {
		if g.seen[s%Span] == s+1 {
			return s, true
		}
	}
	return 0, false
}

// latest is the newest sampled second in [from, to], from >= to.
func (g *Gauge) latest(from, to int64) (int64, bool) {
	for s := from; s >= max(to, 0); s-- {
		if g.seen[s%Span] == s+1 {
			return s, true
		}
	}
	return 0, false
}

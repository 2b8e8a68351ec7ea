package window

import (
	"time"

	"github.com/DataDog/sketches-go/ddsketch"

	"github.com/porttrace/porttrace/internal/summary"
)

// Durations over the last minute go into six 10-second sketches, so old
// values age out in steps without keeping every sample.
const (
	sketchSlots   = 6
	sketchSlotLen = 10 // seconds
	// 2% relative error is finer than anything an operator acts on; the
	// bin cap bounds memory (4 KiB per sketch at most) whatever the values:
	// 512 bins at 2% span a ratio of 10^9 (1 µs to 15 minutes).
	sketchAccuracy = 0.02
	sketchMaxBins  = 512
)

// Sketch is a streaming histogram of durations over a rolling minute,
// by second index as Counter: at most 4 KiB per 10-second slot.
type Sketch struct {
	slots [sketchSlots]*ddsketch.DDSketch
	max   [sketchSlots]time.Duration
	epoch [sketchSlots]int64 // which 10 s period each slot holds
}

func newSketch() *ddsketch.DDSketch {
	s, err := ddsketch.LogCollapsingLowestDenseDDSketch(sketchAccuracy, sketchMaxBins)
	if err != nil {
		panic(err) // constant arguments: cannot fail
	}
	return s
}

// Add records v in second sec; a value a minute late is dropped.
func (d *Sketch) Add(sec int64, v time.Duration) {
	epoch := sec / sketchSlotLen
	i := epoch % sketchSlots
	if d.slots[i] == nil {
		d.slots[i] = newSketch()
	}
	if d.epoch[i] > epoch {
		return // a minute late: its slot holds newer values
	}
	if d.epoch[i] != epoch {
		d.slots[i].Clear()
		d.max[i], d.epoch[i] = 0, epoch
	}
	d.slots[i].Add(float64(max(v, 0)))
	d.max[i] = max(d.max[i], v)
}

// Summary merges the slots of the last minute as seen at sec.
func (d *Sketch) Summary(sec int64) summary.Durations {
	var s summary.Durations
	merged := newSketch()
	epoch := sec / sketchSlotLen
	for i, sk := range d.slots {
		if sk == nil || d.epoch[i] <= epoch-sketchSlots || d.epoch[i] > epoch {
			continue
		}
		merged.MergeWith(sk)
		s.Max = max(s.Max, d.max[i])
	}
	s.Count = uint64(merged.GetCount())
	if s.Count == 0 {
		return summary.Durations{}
	}
	q, _ := merged.GetValuesAtQuantiles([]float64{0.5, 0.99})
	s.P50, s.P99 = time.Duration(q[0]), min(time.Duration(q[1]), s.Max)
	return s
}

// Merge adds o's slots into d (eviction into "other").
func (d *Sketch) Merge(o *Sketch) {
	for i, sk := range o.slots {
		if sk == nil {
			continue
		}
		if d.slots[i] == nil || d.epoch[i] < o.epoch[i] {
			d.slots[i], d.max[i], d.epoch[i] = sk.Copy(), o.max[i], o.epoch[i]
			continue
		}
		if d.epoch[i] == o.epoch[i] {
			d.slots[i].MergeWith(sk)
			d.max[i] = max(d.max[i], o.max[i])
		}
	}
}

package export

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/porttrace/porttrace/internal/summary"
)

// Cardinality bounds the series the metrics make, so that a node with
// thousands of destinations and one-shot processes costs a cluster's
// Prometheus tens of series, not thousands.
type Cardinality struct {
	// Spaces is how many port spaces get series of their own, the most
	// active over the last minute first. Spaces under pressure (half
	// their ports used, filling, or failing for want of a port) always
	// get theirs. The rest of a namespace's spaces share one series whose
	// porttrace.port_space.kind is "other".
	Spaces int
	// PID adds process.pid to the process series: one series per process
	// rather than per executable and container.
	PID bool
	// Idle is how long a series may stay unchanged before it is no longer
	// exported.
	Idle time.Duration
}

// DefaultCardinality is what the agent exports unless told otherwise.
var DefaultCardinality = Cardinality{Spaces: 20, Idle: 5 * time.Minute}

// orDefault fills the fields left zero from DefaultCardinality.
func (c Cardinality) orDefault() Cardinality {
	c.Spaces = cmp.Or(c.Spaces, DefaultCardinality.Spaces)
	c.Idle = cmp.Or(c.Idle, DefaultCardinality.Idle)
	return c
}

// OptionalAttributes are the attributes --metric-attributes can add to
// the defaults.
var OptionalAttributes = []string{"process.pid"}

// ParseAttributes reads --metric-attributes: a comma-separated list of
// OptionalAttributes to add to c. An unknown name is an error that lists
// the known ones.
func (c Cardinality) ParseAttributes(list string) (Cardinality, error) {
	for name := range strings.SplitSeq(list, ",") {
		switch strings.TrimSpace(name) {
		case "":
		case "process.pid":
			c.PID = true
		default:
			return c, fmt.Errorf("--metric-attributes: unknown attribute %q (optional ones: %s)", name, strings.Join(OptionalAttributes, ", "))
		}
	}
	return c, nil
}

// pressured: a space that must keep series of its own whatever its rank.
func pressured(s *summary.SpaceSummary) bool {
	if s.UsedPct >= 50 || s.ETA != nil || s.Exhausted {
		return true
	}
	for _, f := range s.Failures {
		if f.Exhaustion && f.Last > 0 {
			return true
		}
	}
	return false
}

// chooser picks the spaces that get series of their own, and remembers
// when each last changed.
type chooser struct {
	c       Cardinality
	changed map[summary.SpaceKey]activity
	own     map[summary.SpaceKey]bool
}

type activity struct {
	sig [4]uint64
	at  time.Time
}

func newChooser(c Cardinality) *chooser {
	return &chooser{c: c, changed: map[summary.SpaceKey]activity{}, own: map[summary.SpaceKey]bool{}}
}

// pick returns the spaces with series of their own (true), at most twice
// Spaces: up to Spaces under pressure (the fullest first), and up to
// Spaces of the others that changed within Idle (the most active over the
// last minute first). A space that had its own keeps it while it ranks
// within twice Spaces, so that spaces of near equal rates do not trade
// places at every collection.
func (ch *chooser) pick(spaces []summary.SpaceSummary, now time.Time) map[summary.SpaceKey]bool {
	seen := make(map[summary.SpaceKey]bool, len(spaces))
	var hot, active []*summary.SpaceSummary
	for i := range spaces {
		s := &spaces[i]
		if s.Other {
			continue
		}
		seen[s.Key] = true
		sig := [4]uint64{s.TotalConns, s.TotalFailures, s.TotalTWIn, uint64(s.Used)}
		a, ok := ch.changed[s.Key]
		if !ok || a.sig != sig {
			a = activity{sig, now}
			ch.changed[s.Key] = a
		}
		switch {
		case pressured(s):
			hot = append(hot, s)
		case now.Sub(a.at) < ch.c.Idle:
			active = append(active, s)
		}
	}
	for k := range ch.changed {
		if !seen[k] {
			delete(ch.changed, k)
		}
	}
	byRate := func(x, y *summary.SpaceSummary) int {
		return cmp.Or(cmp.Compare(y.Conns.S60, x.Conns.S60), cmp.Compare(y.TotalConns, x.TotalConns))
	}
	slices.SortStableFunc(hot, func(x, y *summary.SpaceSummary) int {
		return cmp.Or(cmp.Compare(y.UsedPct, x.UsedPct), byRate(x, y))
	})
	slices.SortStableFunc(active, byRate)
	// Every space seen is in the map: false for the folded ones, so that
	// the latency recorder tells them from spaces it has not seen yet.
	own := make(map[summary.SpaceKey]bool, len(seen))
	for k := range seen {
		own[k] = false
	}
	n := ch.c.Spaces
	for _, s := range hot[:min(n, len(hot))] {
		own[s.Key] = true
	}
	// Spaces under pressure beyond the first n rank with the active ones.
	active = append(active, hot[min(n, len(hot)):]...)
	slices.SortStableFunc(active, byRate)
	taken := 0
	for i, s := range active {
		if taken < n && ch.own[s.Key] && i < 2*n {
			own[s.Key] = true
			taken++
		}
	}
	for _, s := range active {
		if taken >= n {
			break
		}
		if !own[s.Key] {
			own[s.Key] = true
			taken++
		}
	}
	ch.own = own
	return own
}

// member is one contribution to a series: a port space's or a process's
// count, with an error type for failures.
type member struct {
	space summary.SpaceKey
	other bool // the aggregator's own "other" row
	pid   uint32
	comm  string
	errno string
}

type memberState struct {
	set    attribute.Distinct
	last   uint64
	offset uint64 // the count already reported under another set
	seen   bool
	// moved: in this collection the member left from, where it had
	// counted fromLast (settle decides what it takes along).
	moved    bool
	from     attribute.Distinct
	fromLast uint64
}

type sumState struct {
	attrs   attribute.Set
	retired uint64 // what members that left had added
	value   uint64
	changed time.Time
	live    bool
	fresh   bool // made in this collection: not exported yet
}

// sums turns per-member cumulative counts into cumulative counts per
// attribute set that never go down and never count anything twice.
// When every member of a set moves to a new one (a space's pod labels
// arrive, or it gets its own series while it was alone in its namespace's
// "other"), the series is renamed: the new set starts with the old one's
// count and the old one ends. Otherwise a member that leaves a set (its
// space got a series of its own, its process was evicted) leaves its
// contribution behind, and a member that joins a set after reporting
// under another adds only what it counts from then on. A set unchanged
// for Idle is no longer exported.
type sums struct {
	members map[member]*memberState
	sets    map[attribute.Distinct]*sumState
}

func newSums() *sums {
	return &sums{members: map[member]*memberState{}, sets: map[attribute.Distinct]*sumState{}}
}

// add notes that m counts v under attrs in this collection.
func (s *sums) add(m member, attrs attribute.Set, v uint64) {
	d := attrs.Equivalent()
	if s.sets[d] == nil {
		s.sets[d] = &sumState{attrs: attrs, fresh: true}
	}
	ms := s.members[m]
	switch {
	case ms == nil:
		ms = &memberState{set: d}
		s.members[m] = ms
	case ms.set != d && !ms.moved:
		ms.moved, ms.from, ms.fromLast = true, ms.set, ms.last
		fallthrough
	default:
		ms.set = d
	}
	ms.last, ms.seen = max(v, ms.last), true
}

// settle decides what the members that moved in this collection take
// along. A new set continues the sets its members came from when each of
// them moved into it whole (no member stayed or went elsewhere): it takes
// their counts, and they end. Otherwise a member leaves what it had
// counted in the set it left.
func (s *sums) settle() {
	// into: the one set a set's members all moved to; left: the sets
	// some member stayed in or moved out of elsewhere.
	into := map[attribute.Distinct]attribute.Distinct{}
	left := map[attribute.Distinct]bool{}
	for _, ms := range s.members {
		if !ms.moved {
			left[ms.set] = true
			continue
		}
		if d, ok := into[ms.from]; ok && d != ms.set {
			left[ms.from] = true
		}
		into[ms.from] = ms.set
	}
	continues := map[attribute.Distinct]bool{}
	for d, set := range s.sets {
		continues[d] = set.fresh
	}
	for _, ms := range s.members {
		if ms.moved && left[ms.from] {
			continues[ms.set] = false
		}
	}
	for _, ms := range s.members {
		if !ms.moved {
			continue
		}
		ms.moved = false
		old := s.sets[ms.from]
		if continues[ms.set] {
			if old != nil { // the first of its members to move takes it over
				s.sets[ms.set].retired += old.retired
				delete(s.sets, ms.from)
			}
			continue
		}
		if old != nil {
			old.retired += ms.fromLast - ms.offset
		}
		ms.offset = ms.fromLast
	}
}

// end retires the members not seen in this collection and calls emit
// with each set's cumulative count, except the sets unchanged for idle.
func (s *sums) end(now time.Time, idle time.Duration, emit func(attribute.Set, uint64)) {
	for m, ms := range s.members {
		if !ms.seen {
			if set := s.sets[ms.set]; set != nil {
				set.retired += ms.last - ms.offset
			}
			delete(s.members, m)
		}
	}
	s.settle()
	for _, set := range s.sets {
		set.live, set.fresh = false, false
	}
	totals := map[attribute.Distinct]uint64{}
	for _, ms := range s.members {
		totals[ms.set] += ms.last - ms.offset
		s.sets[ms.set].live = true
		ms.seen = false
	}
	for d, set := range s.sets {
		v := set.retired + totals[d]
		if set.changed.IsZero() || v != set.value {
			set.value, set.changed = v, now
		}
		if now.Sub(set.changed) >= idle {
			if !set.live {
				delete(s.sets, d)
				continue
			}
			// Its members stay: if they count again, the series comes
			// back, counting from 0.
			for _, ms := range s.members {
				if ms.set == d {
					ms.offset = ms.last
				}
			}
			set.retired, set.value = 0, 0
			continue
		}
		emit(set.attrs, v)
	}
}

// Package recorder writes what a source observes into a capture, within
// bounds, and with an optional trigger: keep the last minutes in memory and
// write them only once connect() has failed often enough, so that the file
// holds the lead-up to an incident as well as the incident.
package recorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/netns"
)

// Options bound a recording. Zero means no bound, but for the window.
type Options struct {
	Duration  time.Duration // after the trigger, if any
	MaxSize   int64         // bytes written
	MaxEvents uint64
	// UntilFailures, if not 0, is the trigger: failed connect()/bind()
	// calls to wait for before writing anything.
	UntilFailures uint64
	PreTrigger    time.Duration // kept in memory before the trigger
	// WindowEvents bounds the pre-trigger window's memory (~170 bytes an
	// event); older events are dropped and counted.
	WindowEvents int
	Tables       func() capture.Round // socket tables, every TablesEvery
	// Netns is the namespaces the capture's first round listed: the first
	// event from any other has a round read within a second, as the live
	// monitor does, so that a short-lived namespace's size is known.
	Netns []netns.Settings
	// Cgroup, if set, says where a process ran from its pid and cgroup id;
	// each round carries the cgroups its events came from.
	Cgroup   func(pid uint32, cgroupID uint64) cgroup.Process
	Progress func(Progress) // every second
}

// Defaults of the pre-trigger window: a minute, and at most half a million
// events (~85 MiB) of it.
const (
	DefaultPreTrigger   = time.Minute
	DefaultWindowEvents = 1 << 19
)

// TablesEvery is how often socket tables are written.
const TablesEvery = 5 * time.Second

// Progress is what the progress line shows.
type Progress struct {
	Events, Failures uint64
	Size             int64
	Elapsed          time.Duration
	Left             time.Duration // of Duration; 0 if unbounded
	Waiting          bool          // for the trigger
	Window           int           // events held for the trigger
}

// item is what the pre-trigger window holds, in order.
type item struct {
	ev        event.Event
	round     *capture.Round
	syncBegin bool
}

type recorder struct {
	mu        sync.Mutex
	w         *capture.Writer
	o         Options
	stop      context.CancelFunc
	reason    string
	err       error
	start     time.Time
	deadline  time.Time
	failures  uint64
	triggered bool
	window    []item // from head on; compacted as it ages
	head      int
	held      int            // events in the window
	seed      *capture.Round // the last round older than the window
	dropped   uint64
	full      bool // a bound or a write error was hit
	// cgroups seen in events and not yet written in a round: id → a pid
	// that ran in it; named is what was written (bounded).
	cgroups map[uint64]uint32
	named   map[uint64]bool
	// known is the namespaces of the last round read; early, that an event
	// came from another, which has an early round once (asked): one the
	// rounds cannot list must not cost a round every second.
	known map[uint32]bool
	asked map[uint32]bool
	early bool
}

func inodes(all []netns.Settings) map[uint32]bool {
	m := map[uint32]bool{}
	for _, s := range all {
		m[s.Inode] = true
	}
	return m
}

// maxCgroups bounds the cgroups a recording names, and the namespaces it
// reads a round early for.
const maxCgroups = 4096

// ReadRound reads every namespace's settings and socket table now, with
// tables (sockdiag.ReadAll), then, if ct is not nil, their conntrack
// tables with it (conntrack.Reader's Read), as a capture's round. The
// error is tables's when no table could be read; trouble with some
// namespaces only is not, nor is conntrack's (a kernel without it has
// no NAT to record: the round has no conntrack tables).
func ReadRound(tables func() ([]netns.Settings, []event.SocketTable, error), ct func([]netns.Settings) ([]nat.Table, error)) (capture.Round, error) {
	t := time.Now()
	all, tabs, err := tables()
	if len(tabs) > 0 {
		err = nil
	}
	r := capture.Round{Time: t, Netns: all, Tables: tabs}
	if ct != nil && len(all) > 0 {
		at := time.Now()
		if cts, _ := ct(all); len(cts) > 0 {
			r.Conntrack = &capture.ConntrackRound{Time: at, Tables: cts}
		}
	}
	return r, err
}

// Begin starts a capture on f: the header, whose start and namespaces are
// those of the first round of socket tables, then that round, so that a
// report knows what was already there when recording began.
func Begin(f io.Writer, h capture.Header, first capture.Round) (*capture.Writer, error) {
	h.Start, h.Netns = first.Time, first.Netns
	w, err := capture.NewWriter(f, h)
	if err == nil {
		err = w.SyncBegin()
	}
	if err == nil {
		err = w.Round(first)
	}
	return w, err
}

// Record runs until a bound, the trigger's end, ctx's end or a write error,
// then closes the capture with its trailer. The error is the first write
// or source error; the capture is readable up to it.
func Record(ctx context.Context, src event.Source, w *capture.Writer, o Options) (capture.Trailer, error) {
	if o.PreTrigger <= 0 {
		o.PreTrigger = DefaultPreTrigger
	}
	if o.WindowEvents <= 0 {
		o.WindowEvents = DefaultWindowEvents
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &recorder{w: w, o: o, stop: cancel, start: time.Now(), triggered: o.UntilFailures == 0,
		cgroups: map[uint64]uint32{}, named: map[uint64]bool{}, known: inodes(o.Netns), asked: map[uint32]bool{}}
	if r.triggered && o.Duration > 0 {
		r.deadline = r.start.Add(o.Duration)
	}
	done := make(chan struct{})
	go func() { defer close(done); r.tick(ctx) }()
	err := src.Run(ctx, r.event)
	cancel()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.reason != "":
	case err != nil:
		r.reason = "the tracer failed"
	default:
		r.reason = "interrupted"
	}
	if !r.triggered && r.held > 0 {
		r.reason += fmt.Sprintf(" before %d failures: the %d events held are written", o.UntilFailures, r.held)
		r.flushWindow()
	}
	t := capture.Trailer{End: time.Now(), Dropped: r.dropped, Reason: r.reason}
	t.Lost, _ = src.Lost()
	if cerr := w.Close(t); r.err == nil {
		r.err = cerr
	}
	t.Events = w.Events()
	return t, errors.Join(err, r.err)
}

func (r *recorder) finish(reason string) {
	if r.reason == "" {
		r.reason = reason
	}
	r.stop()
}

func (r *recorder) event(e *event.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reason != "" {
		return
	}
	if e.Failed() {
		r.failures++
	}
	if !r.known[e.Netns] && !r.asked[e.Netns] && len(r.asked) < maxCgroups {
		r.asked[e.Netns] = true
		r.early = true
	}
	if id := e.CgroupID; id != 0 && r.o.Cgroup != nil && !r.named[id] && len(r.named)+len(r.cgroups) < maxCgroups {
		if _, ok := r.cgroups[id]; !ok {
			r.cgroups[id] = e.PID
		}
	}
	if !r.triggered {
		r.hold(item{ev: *e})
		if r.failures >= r.o.UntilFailures {
			r.trigger()
		}
		return
	}
	r.write(r.w.Event(e))
}

// write checks the bounds after a write; once one is hit, nothing more is
// written.
func (r *recorder) write(err error) {
	if err != nil || r.o.MaxEvents > 0 && r.w.Events() >= r.o.MaxEvents ||
		r.o.MaxSize > 0 && r.w.Size()+int64(r.w.Buffered()) >= r.o.MaxSize {
		r.full = true
	}
	switch {
	case err != nil:
		r.err = err
		r.finish("write error")
	case r.o.MaxEvents > 0 && r.w.Events() >= r.o.MaxEvents:
		r.finish(fmt.Sprintf("%d events (--max-events)", r.o.MaxEvents))
	case r.o.MaxSize > 0 && r.w.Size()+int64(r.w.Buffered()) >= r.o.MaxSize:
		r.finish(fmt.Sprintf("%d bytes (--max-size)", r.o.MaxSize))
	}
}

// hold keeps an item in the pre-trigger window, ageing out what is older
// than PreTrigger or beyond WindowEvents. The front advances by an index
// and the slice is compacted only once half of it is dead, so holding costs
// O(1) per event however full the window.
func (r *recorder) hold(it item) {
	r.window = append(r.window, it)
	if it.round == nil && !it.syncBegin {
		r.held++
	}
	now := time.Now()
	for r.head < len(r.window) && (r.held > r.o.WindowEvents || r.age(&r.window[r.head], now) > r.o.PreTrigger) {
		front := &r.window[r.head]
		switch {
		case front.round != nil:
			r.seed = front.round
		case !front.syncBegin:
			r.held--
			r.dropped++
		}
		*front = item{}
		r.head++
	}
	if r.head > len(r.window)/2 {
		r.window = append(r.window[:0], r.window[r.head:]...)
		r.head = 0
	}
}

func (r *recorder) age(it *item, now time.Time) time.Duration {
	switch {
	case it.round != nil:
		return now.Sub(it.round.Time)
	case it.syncBegin:
		return 0 // goes with the round that follows it
	}
	return now.Sub(it.ev.Time)
}

func (r *recorder) trigger() {
	r.triggered = true
	if r.o.Duration > 0 {
		r.deadline = time.Now().Add(r.o.Duration)
	}
	r.flushWindow()
}

// flushWindow writes the window, preceded by the round that seeds it.
func (r *recorder) flushWindow() {
	if r.seed != nil {
		r.write(r.w.SyncBegin())
		r.write(r.w.Round(*r.seed))
	}
	for i := r.head; i < len(r.window) && !r.full; i++ {
		switch it := &r.window[i]; {
		case it.round != nil:
			r.write(r.w.Round(*it.round))
		case it.syncBegin:
			r.write(r.w.SyncBegin())
		default:
			r.write(r.w.Event(&it.ev))
		}
	}
	r.window, r.head, r.held, r.seed = nil, 0, 0, nil
}

// tick flushes every second, writes socket tables, reports progress and
// ends the recording when its time is up.
func (r *recorder) tick(ctx context.Context) {
	second := time.NewTicker(time.Second)
	defer second.Stop()
	lastTables := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-second.C:
			r.mu.Lock()
			early := r.early
			r.early = false
			r.mu.Unlock()
			if r.o.Tables != nil && (early || now.Sub(lastTables) >= TablesEvery) {
				lastTables = now
				r.tables()
			}
			r.mu.Lock()
			r.second(now)
			r.mu.Unlock()
		}
	}
}

// tables writes a round: the marker first, so that a replay knows which
// events raced the dump, then the dump, read outside the lock.
func (r *recorder) tables() {
	r.mu.Lock()
	r.add(item{syncBegin: true})
	todo := r.cgroups
	r.cgroups = map[uint64]uint32{}
	r.mu.Unlock()
	round := r.o.Tables()
	known := inodes(round.Netns)
	if len(todo) > 0 {
		round.Cgroups = map[uint64]cgroup.Process{}
		for id, pid := range todo {
			round.Cgroups[id] = r.o.Cgroup(pid, id)
		}
	}
	r.mu.Lock()
	r.known = known
	for id := range todo {
		r.named[id] = true
	}
	r.add(item{round: &round})
	r.mu.Unlock()
}

func (r *recorder) add(it item) {
	switch {
	case r.reason != "":
	case !r.triggered:
		r.hold(it)
	case it.syncBegin:
		r.write(r.w.SyncBegin())
	default:
		r.write(r.w.Round(*it.round))
	}
}

func (r *recorder) second(now time.Time) {
	if r.triggered && r.reason == "" {
		if err := r.w.Flush(); err != nil {
			r.write(err)
		}
	}
	if !r.deadline.IsZero() && !now.Before(r.deadline) && r.reason == "" {
		reason := fmt.Sprintf("%s after the start (--duration)", r.o.Duration)
		if r.o.UntilFailures > 0 {
			reason = fmt.Sprintf("%s after %d failures (--duration)", r.o.Duration, r.o.UntilFailures)
		}
		r.finish(reason)
	}
	if r.o.Progress != nil {
		p := Progress{Events: r.w.Events(), Failures: r.failures, Size: r.w.Size(), Elapsed: now.Sub(r.start),
			Waiting: !r.triggered, Window: r.held}
		if !r.deadline.IsZero() {
			p.Left = max(r.deadline.Sub(now), 0)
		}
		r.o.Progress(p)
	}
}

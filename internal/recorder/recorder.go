// Package recorder writes what a source observes into a capture, within
// bounds, and with an optional trigger: keep the last minutes in memory and
// write them only once connect() has failed often enough, so that the file
// holds the lead-up to an incident as well as the incident.
package recorder

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/event"
)

// Source delivers events until its context ends; the tracer is one.
type Source interface {
	Run(ctx context.Context, fn func(*event.Event)) error
	Lost() (uint64, error)
}

// Options bound a recording. Zero means no bound, but for the window.
type Options struct {
	Duration  time.Duration // after the trigger, if any
	MaxSize   int64         // bytes written
	MaxEvents uint64
	// UntilFailures, if not 0, is the trigger: failed connect()/bind()
	// calls to wait for before writing anything.
	UntilFailures uint64
	PreTrigger    time.Duration // kept in memory before the trigger
	// WindowEvents bounds the pre-trigger window's memory (~120 bytes an
	// event); older events are dropped and counted.
	WindowEvents int
	Snapshots    func() []capture.Snapshot // socket tables, every SnapshotEvery
	Progress     func(Progress)            // every second
}

// Defaults of the pre-trigger window: a minute, and at most a million
// events (~120 MiB) of it.
const (
	DefaultPreTrigger   = time.Minute
	DefaultWindowEvents = 1 << 20
)

// SnapshotEvery is how often socket tables are written.
const SnapshotEvery = 5 * time.Second

// Progress is what the progress line shows.
type Progress struct {
	Events, Failures uint64
	Size             int64
	Elapsed          time.Duration
	Left             time.Duration // of Duration; 0 if unbounded
	Waiting          bool          // for the trigger
	Window           int           // events held for the trigger
}

type item struct {
	ev   event.Event
	snap *capture.Snapshot
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
	window    []item
	seed      *capture.Snapshot // the last snapshot older than the window
	dropped   uint64
}

// Record runs until a bound, the trigger's end, ctx's end or a write error,
// then closes the capture with its trailer. The error is the first write
// or source error; the capture is readable up to it.
func Record(ctx context.Context, src Source, w *capture.Writer, o Options) (capture.Trailer, error) {
	if o.PreTrigger <= 0 {
		o.PreTrigger = DefaultPreTrigger
	}
	if o.WindowEvents <= 0 {
		o.WindowEvents = DefaultWindowEvents
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &recorder{w: w, o: o, stop: cancel, start: time.Now(), triggered: o.UntilFailures == 0}
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
	if r.reason == "" {
		r.reason = "interrupted"
	}
	if !r.triggered && len(r.window) > 0 {
		r.reason += fmt.Sprintf(" before %d failures: the last %s are written", o.UntilFailures, o.PreTrigger)
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
	if e.Failed() && (e.Kind == event.Connect || e.Kind == event.Bind) {
		r.failures++
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

// write checks the bounds after a write.
func (r *recorder) write(err error) {
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
// than PreTrigger or beyond WindowEvents.
func (r *recorder) hold(it item) {
	r.window = append(r.window, it)
	now := time.Now()
	cut := 0
	for cut < len(r.window) && (len(r.window)-cut > r.o.WindowEvents || r.age(r.window[cut], now) > r.o.PreTrigger) {
		if s := r.window[cut].snap; s != nil {
			r.seed = s
		} else {
			r.dropped++
		}
		cut++
	}
	if cut > 0 {
		r.window = append(r.window[:0], r.window[cut:]...)
	}
}

func (r *recorder) age(it item, now time.Time) time.Duration {
	if it.snap != nil {
		return now.Sub(it.snap.Time)
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

// flushWindow writes the window, preceded by the snapshot that seeds it.
func (r *recorder) flushWindow() {
	if r.seed != nil {
		r.write(r.w.Snapshot(*r.seed))
	}
	for i := range r.window {
		if r.reason != "" && r.err != nil {
			break
		}
		if s := r.window[i].snap; s != nil {
			r.write(r.w.Snapshot(*s))
		} else {
			r.write(r.w.Event(&r.window[i].ev))
		}
	}
	r.window, r.seed = nil, nil
}

// tick flushes every second, writes snapshots, reports progress and ends
// the recording when its time is up.
func (r *recorder) tick(ctx context.Context) {
	second := time.NewTicker(time.Second)
	defer second.Stop()
	lastSnap := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-second.C:
			if r.o.Snapshots != nil && now.Sub(lastSnap) >= SnapshotEvery {
				lastSnap = now
				snaps := r.o.Snapshots() // outside the lock: a dump takes time
				r.mu.Lock()
				r.addSnapshots(snaps)
				r.mu.Unlock()
			}
			r.mu.Lock()
			r.second(now)
			r.mu.Unlock()
		}
	}
}

func (r *recorder) addSnapshots(snaps []capture.Snapshot) {
	for i := range snaps {
		if !r.triggered {
			r.hold(item{snap: &snaps[i]})
		} else if r.reason == "" {
			r.write(r.w.Snapshot(snaps[i]))
		}
	}
}

func (r *recorder) second(now time.Time) {
	if r.triggered && r.reason == "" {
		if err := r.w.Flush(); err != nil {
			r.write(err)
		}
	}
	if !r.deadline.IsZero() && !now.Before(r.deadline) {
		r.finish(fmt.Sprintf("%s after the start (--duration)", r.o.Duration))
		if r.o.UntilFailures > 0 {
			r.reason = fmt.Sprintf("%s after %d failures (--duration)", r.o.Duration, r.o.UntilFailures)
		}
	}
	if r.o.Progress != nil {
		p := Progress{Events: r.w.Events(), Failures: r.failures, Size: r.w.Size(), Elapsed: now.Sub(r.start),
			Waiting: !r.triggered, Window: len(r.window)}
		if !r.deadline.IsZero() {
			p.Left = max(r.deadline.Sub(now), 0)
		}
		r.o.Progress(p)
	}
}

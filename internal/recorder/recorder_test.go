package recorder

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
)

// source plays events, then waits for the end like the tracer does.
type source struct{ events []event.Event }

func (s *source) Run(ctx context.Context, fn func(*event.Event)) error {
	for i := range s.events {
		if ctx.Err() != nil {
			return nil
		}
		fn(&s.events[i])
	}
	<-ctx.Done()
	return nil
}

func (s *source) Lost() (uint64, error) { return 2, nil }

// stream is n events, from now on, with a failed connect() at each index in
// fails.
func stream(n int, fails ...int) *source {
	s := &source{}
	now := time.Now()
	for i := 0; i < n; i++ {
		e := event.Event{Time: now.Add(time.Duration(i) * time.Microsecond), Kind: event.State, Cookie: uint64(i)}
		for _, f := range fails {
			if f == i {
				e.Kind, e.Errno = event.Connect, syscall.EADDRNOTAVAIL
			}
		}
		s.events = append(s.events, e)
	}
	return s
}

func record(t *testing.T, src *source, o Options, w io.Writer, stopAfter time.Duration) (capture.Trailer, []event.Event, error) {
	t.Helper()
	var buf bytes.Buffer
	if w == nil {
		w = &buf
	}
	cw, err := capture.NewWriter(w, capture.Header{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopAfter)
	defer cancel()
	tr, rerr := Record(ctx, src, cw, o)
	if w != &buf {
		return tr, nil, rerr
	}
	r, err := capture.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	var ev event.Event
	for {
		rec, err := r.Next(&ev)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Event != nil {
			evs = append(evs, ev)
		}
	}
	if r.Trailer == nil || r.Trailer.Reason != tr.Reason {
		t.Errorf("trailer %+v, want %+v", r.Trailer, tr)
	}
	return tr, evs, rerr
}

func TestMaxEvents(t *testing.T) {
	tr, evs, err := record(t, stream(1000), Options{MaxEvents: 500}, nil, 5*time.Second)
	if err != nil || len(evs) != 500 || tr.Events != 500 || !strings.Contains(tr.Reason, "--max-events") || tr.Lost != 2 {
		t.Errorf("%d events, %+v, %v", len(evs), tr, err)
	}
}

func TestInterrupted(t *testing.T) {
	tr, evs, err := record(t, stream(300), Options{Duration: time.Hour}, nil, 300*time.Millisecond)
	if err != nil || len(evs) != 300 || tr.Reason != "interrupted" {
		t.Errorf("%d events, %+v, %v", len(evs), tr, err)
	}
}

func TestTrigger(t *testing.T) {
	// The 5th failure is event 204: everything before it was held, and is
	// written with it; the rest follows.
	tr, evs, err := record(t, stream(400, 100, 150, 200, 202, 204, 300), Options{UntilFailures: 5}, nil, 300*time.Millisecond)
	if err != nil || len(evs) != 400 || evs[0].Cookie != 0 || evs[399].Cookie != 399 {
		t.Errorf("%d events, %+v, %v", len(evs), tr, err)
	}
	// The trigger never fires: the window is written at the end, and says so.
	tr, evs, err = record(t, stream(100, 10), Options{UntilFailures: 5}, nil, 300*time.Millisecond)
	if err != nil || len(evs) != 100 || !strings.Contains(tr.Reason, "interrupted before 5 failures") {
		t.Errorf("no trigger: %d events, %+v, %v", len(evs), tr, err)
	}
	// A window of 50 events keeps the last 50 and counts the rest.
	tr, evs, err = record(t, stream(400, 390), Options{UntilFailures: 1, WindowEvents: 50}, nil, 300*time.Millisecond)
	if err != nil || len(evs) != 59 || evs[0].Cookie != 341 || tr.Dropped != 341 {
		t.Errorf("small window: %d events from %d, dropped %d, %v", len(evs), evs[0].Cookie, tr.Dropped, err)
	}
}

type fullDisk struct{ n int }

func (f *fullDisk) Write(b []byte) (int, error) {
	if f.n < len(b) {
		n := f.n
		f.n = 0
		return n, syscall.ENOSPC
	}
	f.n -= len(b)
	return len(b), nil
}

func TestDiskFullStops(t *testing.T) {
	src := stream(200000)
	tr, _, err := record(t, src, Options{}, &fullDisk{n: 64 << 10}, 10*time.Second)
	if !errors.Is(err, syscall.ENOSPC) || tr.Reason != "write error" {
		t.Errorf("%+v, %v: want ENOSPC and a stop", tr, err)
	}
}

func TestWindowFlushKeepsBounds(t *testing.T) {
	tr, evs, err := record(t, stream(1000, 999), Options{UntilFailures: 1, MaxEvents: 10}, nil, 2*time.Second)
	if err != nil || len(evs) != 10 || !strings.Contains(tr.Reason, "--max-events") {
		t.Errorf("%d events written, %+v, %v; want 10", len(evs), tr, err)
	}
}

// TestNewNamespaceReadEarly: the first event from a namespace the last
// round did not list has a round read within a second, not at the next
// TablesEvery; one the rounds cannot list costs that one early round only.
func TestNewNamespaceReadEarly(t *testing.T) {
	var mu sync.Mutex
	var reads []time.Duration
	start := time.Now()
	o := Options{Netns: []netns.Settings{{Inode: 1}}, Tables: func() capture.Round {
		mu.Lock()
		defer mu.Unlock()
		reads = append(reads, time.Since(start))
		return capture.Round{Time: time.Now(), Netns: []netns.Settings{{Inode: 1}}} // 2 is never listed
	}}
	src := ticking{netns: 2, every: 300 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	cw, _ := capture.NewWriter(io.Discard, capture.Header{})
	if _, err := Record(ctx, src, cw, o); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reads) != 1 || reads[0] > 1500*time.Millisecond {
		t.Errorf("rounds read at %v: want one, within a second of the event from namespace 2", reads)
	}
}

// ticking sends an event from one namespace every so often.
type ticking struct {
	netns uint32
	every time.Duration
}

func (s ticking) Run(ctx context.Context, fn func(*event.Event)) error {
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			fn(&event.Event{Time: now, Kind: event.State, Netns: s.netns})
		}
	}
}

func (ticking) Lost() (uint64, error) { return 0, nil }

//go:build linux

package floor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

// Poll is how often the streamer's reader empties the ring, as porttrace's.
const Poll = 10 * time.Millisecond

// Run attaches the program of mode, "count" or "stream", calls ready once
// it is attached, and runs until ctx ends. It returns the state changes
// counted (count) or read from the ring (stream), and those lost: the
// ring could not take them, or the kernel skipped the program's run (its
// recursion_misses: the tracepoint fired while the program ran on that
// CPU, from an interrupt). A minimal tracer loses those silently;
// porttrace's pt_state_nested does their work.
func Run(ctx context.Context, mode string, ready func()) (events, lost uint64, err error) {
	prog := map[string]string{"count": floorProgFloorCount, "stream": floorProgFloorStream}[mode]
	if prog == "" {
		return 0, 0, fmt.Errorf("floor mode %q: want count or stream", mode)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return 0, 0, err
	}
	spec, err := loadFloor()
	if err != nil {
		return 0, 0, err
	}
	for name := range spec.Programs {
		if name != prog {
			delete(spec.Programs, name)
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return 0, 0, fmt.Errorf("load %s: %w", prog, err)
	}
	defer coll.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: coll.Programs[prog]})
	if err != nil {
		return 0, 0, fmt.Errorf("attach %s: %w", prog, err)
	}
	defer l.Close()
	ready()
	if mode == "count" {
		<-ctx.Done()
		events = sum(coll.Maps[floorMapCounts], 0)
	} else {
		events, err = stream(ctx, coll.Maps[floorMapChanges])
		lost = sum(coll.Maps[floorMapCounts], 1)
	}
	st, serr := coll.Programs[prog].Stats()
	if serr != nil {
		// The counts stand without it: say so rather than lose the run.
		fmt.Fprintf(os.Stderr, "floor: %s's skipped runs not counted: %v\n", prog, serr)
		return events, lost, err
	}
	return events, lost + st.RecursionMisses, err
}

// stream reads every record every Poll until ctx ends, then what is left.
// It sleeps on a Go timer and drains without blocking, as porttrace's
// reader does (tracer.Run): a reader blocked in epoll_wait would have Go's
// sysmon wake every 20 µs, a cost no minimal streamer has.
func stream(ctx context.Context, m *ebpf.Map) (uint64, error) {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return 0, err
	}
	defer rd.Close()
	tick := time.NewTicker(Poll)
	defer tick.Stop()
	var rec ringbuf.Record
	var n uint64
	for {
		done := ctx.Err() != nil
		rd.SetDeadline(time.Now())
		for {
			err := rd.ReadInto(&rec)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return n, err
			}
			n++
		}
		if done {
			return n, nil
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// sum adds up one slot of a per-CPU array.
func sum(m *ebpf.Map, key uint32) uint64 {
	var per []uint64
	if m.Lookup(key, &per) != nil {
		return 0
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}

package tracer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/porttrace/porttrace/internal/event"
)

// Run reads events until ctx is cancelled, calling fn for each in order. The
// event passed to fn is reused: copy it to keep it. On cancellation Run
// delivers what is still in the ring buffer before returning nil.
//
// It empties the ring every poll period and sleeps between, on a Go timer:
// the probes never wake it, and a reader blocked in epoll_wait for a whole
// period would have the Go runtime's sysmon hand its P off and then wake
// every 20 µs (measured: 1,300 sleeps/s and a third of porttrace's CPU
// under churn, docs/performance.md).
func (t *Tracer) Run(ctx context.Context, fn func(*event.Event)) error {
	var rec ringbuf.Record
	var ev, syn event.Event
	tick := time.NewTicker(t.poll)
	defer tick.Stop()
	for {
		done := ctx.Err() != nil
		if err := t.drain(&rec, &ev, &syn, fn); err != nil {
			return err
		}
		if done {
			return nil
		}
		// Still a quarter full after a drain: events come faster than a
		// period holds, so drain again at once rather than risk the ring.
		if t.reader.AvailableBytes() >= t.reader.BufferSize()/4 {
			continue
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// drain passes fn every record in the ring now, without waiting: two
// events for a record that also stands for its socket's SYN_SENT.
func (t *Tracer) drain(rec *ringbuf.Record, ev, syn *event.Event, fn func(*event.Event)) error {
	t.reader.SetDeadline(time.Now())
	for {
		err := t.reader.ReadInto(rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if err := t.decode(rec.RawSample, ev); err != nil {
			return err
		}
		if t.synSent(rec.RawSample, ev, syn) {
			fn(syn)
		}
		fn(ev)
	}
}

var eventSize = int(unsafe.Sizeof(bpfEvent{}))

// decode converts the kernel's record without allocating: it runs for every
// event.
func (t *Tracer) decode(raw []byte, ev *event.Event) error {
	if len(raw) < eventSize {
		return fmt.Errorf("ring buffer record of %d bytes, want %d: BPF object and tracer disagree", len(raw), eventSize)
	}
	k := (*bpfEvent)(unsafe.Pointer(&raw[0]))
	*ev = event.Event{
		Time:        t.clock.wall(k.TsNs),
		Kind:        event.Kind(k.Kind),
		Flags:       event.Flags(k.Flags),
		OldState:    event.TCPState(k.OldState),
		NewState:    event.TCPState(k.NewState),
		Errno:       syscall.Errno(-k.Ret),
		Latency:     time.Duration(k.LatencyNs),
		Cookie:      k.Cookie,
		CgroupID:    k.CgroupId,
		Netns:       k.Netns,
		NetnsCookie: k.NetnsCookie,
		TID:         k.Tid,
		PID:         k.Pid,
		Family:      k.Family,
		Comm:        *(*event.Comm)(unsafe.Pointer(&k.Comm)),
		ThreadComm:  *(*event.Comm)(unsafe.Pointer(&k.ThreadComm)),
		Src:         netip.AddrPortFrom(addr(k.Family, &k.Saddr), k.Sport),
		Dst:         netip.AddrPortFrom(addr(k.Family, &k.Daddr), k.Dport),
		PortRange:   [2]uint16{k.RangeLow, k.RangeHigh},
	}
	if ev.Kind == event.NAT {
		ev.NATSrc, ev.Proto = netip.AddrPortFrom(addr(k.Family, &k.NatAddr), k.NatPort), k.Protocol
	}
	if k.Ret > 0 {
		ev.Errno = 0
	}
	return nil
}

// synSent fills syn with the SYN_SENT transition a record also stands for
// (bpf/state.h defers it, on the tracepoint backend, to the socket's first
// record after the port search) and reports whether there is one. ev is
// the record, decoded; its port range, which only a SYN_SENT carries, moves
// to syn. The port search had not run at SYN_SENT: syn has no source port.
func (t *Tracer) synSent(raw []byte, ev, syn *event.Event) bool {
	k := (*bpfEvent)(unsafe.Pointer(&raw[0]))
	if k.SynSentNs == 0 {
		return false
	}
	*syn = *ev
	syn.Time = t.clock.wall(k.SynSentNs)
	syn.Kind, syn.OldState, syn.NewState = event.State, event.Close, event.SynSent
	syn.Errno, syn.Latency, syn.Flags = 0, 0, event.OwnerFromSocket
	syn.Src = netip.AddrPortFrom(ev.Src.Addr(), 0)
	ev.PortRange = [2]uint16{}
	return true
}

// addr reads a kernel address; a v4-mapped IPv6 address is the IPv4 address
// it maps, since it competes for the same ports.
func addr(family uint16, b *[16]uint8) netip.Addr {
	if family == unix.AF_INET {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(*b).Unmap()
}

// clock turns bpf_ktime_get_ns (CLOCK_MONOTONIC) into wall time.
type clock struct{ offset int64 }

func newClock() clock {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return clock{offset: time.Now().UnixNano() - ts.Nano()}
}

func (c clock) wall(mono uint64) time.Time { return time.Unix(0, int64(mono)+c.offset) }

// Package event defines what porttrace observes, as plain Go values. The
// tracer produces these from the kernel; captures store and replay them; the
// aggregator consumes them without knowing where they came from.
package event

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"time"
	"unicode"
)

// Kind says what happened.
type Kind uint8

// The kinds mirror enum event_kind in bpf/porttrace.h.
const (
	// Connect is a connect() that failed synchronously, with the errno the
	// caller got: before the socket reached SYN_SENT (no route, no source
	// address), in the port search itself (Searched), or after it found
	// a port (AfterSearch).
	Connect Kind = 1
	// Alloc is the kernel's search for a source port inside connect().
	Alloc Kind = 2
	// Bind is an ephemeral port taken by bind() (port 0), or a named port
	// that bind() could not take (FixedPort).
	Bind Kind = 3
	// State is a client socket entering SYN_SENT (an attempt), ESTABLISHED
	// or CLOSE. SYN_SENT -> CLOSE carries the attempt's failure in Errno.
	State Kind = 4
	// TimeWait is a client socket's port entering TIME_WAIT; the socket
	// itself is closed, and no CLOSE event follows.
	TimeWait Kind = 5
	// NAT is a flow that a namespace's source NAT translated, as conntrack
	// confirmed it, or refused it (InsertFailed: no free NAT port). Src
	// and Dst are the original tuple (the client, its destination), NATSrc
	// the translated source, Netns the namespace that translated, Latency
	// the NAT's port search (nf_nat_setup_info). No process: the kernel
	// confirms in softirq. fentry and kprobe backends only.
	NAT Kind = 6
)

var kindNames = [...]string{Connect: "connect", Alloc: "alloc", Bind: "bind", State: "state", TimeWait: "time_wait", NAT: "nat"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, error) {
	for k, n := range kindNames {
		if n != "" && n == s {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("unknown event kind %q", s)
}

// Flags qualify an event's figures.
type Flags uint8

const (
	// LatencyApprox: Latency brackets the port search from neighbouring
	// hooks (tracepoint backend) instead of timing it exactly.
	LatencyApprox Flags = 1
	// OwnerFromSocket: the process was recorded when the socket connected,
	// because the event itself ran in softirq context.
	OwnerFromSocket Flags = 2
	// Searched: the failure is the port search's own (every port taken).
	// An EADDRNOTAVAIL without it means no usable source address.
	Searched Flags = 4
	// Bound: the socket held a port from bind() before it connected.
	Bound Flags = 8
	// FixedPort: a Bind event for a port the caller named; Src's port is it.
	FixedPort Flags = 16
	// InsertFailed: a NAT event whose translated tuple conntrack refused
	// (its insert_failed and drop counters rose, the packet was dropped).
	InsertFailed Flags = 32
	// AfterSearch: a Connect failure after the port search found a port
	// (a route refused for that port, tcp_connect() failed): the attempt
	// began at the socket's SYN_SENT, which counted it.
	AfterSearch Flags = 64
)

// TCPState is a kernel TCP state (include/net/tcp_states.h).
type TCPState uint8

var stateNames = [...]string{"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
	"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}

const (
	Established TCPState = 1
	SynSent     TCPState = 2
	FinWait1    TCPState = 4
	FinWait2    TCPState = 5
	Close       TCPState = 7
	Closing     TCPState = 11
)

func (s TCPState) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE(%d)", uint8(s))
}

// Comm is a task name as the kernel keeps it: at most 15 bytes, NUL padded.
// A fixed array, so that decoding an event allocates nothing.
type Comm [16]byte

// String is the name as text safe to print: any process may name itself
// with escape sequences (prctl PR_SET_NAME), and porttrace prints names to
// an operator's terminal as root. Control characters, bidi formatting
// characters (a right-to-left override) and invalid UTF-8 become '?'.
func (c Comm) String() string {
	n := bytes.IndexByte(c[:], 0)
	if n < 0 {
		n = len(c)
	}
	s := strings.ToValidUTF8(string(c[:n]), "?")
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029' {
			return '?'
		}
		return r
	}, s)
}

// MakeComm truncates s the way the kernel does.
func MakeComm(s string) Comm {
	var c Comm
	copy(c[:15], s)
	return c
}

// Event is one observation. Addresses are IPv4 for IPv4 and v4-mapped IPv6
// sockets alike (Family tells them apart): both draw on the same port space.
type Event struct {
	Time     time.Time // wall clock
	Kind     Kind
	Flags    Flags
	OldState TCPState // State events
	NewState TCPState
	// Errno is the failure (0 on success): the connect()/bind() result, or
	// the port search's result.
	Errno syscall.Errno
	// Latency is the port search's duration for Alloc and Bind, and the
	// syscall's duration for Connect.
	Latency  time.Duration
	Cookie   uint64 // the socket's cookie: same for all events of one socket
	CgroupID uint64
	Netns    uint32 // network namespace inode; the kernel reuses it
	// NetnsCookie tells namespaces apart that had the same inode at
	// different times (0 where unknown).
	NetnsCookie uint64
	PID         uint32 // process id (the kernel's tgid)
	TID         uint32 // thread id (the kernel's pid)
	Family      uint16 // AF_INET or AF_INET6
	// Comm is the process's name (its main thread's, as ps shows it);
	// ThreadComm the name of the thread that connected.
	Comm       Comm
	ThreadComm Comm
	Src        netip.AddrPort
	Dst        netip.AddrPort
	// PortRange is, at SYN_SENT, the socket's own IP_LOCAL_PORT_RANGE
	// (setsockopt, Linux 6.3+): [low, high], each 0 when unset; zero on
	// older kernels and for other events.
	PortRange [2]uint16
	// NATSrc is, for NAT events, the translated source address and port
	// (the reply tuple's destination); Proto their IP protocol (6 TCP,
	// 17 UDP). Zero for other events.
	NATSrc netip.AddrPort
	Proto  uint8
}

// Failed reports whether the event records a failed connection attempt or
// bind(): connect()'s or bind()'s own failure, or the outcome of an attempt
// (SYN_SENT -> CLOSE). A port search's result (Alloc) is not a call's.
func (e *Event) Failed() bool {
	switch e.Kind {
	case Connect, Bind:
		return e.Errno != 0 && e.Errno != EINPROGRESS && e.Errno < MaxUserErrno
	case State:
		return e.NewState == Close && e.Errno != 0
	}
	return false
}

// Attempt reports whether the event begins a connection attempt, or is one
// that never reached SYN_SENT: a socket entering SYN_SENT, a connect() that
// failed before it, a bind() that failed (no connect() follows) but for a
// named port taken, which is a conflict.
func (e *Event) Attempt() bool {
	switch e.Kind {
	case State:
		return e.NewState == SynSent
	case Connect:
		return e.Failed() && e.Flags&(Searched|AfterSearch) == 0
	case Bind:
		return e.Failed() && (e.Flags&FixedPort == 0 || e.Errno != EADDRINUSE)
	}
	return false
}

// Exhaustion reports whether a failure means that no port was left: the
// port search of connect() failed, or bind() found its pool empty.
func (e *Event) Exhaustion() bool {
	if !e.Failed() {
		return false
	}
	switch {
	case e.Kind == Bind:
		// bind(addr, 0) found the address's pool empty. A named port
		// taken is a conflict; EADDRNOTAVAIL (an address not on the
		// host), EACCES or EINVAL are no search at all.
		return e.Flags&FixedPort == 0 && e.Errno == EADDRINUSE
	case e.Errno == EADDRNOTAVAIL:
		return e.Flags&Searched != 0 && e.Flags&Bound == 0
	}
	return false
}

// MaxUserErrno bounds the errnos user space can see: codes from 512 on
// (ERESTARTSYS and friends) are the kernel's own, an interrupted call.
const MaxUserErrno = 512

// Source delivers events to fn until ctx ends, and counts those it could not
// deliver. The tracer is one; tests feed synthetic ones.
type Source interface {
	Run(ctx context.Context, fn func(*Event)) error
	Lost() (uint64, error)
}

// Tee is src with fn called for every event before the consumer's own
// function, on the same goroutine.
func Tee(src Source, fn func(*Event)) Source { return tee{src, fn} }

type tee struct {
	Source
	fn func(*Event)
}

func (t tee) Run(ctx context.Context, fn func(*Event)) error {
	return t.Source.Run(ctx, func(e *Event) {
		t.fn(e)
		fn(e)
	})
}

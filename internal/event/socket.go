package event

import (
	"net/netip"
	"time"
)

// Socket is one TCP socket as the kernel's socket table shows it (what
// netlink sock_diag dumps, and ss prints): a plain value, which
// internal/sockdiag fills and the aggregator and captures take.
type Socket struct {
	Src, Dst netip.AddrPort
	State    uint8 // kernel TCP state; a time-wait socket reports its substate
	// TimeWait marks a time-wait socket (the kernel's lightweight
	// replacement for a closed socket), whatever its substate.
	TimeWait bool
	// Expires is when a time-wait socket's timer fires and frees the port.
	Expires time.Duration
	Cookie  uint64
	Inode   uint32 // 0 for a time-wait socket, which no file refers to
	// PID and Comm own the socket: a process with a file descriptor for
	// it (sockdiag.Owners fills them in; 0 where none was found).
	PID  uint32
	Comm string
}

// SocketTable is one network namespace's TCP sockets at a moment, as a
// sock_diag dump gives them: internal/sockdiag fills it, captures store it,
// and the aggregator takes it (Aggregator.Sync).
type SocketTable struct {
	Netns   uint32    `json:"netns"` // namespace inode
	Time    time.Time `json:"time"`  // when the dump began
	Sockets []Socket  `json:"sockets"`
}

// tcpListen is TCP_LISTEN (include/net/tcp_states.h).
const tcpListen = 10

// Listening reports whether the socket is a listener.
func (s *Socket) Listening() bool { return s.State == tcpListen }

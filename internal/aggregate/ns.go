package aggregate

import (
	"reflect"

	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/summary"
)

// nsState is what one network namespace shares between its port spaces.
type nsState struct {
	settings netns.Settings
	known    bool // settings read
	gone     bool // absent from the last SetNetns: rows kept as history
	goneAt   int64
	missed   int // listings in a row that did not list it
	cookie   uint64
	// reserved is ip_local_reserved_ports, one bit a port (8 KiB, nil
	// when none): however a capture writes the list, a lookup is O(1).
	reserved *[1024]uint64
	// bound counts, per port, the sockets followed that hold it by bind()
	// (before connect()), and their time-wait sockets: connect() skips
	// such a port for every destination.
	bound map[uint16]int
	// listeners from the last socket table; they hold their ports by
	// bind() too.
	listeners []summary.Listener
	// conflicts are bind()s to a named port that failed, by port.
	conflicts map[uint16]*conflict
	// tw is the time-wait sockets of its spaces, against
	// tcp_max_tw_buckets.
	tw int
	// stale: an event contradicted the settings (a port outside the
	// range handed out): an operator changed them. They are read again
	// at once (Unknown).
	stale bool
}

// twFull reports whether the kernel would refuse a new time-wait socket
// ("TCP: time wait bucket table overflow"): the socket closes at once.
func (n *nsState) twFull() bool {
	return n.known && n.settings.MaxTWBuckets > 0 && n.tw >= n.settings.MaxTWBuckets
}

func newNS() *nsState {
	return &nsState{bound: map[uint16]int{}, conflicts: map[uint16]*conflict{}}
}

func (n *nsState) setSettings(s netns.Settings) {
	n.settings, n.known, n.stale = s, true, false
	n.reserved = nil
	for _, r := range netns.ParseRanges(s.Reserved) {
		if n.reserved == nil {
			n.reserved = new([1024]uint64)
		}
		for p := max(r[0], 0); p <= min(r[1], 65535); p++ {
			n.reserved[p/64] |= 1 << (p % 64)
		}
	}
}

// ephemeral reports whether connect() may pick port: inside
// ip_local_port_range and not reserved.
func (n *nsState) ephemeral(port uint16) bool {
	p := int(port)
	if !n.known || p < n.settings.PortLow || p > n.settings.PortHigh {
		return false
	}
	return n.reserved == nil || n.reserved[p/64]&(1<<(p%64)) == 0
}

func (n *nsState) bind(port uint16) { n.bound[port]++ }

func (n *nsState) unbind(port uint16) {
	if n.bound[port] <= 1 {
		delete(n.bound, port)
		return
	}
	n.bound[port]--
}

// boundPorts are the ephemeral ports connect() skips for every
// destination: held by bind(), listeners included.
func (n *nsState) boundPorts() map[uint16]bool {
	out := map[uint16]bool{}
	for p := range n.bound {
		if n.ephemeral(p) {
			out[p] = true
		}
	}
	for _, l := range n.listeners {
		if n.ephemeral(l.Addr.Port()) {
			out[l.Addr.Port()] = true
		}
	}
	return out
}

// Watched lists the settings, as last read, of at most max namespaces
// whose figures an operator is likely watching and changing: those with a
// space at least half full at the last sample. A change there (a range
// widened while the clients are idle, so that no event contradicts the
// old one) should show at the next refresh, whereas an idle namespace is
// read again only once a minute (sockdiag.IdleSettings).
func (a *Aggregator) Watched(max int) []netns.Settings {
	usable := map[uint32]int{}
	seen := map[uint32]bool{}
	var out []netns.Settings
	for s, o := range a.occ {
		ino := s.key.Netns
		n := a.ns[ino]
		if s == a.other || n == nil || !n.known || n.gone || seen[ino] || len(out) >= max {
			continue
		}
		u, ok := usable[ino]
		if !ok {
			u = n.settings.Usable()
			usable[ino] = u
		}
		if u > 0 && 2*o.used >= u {
			seen[ino] = true
			out = append(out, n.settings)
		}
	}
	return out
}

// UpdateSettings replaces one namespace's settings with a new read of them
// (Watched's), and reports whether they changed. A namespace gone, or
// another one under the same inode (its cookie differs), is left alone.
func (a *Aggregator) UpdateSettings(s netns.Settings) bool {
	n := a.ns[s.Inode]
	if n == nil || !n.known || n.gone || s.Cookie != n.settings.Cookie {
		return false
	}
	s.Path, s.Names = n.settings.Path, n.settings.Names
	if reflect.DeepEqual(s, n.settings) {
		return false
	}
	n.setSettings(s)
	return true
}

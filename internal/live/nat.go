package live

import (
	"sync"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/frame"
	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/summary"
)

// NATTables reads every namespace's conntrack, NAT rules and addresses
// (conntrack.Reader's Read); the error gathers the namespaces it could
// not read.
type NATTables func([]netns.Settings) ([]nat.Table, error)

// NATWindow is how far back a NAT space's insert_failed and drop rise
// are counted.
const NATWindow = nat.Window

type natState struct {
	read     NATTables
	pressure func()     // a client failed: tell read (nil is fine)
	rounds   sync.Mutex // one round at a time, in order
	mu       sync.Mutex // guards last and names
	tr       *nat.Tracker
	last     *nat.Summary
	names    map[uint32][]string
}

// TrackNAT makes the monitor read the NAT spaces on every resync, and
// once now, in the background so that a machine with many namespaces does
// not wait for it to start; call it before Run. pressure, if not nil, is
// called on every failed connect or bind (conntrack.Reader's Pressure:
// idle namespaces are then re-checked at the next resync).
func (m *Monitor) TrackNAT(read NATTables, pressure func()) {
	m.nat = &natState{read: read, pressure: pressure, tr: nat.NewTracker(NATWindow)}
	go func() {
		if all, err := netns.All(); err == nil {
			m.syncNAT(all, nil)
		}
	}()
}

// syncNAT reads a round of conntrack tables and computes the NAT spaces,
// their clients traced through the socket tables just read.
func (m *Monitor) syncNAT(all []netns.Settings, sockets []event.SocketTable) error {
	n := m.nat
	if n == nil || len(all) == 0 {
		return nil // no namespace list this time (its trouble is the sync's): not a round
	}
	n.rounds.Lock()
	defer n.rounds.Unlock()
	round, err := n.read(all)
	names := map[uint32][]string{}
	for _, s := range all {
		names[s.Inode] = s.Names
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.tr.Add(round)
	n.last, n.names = n.tr.Summary(sockets), names
	return err
}

// observe counts a NAT event in the tracker: its space's figures show at
// the next resync.
func (n *natState) observe(e *event.Event) {
	n.mu.Lock()
	n.tr.Observe(e)
	n.mu.Unlock()
}

// natSummary is the last NAT summary, nil when NAT is not tracked, with
// each namespace named: by its pod where r labels it, else its names.
func (m *Monitor) natSummary(r *summary.Summary) *nat.Summary {
	n := m.nat
	if n == nil {
		return nil
	}
	n.mu.Lock()
	last, names := n.last, n.names
	n.mu.Unlock()
	if last == nil {
		return nil
	}
	return last.Named(frame.NATNames(r, names))
}

// NATSummary is the last NAT summary with namespaces named by their
// names (nil when NAT is not tracked): for the exporter, which reads it
// from its own goroutine.
func (m *Monitor) NATSummary() *nat.Summary { return m.natSummary(&summary.Summary{}) }

package report

import (
	"cmp"

	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/nat"
)

// natFeed follows a capture's conntrack rounds as the live view follows
// the kernel's: the same tracker, its counters rising over the same
// window, in the capture's own time, and the clients' processes named
// from the last round of socket tables.
type natFeed struct {
	tr      *nat.Tracker
	sockets []event.SocketTable
	names   map[uint32][]string
	rounds  int
	// worst is the NAT summary at the round whose fullest space was the
	// fullest (then the most insert_failed): what the report shows.
	worst *nat.Summary
}

func newNATFeed() *natFeed {
	return &natFeed{tr: nat.NewTracker(nat.Window), names: map[uint32][]string{}}
}

// round takes a round of socket tables: the namespaces' names and the
// sockets' owners.
func (n *natFeed) round(r *capture.Round) {
	n.sockets = r.Tables
	clear(n.names)
	for _, s := range r.Netns {
		n.names[s.Inode] = s.Names
	}
}

// conntrack takes a round of conntrack tables.
func (n *natFeed) conntrack(r *capture.ConntrackRound) {
	n.tr.Add(r.Tables)
	n.rounds++
	s := n.summary()
	if n.worst == nil || natScore(s).compare(natScore(n.worst)) >= 0 {
		n.worst = s
	}
}

// summary is the NAT spaces as of the last conntrack round; nil when the
// capture has none (it was recorded before conntrack rounds existed).
func (n *natFeed) summary() *nat.Summary {
	if n.rounds == 0 {
		return nil
	}
	return n.tr.Summary(n.sockets)
}

type score struct {
	fill         float64
	insertFailed uint64
}

func natScore(s *nat.Summary) score {
	var out score
	for _, sp := range s.Spaces {
		out.fill = max(out.fill, float64(sp.Used)/float64(max(sp.Ports, 1)))
		out.insertFailed = max(out.insertFailed, sp.InsertFailed)
	}
	for _, c := range s.Tables {
		out.insertFailed = max(out.insertFailed, c.Rise.InsertFailed)
	}
	return out
}

func (a score) compare(b score) int {
	return cmp.Or(cmp.Compare(a.fill, b.fill), cmp.Compare(a.insertFailed, b.insertFailed))
}

package aggregate

import (
	"time"

	"github.com/porttrace/porttrace/internal/netns"
)

// GoneFor is how long a namespace that is gone keeps its rows: the longest
// window its rates are given over.
const GoneFor = 60 * time.Second

// namespaces follows the life of each network namespace that events and
// listings name: it appears with its first event or listing, its
// settings become known when a listing reads them, it goes when listings
// miss it (its ports freed at once, its rows kept as history), and it is
// forgotten GoneFor later, or at once when another namespace takes its
// inode. It keeps each one's state (nsState), at most Limits.Namespaces of
// them; events and tables of others are dropped, and counted.
type namespaces struct {
	ns      map[uint32]*nsState // by inode
	limit   int
	dropped uint64 // new namespaces beyond limit
	// What a namespace's end touches: the rows of its port spaces and
	// its followed sockets.
	rows   *rows
	follow *follower
}

// of is the state of a namespace, new if cookie says that the inode
// now names another namespace than before; nil, counted as dropped, for a
// new one beyond the limit.
func (l *namespaces) of(ino uint32, cookie uint64) *nsState {
	n := l.ns[ino]
	if n != nil && cookie != 0 && n.cookie != 0 && n.cookie != cookie {
		l.forget(ino)
		n = nil
	}
	if n == nil {
		if len(l.ns) >= l.limit {
			l.dropped++
			return nil
		}
		n = newNS()
		l.ns[ino] = n
	}
	if cookie != 0 {
		n.cookie = cookie
	}
	return n
}

// list takes a listing of every namespace there is, with its settings,
// at second now. One absent from it is gone if it was listed before, or
// if two listings in a row miss it: the first may have been read before
// it was made.
func (l *namespaces) list(all []netns.Settings, now int64) {
	present := map[uint32]bool{}
	for _, s := range all {
		present[s.Inode] = true
		if n := l.of(s.Inode, s.Cookie); n != nil {
			n.setSettings(s)
			n.gone, n.missed = false, 0
		}
	}
	for ino, n := range l.ns {
		if present[ino] || n.gone {
			continue
		}
		if n.missed++; n.known || n.missed >= 2 {
			l.retire(ino, n, now)
		}
	}
}

// retire releases the ports of a namespace that is gone: the kernel freed
// them with it.
func (l *namespaces) retire(ino uint32, n *nsState, now int64) {
	n.gone, n.goneAt = true, now
	clear(n.bound)
	n.listeners = nil
	l.rows.releaseNetns(ino)
	l.follow.dropNetns(ino)
}

// forget drops a namespace, and every row of it.
func (l *namespaces) forget(ino uint32) {
	delete(l.ns, ino)
	l.rows.dropNetns(ino)
	l.follow.dropNetns(ino)
}

// expire forgets the namespaces gone for GoneFor by second now.
func (l *namespaces) expire(now int64) {
	for ino, n := range l.ns {
		if n.gone && now-n.goneAt >= int64(GoneFor/time.Second) {
			l.forget(ino)
		}
	}
}

// unknown reports whether some namespace that is not gone has settings
// not read yet, or contradicted by its events (Aggregator.Unknown).
func (l *namespaces) unknown() bool {
	for _, n := range l.ns {
		if (!n.known || n.stale) && !n.gone {
			return true
		}
	}
	return false
}

// bind and unbind count a socket holding port by bind() in a namespace,
// or one that let it go.
func (l *namespaces) bind(ino uint32, port uint16) {
	if n := l.ns[ino]; n != nil {
		n.bind(port)
	}
}

func (l *namespaces) unbind(ino uint32, port uint16) {
	if n := l.ns[ino]; n != nil {
		n.unbind(port)
	}
}

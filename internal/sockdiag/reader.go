package sockdiag

import (
	"errors"
	"fmt"
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
)

// How often Reader reads again a namespace in which nothing happened: its
// sysctls (a change shows within IdleSettings) and its socket table (a
// socket older than porttrace that closes there shows within IdleDump).
// A settings read enters the namespace and reads five files; a dump walks
// the kernel's whole socket hash, whatever the namespace holds.
const (
	IdleSettings = time.Minute
	IdleDump     = 5 * time.Minute
)

// Reader reads, round after round, what ReadAll reads, but enters again
// only the namespaces where something may have changed: one it has not read
// yet, one touched since its last read (porttrace saw an event there), and
// any other once per IdleSettings (its settings) and IdleDump (its table),
// the namespaces' turns spread over each. For the rest it gives the
// settings and the table it read before, with the time it read them. A dump costs a walk of the kernel's whole socket hash, whatever
// the namespace holds (about 5 ms here): reading 200 idle namespaces every
// 5 s took 0.12 of a core. The owners of sockets (/proc/PID/fd) are looked
// up only for socket inodes it has not named before. Not safe for
// concurrent use.
type Reader struct {
	now    func() time.Time
	seen   map[uint32]*nsRead
	owners map[uint32]Owner // by socket inode; zero where none was found
	lookup func(want map[uint32]bool) map[uint32]Owner
}

type nsRead struct {
	// The path it was read from: an inode names another namespace once
	// the first is gone, and a new pod's namespace comes under a new path
	// (a new /run/netns name, another process).
	path     string
	settings netns.Settings
	table    event.SocketTable
	// When each is read again, if nothing happens there.
	settingsDue, dumpDue time.Time
}

// NewReader returns a Reader that has read nothing yet.
func NewReader() *Reader {
	return &Reader{now: time.Now, seen: map[uint32]*nsRead{}, owners: map[uint32]Owner{}, lookup: Owners}
}

// Read lists every network namespace and returns, as ReadAll does, their
// settings and socket tables; touched are the namespaces (by inode) in
// which something happened since the last round, which are read again.
func (r *Reader) Read(touched map[uint32]bool) ([]netns.Settings, []event.SocketTable, error) {
	now := r.now()
	reread := map[uint32]bool{}
	all, err := netns.AllReading(func(path string, ino uint32) (netns.Settings, error) {
		if c := r.seen[ino]; c != nil && c.path == path && !touched[ino] && now.Before(c.settingsDue) {
			return c.settings, nil
		}
		reread[ino] = true
		return netns.Read(path)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read network namespaces: %w", err)
	}
	var tables, dumped []event.SocketTable
	var errs []error
	listed := map[uint32]bool{}
	for _, ns := range all {
		listed[ns.Inode] = true
		c := r.seen[ns.Inode]
		if c != nil && c.path == ns.Path && !touched[ns.Inode] && now.Before(c.dumpDue) {
			if reread[ns.Inode] {
				c.settingsDue = now.Add(IdleSettings)
			}
			c.settings = ns
			tables = append(tables, c.table)
			continue
		}
		t := r.now()
		socks, err := Dump(ns.Path)
		if err != nil {
			delete(r.seen, ns.Inode)
			if !errors.Is(err, ErrGone) {
				errs = append(errs, err)
			}
			continue
		}
		table := event.SocketTable{Netns: ns.Inode, Time: t, Sockets: socks}
		dumped = append(dumped, table)
		tables = append(tables, table)
		next := &nsRead{path: ns.Path, settings: ns, table: table, settingsDue: now.Add(IdleSettings), dumpDue: now.Add(IdleDump)}
		if c == nil {
			// Spread the first reads' turns over the periods, so that
			// idle namespaces are not all read in the same round.
			turn := time.Duration(ns.Inode % 64)
			next.settingsDue = next.settingsDue.Add(-turn * IdleSettings / 64)
			next.dumpDue = next.dumpDue.Add(-turn * IdleDump / 64)
		}
		r.seen[ns.Inode] = next
	}
	for ino := range r.seen {
		if !listed[ino] {
			delete(r.seen, ino)
		}
	}
	if len(tables) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no network namespace could be read"))
	}
	nameOwners(all, dumped, r.ownersOf)
	r.forgetOwners(tables)
	return all, tables, errors.Join(errs...)
}

// ownersOf is Owners, from what earlier rounds found where it can.
func (r *Reader) ownersOf(want map[uint32]bool) map[uint32]Owner {
	missing := map[uint32]bool{}
	for ino := range want {
		if _, ok := r.owners[ino]; !ok {
			missing[ino] = true
		}
	}
	found := map[uint32]Owner{}
	if len(missing) > 0 {
		found = r.lookup(missing)
	}
	for ino := range missing {
		r.owners[ino] = found[ino]
	}
	return r.owners
}

// forgetOwners keeps the owners of the sockets that are still there.
func (r *Reader) forgetOwners(tables []event.SocketTable) {
	live := map[uint32]bool{}
	for _, t := range tables {
		for i := range t.Sockets {
			live[t.Sockets[i].Inode] = true
		}
	}
	for ino := range r.owners {
		if !live[ino] {
			delete(r.owners, ino)
		}
	}
}

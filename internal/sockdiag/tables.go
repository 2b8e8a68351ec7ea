package sockdiag

import (
	"errors"
	"fmt"
	"time"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
)

// ReadAll reads every network namespace's settings and socket table.
// Namespaces that vanish meanwhile are skipped; the error gathers any
// other trouble, and says so if no table could be read at all.
func ReadAll() ([]netns.Settings, []event.SocketTable, error) {
	all, err := netns.All()
	if err != nil {
		return nil, nil, fmt.Errorf("read network namespaces: %w", err)
	}
	var tables []event.SocketTable
	var errs []error
	for _, ns := range all {
		t := time.Now()
		socks, err := Dump(ns.Path)
		if err != nil {
			if !errors.Is(err, ErrGone) {
				errs = append(errs, err)
			}
			continue
		}
		tables = append(tables, event.SocketTable{Netns: ns.Inode, Time: t, Sockets: socks})
	}
	if len(tables) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no network namespace could be read"))
	}
	nameOwners(all, tables, Owners)
	return all, tables, errors.Join(errs...)
}

// nameOwners finds the processes behind listeners and open sockets on
// ephemeral ports, as ss -p does: sockets older than porttrace have no
// other owner, and a listener's owner is named in advice.
func nameOwners(all []netns.Settings, tables []event.SocketTable, owned func(want map[uint32]bool) map[uint32]Owner) {
	ranges := map[uint32]netns.Settings{}
	for _, s := range all {
		ranges[s.Inode] = s
	}
	want := map[uint32]bool{}
	each := func(fn func(*event.Socket)) {
		for _, sn := range tables {
			r := ranges[sn.Netns]
			for i := range sn.Sockets {
				so := &sn.Sockets[i]
				p := int(so.Src.Port())
				if so.Inode != 0 && (so.Listening() || p >= r.PortLow && p <= r.PortHigh) {
					fn(so)
				}
			}
		}
	}
	each(func(so *event.Socket) { want[so.Inode] = true })
	owners := owned(want)
	each(func(so *event.Socket) {
		o := owners[so.Inode]
		so.PID, so.Comm = o.PID, o.Comm
	})
}

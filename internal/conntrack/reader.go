package conntrack

import (
	"errors"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/netns"
)

// CheckEvery is how often the Reader re-checks a namespace that does not
// translate (no NAT rule, no translated entry), and re-reads a
// namespace's addresses: a node's NAT rules are there before its
// traffic, a pod keeps its addresses, and a new namespace is read at
// once.
const CheckEvery = time.Minute

// Reader reads the namespaces' conntrack for the live view, the agent and
// record, at a cost that follows what translates rather than how many
// namespaces there are: a namespace that translates (a source NAT rule,
// or a translated entry) is read at every call (its entries, counters and
// rules); one that does not is entered once on sight, then once per
// CheckEvery, or at the next call after Pressure; its last reading stands
// in between. Addresses, which trace
// clients to their namespaces, are read only while some namespace
// translates, on sight and once per CheckEvery. Safe for one Read at a
// time and Pressure from any goroutine.
type Reader struct {
	mu       sync.Mutex
	ns       map[uint32]*nsState
	pressure atomic.Bool
	now      func() time.Time
	// read and addrs read one namespace (readNetns, readAddrs); tests
	// count them.
	read  func(path string, inode uint32) (nat.Table, error)
	addrs func(path string) ([]netip.Prefix, error)
}

type nsState struct {
	table   nat.Table
	checked time.Time // conntrack read
	addrsAt time.Time // addresses read
}

// NewReader returns a Reader that has read nothing yet.
func NewReader() *Reader {
	return &Reader{ns: map[uint32]*nsState{}, now: time.Now, read: readNetns, addrs: readAddrs}
}

// Pressure says that a client failed somewhere (a connect that timed out,
// was refused or abandoned): the next Read re-checks every namespace, so
// that a NAT that began translating since its last check is found at
// once.
func (r *Reader) Pressure() { r.pressure.Store(true) }

// Read returns a reading of every namespace of all, as internal/nat's
// Tracker takes them: fresh for those that translate, the last one for
// idle ones. A namespace that cannot be entered is skipped and its
// trouble joined into the error; what could not be read inside one is in
// its Table.Err.
func (r *Reader) Read(all []netns.Settings) ([]nat.Table, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now, pressed := r.now(), r.pressure.Swap(false)
	seen := map[uint32]bool{}
	var errs []error
	var out []nat.Table
	var states []*nsState
	var paths []string
	translated := false
	for _, s := range all {
		if seen[s.Inode] {
			continue
		}
		seen[s.Inode] = true
		st := r.ns[s.Inode]
		if st == nil || st.table.Translates() || pressed || now.Sub(st.checked) >= CheckEvery {
			t, err := r.read(s.Path, s.Inode)
			if err != nil {
				if !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				}
				continue
			}
			if st == nil {
				st = &nsState{}
				r.ns[s.Inode] = st
			}
			t.Addrs = st.table.Addrs
			st.table, st.checked = t, now
		}
		translated = translated || st.table.Translates()
		out, states, paths = append(out, st.table), append(states, st), append(paths, s.Path)
	}
	for ino := range r.ns {
		if !seen[ino] {
			delete(r.ns, ino)
		}
	}
	if translated {
		for i, st := range states {
			if st.addrsAt.IsZero() || pressed || now.Sub(st.addrsAt) >= CheckEvery {
				addrs, err := r.addrs(paths[i])
				if err != nil {
					out[i].Err = joinErr(out[i].Err, "addresses: "+err.Error())
				}
				st.table.Addrs, st.addrsAt = addrs, now
			}
			out[i].Addrs = st.table.Addrs
		}
	}
	return out, errors.Join(errs...)
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

package live

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
)

// source is an event source that fails or panics after its events.
type source struct {
	events []event.Event
	err    error
	panic  bool
}

func (s *source) Run(ctx context.Context, fn func(*event.Event)) error {
	for i := range s.events {
		fn(&s.events[i])
	}
	if s.panic {
		var m map[string]int
		m["x"]++ // a real runtime panic, as a bug would cause
	}
	return s.err
}

func (s *source) Lost() (uint64, error) { return 7, nil }

func run(t *testing.T, src event.Source) error {
	t.Helper()
	m, err := New(src, oneTable, aggregate.DefaultLimits, cgroup.NewResolver())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	select {
	case err := <-done:
		if snap := m.Frame(); snap.Lost != 7 { // the lock was released
			t.Errorf("lost %d", snap.Lost)
		}
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its source ended")
		return nil
	}
}

// oneTable is a host with one namespace and no socket.
func oneTable(map[uint32]bool) ([]netns.Settings, []event.SocketTable, error) {
	return []netns.Settings{{Inode: 1, PortLow: 32768, PortHigh: 60999}}, []event.SocketTable{{Netns: 1, Time: time.Now()}}, nil
}

func TestRunEndsWithItsSource(t *testing.T) {
	boom := errors.New("ring buffer gone")
	if err := run(t, &source{err: boom}); !errors.Is(err, boom) {
		t.Errorf("Run returned %v, want the source's error", err)
	}
	e := event.Event{Time: time.Now(), Kind: event.State, NewState: event.SynSent}
	if err := run(t, &source{events: []event.Event{e}, panic: true}); err == nil || !strings.Contains(err.Error(), "panic: assignment to entry in nil map") {
		t.Errorf("Run returned %v, want the panic as an error", err)
	}
}

// TestTouchedNamespaces: each sync tells the table reader which namespaces
// events came from since the last one, and only those.
func TestTouchedNamespaces(t *testing.T) {
	var got []map[uint32]bool
	tables := func(touched map[uint32]bool) ([]netns.Settings, []event.SocketTable, error) {
		got = append(got, touched)
		return oneTable(touched)
	}
	m, err := New(&source{}, tables, aggregate.DefaultLimits, cgroup.NewResolver())
	if err != nil {
		t.Fatal(err)
	}
	for _, ino := range []uint32{7, 7, 9, 7} {
		m.Add(&event.Event{Kind: event.State, NewState: event.TCPState(2), Netns: ino, Time: time.Now()})
	}
	m.sync()
	m.Add(&event.Event{Kind: event.State, NewState: event.TCPState(2), Netns: 7, Time: time.Now()})
	m.sync()
	m.sync()
	if len(got) != 4 || len(got[0]) != 0 || len(got[1]) != 2 || !got[1][7] || !got[1][9] || len(got[2]) != 1 || !got[2][7] || len(got[3]) != 0 {
		t.Errorf("touched per sync: %v, want none (the first), 7 and 9, 7, none", got)
	}
}

// TestSummaryKeepsTheClock: reading a summary does not tick the
// aggregator (which would sample occupancy and expire ports at every
// read): two reads with no tick between them are of the same moment.
func TestSummaryKeepsTheClock(t *testing.T) {
	m, err := New(&source{}, oneTable, aggregate.DefaultLimits, cgroup.NewResolver())
	if err != nil {
		t.Fatal(err)
	}
	first := m.Summary()
	if first.Time.IsZero() {
		t.Fatal("the seeded monitor's summary has no time")
	}
	time.Sleep(20 * time.Millisecond)
	if again := m.Summary(); !again.Time.Equal(first.Time) || again.Seconds != first.Seconds {
		t.Errorf("a second read moved the clock from %v (%d s) to %v (%d s)", first.Time, first.Seconds, again.Time, again.Seconds)
	}
}

// losing is a source whose lost count the test sets.
type losing struct {
	source
	lost uint64
}

func (s *losing) Lost() (uint64, error) { return s.lost, nil }

// TestLossRereadsActiveNamespaces: events lost leave counts that only the
// socket tables can set right, so the sync after a loss reads again every
// namespace that had events in the last minute, not only the last round's.
func TestLossRereadsActiveNamespaces(t *testing.T) {
	var got []map[uint32]bool
	tables := func(touched map[uint32]bool) ([]netns.Settings, []event.SocketTable, error) {
		got = append(got, touched)
		return oneTable(touched)
	}
	src := &losing{}
	m, err := New(src, tables, aggregate.DefaultLimits, cgroup.NewResolver())
	if err != nil {
		t.Fatal(err)
	}
	for _, ino := range []uint32{7, 9} {
		m.Add(&event.Event{Kind: event.State, NewState: event.TCPState(2), Netns: ino, Time: time.Now()})
	}
	m.sync()
	m.active[9] = time.Now().Add(-2 * time.Minute) // idle since
	if m.newLoss() {
		t.Error("a loss reported with none")
	}
	src.lost = 3
	if !m.newLoss() || m.newLoss() {
		t.Error("3 lost events: want one loss reported, once")
	}
	m.sync()
	if len(got) != 3 || len(got[2]) != 1 || !got[2][7] {
		t.Errorf("touched per sync: %v; want 7 read again after the loss, not 9 (idle for 2 minutes)", got)
	}
}

// TestLastSummaryReadsTables: when the source ends, one more round of the
// socket tables reads the namespaces that had events since the last, so
// that the last summary has the size of a namespace new since then.
func TestLastSummaryReadsTables(t *testing.T) {
	var got []map[uint32]bool
	tables := func(touched map[uint32]bool) ([]netns.Settings, []event.SocketTable, error) {
		got = append(got, touched)
		all := []netns.Settings{{Inode: 1, PortLow: 32768, PortHigh: 60999}}
		if touched[7] {
			all = append(all, netns.Settings{Inode: 7, PortLow: 40000, PortHigh: 40009})
		}
		return all, []event.SocketTable{{Netns: 1, Time: time.Now()}}, nil
	}
	e := event.Event{Kind: event.State, NewState: event.SynSent, Netns: 7, Time: time.Now()}
	m, err := New(&source{events: []event.Event{e}}, tables, aggregate.DefaultLimits, cgroup.NewResolver())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if last := got[len(got)-1]; !last[7] {
		t.Errorf("reads %v: the last did not read namespace 7 again", got)
	}
	var usable int
	for _, n := range m.Summary().Netns {
		if n.Inode == 7 {
			usable = n.Usable
		}
	}
	if usable != 10 {
		t.Errorf("the last summary gives namespace 7 %d usable ports, want 10", usable)
	}
}

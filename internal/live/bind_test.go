package live

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/event"
)

// watcher is a source whose bind() watch is on demand.
type watcher struct {
	source
	on    bool
	calls int
}

func (w *watcher) BindOnDemand() bool { return true }

func (w *watcher) WatchBind(on bool) (bool, error) {
	w.calls++
	changed := on != w.on
	w.on = on
	return changed, nil
}

// TestBindWatch: the bind() watch turns on at the first second a bind()
// pool is under pressure (here a bind() that found it empty), stays on
// while its failure is in the last minute and BindHold after, then turns
// off; each change is logged and the status says which.
func TestBindWatch(t *testing.T) {
	w := &watcher{}
	m, err := New(w, oneTable, aggregate.DefaultLimits, cgroup.NewResolver())
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	m.Logger(slog.New(slog.NewTextHandler(&log, nil)))
	t0 := time.Now().Truncate(time.Second)
	step := func(d time.Duration) {
		m.tick(t0.Add(d))
		m.watchBind(t0.Add(d))
	}
	step(0)
	if w.on || !strings.Contains(m.Frame().Status, "off") {
		t.Fatalf("on %v, status %q before any pool", w.on, m.Frame().Status)
	}
	m.Add(&event.Event{Time: t0.Add(time.Second), Kind: event.Bind, Netns: 1, Family: 2, PID: 9,
		Src: netip.MustParseAddrPort("127.0.0.1:0"), Errno: syscall.EADDRINUSE})
	step(2 * time.Second)
	if !w.on || !strings.Contains(m.Frame().Status, "127.0.0.1 -> bind() pool") {
		t.Fatalf("on %v, status %q after the pool went empty", w.on, m.Frame().Status)
	}
	if !strings.Contains(log.String(), "attached the bind() syscall tracepoints") {
		t.Errorf("log %q: should say it attached", log.String())
	}
	// The failure leaves the last minute at 61 s; the hold ends a minute
	// after the last second under pressure.
	for _, c := range []struct {
		at time.Duration
		on bool
	}{{30 * time.Second, true}, {61 * time.Second, true}, {61*time.Second + BindHold, false}} {
		step(c.at)
		if w.on != c.on {
			t.Errorf("at %s: on %v, want %v", c.at, w.on, c.on)
		}
	}
	if !strings.Contains(log.String(), "detached the bind() syscall tracepoints") || !strings.Contains(m.Frame().Status, "off") {
		t.Errorf("log %q, status %q: should say it detached", log.String(), m.Frame().Status)
	}
}

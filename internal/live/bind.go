package live

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/summary"
)

// BindWatcher is an event source that sees bind()'s result only while it
// is asked to (tracer.Tracer: the tracepoint backend, whose bind()
// syscall tracepoints cost every syscall on the machine while attached).
type BindWatcher interface {
	// BindOnDemand tells whether WatchBind is needed at all.
	BindOnDemand() bool
	// WatchBind turns the watch on or off and says whether that changed.
	WatchBind(on bool) (bool, error)
}

// BindHold is how long bind() stays watched after the last second a pool
// was under pressure: a pool's pressure comes and goes with its ETA, and
// its failures should not be missed in between.
const BindHold = time.Minute

// bindWatch is the state of an on-demand bind() watch.
type bindWatch struct {
	w     BindWatcher
	on    bool
	since time.Time // when it was turned on
	last  time.Time // the last second a pool was under pressure
	why   string    // the pools under pressure then
	err   error     // the last attach's failure
}

// pressedPools names the bind() pools of r under pressure, or "" if none.
func pressedPools(r *summary.Summary) string {
	var out []string
	for i := range r.Spaces {
		sp := &r.Spaces[i]
		if sp.Key.IsBindPool() && !sp.Other && diagnose.UnderPressure(sp) {
			out = append(out, sp.Where())
		}
	}
	return strings.Join(out, ", ")
}

// watchBind turns the bind() watch on while some pool is under pressure,
// and off BindHold after the last, and logs each change. Its state is
// m.mu's; attaching runs outside it, so that events keep flowing.
func (m *Monitor) watchBind(now time.Time) {
	b := m.bind
	if b == nil {
		return
	}
	m.mu.Lock()
	if m.agg.BindPools() {
		// The summary tick just made: no second one per second.
		if why := pressedPools(m.snap.Load()); why != "" {
			b.last, b.why = now, why
		}
	}
	on := b.last == now || (b.on && now.Sub(b.last) < BindHold)
	why := b.why
	m.mu.Unlock()
	changed, err := b.w.WatchBind(on)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if b.err == nil {
			m.log.Warn("cannot attach the bind() syscall tracepoints", "error", err)
		}
		b.err = err
		return
	}
	b.err = nil
	if !changed {
		return
	}
	b.on = on
	if on {
		b.since = now
		m.log.Info("attached the bind() syscall tracepoints: a bind() pool is under pressure", "pools", why)
	} else {
		m.log.Info("detached the bind() syscall tracepoints: no bind() pool under pressure", "for", BindHold)
	}
}

// bindStatus is the status line's part about the bind() watch. The
// caller holds m.mu.
func (m *Monitor) bindStatus() string {
	b := m.bind
	switch {
	case b == nil:
		return ""
	case b.err != nil:
		return fmt.Sprintf("bind() failures not seen: the bind() syscall tracepoints did not attach (%v)", b.err)
	case b.on:
		return fmt.Sprintf("bind() syscall tracepoints on since %s (pools under pressure: %s); off a minute after the last", b.since.Format(time.TimeOnly), b.why)
	}
	return "bind() syscall tracepoints off: they attach while a bind() pool is under pressure"
}

// Logger has the monitor log what it changes on its own (the bind()
// watch) to l. Call it before Run.
func (m *Monitor) Logger(l *slog.Logger) { m.log = l }

// Package live runs the aggregator against the running kernel: events from
// a source (the tracer), and on a timer the namespaces' settings and their
// socket tables (read by a Tables function: sockdiag.ReadAll), which seed
// the aggregator at start and correct it after.
package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/frame"
	"github.com/porttrace/porttrace/internal/netns"
)

// Resync is how often socket tables are read again. A dump costs about a
// millisecond per 10,000 sockets.
const Resync = 5 * time.Second

// Monitor owns an aggregator and feeds it. Its methods are safe for
// concurrent use.
type Monitor struct {
	src     event.Source
	tables  Tables
	observe func(*event.Event)
	names   func(container string) (pod, namespace string, ok bool)
	mu      sync.Mutex
	agg     *aggregate.Aggregator
	warn    error // the last sync's trouble, shown until a sync succeeds
	start   time.Time
	beat    atomic.Pointer[time.Time] // the background loop's last tick

	nat  *natState  // nil unless TrackNAT
	bind *bindWatch // nil unless the source watches bind() on demand
	// findings is nil unless LogFindings; only Background uses it.
	findings *findingLog
	// reread reads one namespace's settings again (RereadSettings).
	reread func(path string) (netns.Settings, error)
	log    *slog.Logger
	// touched are the namespaces events came from since the last sync;
	// last is the latest, so that a run of events from one namespace
	// costs one comparison each.
	touched map[uint32]bool
	last    uint32
	// active: when each namespace last had events, as of the syncs; lost:
	// the source's lost count when the background loop last looked.
	active map[uint32]time.Time
	lost   uint64
}

// Tables reads every namespace's settings and socket table; the error
// gathers trouble, and says so when no table could be read at all. touched
// are the namespaces (by inode) that events came from since the last call:
// a reader may give the others as it read them before
// (sockdiag.Reader.Read), so that an idle machine costs little whatever its
// number of namespaces.
type Tables func(touched map[uint32]bool) ([]netns.Settings, []event.SocketTable, error)

// New seeds an aggregator from the socket tables of every namespace, so a
// running incident shows from the first frame.
func New(src event.Source, tables Tables, limits aggregate.Limits) (*Monitor, error) {
	m := &Monitor{src: src, tables: tables, start: time.Now(), touched: map[uint32]bool{}, active: map[uint32]time.Time{},
		log: slog.New(slog.DiscardHandler)}
	if w, ok := src.(BindWatcher); ok && w.BindOnDemand() {
		m.bind = &bindWatch{w: w}
	}
	m.agg = aggregate.New(m.start, limits, Cgroup)
	// Partial trouble is shown in the header; nothing read at all is fatal.
	if n, err := m.sync(); n == 0 {
		return nil, err
	}
	return m, nil
}

// Cgroup says where a process ran, from its pid and the cgroup id of its
// events (internal/cgroup).
func Cgroup(pid uint32, id uint64) aggregate.Cgroup {
	c := cgroup.Of(pid, id)
	return aggregate.Cgroup{Path: c.Path, Container: c.Container, PodUID: c.PodUID}
}

// Run feeds events and resyncs until ctx ends or the source fails, then
// returns the source's error, if any. A panic in either of its goroutines
// ends both and comes back as an error, so that the caller can restore the
// terminal before reporting it.
func (m *Monitor) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	bg := make(chan error, 1)
	go func() {
		bg <- guard(func() error { m.Background(ctx); return nil })
		cancel()
	}()
	err := guard(func() error { return m.src.Run(ctx, m.Add) })
	cancel()
	return errors.Join(err, <-bg)
}

// Pods names pods: names returns the pod and Kubernetes namespace of a
// container by its short id, as the container runtime tells them.
// Summaries carry them from then on. Call it before Run.
func (m *Monitor) Pods(names func(container string) (pod, namespace string, ok bool)) {
	m.names = names
}

// Observe has fn called with every event after the aggregator took it, on
// the event reader's goroutine: fn must not block. Call it before Run.
func (m *Monitor) Observe(fn func(*event.Event)) { m.observe = fn }

// Add accounts for one event. Run calls it for every event of its source;
// a caller that reads the source itself (porttrace record) calls it and
// runs Background.
func (m *Monitor) Add(e *event.Event) {
	m.mu.Lock()
	m.agg.Add(e)
	if e.Netns != m.last || len(m.touched) == 0 {
		m.touched[e.Netns], m.last = true, e.Netns
	}
	m.mu.Unlock()
	if m.nat != nil && m.nat.pressure != nil && e.Failed() {
		m.nat.pressure()
	}
	if m.observe != nil {
		m.observe(e)
	}
}

// Background samples occupancy every second, whatever the view's refresh,
// and resyncs every Resync, until ctx ends.
func (m *Monitor) Background(ctx context.Context) {
	resync := time.NewTicker(Resync)
	defer resync.Stop()
	second := time.NewTicker(time.Second)
	defer second.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-resync.C:
			m.sync()
			if m.findings != nil {
				m.findings.check(m.Frame().Findings, now)
			}
		case now := <-second.C:
			m.mu.Lock()
			m.agg.Tick(now)
			unknown := m.agg.Unknown()
			m.mu.Unlock()
			m.watchBind(now)
			m.rereadSettings()
			t := time.Now()
			m.beat.Store(&t)
			// A namespace that just appeared gets its size within a
			// second, not at the next resync; counts that lost events
			// made wrong are read again within a second.
			if m.newLoss() || unknown {
				m.sync()
			}
		}
	}
}

// Beat is when the background loop last ticked the aggregator (a second
// apart while it runs), or when the monitor was made if it has not yet:
// liveness for the agent.
func (m *Monitor) Beat() time.Time {
	if t := m.beat.Load(); t != nil {
		return *t
	}
	return m.start
}

func guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return fn()
}

// newLoss says whether the source lost events since it was last asked,
// and if so has the next sync read again every namespace that had events
// in the last minute: which of them the lost events came from is unknown,
// and only their socket tables can set the counts right again.
func (m *Monitor) newLoss() bool {
	lost, err := m.src.Lost()
	if err != nil || lost <= m.lost {
		return false
	}
	m.lost = lost
	m.mu.Lock()
	defer m.mu.Unlock()
	for ino, t := range m.active {
		if time.Since(t) < time.Minute {
			m.touched[ino] = true
		} else {
			delete(m.active, ino)
		}
	}
	return true
}

// sync reads every namespace's settings and sockets, and returns how many
// tables it read; trouble is kept for the header.
func (m *Monitor) sync() (int, error) {
	m.mu.Lock()
	m.agg.BeginSync()
	touched := m.touched
	m.touched = map[uint32]bool{}
	now := time.Now()
	for ino := range touched {
		m.active[ino] = now
	}
	m.mu.Unlock()
	all, tables, err := m.tables(touched)
	m.mu.Lock()
	m.agg.SetNetns(all)
	m.agg.Sync(tables)
	m.mu.Unlock()
	return len(tables), m.setWarn(errors.Join(err, m.syncNAT(all, tables)))
}

// labelByPod sets the pod of each namespace whose port spaces' processes
// all belong to one pod: a pod's containers share its network namespace.
func labelByPod(r *aggregate.Summary) {
	pods := map[uint32]map[string]bool{}
	for i := range r.Spaces {
		sp := &r.Spaces[i]
		if sp.Other {
			continue
		}
		if pods[sp.Netns] == nil {
			pods[sp.Netns] = map[string]bool{}
		}
		for j := range sp.Processes {
			pods[sp.Netns][sp.Processes[j].Pod()] = true
		}
	}
	label := func(ino uint32) string {
		if len(pods[ino]) != 1 {
			return ""
		}
		for p := range pods[ino] {
			return p
		}
		return ""
	}
	for i := range r.Spaces {
		r.Spaces[i].Pod = label(r.Spaces[i].Netns)
	}
	for i := range r.Netns {
		r.Netns[i].Pod = label(r.Netns[i].Inode)
	}
}

// Summary is the aggregator's summary now. Only taking it holds up the
// event path: pods are named after, on the copy.
func (m *Monitor) Summary() *aggregate.Summary {
	m.mu.Lock()
	if lost, err := m.src.Lost(); err == nil {
		m.agg.SetLost(lost)
	}
	m.agg.Tick(time.Now())
	r := m.agg.Summary()
	m.mu.Unlock()
	m.namePods(r)
	return r
}

// namePods fills in the pods' names, where the runtime knows them, and
// labels a namespace by its pod where all its processes are that pod's.
func (m *Monitor) namePods(r *aggregate.Summary) {
	defer labelByPod(r)
	if m.names == nil {
		return
	}
	name := func(container string, pod, ns *string) {
		if container != "" {
			if p, n, ok := m.names(container); ok {
				*pod, *ns = p, n
			}
		}
	}
	for i := range r.Processes {
		p := &r.Processes[i]
		name(p.Container, &p.PodName, &p.PodNamespace)
	}
	for i := range r.Spaces {
		for j := range r.Spaces[i].Processes {
			p := &r.Spaces[i].Processes[j]
			name(p.Container, &p.PodName, &p.PodNamespace)
		}
	}
}

func (m *Monitor) setWarn(err error) error {
	m.mu.Lock()
	m.warn = err
	m.mu.Unlock()
	return err
}

// Frame is the aggregator's summary now, with its diagnosis, which is
// made outside the lock.
func (m *Monitor) Frame() frame.Frame {
	r := m.Summary()
	s := frame.Frame{Summary: r, Findings: diagnose.Diagnose(r), NAT: m.natSummary(r)}
	s.Findings = append(s.Findings, diagnose.NAT(s.NAT, r)...)
	m.mu.Lock()
	if m.warn != nil {
		s.Warning = m.warn.Error()
	}
	s.Status = m.bindStatus()
	m.mu.Unlock()
	return s
}

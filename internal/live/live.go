// Package live runs the aggregator against the running kernel: events from
// a source (the tracer), and on a timer the namespaces' settings and their
// socket tables (read by a Tables function: sockdiag.ReadAll), which seed
// the aggregator at start and correct it after.
package live

import (
	"cmp"
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
	"github.com/porttrace/porttrace/internal/summary"
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
	names   func(container string) (PodNames, bool)
	where   *cgroup.Resolver
	mu      sync.Mutex
	agg     *aggregate.Aggregator
	warn    error // the last sync's trouble, shown until a sync succeeds
	start   time.Time
	beat    atomic.Pointer[time.Time] // the background loop's last tick
	syncing atomic.Pointer[time.Time] // when the resync under way began
	// snap is the summary made at the last tick, pods named: what
	// Summary gives, without touching the aggregator.
	snap atomic.Pointer[summary.Summary]

	nat  *natState  // nil unless TrackNAT
	bind *bindWatch // nil unless the source watches bind() on demand
	// findings is nil unless LogFindings; only Background's ticks use
	// it, when a resync on the clock set findingsDue.
	findings    *findingLog
	findingsDue atomic.Bool
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
// running incident shows from the first frame. where tells where the
// processes of events run.
func New(src event.Source, tables Tables, limits aggregate.Limits, where *cgroup.Resolver) (*Monitor, error) {
	m := &Monitor{src: src, tables: tables, where: where, start: time.Now(), touched: map[uint32]bool{}, active: map[uint32]time.Time{},
		log: slog.New(slog.DiscardHandler)}
	if w, ok := src.(BindWatcher); ok && w.BindOnDemand() {
		m.bind = &bindWatch{w: w}
	}
	m.agg = aggregate.New(m.start, limits, where.Of)
	// Partial trouble is shown in the header; nothing read at all is fatal.
	if n, err := m.sync(); n == 0 {
		return nil, err
	}
	m.tick(time.Now()) // the seed is the first summary's
	return m, nil
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
	err = errors.Join(err, <-bg)
	// The last summary counts every event the source gave, and is set
	// right by one more round of the socket tables of the namespaces
	// that had events since the last (the reader keeps the others): a
	// namespace new since then gets its size, and an event the kernel
	// never sent (docs/backends.md) leaves no wrong count in it.
	return errors.Join(err, guard(func() error {
		m.sync()
		m.tick(time.Now())
		return nil
	}))
}

// PodNames are a container's pod as the container runtime names it: its
// name, Kubernetes namespace and UID.
type PodNames struct{ Pod, Namespace, UID string }

// Pods names pods: names returns the pod of a container by its short id,
// as the container runtime tells it. Summaries carry the names from then
// on, and the UID where the cgroup path has none. Call it before Run.
func (m *Monitor) Pods(names func(container string) (PodNames, bool)) {
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
	if m.nat != nil && e.Kind == event.NAT {
		m.nat.observe(e)
	}
	if m.nat != nil && m.nat.pressure != nil && e.Failed() {
		m.nat.pressure()
	}
	if m.observe != nil {
		m.observe(e)
	}
}

// Background ticks the aggregator every second, whatever the view's
// refresh, and resyncs every Resync, until ctx ends. The two run apart, so
// that a slow read of the socket tables does not hold up the summary; a
// panic in either ends both and is raised again here.
func (m *Monitor) Background(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wake := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- guard(func() error { m.resyncs(ctx, wake); return nil })
		cancel()
	}()
	second := time.NewTicker(time.Second)
	defer second.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := <-done; err != nil {
				panic(err)
			}
			return
		case now := <-second.C:
			due := m.findingsDue.Swap(false)
			// Settings read again first, so that this tick's summary
			// shows a range widened while the clients are idle.
			m.rereadSettings()
			unknown := m.tick(now)
			m.watchBind(now)
			if m.findings != nil && due {
				m.findings.check(m.Frame().Findings, now)
			}
			t := time.Now()
			m.beat.Store(&t)
			// A namespace that just appeared gets its size within a
			// second, not at the next resync; counts that lost events
			// made wrong are read again within a second.
			if m.newLoss() || unknown {
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		}
	}
}

// resyncs reads the socket tables every Resync, and when woken, until ctx
// ends.
func (m *Monitor) resyncs(ctx context.Context, wake <-chan struct{}) {
	resync := time.NewTicker(Resync)
	defer resync.Stop()
	for {
		clock := false
		select {
		case <-ctx.Done():
			return
		case <-resync.C:
			clock = true
		case <-wake:
		}
		t := time.Now()
		m.syncing.Store(&t)
		m.sync()
		m.syncing.Store(nil)
		// The findings are checked after each round on the clock, on
		// the first summary made after it (at Background's next tick).
		if clock {
			m.findingsDue.Store(true)
		}
	}
}

// Beat is when the background loop last ticked the aggregator (a second
// apart while it runs), or when the monitor was made if it has not yet,
// or when a resync began if it has not ended since: liveness for the
// agent.
func (m *Monitor) Beat() time.Time {
	beat := m.start
	if t := m.beat.Load(); t != nil {
		beat = *t
	}
	if t := m.syncing.Load(); t != nil && t.Before(beat) {
		return *t
	}
	return beat
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

// LabelByPod sets the pod of each namespace whose port spaces' processes
// all belong to one pod (cgroup.NetnsPods, the rule the exporter's
// metrics follow too), by that pod's name (ProcRef.Pod).
func LabelByPod(r *summary.Summary) {
	pods := cgroup.NewNetnsPods(nil) // the processes carry the runtime's UIDs (NamePods)
	named := map[string]string{}     // a pod's name by its PodKey
	for i := range r.Spaces {
		sp := &r.Spaces[i]
		if sp.Other {
			continue
		}
		for j := range sp.Processes {
			p := &sp.Processes[j]
			w := cgroup.Process{Container: p.Container, PodUID: p.PodUID}
			pods.Note(sp.Netns, w)
			named[w.PodKey()] = p.Pod()
		}
	}
	label := func(ino uint32) string {
		p, ok := pods.Pod(ino)
		if !ok {
			return ""
		}
		return named[p.PodKey()]
	}
	for i := range r.Spaces {
		r.Spaces[i].Pod = label(r.Spaces[i].Netns)
	}
	for i := range r.Netns {
		r.Netns[i].Pod = label(r.Netns[i].Inode)
	}
}

// NamePods fills in the pods' names, where names (the container runtime,
// by short container id; nil for none) knows them, and their UIDs where
// the cgroup path has none; then it labels each namespace by its pod
// (LabelByPod).
func NamePods(r *summary.Summary, names func(container string) (PodNames, bool)) {
	defer LabelByPod(r)
	if names == nil {
		return
	}
	name := func(container string, pod, ns, uid *string) {
		if container == "" {
			return
		}
		if n, ok := names(container); ok {
			*pod, *ns, *uid = n.Pod, n.Namespace, cmp.Or(*uid, n.UID)
		}
	}
	for i := range r.Processes {
		p := &r.Processes[i]
		name(p.Container, &p.PodName, &p.PodNamespace, &p.PodUID)
	}
	for i := range r.Spaces {
		for j := range r.Spaces[i].Processes {
			p := &r.Spaces[i].Processes[j]
			name(p.Container, &p.PodName, &p.PodNamespace, &p.PodUID)
		}
	}
}

// tick moves the aggregator's clock to now (every second, from
// Background) and makes the summary that Summary gives until the next
// tick; it says whether a namespace of unknown size was seen. Only
// making the summary holds up the event path: pods are named after, on
// the copy.
func (m *Monitor) tick(now time.Time) (unknown bool) {
	m.mu.Lock()
	if lost, err := m.src.Lost(); err == nil {
		m.agg.SetLost(lost)
	}
	m.agg.Tick(now)
	unknown = m.agg.Unknown()
	r := m.agg.Summary()
	m.mu.Unlock()
	NamePods(r, m.names)
	m.snap.Store(r)
	return unknown
}

// Summary is the summary as of the last tick (a second old at most while
// Background runs): reading it moves no clock and takes no lock on the
// event path. Its slices are shared with other readers: do not change
// their elements.
func (m *Monitor) Summary() *summary.Summary {
	r := *m.snap.Load()
	return &r
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

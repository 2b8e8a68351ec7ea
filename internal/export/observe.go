package export

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/summary"
)

// LogRate is the most failure log records sent per second. A collector
// must not drown when every connect() of a proxy fails; the failures beyond
// it are counted, on the next record and in porttrace.logs.suppressed.
const LogRate = 10

// Observe takes one event as the tracer delivers it: port search latency
// into the histogram, failures into log records. It must be called from
// one goroutine, and it does not block on the network.
func (x *Exporter) Observe(e *event.Event) {
	if inTask(e) {
		x.pods.observe(e)
		x.exes.observe(e)
	}
	switch e.Kind {
	case event.Alloc, event.Bind:
		x.latency.record(e)
	case event.NAT:
		x.latency.recordNAT(e)
	}
	if e.Failed() {
		x.logs.observe(e)
	}
}

// inTask: the event ran in the connecting task, whose pid, comm and
// cgroup it carries: the port search, connect() and bind(), and the
// socket entering SYN_SENT (inside connect(), on every backend). Later
// state changes run in softirq context, on behalf of whoever was
// interrupted.
func inTask(e *event.Event) bool {
	switch e.Kind {
	case event.Alloc, event.Connect, event.Bind:
		return true
	case event.State:
		return e.NewState == event.SynSent
	}
	return false
}

// latencyRecorder records port search latency under the attributes of the
// event's port space, computed once per space: the spaces with series of
// their own (as the last collection chose them, and new spaces while
// there is room for them) each get one, the others their namespace's
// "other" series.
type latencyRecorder struct {
	h     metric.Float64Histogram
	limit int
	pods  *netnsPods

	mu     sync.Mutex
	own    map[summary.SpaceKey]bool // as the last collection chose them
	sets   map[summary.SpaceKey]metric.RecordOption
	others map[uint32]metric.RecordOption // by namespace
	nat    map[natKey]metric.RecordOption // NAT spaces (recordNAT)
}

func newLatencyRecorder(h metric.Float64Histogram, limit int, pods *netnsPods) *latencyRecorder {
	return &latencyRecorder{h: h, limit: limit, pods: pods,
		sets: map[summary.SpaceKey]metric.RecordOption{}, others: map[uint32]metric.RecordOption{}, nat: map[natKey]metric.RecordOption{}}
}

func (l *latencyRecorder) record(e *event.Event) {
	k := summary.SpaceOf(e)
	l.mu.Lock()
	opt, ok := l.sets[k]
	if !ok {
		_, known := l.own[k]
		if l.own[k] || (!known && len(l.sets) < l.limit) {
			s := summary.SpaceSummary{Key: k}
			opt = metric.WithAttributeSet(attribute.NewSet(spaceAttrs(&s, true, l.pods)...))
			l.sets[k] = opt
		} else if opt, ok = l.others[k.Netns]; !ok {
			if len(l.others) >= maxSeen {
				clear(l.others)
			}
			s := summary.SpaceSummary{Key: summary.SpaceKey{Netns: k.Netns}}
			opt = metric.WithAttributeSet(attribute.NewSet(spaceAttrs(&s, false, l.pods)...))
			l.others[k.Netns] = opt
		}
	}
	l.mu.Unlock()
	l.h.Record(context.Background(), e.Latency.Seconds(), opt)
}

// keep takes the spaces the last collection chose (own: true) or folded
// (false): the folded ones record into their namespace's "other" series
// from now on. Every space's attributes are computed again at its next
// event, so that a pod's labels that arrived since (the runtime answers
// late) reach its series too. The SDK keeps every series it has seen, up
// to the histogram's own cardinality limit (readerOptions), beyond which
// it folds new ones into its overflow series.
func (l *latencyRecorder) keep(own map[summary.SpaceKey]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.own = own
	clear(l.sets)
	clear(l.others)
}

// exeNames knows the executable name of the processes that connect, read
// once per process from /proc/PID/exe while it runs (the event's comm
// is a thread's 15-byte name, which a process may set to anything).
type exeNames struct {
	mu sync.RWMutex
	m  map[uint32]exeName
}

type exeName struct{ comm, exe string }

func newExeNames() *exeNames { return &exeNames{m: map[uint32]exeName{}} }

// observe notes the event's process, once per pid and comm.
func (x *exeNames) observe(e *event.Event) {
	comm := e.Comm.String()
	x.mu.RLock()
	n, ok := x.m[e.PID]
	x.mu.RUnlock()
	if ok && n.comm == comm {
		return
	}
	exe := comm
	if path, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", e.PID)); err == nil {
		exe = filepath.Base(strings.TrimSuffix(path, " (deleted)"))
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.m) >= maxSeen {
		clear(x.m)
	}
	x.m[e.PID] = exeName{comm, exe}
}

// name is the process's executable name, else comm.
func (x *exeNames) name(pid uint32, comm string) string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if n, ok := x.m[pid]; ok && n.comm == comm {
		return n.exe
	}
	return comm
}

// failureLogs turns failed connect() and bind() calls into log records, at
// most LogRate a second. The second is the wall clock's, not the events':
// the log queue's bound (queueSize) counts on it.
type failureLogs struct {
	logger          log.Logger
	sec             int64
	sent            int
	pending         int64 // suppressed since the last record
	suppressedTotal atomic.Uint64
	pods            *netnsPods
	exes            *exeNames
}

func (f *failureLogs) observe(e *event.Event) {
	if sec := time.Now().Unix(); sec != f.sec {
		f.sec, f.sent = sec, 0
	}
	if f.sent >= LogRate {
		f.pending++
		f.suppressedTotal.Add(1)
		return
	}
	f.sent++
	r := failureRecord(e, f.pending, f.pods, f.exes)
	f.pending = 0
	f.logger.Emit(context.Background(), r)
}

func failureRecord(e *event.Event, suppressed int64, pods *netnsPods, exes *exeNames) log.Record {
	errno := event.ErrnoName(e.Errno)
	k := summary.SpaceOf(e)
	name := "porttrace.connect.failure"
	body := fmt.Sprintf("connect() from %s to %s failed: %s (%v)", k.Src, k.Dst, errno, e.Errno)
	if e.Kind == event.Bind {
		name = "porttrace.bind.failure"
		body = fmt.Sprintf("bind() to %s port 0 failed: %s (%v)", k.Src, errno, e.Errno)
	}
	var r log.Record
	r.SetEventName(name)
	r.SetTimestamp(e.Time)
	r.SetObservedTimestamp(time.Now())
	r.SetSeverity(log.SeverityWarn)
	r.SetSeverityText("WARN")
	r.SetBody(attribute.StringValue(body))
	r.AddAttributes(semconv.ErrorTypeKey.String(errno), semconv.ThreadID(int(e.TID)), suppressedKey.Int64(suppressed))
	s := summary.SpaceSummary{Key: k}
	r.AddAttributes(spaceAttrs(&s, true, pods)...)
	r.AddAttributes(processAttrs(e.PID, exes.name(e.PID, e.Comm.String()), pods.where.Container(e.PID, e.CgroupID), pods)...)
	return r
}

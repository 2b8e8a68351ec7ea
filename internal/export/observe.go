package export

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/cri"
	"github.com/porttrace/porttrace/internal/event"
)

// LogRate is the most failure log records sent per second. A collector
// must not drown when every connect() of a proxy fails; the failures beyond
// it are counted, on the next record and in porttrace.logs.suppressed.
const LogRate = 10

// Observe takes one event as the tracer delivers it: port search latency
// into the histogram, failures into log records. It must be called from
// one goroutine, and it does not block on the network.
func (x *Exporter) Observe(e *event.Event) {
	if e.Kind == event.Alloc || e.Kind == event.Connect || e.Kind == event.Bind { // the connecting task's own
		x.pods.observe(e)
	}
	switch e.Kind {
	case event.Alloc, event.Bind:
		x.latency.record(e)
	}
	if e.Failed() {
		x.logs.observe(e)
	}
}

// latencyRecorder records port search latency under the attributes of the
// event's port space, computed once per space. Like the aggregator, it
// holds at most limit spaces; the rest share the "other" series.
type latencyRecorder struct {
	h     metric.Float64Histogram
	limit int
	other metric.RecordOption
	pods  *netnsPods

	mu   sync.Mutex
	sets map[aggregate.SpaceKey]metric.RecordOption
}

func newLatencyRecorder(h metric.Float64Histogram, limit int, pods *netnsPods) *latencyRecorder {
	return &latencyRecorder{
		h: h, limit: limit, sets: map[aggregate.SpaceKey]metric.RecordOption{}, pods: pods,
		other: metric.WithAttributeSet(attribute.NewSet(spaceAttrs(aggregate.SpaceKey{}, true, nil)...)),
	}
}

func (l *latencyRecorder) record(e *event.Event) {
	k := aggregate.SpaceOf(e)
	l.mu.Lock()
	opt, ok := l.sets[k]
	if !ok {
		opt = l.other
		if len(l.sets) < l.limit {
			opt = metric.WithAttributeSet(attribute.NewSet(spaceAttrs(k, false, l.pods)...))
			l.sets[k] = opt
		}
	}
	l.mu.Unlock()
	l.h.Record(context.Background(), e.Latency.Seconds(), opt)
}

// keep forgets the spaces the aggregator no longer reports (it folded them
// into "other"), so that new ones get series of their own, up to the
// histogram's own cardinality limit (readerOptions): the SDK keeps every
// series it has seen, and beyond that folds new ones into its overflow
// series.
func (l *latencyRecorder) keep(r *aggregate.Summary) {
	live := make(map[aggregate.SpaceKey]bool, len(r.Spaces))
	for _, s := range r.Spaces {
		if !s.Other {
			live[s.Key] = true
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.sets {
		if !live[k] {
			delete(l.sets, k)
		}
	}
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
	names           func(string) (cri.Names, bool)
	pods            *netnsPods
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
	r := failureRecord(e, f.pending, f.names, f.pods)
	f.pending = 0
	f.logger.Emit(context.Background(), r)
}

func failureRecord(e *event.Event, suppressed int64, names func(string) (cri.Names, bool), pods *netnsPods) log.Record {
	errno := event.ErrnoName(e.Errno)
	k := aggregate.SpaceOf(e)
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
	r.AddAttributes(spaceAttrs(k, false, pods)...)
	r.AddAttributes(processAttrs(e.PID, e.Comm.String(), cgroup.Container(e.PID, e.CgroupID), names)...)
	return r
}

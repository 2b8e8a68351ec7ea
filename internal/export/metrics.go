package export

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/porttrace/porttrace/internal/summary"
)

// Attribute keys of porttrace's own, where no semantic convention exists.
const (
	netnsKey      = attribute.Key("porttrace.netns")           // the namespace's inode
	spaceKindKey  = attribute.Key("porttrace.port_space.kind") // connect, bind or other
	otherProcKey  = attribute.Key("porttrace.process.other")   // processes beyond the limit, together
	signalKey     = attribute.Key("porttrace.signal")          // metrics or logs
	suppressedKey = attribute.Key("porttrace.suppressed")      // failures not logged since the last record
	latencyName   = "porttrace.port_alloc.duration"
)

// instruments are read from the aggregator's summary at each collection,
// through sums that bound their series (Cardinality).
type instruments struct {
	attempts, failures, twEntries                metric.Int64ObservableCounter
	procAttempts, procFailures, procTWEntries    metric.Int64ObservableCounter
	used, usable, timeWait                       metric.Int64ObservableGauge
	utilization, eta                             metric.Float64ObservableGauge
	lost, exportFailures, dropped, suppressedAll metric.Int64ObservableCounter

	card                      Cardinality
	choose                    *chooser
	sAttempts, sFailures, sTW *sums
	pAttempts, pFailures, pTW *sums
}

// register creates every instrument and the callback that reads them.
func register(m metric.Meter, card Cardinality, summary func() *summary.Summary, x *Exporter) (*latencyRecorder, error) {
	in := instruments{card: card, choose: newChooser(card),
		sAttempts: newSums(), sFailures: newSums(), sTW: newSums(),
		pAttempts: newSums(), pFailures: newSums(), pTW: newSums()}
	var errs []error
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	fgauge := func(name, unit, desc string) metric.Float64ObservableGauge {
		g, err := m.Float64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	in.attempts = counter("porttrace.connect.attempts", "{connection}", "Connection attempts that drew on the port space, failed ones included")
	in.failures = counter("porttrace.connect.failures", "{connection}", "Failed connect() and bind() calls, by errno (error.type)")
	in.twEntries = counter("porttrace.time_wait.entries", "{socket}", "Client sockets of the port space that entered TIME_WAIT")
	in.procAttempts = counter("porttrace.process.connect.attempts", "{connection}", "Connection attempts made by the process")
	in.procFailures = counter("porttrace.process.connect.failures", "{connection}", "Failed connect() and bind() calls of the process, by errno (error.type)")
	in.procTWEntries = counter("porttrace.process.time_wait.entries", "{socket}", "Sockets of the process that entered TIME_WAIT")
	in.used = gauge("porttrace.ports.used", "{port}", "Ports of the space held now, open or in TIME_WAIT")
	in.usable = gauge("porttrace.ports.usable", "{port}", "Ports the space can hold: the namespace's ip_local_port_range less its reserved ports")
	in.timeWait = gauge("porttrace.time_wait.sockets", "{socket}", "Client sockets of the space in TIME_WAIT now")
	in.utilization = fgauge("porttrace.ports.utilization", "1", "ports.used / ports.usable")
	in.eta = fgauge("porttrace.ports.exhaustion.eta", "s", "Time until the space is full at the rate it filled over the last 10 s; 0 when exhausted, absent when not filling")
	in.lost = counter("porttrace.events.lost", "{event}", "Kernel events the tracer could not deliver (ring buffer full)")
	in.exportFailures = counter("porttrace.export.failures", "{export}", "OTLP exports that failed after their retries, by signal")
	in.dropped = counter("porttrace.export.dropped", "{log_record}", "Log records lost with a failed export")
	in.suppressedAll = counter("porttrace.logs.suppressed", "{log_record}", "Connect failures not sent as log records because of the rate limit")
	lat, err := m.Float64Histogram(latencyName, metric.WithUnit("s"),
		metric.WithDescription("Time the kernel spent searching for a free source port (inet_hash_connect, or bind() to port 0)"))
	errs = append(errs, err)
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	rec := newLatencyRecorder(lat, card.Spaces, x.pods)
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		r := summary()
		own := in.choose.pick(r.Spaces, time.Now())
		rec.keep(own)
		in.observe(o, r, own, x)
		return nil
	}, in.attempts, in.failures, in.twEntries, in.procAttempts, in.procFailures, in.procTWEntries,
		in.used, in.usable, in.timeWait, in.utilization, in.eta,
		in.lost, in.exportFailures, in.dropped, in.suppressedAll)
	return rec, err
}

// otherGauges are the gauges of a namespace's spaces without series of
// their own, summed: ports used and in TIME_WAIT (usable ports,
// utilization and ETA are a single space's).
type otherGauges struct{ used, timeWait int64 }

func (in *instruments) observe(o metric.Observer, r *summary.Summary, own map[summary.SpaceKey]bool, x *Exporter) {
	now := time.Now()
	others := map[attribute.Distinct]*otherGauges{}
	for i := range r.Spaces {
		s := &r.Spaces[i]
		attrs := spaceAttrs(s, own[s.Key], x.pods)
		set := attribute.NewSet(attrs...)
		m := member{space: s.Key, other: s.Other}
		in.sAttempts.add(m, set, s.TotalConns)
		in.sTW.add(m, set, s.TotalTWIn)
		for _, f := range s.Failures {
			m.errno = f.Errno
			in.sFailures.add(m, withErrno(attrs, f.Errno), f.Total)
		}
		if !own[s.Key] {
			g := others[set.Equivalent()]
			if g == nil {
				g = &otherGauges{}
				others[set.Equivalent()] = g
			}
			g.used += int64(s.Used)
			g.timeWait += int64(s.TimeWait)
			continue
		}
		opt := metric.WithAttributeSet(set)
		o.ObserveInt64(in.used, int64(s.Used), opt)
		o.ObserveInt64(in.timeWait, int64(s.TimeWait), opt)
		if s.Usable > 0 {
			o.ObserveInt64(in.usable, int64(s.Usable), opt)
			o.ObserveFloat64(in.utilization, s.UsedPct/100, opt)
		}
		if s.ETA != nil {
			o.ObserveFloat64(in.eta, *s.ETA, opt)
		}
	}
	idle := in.card.Idle
	in.sAttempts.end(now, idle, func(set attribute.Set, v uint64) {
		opt := metric.WithAttributeSet(set)
		o.ObserveInt64(in.attempts, int64(v), opt)
		if g := others[set.Equivalent()]; g != nil {
			o.ObserveInt64(in.used, g.used, opt)
			o.ObserveInt64(in.timeWait, g.timeWait, opt)
		}
	})
	in.sTW.end(now, idle, counterOf(o, in.twEntries))
	in.sFailures.end(now, idle, counterOf(o, in.failures))

	for i := range r.Processes {
		p := &r.Processes[i]
		attrs := []attribute.KeyValue{otherProcKey.Bool(true)}
		if !p.Other {
			pid := uint32(0)
			if in.card.PID {
				pid = p.PID
			}
			attrs = processAttrs(pid, x.exes.name(p.PID, p.Comm), p.Container, x.pods)
		}
		set := attribute.NewSet(attrs...)
		m := member{pid: p.PID, comm: p.Comm, other: p.Other}
		in.pAttempts.add(m, set, p.Total)
		in.pTW.add(m, set, p.TotalTWIn)
		for _, f := range p.Failures {
			m.errno = f.Errno
			in.pFailures.add(m, withErrno(attrs, f.Errno), f.Total)
		}
	}
	in.pAttempts.end(now, idle, counterOf(o, in.procAttempts))
	in.pTW.end(now, idle, counterOf(o, in.procTWEntries))
	in.pFailures.end(now, idle, counterOf(o, in.procFailures))

	o.ObserveInt64(in.lost, int64(r.Lost))
	o.ObserveInt64(in.exportFailures, int64(x.health.metricFailures.Load()), metric.WithAttributes(signalKey.String("metrics")))
	o.ObserveInt64(in.exportFailures, int64(x.health.logFailures.Load()), metric.WithAttributes(signalKey.String("logs")))
	o.ObserveInt64(in.dropped, int64(x.health.logsDropped.Load()), metric.WithAttributes(signalKey.String("logs")))
	o.ObserveInt64(in.suppressedAll, int64(x.logs.suppressedTotal.Load()))
}

func counterOf(o metric.Observer, c metric.Int64ObservableCounter) func(attribute.Set, uint64) {
	return func(set attribute.Set, v uint64) { o.ObserveInt64(c, int64(v), metric.WithAttributeSet(set)) }
}

func withErrno(attrs []attribute.KeyValue, errno string) attribute.Set {
	return attribute.NewSet(append(attrs[:len(attrs):len(attrs)], semconv.ErrorTypeKey.String(errno))...)
}

// spaceAttrs names a port space: its namespace, addresses and kind, and
// the pod whose network namespace holds it. A space without series of its
// own (own false) is named by its namespace and pod alone, with kind
// "other"; the aggregator's row of spaces beyond its limits by that kind
// alone. The source port is never among them: it is what churns.
func spaceAttrs(s *summary.SpaceSummary, own bool, pods *netnsPods) []attribute.KeyValue {
	if s.Other {
		return []attribute.KeyValue{spaceKindKey.String("other")}
	}
	attrs := []attribute.KeyValue{netnsKey.Int64(int64(s.Key.Netns))}
	attrs = append(attrs, spacePod(s, pods)...)
	if !own {
		return append(attrs, spaceKindKey.String("other"))
	}
	return append(attrs, keyAttrs(s.Key)...)
}

// keyAttrs are the addresses and kind of a space's key.
func keyAttrs(k summary.SpaceKey) []attribute.KeyValue {
	attrs := []attribute.KeyValue{semconv.NetworkLocalAddress(k.Src.String()), semconv.NetworkTypeIPv4}
	if k.Src.Is6() {
		attrs[1] = semconv.NetworkTypeIPv6
	}
	if k.IsBindPool() {
		return append(attrs, spaceKindKey.String("bind"))
	}
	return append(attrs, spaceKindKey.String("connect"),
		semconv.ServerAddress(k.Dst.Addr().String()), semconv.ServerPort(int(k.Dst.Port())))
}

// spacePod is the pod of the space's namespace as the event path saw
// it (the connecting tasks of one pod only), else as the summary names it
// (every process seen in the namespace is that pod's), which also covers
// sockets that were open before porttrace started.
func spacePod(s *summary.SpaceSummary, pods *netnsPods) []attribute.KeyValue {
	if attrs := pods.attrs(s.Key.Netns); len(attrs) > 0 || s.Pod == "" {
		return attrs
	}
	for _, p := range s.Processes {
		if p.Pod() != s.Pod {
			continue
		}
		var attrs []attribute.KeyValue
		if p.PodUID != "" {
			attrs = append(attrs, semconv.K8SPodUID(p.PodUID))
		}
		if p.PodName != "" {
			attrs = append(attrs, semconv.K8SPodName(p.PodName), semconv.K8SNamespaceName(p.PodNamespace))
		}
		return attrs
	}
	return nil
}

// processAttrs names a process (by pid only if pid is not 0; exe is its
// executable's name), and its container and pod when it runs in one:
// container is the short id the aggregator keeps; the full id and
// the pod's UID come from its cgroup path (pods.where), the names (and
// the UID where the path has none) from pods.names (nil when no container
// runtime is asked).
func processAttrs(pid uint32, exe, container string, pods *netnsPods) []attribute.KeyValue {
	attrs := []attribute.KeyValue{semconv.ProcessExecutableName(exe)}
	if pid != 0 {
		attrs = append(attrs, semconv.ProcessPID(int(pid)))
	}
	if container == "" {
		return attrs
	}
	w, ok := pods.where.Lookup(container)
	if !ok {
		return append(attrs, semconv.ContainerID(container))
	}
	attrs = append(attrs, semconv.ContainerID(w.ContainerID))
	if w.PodUID != "" {
		attrs = append(attrs, semconv.K8SPodUID(w.PodUID))
	}
	if pods.names == nil {
		return attrs
	}
	if n, ok := pods.names(w.ContainerID); ok {
		if w.PodUID == "" && n.PodUID != "" {
			attrs = append(attrs, semconv.K8SPodUID(n.PodUID)) // the cgroup path lacks it
		}
		for _, kv := range []attribute.KeyValue{semconv.K8SPodName(n.Pod), semconv.K8SNamespaceName(n.Namespace), semconv.K8SContainerName(n.Container)} {
			if kv.Value.AsString() != "" {
				attrs = append(attrs, kv)
			}
		}
	}
	return attrs
}

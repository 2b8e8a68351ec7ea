package export

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/cri"
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

// instruments are read from the aggregator's summary at each collection.
type instruments struct {
	attempts, failures, twEntries                metric.Int64ObservableCounter
	procAttempts, procFailures, procTWEntries    metric.Int64ObservableCounter
	used, usable, timeWait                       metric.Int64ObservableGauge
	utilization, eta                             metric.Float64ObservableGauge
	lost, exportFailures, dropped, suppressedAll metric.Int64ObservableCounter
}

// register creates every instrument and the callback that reads them.
func register(m metric.Meter, limits aggregate.Limits, summary func() *aggregate.Summary, x *Exporter) (*latencyRecorder, error) {
	var in instruments
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
	rec := newLatencyRecorder(lat, limits.Spaces, x.pods)
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		r := summary()
		rec.keep(r)
		in.observe(o, r, x)
		return nil
	}, in.attempts, in.failures, in.twEntries, in.procAttempts, in.procFailures, in.procTWEntries,
		in.used, in.usable, in.timeWait, in.utilization, in.eta,
		in.lost, in.exportFailures, in.dropped, in.suppressedAll)
	return rec, err
}

func (in *instruments) observe(o metric.Observer, r *aggregate.Summary, x *Exporter) {
	for i := range r.Spaces {
		in.observeSpace(o, &r.Spaces[i], x)
	}
	for i := range r.Processes {
		in.observeProcess(o, &r.Processes[i], x)
	}
	o.ObserveInt64(in.lost, int64(r.Lost))
	o.ObserveInt64(in.exportFailures, int64(x.health.metricFailures.Load()), metric.WithAttributes(signalKey.String("metrics")))
	o.ObserveInt64(in.exportFailures, int64(x.health.logFailures.Load()), metric.WithAttributes(signalKey.String("logs")))
	o.ObserveInt64(in.dropped, int64(x.health.logsDropped.Load()), metric.WithAttributes(signalKey.String("logs")))
	o.ObserveInt64(in.suppressedAll, int64(x.logs.suppressedTotal.Load()))
}

func (in *instruments) observeSpace(o metric.Observer, s *aggregate.SpaceSummary, x *Exporter) {
	attrs := spaceAttrs(s.Key, s.Other, x.pods)
	set := metric.WithAttributeSet(attribute.NewSet(attrs...))
	o.ObserveInt64(in.attempts, int64(s.TotalConns), set)
	o.ObserveInt64(in.twEntries, int64(s.TotalTWIn), set)
	for _, f := range s.Failures {
		o.ObserveInt64(in.failures, int64(f.Total), withErrno(attrs, f.Errno))
	}
	o.ObserveInt64(in.used, int64(s.Used), set)
	o.ObserveInt64(in.timeWait, int64(s.TimeWait), set)
	if s.Usable > 0 {
		o.ObserveInt64(in.usable, int64(s.Usable), set)
		o.ObserveFloat64(in.utilization, s.UsedPct/100, set)
	}
	if s.ETA != nil {
		o.ObserveFloat64(in.eta, *s.ETA, set)
	}
}

func (in *instruments) observeProcess(o metric.Observer, p *aggregate.ProcessSummary, x *Exporter) {
	attrs := []attribute.KeyValue{otherProcKey.Bool(true)}
	if !p.Other {
		attrs = processAttrs(p.PID, p.Comm, p.Container, x.names)
	}
	o.ObserveInt64(in.procAttempts, int64(p.Total), metric.WithAttributes(attrs...))
	o.ObserveInt64(in.procTWEntries, int64(p.TotalTWIn), metric.WithAttributes(attrs...))
	for _, f := range p.Failures {
		o.ObserveInt64(in.procFailures, int64(f.Total), withErrno(attrs, f.Errno))
	}
}

func withErrno(attrs []attribute.KeyValue, errno string) metric.ObserveOption {
	kv := append(attrs[:len(attrs):len(attrs)], semconv.ErrorTypeKey.String(errno))
	return metric.WithAttributes(kv...)
}

// spaceAttrs names a port space, and the pod whose network namespace holds
// it (pods may be nil). The source port is never among them: it is what
// churns.
func spaceAttrs(k aggregate.SpaceKey, other bool, pods *netnsPods) []attribute.KeyValue {
	if other {
		return []attribute.KeyValue{spaceKindKey.String("other")}
	}
	attrs := []attribute.KeyValue{
		netnsKey.Int64(int64(k.Netns)),
		semconv.NetworkLocalAddress(k.Src.String()),
		semconv.NetworkTypeIPv4,
	}
	if k.Src.Is6() {
		attrs[2] = semconv.NetworkTypeIPv6
	}
	attrs = append(attrs, pods.attrs(k.Netns)...)
	if k.IsBindPool() {
		return append(attrs, spaceKindKey.String("bind"))
	}
	return append(attrs, spaceKindKey.String("connect"),
		semconv.ServerAddress(k.Dst.Addr().String()), semconv.ServerPort(int(k.Dst.Port())))
}

// processAttrs names a process, and its container and pod when it runs in
// one: container is the short id the aggregator keeps; the full id and
// the pod's UID come from its cgroup path, the names from names (nil when
// no container runtime is asked).
func processAttrs(pid uint32, comm, container string, names func(id string) (cri.Names, bool)) []attribute.KeyValue {
	attrs := []attribute.KeyValue{semconv.ProcessPID(int(pid)), semconv.ProcessExecutableName(comm)}
	if container == "" {
		return attrs
	}
	w, ok := cgroup.Lookup(container)
	if !ok {
		return append(attrs, semconv.ContainerID(container))
	}
	attrs = append(attrs, semconv.ContainerID(w.ContainerID))
	if w.PodUID != "" {
		attrs = append(attrs, semconv.K8SPodUID(w.PodUID))
	}
	if names == nil {
		return attrs
	}
	if n, ok := names(w.ContainerID); ok {
		for _, kv := range []attribute.KeyValue{semconv.K8SPodName(n.Pod), semconv.K8SNamespaceName(n.Namespace), semconv.K8SContainerName(n.Container)} {
			if kv.Value.AsString() != "" {
				attrs = append(attrs, kv)
			}
		}
	}
	return attrs
}

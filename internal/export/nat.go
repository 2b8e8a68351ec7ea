package export

import (
	"context"
	"net/netip"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/nat"
)

// MaxNATSpaces bounds the NAT spaces exported, the fullest first, and
// MaxNATTables the namespaces whose conntrack tables are: a node with
// more keeps its series count bounded all the same.
const MaxNATSpaces, MaxNATTables = 256, 256

// ExportNAT adds the metrics of source NAT, read from nats at each
// collection (a nil summary exports nothing): per NAT space its ports
// held and available, per translating namespace its conntrack table's
// size, limit and failure counters.
func (x *Exporter) ExportNAT(nats func() *nat.Summary) error {
	m := x.mp.Meter(scope)
	var errs []error
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	used := gauge("porttrace.nat.ports.used", "{port}", "NAT ports of the space held by conntrack entries (TIME_WAIT and CLOSE entries, which new flows take over, excluded)")
	usable := gauge("porttrace.nat.ports.usable", "{port}", "NAT ports the rule gives the translated address toward the destination")
	entries := gauge("porttrace.conntrack.entries", "{entry}", "nf_conntrack_count of the namespace")
	limit := gauge("porttrace.conntrack.entries.max", "{entry}", "nf_conntrack_max")
	insertFailed := counter("porttrace.conntrack.insert_failed", "{flow}", "New flows that found no unique tuple (conntrack -S insert_failed, summed over CPUs)")
	drop := counter("porttrace.conntrack.drop", "{packet}", "Packets conntrack dropped (conntrack -S drop)")
	earlyDrop := counter("porttrace.conntrack.early_drop", "{entry}", "Entries evicted because the table was full (conntrack -S early_drop)")
	failures := gauge("porttrace.nat.failures", "{packet}", "Flows translated into the space that conntrack refused in the last minute (insert_failed; a SYN retransmission counts again): the NAT probe's, fentry and kprobe backends")
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := nats()
		if s == nil {
			return nil
		}
		for i, sp := range s.Spaces {
			if i == MaxNATSpaces {
				break
			}
			set := metric.WithAttributeSet(attribute.NewSet(natAttrs(&sp)...))
			o.ObserveInt64(used, int64(sp.Used), set)
			o.ObserveInt64(usable, int64(sp.Ports), set)
			if sp.Flows > 0 {
				o.ObserveInt64(failures, int64(sp.Failures), set)
			}
		}
		for i, c := range s.Tables {
			if i == MaxNATTables {
				break
			}
			set := metric.WithAttributes(netnsKey.Int64(int64(c.Netns)))
			o.ObserveInt64(entries, int64(c.Count), set)
			o.ObserveInt64(limit, int64(c.Max), set)
			o.ObserveInt64(insertFailed, int64(c.Stats.InsertFailed), set)
			o.ObserveInt64(drop, int64(c.Stats.Drop), set)
			o.ObserveInt64(earlyDrop, int64(c.Stats.EarlyDrop), set)
		}
		return nil
	}, used, usable, entries, limit, insertFailed, drop, earlyDrop, failures)
	return err
}

// recordNAT records a NAT event's port search time (nf_nat_setup_info's)
// in porttrace.port_alloc.duration, under its NAT space's attributes
// (kind "nat"), for at most MaxNATSpaces spaces: the host's search and
// the NAT's side by side.
func (l *latencyRecorder) recordNAT(e *event.Event) {
	k := natKey{e.Netns, e.Proto, e.NATSrc.Addr(), e.Dst}
	l.mu.Lock()
	opt, ok := l.nat[k]
	if !ok && len(l.nat) < MaxNATSpaces {
		sp := nat.Space{Netns: e.Netns, Proto: nat.ProtoName(e.Proto), Addr: e.NATSrc.Addr(), Dst: e.Dst}
		opt, ok = metric.WithAttributeSet(attribute.NewSet(natAttrs(&sp)...)), true
		l.nat[k] = opt
	}
	l.mu.Unlock()
	if ok {
		l.h.Record(context.Background(), e.Latency.Seconds(), opt)
	}
}

type natKey struct {
	netns uint32
	proto uint8
	addr  netip.Addr
	dst   netip.AddrPort
}

// natAttrs names a NAT space as a host's is named, its kind "nat": the
// translating namespace, the translated address, the destination.
func natAttrs(s *nat.Space) []attribute.KeyValue {
	kind := semconv.NetworkTypeIPv4
	if s.Addr.Is6() {
		kind = semconv.NetworkTypeIPv6
	}
	return []attribute.KeyValue{
		netnsKey.Int64(int64(s.Netns)), semconv.NetworkLocalAddress(s.Addr.String()), kind,
		spaceKindKey.String("nat"), semconv.NetworkTransportKey.String(s.Proto),
		semconv.ServerAddress(s.Dst.Addr().String()), semconv.ServerPort(int(s.Dst.Port())),
	}
}

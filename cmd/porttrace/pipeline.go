package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/conntrack"
	"github.com/porttrace/porttrace/internal/cri"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/export"
	"github.com/porttrace/porttrace/internal/live"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/sockdiag"
	"github.com/porttrace/porttrace/tracer"
)

// sinks are what a command asks of the pipeline besides its source, the
// tracer.
type sinks struct {
	// cri names pods through the container runtime (trace --json, top,
	// agent); nil: pods are named by UID only.
	cri *criFlag
	// model is a live monitor: the aggregator fed by the tracer and
	// corrected from the socket tables (top, agent; record when it
	// exports).
	model bool
	// export, if not nil, exports the model's figures and events; the
	// pipeline fills in Where and Names. Its Warn gets export trouble and
	// the line that says where figures go.
	export *export.Options
	// log, if not nil, gets what the model changes on its own (the bind()
	// watch attached or detached); with findings, also each diagnosis
	// finding as it appears, changes and clears (agent).
	log      *slog.Logger
	findings bool
}

// pipeline is porttrace against the running kernel: the tracer, a
// resolver that tells where the processes of its events run, and the
// sinks a command asked for, wired in the one order they need. Every
// command that reads the kernel assembles one.
type pipeline struct {
	tracer *tracer.Tracer
	where  *cgroup.Resolver
	// conntrack reads the namespaces' conntrack for the model's NAT
	// spaces and record's rounds: one reader, so that they share its
	// readings of idle namespaces.
	conntrack *conntrack.Reader
	names     *cri.Cache       // nil without a runtime
	mon       *live.Monitor    // nil without the model
	x         *export.Exporter // nil without export; the command stops it
	stops     []func()         // in the order to call them
}

// assemble builds what s asks for: the runtime's names first (they are
// read in the background), the tracer, the model seeded from the socket
// tables, then the exporter reading the model. On error what was started
// is stopped.
func assemble(stderr io.Writer, tf *tracerFlags, s sinks) (_ *pipeline, err error) {
	p := &pipeline{where: cgroup.NewResolver(), conntrack: conntrack.NewReader()}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if s.cri != nil {
		names, stop, err := s.cri.start(stderr)
		if err != nil {
			return nil, err
		}
		p.names, p.stops = names, append(p.stops, stop)
	}
	if p.tracer, err = tf.open(stderr); err != nil {
		return nil, err
	}
	p.stops = append([]func(){func() { p.tracer.Close() }}, p.stops...)
	if !s.model {
		return p, nil
	}
	if p.mon, err = live.New(p.tracer, sockdiag.NewReader().Read, aggregate.DefaultLimits, p.where); err != nil {
		return nil, err
	}
	p.mon.TrackNAT(p.conntrack.Read, p.conntrack.Pressure)
	p.mon.RereadSettings(netns.Read)
	if s.log != nil {
		p.mon.Logger(s.log)
		if s.findings {
			p.mon.LogFindings(s.log)
		}
	}
	if p.names != nil {
		p.mon.Pods(byShortID(p.names, p.where))
	}
	if s.export != nil {
		return p, p.exportTo(*s.export)
	}
	return p, nil
}

// exportTo starts exporting the model's figures and events.
func (p *pipeline) exportTo(o export.Options) error {
	o.Where = p.where
	if p.names != nil {
		o.Names = p.names.Lookup
	}
	x, err := export.New(context.Background(), o, p.mon.Summary)
	if err != nil {
		return err
	}
	if err := x.ExportNAT(p.mon.NATSummary); err != nil {
		return err
	}
	p.mon.Observe(x.Observe)
	if o.Warn != nil {
		fmt.Fprintf(o.Warn, "porttrace: exporting %s\n", x)
	}
	p.x = x
	return nil
}

// events is the source for a command that reads the tracer's events
// itself (record): the tracer, teed into the model when there is one,
// which is then kept up to date in the background until ctx ends. A
// failed connect or bind has the conntrack reader re-check idle
// namespaces at its next read (the model's Add says so itself).
func (p *pipeline) events(ctx context.Context) event.Source {
	if p.mon == nil {
		return event.Tee(p.tracer, func(e *event.Event) {
			if e.Failed() {
				p.conntrack.Pressure()
			}
		})
	}
	go p.mon.Background(ctx)
	return event.Tee(p.tracer, p.mon.Add)
}

// close stops the tracer and the runtime's names; the exporter is the
// command's to stop (its last export has a budget, and the agent reports
// how it went).
func (p *pipeline) close() {
	for _, stop := range p.stops {
		stop()
	}
	p.stops = nil
}

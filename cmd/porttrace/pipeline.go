package main

import (
	"context"
	"fmt"
	"io"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/conntrack"
	"github.com/porttrace/porttrace/internal/cri"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/export"
	"github.com/porttrace/porttrace/internal/live"
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
}

// pipeline is porttrace against the running kernel: the tracer, a
// resolver that tells where the processes of its events run, and the
// sinks a command asked for, wired in the one order they need. Every
// command that reads the kernel assembles one.
type pipeline struct {
	tracer *tracer.Tracer
	where  *cgroup.Resolver
	names  *cri.Cache       // nil without a runtime
	mon    *live.Monitor    // nil without the model
	x      *export.Exporter // nil without export; the command stops it
	stops  []func()         // in the order to call them
}

// assemble builds what s asks for: the runtime's names first (they are
// read in the background), the tracer, the model seeded from the socket
// tables, then the exporter reading the model. On error what was started
// is stopped.
func assemble(stderr io.Writer, tf *tracerFlags, s sinks) (_ *pipeline, err error) {
	p := &pipeline{where: cgroup.NewResolver()}
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
	p.mon.TrackNAT(conntrack.ReadAll)
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
// which is then kept up to date in the background until ctx ends.
func (p *pipeline) events(ctx context.Context) event.Source {
	if p.mon == nil {
		return p.tracer
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

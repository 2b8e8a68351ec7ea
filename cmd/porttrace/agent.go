package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/porttrace/porttrace/internal/export"
)

// quietWriter passes lines on until stopping, then drops the SDK's own
// errors ("porttrace: OTLP: ..."): while exporters are shut down they are
// cancellations, which the summary line accounts for.
type quietWriter struct {
	w        io.Writer
	mu       sync.Mutex
	stopping bool
}

func (q *quietWriter) Write(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopping && bytes.HasPrefix(p, []byte("porttrace: OTLP: ")) {
		return len(p), nil
	}
	return q.w.Write(p)
}

func (q *quietWriter) stop() {
	q.mu.Lock()
	q.stopping = true
	q.mu.Unlock()
}

func newAgent() *cobra.Command {
	tf := tracerFlags{namespaces: true}
	var of otlpFlags
	var af agentFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run headless and export metrics and failure logs over OTLP",
		Long: `Run until SIGINT or SIGTERM, exporting over OTLP (gRPC or HTTP/protobuf)
what 'porttrace top' shows: per port space and per process counters,
occupancy gauges, time to exhaustion, a port search latency histogram, and
one log record per failed connect() (at most 10 a second; the rest are
counted). The standard OTEL_EXPORTER_OTLP_* and OTEL_RESOURCE_ATTRIBUTES
variables apply; --otlp-endpoint overrides OTEL_EXPORTER_OTLP_ENDPOINT.

A collector that is down or slow does not stop porttrace: exports are
retried with backoff, what had to be dropped is counted, and the counts are
exported when the collector is back.

With --metrics-addr, the same instruments are served for Prometheus to
scrape on /metrics (porttrace.connect.failures as
porttrace_connect_failures_total, and so on), with /healthz (liveness: 503
only once the tracer stopped or the agent's loops stalled for 30 s) and
/readyz (readiness: 503 also while starting, for 30 s after events were
lost, and while an OTLP export fails).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := errors.Join(tf.check(), of.check()); err != nil {
				return err
			}
			return runAgent(cmd.ErrOrStderr(), &tf, &of, &af)
		},
	}
	tf.register(cmd)
	af.register(cmd)
	of.register(cmd, "collector base URL, e.g. http://localhost:4318 (default: $OTEL_EXPORTER_OTLP_ENDPOINT, else the OTLP default for the protocol)")
	return cmd
}

// agentFlags are the agent's own: the scrape endpoint.
type agentFlags struct {
	metricsAddr string
	cri         criFlag
}

func (f *agentFlags) register(cmd *cobra.Command) {
	f.cri.register(cmd)
	cmd.Flags().StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics, /healthz and /readyz on HOST:PORT, e.g. :9464 (OTLP is then off unless --otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT is set)")
}

// otlpOff: with a scrape endpoint and no collector named anywhere,
// Prometheus is the only output.
func (f *agentFlags) otlpOff(of *otlpFlags) bool {
	return f.metricsAddr != "" && of.endpoint == "" &&
		os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") == ""
}

func runAgent(stderr io.Writer, tf *tracerFlags, of *otlpFlags, af *agentFlags) error {
	quiet := &quietWriter{w: stderr}
	o := of.options(quiet)
	var health export.Health
	if af.metricsAddr != "" {
		o.Prometheus, o.NoOTLP = prometheus.NewRegistry(), af.otlpOff(of)
		// Listening first: /healthz says "starting" while probes attach,
		// and a port in use is refused before they are.
		srv, err := export.Serve(af.metricsAddr, o.Prometheus, &health)
		if err != nil {
			return err
		}
		defer srv.Shutdown(context.Background())
		fmt.Fprintf(stderr, "porttrace: serving /metrics, /healthz and /readyz on http://%s\n", srv.Addr())
	}
	// The monitor logs the bind() watch and each finding as it appears,
	// changes and clears.
	log := slog.New(slog.NewTextHandler(stderr, nil))
	p, err := assemble(stderr, tf, sinks{cri: &af.cri, model: true, export: &o, log: log, findings: true})
	if err != nil {
		return err
	}
	defer p.close()
	t, mon, x := p.tracer, p.mon, p.x
	var exports func() error
	if !o.NoOTLP {
		exports = x.Failing
	}
	health.Ready(t.Lost, mon.Beat, exports)
	start := time.Now()
	ctx, cancel := signalContext()
	defer cancel()
	err = mon.Run(ctx)
	health.Stopped(err)
	// The budget runs from the signal: mon.Run has drained the ring
	// buffer since; a second is kept for the exporters' own teardown.
	ran := time.Since(start)
	deadline := time.Now().Add(stopBudget - time.Second)
	quiet.stop()
	exportErr := shutdown(x, deadline)
	r := mon.Summary()
	last := "the last export got through"
	switch {
	case o.NoOTLP:
		last = "no OTLP export (Prometheus only)"
	case exportErr != nil:
		// errors.Join puts each signal's error on a line of its own.
		last = "the last export failed: " + strings.ReplaceAll(exportErr.Error(), "\n", "; ")
	}
	c := x.Counts()
	fmt.Fprintf(stderr, "porttrace: agent stopped after %s: %s events, %s lost; %s failed exports, %s log records dropped, %s rate-limited; %s\n",
		ran.Round(time.Second), humanize.Comma(int64(r.Events)), humanize.Comma(int64(r.Lost)),
		humanize.Comma(int64(c.FailedExports)), humanize.Comma(int64(c.DroppedRecords)), humanize.Comma(int64(c.Suppressed)), last)
	return err
}

// syncBuffer holds lines written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Read(p)
}

package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// health counts failed exports and the log records they lost, and tells
// the operator once when a signal starts failing and once when it recovers,
// instead of a line per retry.
type health struct {
	warn io.Writer

	mu      sync.Mutex
	failing map[string]time.Time // signal → since when
	lastErr map[string]string    // signal → its last export error
	other   time.Time            // last SDK error printed

	metricFailures, logFailures atomic.Uint64
	logsDropped                 atomic.Uint64
}

func newHealth(w io.Writer) *health {
	if w == nil {
		w = io.Discard
	}
	return &health{warn: w, failing: map[string]time.Time{}, lastErr: map[string]string{}}
}

// result notes an export's outcome; lost is what a failure took with it.
func (h *health) result(signal string, err error, lost int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	since, was := h.failing[signal]
	switch {
	case err != nil && !was:
		h.failing[signal] = time.Now()
		fmt.Fprintf(h.warn, "porttrace: OTLP %s export failed; retrying at each export, counting what is dropped, tracing goes on: %v\n", signal, err)
	case err == nil && was:
		delete(h.failing, signal)
		fmt.Fprintf(h.warn, "porttrace: OTLP %s export resumed after %s down; %d log records dropped so far\n",
			signal, time.Since(since).Round(time.Second), h.logsDropped.Load())
	}
	if err == nil {
		return
	}
	h.lastErr[signal] = err.Error()
	if signal == "logs" {
		h.logFailures.Add(1)
		h.logsDropped.Add(uint64(lost))
	} else {
		h.metricFailures.Add(1)
	}
}

// failingNow says which signals fail to export, and the last error of
// each; nil when every export got through.
func (h *health) failingNow() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for signal, since := range h.failing {
		errs = append(errs, fmt.Errorf("OTLP %s export failing for %s: %s", signal, time.Since(since).Round(time.Second), h.lastErr[signal]))
	}
	return errors.Join(errs...)
}

// Handle takes the SDK's own errors, which it would otherwise log on every
// retry. A failed export's error was already reported by result; others
// are printed at most once a minute.
func (h *health) Handle(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.lastErr {
		if strings.Contains(err.Error(), e) {
			return
		}
	}
	if time.Since(h.other) < time.Minute {
		return
	}
	h.other = time.Now()
	fmt.Fprintf(h.warn, "porttrace: OTLP: %v\n", err)
}

// metricExporter notes the outcome of each metric export. Counters are
// cumulative, so a failed export loses none of their counts; it loses the
// gauges' values of that moment.
type metricExporter struct {
	sdkmetric.Exporter
	h *health
}

func (e *metricExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	err := e.Exporter.Export(ctx, rm)
	e.h.result("metrics", err, 0)
	return err
}

// logExporter notes the outcome of each batch of log records: the batch
// processor drops a batch whose export failed after its retries.
type logExporter struct {
	sdklog.Exporter
	h *health
}

func (e *logExporter) Export(ctx context.Context, records []sdklog.Record) error {
	err := e.Exporter.Export(ctx, records)
	e.h.result("logs", err, len(records))
	return err
}

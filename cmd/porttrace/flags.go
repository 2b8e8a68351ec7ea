// Flags and values that several commands share, and their checks: every
// value is refused with a reason before any probe attaches.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/porttrace/porttrace/internal/aggregate"
	"github.com/porttrace/porttrace/internal/export"
	"github.com/porttrace/porttrace/tracer"
)

// tracerFlags are shared by every command that attaches probes.
type tracerFlags struct {
	command  string // for messages
	backend  string
	ringSize string
	syscalls bool
	// namespaces: the command reads other namespaces' port settings and
	// socket tables (top, record, agent), which takes CAP_SYS_ADMIN.
	namespaces bool
	// quiet: no line about the backend chosen and those refused.
	quiet bool
}

func (f *tracerFlags) register(cmd *cobra.Command) {
	f.command = cmd.Name()
	cmd.Flags().StringVar(&f.backend, "backend", "auto", "probe backend: fentry, kprobe, tracepoint, or auto (best that attaches)")
	cmd.Flags().StringVar(&f.ringSize, "ring-size", "8MiB", "ring buffer size, rounded up to a power of two: 4KiB to 1GiB, e.g. 512KiB, 8M, 64MiB")
	cmd.Flags().BoolVar(&f.syscalls, "syscalls", false, "tracepoint backend: also attach the connect()/bind() syscall tracepoints for good, "+
		"to see connect() failures before any TCP state change (no route, no source address) and every bind()'s result "+
		"(without it, bind()'s tracepoints attach only while a bind() pool is under pressure); "+
		"costs every syscall of every process on the machine about 30-45 ns (the other backends see these without it)")
	cmd.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "print no line about the backend chosen, the ones refused and what it cannot see")
	cmd.RegisterFlagCompletionFunc("backend", cobra.FixedCompletions(backendNames(), cobra.ShellCompDirectiveNoFileComp))
}

func backendNames() []string {
	names := []string{"auto"}
	for _, b := range tracer.Backends {
		names = append(names, string(b))
	}
	return names
}

// options checks the flags' values, before anything attaches.
func (f *tracerFlags) options() (tracer.Options, error) {
	b, err := tracer.ParseBackend(f.backend)
	if err != nil {
		return tracer.Options{}, err
	}
	size, err := parseSize("--ring-size", f.ringSize, minRingSize, maxRingSize)
	return tracer.Options{Backend: b, RingSize: int(size), Syscalls: f.syscalls}, err
}

// check refuses bad values, and a system porttrace cannot trace, before
// anything attaches.
func (f *tracerFlags) check() error {
	if err := needLinux(runtime.GOOS, f.command); err != nil {
		return err
	}
	_, err := f.options()
	return err
}

// needLinux refuses, on any system (GOOS) but Linux, a command that reads
// the kernel, and names the commands that work there.
func needLinux(goos, command string) error {
	if goos == "linux" {
		return nil
	}
	return fmt.Errorf("porttrace %s reads the kernel with eBPF, which only Linux has (this is %s): "+
		"here, porttrace report FILE and porttrace top --replay FILE read captures made by porttrace record on Linux", command, goos)
}

func (f *tracerFlags) open(stderr io.Writer) (*tracer.Tracer, error) {
	o, err := f.options()
	if err != nil {
		return nil, err
	}
	if err := checkCaps(stderr, f.namespaces); err != nil {
		return nil, err
	}
	t, err := tracer.Open(o)
	if err != nil {
		return nil, err
	}
	if !f.quiet {
		fmt.Fprintln(stderr, backendLine(t.Backend(), t.Attempts(), f.syscalls))
	}
	return t, nil
}

// backendLine says, in one line, which backend traces, what it cannot
// see, and why each better one was refused or which optional hook is
// missing.
func backendLine(b tracer.Backend, attempts []tracer.Attempt, syscalls bool) string {
	note := "port search latency is exact"
	if !b.ExactLatency() {
		note = "port search latency is approximate (bracketed by neighbouring hooks)"
	}
	if !b.SeesEarlyFailures() && !syscalls {
		note += "; connect() failures before any TCP state change are not seen (--syscalls adds them, at a cost to every syscall), " +
			"bind() failures only while a bind() pool is under pressure (the bind() syscall tracepoints attach then)"
	}
	var why []string
	for _, a := range attempts {
		if a.Err != nil {
			why = append(why, fmt.Sprintf("%s refused: %v", a.Backend, a.Err))
		}
		// Hooks missing for one reason (the NAT hooks without nf_nat)
		// share one entry.
		var reasons []string
		names := map[string][]string{}
		for _, h := range a.Hooks {
			if a.Err == nil && h.Err != nil {
				r := fmt.Sprintf("(%s): %v", h.Optional, h.Err)
				if names[r] == nil {
					reasons = append(reasons, r)
				}
				names[r] = append(names[r], h.Name)
			}
		}
		for _, r := range reasons {
			hooks := "hook " + names[r][0]
			if len(names[r]) > 1 {
				hooks = "hooks " + strings.Join(names[r], ", ")
			}
			why = append(why, fmt.Sprintf("optional %s missing %s", hooks, r))
		}
	}
	line := fmt.Sprintf("porttrace: tracing with the %s backend; %s", b, note)
	if len(why) > 0 {
		line += " [" + strings.Join(why, "; ") + "]"
	}
	return line
}

// signalContext is cancelled by SIGINT or SIGTERM, so that commands finish
// cleanly (drain the ring buffer, report lost events) instead of dying.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// otlpFlags are shared by the commands that can export.
type otlpFlags struct {
	endpoint string
	protocol string
	interval time.Duration
	// What the metrics' series carry (export.Cardinality).
	spaces     int
	attributes string
}

func (f *otlpFlags) register(cmd *cobra.Command, what string) {
	cmd.Flags().StringVar(&f.endpoint, "otlp-endpoint", "", what)
	cmd.Flags().StringVar(&f.protocol, "otlp-protocol", "", "grpc or http/protobuf (default: $OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf)")
	cmd.Flags().DurationVar(&f.interval, "export-interval", 0, fmt.Sprintf("metric export period (default: $OTEL_METRIC_EXPORT_INTERVAL, else %s)", export.DefaultInterval))
	cmd.Flags().IntVar(&f.spaces, "metric-spaces", export.DefaultCardinality.Spaces,
		"port spaces with metric series of their own, the most active first (as many again under pressure); the rest of a namespace's spaces are one series with porttrace.port_space.kind=other")
	cmd.Flags().StringVar(&f.attributes, "metric-attributes", "",
		"optional attributes added to metric series, comma-separated: "+strings.Join(export.OptionalAttributes, ", ")+" (process.pid makes a series per process)")
	cmd.RegisterFlagCompletionFunc("otlp-protocol", cobra.FixedCompletions(export.Protocols, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("metric-attributes", cobra.FixedCompletions(export.OptionalAttributes, cobra.ShellCompDirectiveNoFileComp))
}

// cardinality is what the metric flags ask for.
func (f *otlpFlags) cardinality() (export.Cardinality, error) {
	c := export.DefaultCardinality
	if f.spaces < 1 {
		return c, fmt.Errorf("--metric-spaces must be at least 1")
	}
	c.Spaces = f.spaces
	return c.ParseAttributes(f.attributes)
}

// options are what the flags ask of the exporter; the pipeline fills in
// where processes run and their names.
func (f *otlpFlags) options(w io.Writer) export.Options {
	card, _ := f.cardinality() // check refused it before
	return export.Options{
		Endpoint: f.endpoint, Protocol: f.protocol, Interval: f.interval,
		Spaces: aggregate.DefaultLimits.Spaces, Version: version(), Warn: w, Cardinality: card,
	}
}

// check refuses bad values, of the flags and (export.Options.Check) of
// the OTEL_* variables, before probes are attached.
func (f *otlpFlags) check() error {
	if _, err := f.cardinality(); err != nil {
		return err
	}
	return f.options(nil).Check()
}

// stopBudget is how long a stop may take once SIGTERM or SIGINT arrives,
// as documented: the last export gets what is left of it.
const stopBudget = 5 * time.Second

// stop flushes what is left, giving a collector that is down a few seconds,
// and returns the last export's trouble, nil if it got through.
func stop(x *export.Exporter, w io.Writer) {
	if err := shutdown(x, time.Now().Add(stopBudget)); err != nil {
		fmt.Fprintf(w, "porttrace: last export: %v\n", err)
	}
}

func shutdown(x *export.Exporter, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	return x.Shutdown(ctx)
}

// Bounds of the size flags. A ring buffer below a page cannot be mapped and
// above 1 GiB pins more memory than any incident needs; a capture smaller
// than 1 MiB holds its header and a few blocks at most.
const (
	minRingSize    = 4 << 10
	maxRingSize    = 1 << 30
	minCaptureSize = 1 << 20
	maxCaptureSize = 1 << 50
)

// parseSize reads a size as people type it, with go-humanize: 512k, 8M and
// 8MB are decimal (8,000,000 bytes), 8MiB binary; a bare number is bytes.
// It refuses what does not parse or lies outside [lo, hi], naming both.
func parseSize(flag, s string, lo, hi uint64) (uint64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || strings.HasPrefix(strings.TrimSpace(s), "-") {
		return 0, fmt.Errorf("%s %q is not a size: write it like 512KiB, 8MiB or 100MB (between %s and %s)",
			flag, s, humanize.IBytes(lo), humanize.IBytes(hi))
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%s %s is %s: it must be between %s and %s",
			flag, s, humanize.IBytes(n), humanize.IBytes(lo), humanize.IBytes(hi))
	}
	return n, nil
}

// commLen is the kernel's TASK_COMM_LEN less its NUL: a longer --comm could
// never match a task name.
const commLen = 15

func checkComm(comm string) error {
	if len(comm) > commLen {
		return fmt.Errorf("--comm %q is %d bytes long: the kernel keeps at most %d bytes of a task name (%q), so it could never match",
			comm, len(comm), commLen, comm[:commLen])
	}
	return nil
}

// checkDuration refuses a negative duration, and zero when zero means
// nothing sensible for that flag.
func checkDuration(flag string, d time.Duration, zeroOK bool) error {
	switch {
	case d < 0:
		return fmt.Errorf("%s %s is negative: give a duration such as 30s or 5m", flag, d)
	case d == 0 && !zeroOK:
		return fmt.Errorf("%s must be more than 0", flag)
	}
	return nil
}

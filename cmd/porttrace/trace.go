package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/tracer"
)

// tracerFlags are shared by every command that attaches probes.
type tracerFlags struct {
	backend  string
	ringSize string
	syscalls bool
}

func (f *tracerFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.backend, "backend", "auto", "probe backend: fentry, kprobe, tracepoint, or auto (best that attaches)")
	cmd.Flags().StringVar(&f.ringSize, "ring-size", "8M", "ring buffer size (rounded up to a power of two), e.g. 512K, 8M, 64M")
	cmd.Flags().BoolVar(&f.syscalls, "syscalls", false, "tracepoint backend: also attach the connect()/bind() syscall tracepoints, "+
		"to see connect() failures before any TCP state change (no route, no source address) and bind()'s result; "+
		"costs every syscall of every process on the machine about 30-45 ns (the other backends see these without it)")
}

func (f *tracerFlags) open(stderr io.Writer) (*tracer.Tracer, error) {
	b, err := tracer.ParseBackend(f.backend)
	if err != nil {
		return nil, err
	}
	size, err := parseSize(f.ringSize)
	if err != nil {
		return nil, fmt.Errorf("--ring-size: %w", err)
	}
	t, err := tracer.Open(tracer.Options{Backend: b, RingSize: size, Syscalls: f.syscalls})
	if err != nil {
		return nil, err
	}
	for _, a := range t.Attempts() {
		if a.Err != nil {
			fmt.Fprintf(stderr, "porttrace: backend %s refused: %v\n", a.Backend, a.Err)
		}
		for _, h := range a.Hooks {
			if a.Err == nil && h.Err != nil {
				fmt.Fprintf(stderr, "porttrace: optional hook %s missing (%s): %v\n", h.Name, h.Optional, h.Err)
			}
		}
	}
	note := "port search latency is exact"
	if !t.Backend().ExactLatency() {
		note = "port search latency is approximate (bracketed by neighbouring hooks)"
	}
	if !t.Backend().SeesEarlyFailures() && !f.syscalls {
		note += "; connect() failures before any TCP state change and bind() are not seen (--syscalls adds them, at a cost to every syscall)"
	}
	fmt.Fprintf(stderr, "porttrace: tracing with the %s backend; %s\n", t.Backend(), note)
	return t, nil
}

func parseSize(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size like 512K or 8M", s)
	}
	if n*mult > 1<<30 {
		return 0, fmt.Errorf("%s is more than 1G", s)
	}
	return n * mult, nil
}

// signalContext is cancelled by SIGINT or SIGTERM, so that commands finish
// cleanly (drain the ring buffer, report lost events) instead of dying.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func newTrace() *cobra.Command {
	var tf tracerFlags
	var f event.Filter
	var pid int
	var dport int
	var asJSON bool
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Print every connect, port search, state change and TIME_WAIT entry",
		Long: `Print one line per event: connect() results with their errno, the kernel's
port search (allocation) with its latency, state changes of client sockets,
and TIME_WAIT entries, each with the process that made the connection.
Runs until Ctrl-C (or --duration).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pid < 0 || dport < 0 || dport > 65535 {
				return fmt.Errorf("--pid and --dport must be a process id and a port number")
			}
			f.PID, f.DPort = uint32(pid), uint16(dport)
			return runTrace(cmd, &tf, f, asJSON, duration)
		},
	}
	tf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	cmd.Flags().IntVar(&pid, "pid", 0, "only events of this process id")
	cmd.Flags().StringVar(&f.Comm, "comm", "", "only events of processes with this name (as in ps -o comm)")
	cmd.Flags().IntVar(&dport, "dport", 0, "only events toward this destination port")
	cmd.Flags().BoolVar(&f.FailuresOnly, "failures-only", false, "only failed connect(), port searches and bind()")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default: until Ctrl-C)")
	return cmd
}

func runTrace(cmd *cobra.Command, tf *tracerFlags, f event.Filter, asJSON bool, duration time.Duration) error {
	stderr := cmd.ErrOrStderr()
	t, err := tf.open(stderr)
	if err != nil {
		return err
	}
	defer t.Close()
	ctx, cancel := signalContext()
	defer cancel()
	if duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	out := newFlusher(cmd.OutOrStdout())
	defer out.stop()
	if !asJSON {
		out.line(event.TextHeader)
	}
	shown := 0
	err = t.Run(ctx, func(e *event.Event) {
		if !f.Match(e) {
			return
		}
		shown++
		if asJSON {
			b, _ := json.Marshal(e)
			out.line(string(b))
			return
		}
		out.line(e.Text())
	})
	out.stop()
	lost, lerr := t.Lost()
	fmt.Fprintf(stderr, "porttrace: %d events shown, %d lost\n", shown, lost)
	if err == nil {
		err = lerr
	}
	return err
}

// flusher buffers output and flushes it a few times a second, so that a
// busy machine does not cost a write per event and a quiet one still shows
// each line promptly.
type flusher struct {
	mu   sync.Mutex
	w    *bufio.Writer
	done chan struct{}
	once sync.Once
}

func newFlusher(w io.Writer) *flusher {
	f := &flusher{w: bufio.NewWriterSize(w, 64<<10), done: make(chan struct{})}
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				f.mu.Lock()
				f.w.Flush()
				f.mu.Unlock()
			case <-f.done:
				return
			}
		}
	}()
	return f
}

func (f *flusher) line(s string) {
	f.mu.Lock()
	f.w.WriteString(s)
	f.w.WriteByte('\n')
	f.mu.Unlock()
}

func (f *flusher) stop() {
	f.once.Do(func() { close(f.done) })
	f.mu.Lock()
	f.w.Flush()
	f.mu.Unlock()
}

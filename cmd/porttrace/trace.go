package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
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
	// namespaces: the command reads other namespaces' port settings and
	// socket tables (top, record, agent), which takes CAP_SYS_ADMIN.
	namespaces bool
}

func (f *tracerFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.backend, "backend", "auto", "probe backend: fentry, kprobe, tracepoint, or auto (best that attaches)")
	cmd.Flags().StringVar(&f.ringSize, "ring-size", "8MiB", "ring buffer size, rounded up to a power of two: 4KiB to 1GiB, e.g. 512KiB, 8M, 64MiB")
	cmd.Flags().BoolVar(&f.syscalls, "syscalls", false, "tracepoint backend: also attach the connect()/bind() syscall tracepoints, "+
		"to see connect() failures before any TCP state change (no route, no source address) and bind()'s result; "+
		"costs every syscall of every process on the machine about 30-45 ns (the other backends see these without it)")
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

// check refuses bad values before anything attaches.
func (f *tracerFlags) check() error {
	_, err := f.options()
	return err
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

// signalContext is cancelled by SIGINT or SIGTERM, so that commands finish
// cleanly (drain the ring buffer, report lost events) instead of dying.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func newTrace() *cobra.Command {
	var tf tracerFlags
	var ff filterFlags
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
			f, err := ff.events()
			if err == nil {
				err = tf.check()
			}
			if err == nil {
				err = checkDuration("--duration", duration, true)
			}
			if err != nil {
				return err
			}
			return runTrace(cmd, &tf, f, asJSON, duration)
		},
	}
	tf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	ff.register(cmd, true)
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default: until Ctrl-C)")
	return cmd
}

func runTrace(cmd *cobra.Command, tf *tracerFlags, f eventFilter, asJSON bool, duration time.Duration) error {
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
		if !f.match(e) {
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

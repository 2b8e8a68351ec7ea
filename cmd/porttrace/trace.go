package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/porttrace/porttrace/internal/event"
)

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

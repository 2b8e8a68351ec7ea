package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/term"
	"github.com/spf13/cobra"

	"github.com/porttrace/porttrace/internal/report"
	"github.com/porttrace/porttrace/internal/view"
	"github.com/porttrace/porttrace/tracer"
)

func newTop() *cobra.Command {
	tf := tracerFlags{namespaces: true}
	var of otlpFlags
	var ff filterFlags
	var pf podFilter
	var cf criFlag
	var once, asJSON bool
	var interval time.Duration
	var replay, mem string
	var speed float64
	var stream bool
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Live view: which port spaces fill up, who fills them, and what to do",
		Long: `Show every port space (netns, source address, destination address and port)
with its connection and failure rates, TIME_WAIT population, how full it is,
when it runs out, the port search latency, and the processes behind it; then
the fixes the evidence supports.

On a terminal it refreshes every --interval until q or Ctrl-C. With --once or
--json, or when stdout is not a terminal, it watches for --interval, prints
the figures once (as text or JSON) and exits; with --json --stream it prints
one JSON document per line every --interval until Ctrl-C. TIME_WAIT and open sockets are
read from the kernel's socket tables at start, so a running incident shows
at once; rates need at least one second.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sel, err := ff.selection()
			if err != nil {
				return err
			}
			sel.Pod, sel.K8sNS = pf.pod, pf.namespace
			if interval < time.Second {
				return fmt.Errorf("--interval must be at least 1s: rates are per complete second")
			}
			if replay != "" {
				// Everything that can be refused is, before the terminal
				// switches to the view.
				if speed <= 0 || speed > 1e6 || math.IsNaN(speed) {
					return fmt.Errorf("--speed %g: give how many seconds of the capture to play per second, more than 0 (e.g. 0.5, 1, 60)", speed)
				}
				if of.endpoint != "" {
					return fmt.Errorf("--otlp-endpoint exports what the kernel shows now, not a replay")
				}
				if err := setMaxMemory(mem); err != nil {
					return err
				}
				f, err := openCapture(replay)
				if err != nil {
					return err
				}
				defer f.Close()
				if once || asJSON || !isTerminal(os.Stdout) {
					return fmt.Errorf("--replay plays a capture in the live view: for text or JSON, use porttrace report")
				}
				return runReplay(f, speed, interval, sel)
			}
			if stream && !asJSON {
				return fmt.Errorf("--stream streams JSON: add --json")
			}
			if err := errors.Join(tf.check(), of.check()); err != nil {
				return err
			}
			if stream {
				return runTop(cmd, &tf, &of, &cf, sel, streamJSON, interval)
			}
			return runTop(cmd, &tf, &of, &cf, sel, outputOf(once || asJSON || !isTerminal(os.Stdout), asJSON), interval)
		},
	}
	cmd.Flags().StringVar(&replay, "replay", "", "play a capture made by porttrace record instead of watching the kernel (no root needed)")
	registerMaxMemory(cmd, &mem)
	cmd.Flags().Float64Var(&speed, "speed", 1, "with --replay, how many seconds of the capture to play per second")
	tf.register(cmd)
	ff.register(cmd, false)
	pf.register(cmd)
	cf.register(cmd)
	of.register(cmd, "also export over OTLP to this collector, as porttrace agent does, e.g. http://localhost:4318")
	cmd.Flags().BoolVar(&once, "once", false, "watch for --interval, print the figures as text and exit")
	cmd.Flags().BoolVar(&asJSON, "json", false, "like --once, as one JSON object")
	cmd.Flags().BoolVar(&stream, "stream", false, "with --json, print one JSON object per line every --interval until Ctrl-C (JSON Lines)")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "refresh period; with --once or --json, how long to watch")
	return cmd
}

func isTerminal(f *os.File) bool { return term.IsTerminal(f.Fd()) }

// topOutput is what top prints: the live view, the figures once (as text
// or JSON), or JSON every interval.
type topOutput int

const (
	liveView topOutput = iota
	onceText
	onceJSON
	streamJSON
)

func outputOf(once, asJSON bool) topOutput {
	switch {
	case !once:
		return liveView
	case asJSON:
		return onceJSON
	}
	return onceText
}

func runTop(cmd *cobra.Command, tf *tracerFlags, of *otlpFlags, cf *criFlag, sel view.Select, output topOutput, interval time.Duration) error {
	once := output != liveView
	stderr := cmd.ErrOrStderr()
	s := sinks{cri: cf, model: true}
	if once { // the live view owns the terminal: its status line says it
		s.log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	if of.endpoint != "" {
		// Export trouble would garble the live view: it is held and
		// printed when the view ends.
		warn := stderr
		if !once {
			held := &syncBuffer{}
			defer func() { io.Copy(stderr, held) }()
			warn = held
		}
		o := of.options(warn)
		s.export = &o
	}
	p, err := assemble(stderr, tf, s)
	if err != nil {
		return err
	}
	defer p.close()
	if p.x != nil {
		defer stop(p.x, s.export.Warn) // after the view, in order with the held lines
	}
	mon, t := p.mon, p.tracer
	host, _ := os.Hostname()
	info := view.Info{Host: host, Kernel: tracer.KernelRelease(), Backend: string(t.Backend())}
	ctx, cancel := signalContext()
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- mon.Run(ctx) }() // a panic in it comes back as an error
	src := view.Selected{Source: mon, Select: sel}
	switch output {
	case streamJSON:
		err = printStream(ctx, cmd.OutOrStdout(), src, interval)
		cancel()
		return errors.Join(err, <-done)
	case onceText, onceJSON:
		// The figures are printed once the monitor has stopped: its last
		// summary has every event the ring held and the socket tables
		// read after them.
		var runErr error
		select {
		case <-ctx.Done():
		case <-time.After(interval):
		case runErr = <-done:
			done = nil
		}
		cancel()
		if done != nil {
			runErr = <-done
		}
		return errors.Join(printOnce(cmd.OutOrStdout(), src, info, output == onceJSON), runErr)
	}
	return runView(ctx, cancel, done, view.Selected{Source: mon, Select: sel}, info, interval)
}

// printOnce prints what src saw, as text or JSON.
func printOnce(w io.Writer, src view.Source, info view.Info, asJSON bool) error {
	f := src.Frame()
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(f)
	}
	_, err := io.WriteString(w, view.Text(&f, info, view.Options{Window: 10}))
	return err
}

// printStream prints a frame as one line of JSON every interval until ctx
// ends (a signal).
func printStream(ctx context.Context, w io.Writer, src view.Source, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	enc := json.NewEncoder(w)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		f := src.Frame()
		if err := enc.Encode(f); err != nil {
			return err
		}
	}
}

// runView runs the terminal view until q, a signal, or the end of the event
// source. bubbletea restores the terminal when its loop ends or panics; if
// the source fails or panics (on its own goroutine), the view is killed so
// the terminal is restored before the error is printed.
func runView(ctx context.Context, cancel context.CancelFunc, done chan error, src view.Source, info view.Info, interval time.Duration) error {
	p := tea.NewProgram(view.NewModel(src, info, interval), tea.WithAltScreen(), tea.WithContext(ctx))
	srcErr := make(chan error, 1)
	go func() {
		err := <-done
		srcErr <- err
		p.Kill()
	}()
	_, err := p.Run()
	cancel()
	if err2 := <-srcErr; err2 != nil {
		return err2
	}
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil // SIGTERM or SIGINT: a normal way to stop
	}
	return err
}

// runReplay plays a capture in the live view.
func runReplay(f *os.File, speed float64, interval time.Duration, sel view.Select) error {
	path := f.Name()
	p, err := report.NewPlayer(f, speed, time.Now)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	h := p.Header()
	info := view.Info{Host: h.Host, Kernel: h.Kernel, Backend: h.Backend, Replay: fmt.Sprintf("%s at %gx", path, speed)}
	ctx, cancel := signalContext()
	defer cancel()
	_, err = tea.NewProgram(view.NewModel(view.Selected{Source: p, Select: sel}, info, interval), tea.WithAltScreen(), tea.WithContext(ctx)).Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil
	}
	return err
}

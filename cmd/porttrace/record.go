package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/recorder"
	"github.com/porttrace/porttrace/internal/sanitize"
	"github.com/porttrace/porttrace/internal/sockdiag"
	"github.com/porttrace/porttrace/tracer"
)

func newRecord() *cobra.Command {
	tf := tracerFlags{namespaces: true}
	var of otlpFlags
	var out, maxSize string
	var overwrite bool
	var o recorder.Options
	cmd := &cobra.Command{
		Use:   "record -o FILE",
		Short: "Capture an incident to a file, to report on later",
		Long: `Record every event, with the socket tables every 5 s, into a compressed
capture that 'porttrace report' reads without root. The file is written in
blocks flushed every second: if porttrace is killed or the disk fills, it is
readable up to its last block.

Recording stops at the first bound (--duration, --max-size, --max-events) or
at Ctrl-C/SIGTERM, and ends the file cleanly either way. With
--until-failures N nothing is written until N connect()/bind() calls have
failed; the last --pre-trigger of events is kept in memory meanwhile and
written when the trigger fires, then recording goes on for --duration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("-o FILE is required: where to write the capture")
			}
			size, err := parseSize("--max-size", maxSize, minCaptureSize, maxCaptureSize)
			for _, check := range []func() error{
				func() error { return err },
				tf.check, of.check,
				func() error { return checkDuration("--duration", o.Duration, true) },
				func() error { return checkDuration("--pre-trigger", o.PreTrigger, false) },
				func() error {
					if cmd.Flags().Changed("pre-trigger") && o.UntilFailures == 0 {
						return errors.New("--pre-trigger keeps the lead-up to --until-failures N: give both, or neither")
					}
					return nil
				},
				func() error { return recorder.CheckOutput(out, overwrite) },
			} {
				if err := check(); err != nil {
					return err
				}
			}
			o.MaxSize = int64(size)
			return runRecord(cmd, &tf, &of, out, overwrite, o)
		},
	}
	tf.register(cmd)
	of.register(cmd, "also export over OTLP to this collector while recording, as porttrace agent does")
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "", "capture file to create (mode 0600; never through a symbolic link, never an existing file)")
	f.BoolVar(&overwrite, "overwrite", false, "replace the -o file if it exists and is your own regular file")
	f.DurationVar(&o.Duration, "duration", 5*time.Minute, "stop after this long (after the trigger, with --until-failures); 0 for no limit")
	f.StringVar(&maxSize, "max-size", "1GiB", "stop when the file reaches this size: 1MiB or more, e.g. 100MB, 2GiB")
	f.Uint64Var(&o.MaxEvents, "max-events", 50_000_000, "stop after this many events; 0 for no limit")
	f.Uint64Var(&o.UntilFailures, "until-failures", 0, "write nothing until this many connect()/bind() calls have failed")
	f.DurationVar(&o.PreTrigger, "pre-trigger", recorder.DefaultPreTrigger, "with --until-failures, how much of the lead-up to keep and write")
	return cmd
}

func runRecord(cmd *cobra.Command, tf *tracerFlags, of *otlpFlags, path string, overwrite bool, o recorder.Options) error {
	stderr := cmd.ErrOrStderr()
	s := sinks{}
	if of.endpoint != "" {
		// Exporting while recording, as the agent does, takes the model.
		x := of.options(stderr)
		s.model, s.export = true, &x
	}
	p, err := assemble(stderr, tf, s)
	if err != nil {
		return err
	}
	defer p.close()
	if p.x != nil {
		defer stop(p.x, stderr)
	}
	t := p.tracer
	first, err := recorder.ReadRound(sockdiag.ReadAll, p.conntrack.Read)
	if err != nil {
		return err
	}
	file, err := create(path, overwrite)
	if err != nil {
		return err
	}
	defer file.Close()
	host, _ := os.Hostname()
	w, err := recorder.Begin(file, capture.Header{Host: host, Kernel: tracer.KernelRelease(),
		Backend: string(t.Backend()), Command: sanitize.Redact(strings.Join(os.Args, " "))}, first)
	if err != nil {
		return err
	}
	o.Tables = func() capture.Round { r, _ := recorder.ReadRound(sockdiag.ReadAll, p.conntrack.Read); return r }
	o.Netns, o.Cgroup = first.Netns, p.where.Of
	o.Progress = progress(stderr, isTerminal(os.Stderr))
	ctx, cancel := signalContext()
	defer cancel()
	src := p.events(ctx)
	tr, err := recorder.Record(ctx, src, w, o)
	if isTerminal(os.Stderr) {
		fmt.Fprintln(stderr)
	}
	// What the file holds, as report will read it: events taken but not
	// written whole (a full disk) are counted apart.
	notWritten := ""
	if n := tr.Events - w.Stored(); n > 0 {
		notWritten = fmt.Sprintf(", %s not written", humanize.Comma(int64(n)))
	}
	fmt.Fprintf(stderr, "porttrace: %s events written to %s (%s)%s, %d lost, %d dropped: %s\n",
		humanize.Comma(int64(w.Stored())), path, humanize.IBytes(uint64(w.Size())), notWritten, tr.Lost, tr.Dropped, tr.Reason)
	if err != nil {
		return fmt.Errorf("%w (the capture is readable up to its last complete block)", err)
	}
	return file.Close()
}

// create makes the capture file and syncs its directory, so that the file
// itself survives a power loss, not only its blocks. The file stays locked
// (flock) while it is open, which tells report that it is being written.
func create(path string, overwrite bool) (*os.File, error) {
	f, err := recorder.Create(path, overwrite)
	if err != nil {
		return nil, err
	}
	unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		dir.Sync()
		dir.Close()
	}
	return f, nil
}

// progress draws one line: rewritten in place on a terminal, a line every
// 10 s in a log.
func progress(w io.Writer, terminal bool) func(recorder.Progress) {
	return func(p recorder.Progress) {
		if !terminal && p.Elapsed.Round(time.Second)%(10*time.Second) != 0 {
			return
		}
		line := fmt.Sprintf("recording %s: %s events, %s failures, %s", p.Elapsed.Round(time.Second),
			humanize.Comma(int64(p.Events)), humanize.Comma(int64(p.Failures)), humanize.IBytes(uint64(p.Size)))
		if p.Waiting {
			line = fmt.Sprintf("waiting %s for the trigger: %s failures so far, %s events held", p.Elapsed.Round(time.Second),
				humanize.Comma(int64(p.Failures)), humanize.Comma(int64(p.Window)))
		} else if p.Left > 0 {
			line += fmt.Sprintf(", %s left", p.Left.Round(time.Second))
		}
		if terminal {
			fmt.Fprintf(w, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(w, line)
		}
	}
}

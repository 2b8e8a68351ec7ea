package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"

	"github.com/spf13/cobra"

	"github.com/porttrace/porttrace/internal/report"
	"github.com/porttrace/porttrace/internal/view"
)

func newReport() *cobra.Command {
	var asJSON, markdown bool
	var ff filterFlags
	var mem string
	cmd := &cobra.Command{
		Use:   "report FILE",
		Short: "Summarise a capture: port spaces, processes, timeline and diagnosis",
		Long: `Replay a capture made by 'porttrace record' through the same aggregation
and diagnosis as 'porttrace top'. Needs no privileges. A capture that was
cut off is reported up to its last complete block, and says so.

Exit status: 0 when the capture is complete, or still being recorded (it is
reported up to its last complete block, and stderr says so); 1 when nothing
could be read (not a file, not a capture); 2 when the capture is damaged or
was cut off (the recorder was killed or the disk filled): what could be read
is printed first, then one line on stderr says where reading stopped.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON && markdown {
				return errors.New("--json and --markdown exclude each other")
			}
			sel, err := ff.selection()
			if err != nil {
				return err
			}
			if err := setMaxMemory(mem); err != nil {
				return err
			}
			f, err := openCapture(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			writing := beingWritten(f)
			r, err := report.Build(f)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			selectReport(r, sel)
			if err := writeReport(cmd.OutOrStdout(), r, asJSON, markdown); err != nil {
				return err
			}
			return captureState(cmd.ErrOrStderr(), args[0], r, writing)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "everything, as one JSON object")
	cmd.Flags().BoolVar(&markdown, "markdown", false, "Markdown, for a ticket")
	registerMaxMemory(cmd, &mem)
	ff.register(cmd, false)
	return cmd
}

// selectReport keeps of r what sel keeps: its summaries, the NAT they
// concern, and the findings of both.
func selectReport(r *report.Report, sel view.Select) {
	if sel.Empty() {
		return
	}
	all := r.Findings
	r.Final, _ = sel.Filter(r.Final, nil)
	r.Peak, r.Findings = sel.Filter(r.Peak, r.Findings)
	kept := r.Peak
	if r.Peak == nil {
		_, r.Findings = sel.Filter(r.Final, r.Findings)
		kept = r.Final
	}
	if r.NAT != nil {
		r.NAT = sel.FilterNAT(r.NAT, kept)
		r.Findings = append(r.Findings, view.NATFindings(r.NAT, all)...)
	}
}

// registerMaxMemory adds --max-memory, for the commands that read captures.
func registerMaxMemory(cmd *cobra.Command, mem *string) {
	cmd.Flags().StringVar(mem, "max-memory", humanize.IBytes(uint64(report.MaxMemory)),
		"memory to stay under whatever the capture holds; beyond its bounds, what is dropped is said (docs/reliability.md)")
}

// setMaxMemory applies --max-memory: the report's bounds, and the Go
// runtime's soft memory limit.
func setMaxMemory(s string) error {
	n, err := parseSize("--max-memory", s, 64<<20, 1<<40)
	if err != nil {
		return err
	}
	report.MaxMemory = int64(n)
	debug.SetMemoryLimit(int64(n) * 3 / 4)
	return nil
}

func writeReport(w io.Writer, r *report.Report, asJSON, markdown bool) error {
	switch {
	case asJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case markdown:
		_, err := io.WriteString(w, r.Markdown())
		return err
	}
	_, err := io.WriteString(w, r.Text())
	return err
}

// errDamaged is a capture that was read only up to a cut or a damaged block;
// it exits with status 2.
type errDamaged struct{ msg string }

func (e errDamaged) Error() string { return e.msg }

// openCapture opens a capture file, saying what path is when it is not one.
func openCapture(path string) (*os.File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory: name one capture file in it, as written by porttrace record -o FILE", path)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s): name a capture file written by porttrace record -o FILE", path, st.Mode().Type())
	}
	return os.Open(path)
}

// beingWritten reports whether a recorder holds the capture's lock:
// porttrace record keeps an exclusive flock on the file until it ends.
func beingWritten(f *os.File) bool {
	err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	if err == nil {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
	}
	return errors.Is(err, unix.EWOULDBLOCK)
}

// captureState says on w what the capture is, when it is not complete, and
// returns errDamaged for a damaged or cut capture.
func captureState(w io.Writer, path string, r *report.Report, writing bool) error {
	switch {
	case writing:
		fmt.Fprintf(w, "porttrace: %s is still being recorded: reported up to its last complete block (%s events so far)\n",
			path, humanize.Comma(int64(r.Events)))
		return nil
	case r.Damage != "":
		return errDamaged{fmt.Sprintf("%s is damaged: reading stopped at %s; the report above covers the %s events before it",
			path, r.Damage, humanize.Comma(int64(r.Events)))}
	case r.Trailer == nil:
		return errDamaged{fmt.Sprintf("%s was cut off (no end record: the recorder was killed, or the disk filled): the report above covers its %s events",
			path, humanize.Comma(int64(r.Events)))}
	}
	return nil
}

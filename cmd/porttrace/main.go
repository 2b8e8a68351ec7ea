// Command porttrace shows who is exhausting ephemeral ports, toward which
// upstream, and how fast.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/porttrace/porttrace/tracer"
)

func main() {
	oneProc()
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "porttrace:", err)
		os.Exit(exitCode(err))
	}
}

// oneProc runs porttrace on one P unless GOMAXPROCS says otherwise: its
// work is one stream of events, and each idle P is a thread the Go
// runtime wakes to look for work. Under reset churn one P cut record's CPU
// by a fifth and its context switches by two fifths (docs/performance.md).
func oneProc() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}

func exitCode(err error) int {
	if errors.Is(err, tracer.ErrPrivileges) {
		return 77 // EX_NOPERM
	}
	if errors.As(err, new(errDamaged)) {
		return 2
	}
	return 1
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "porttrace",
		Short: "See which process and upstream exhaust ephemeral ports",
		Long: `porttrace watches the kernel's ephemeral port allocation with eBPF: every
connect() and its errno, the port search and its latency, each TIME_WAIT
entry, attributed to the process that made the connection.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	root.SetVersionTemplate(readBuildInfo().String())
	root.AddCommand(newTrace(), newTop(), newRecord(), newReport(), newAgent(), newDoctor(), newVersion(), newDocs())
	return root
}

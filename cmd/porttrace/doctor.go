package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/tracer"
)

func newDoctor() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check what this kernel lets porttrace attach, and the port settings of every network namespace",
		Long: `Check the kernel (BTF, backends that attach, their hooks), the privileges
porttrace has and lacks, and the port settings of every network namespace.
Without privileges it reports what it can (kernel, BTF, capabilities, this
namespace's settings) and exits with status 77, naming what is missing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needLinux(runtime.GOOS, cmd.Name()); err != nil {
				return err
			}
			return runDoctor(cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
}

func runDoctor(w, stderr io.Writer) error {
	fmt.Fprintf(w, "kernel       %s\n", tracer.KernelRelease())
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		fmt.Fprintf(w, "BTF          missing: %v\n", tracer.ErrNoBTF)
	} else {
		fmt.Fprintln(w, "BTF          /sys/kernel/btf/vmlinux")
	}
	fmt.Fprintf(w, "privileges   %s\n", describeCaps())
	privErr := checkCaps(io.Discard, true)
	if privErr != nil && errors.As(privErr, new(*privilegeError)) {
		fmt.Fprintln(w, "backends     not checked: the capabilities marked no above are missing")
		doctorOwnNetns(w)
		return privErr
	} else if privErr != nil {
		return privErr
	}
	working := doctorBackends(w)
	doctorNetns(w)
	doctorNAT(w)
	if working == "" {
		return errors.New("no backend attaches on this kernel: see the reasons above")
	}
	return nil
}

// doctorOwnNetns prints the port settings of porttrace's own namespace,
// which /proc/sys shows without entering it.
func doctorOwnNetns(w io.Writer) {
	read := func(key string) string {
		b, err := os.ReadFile("/proc/sys/net/ipv4/" + key)
		if err != nil {
			return "?"
		}
		return strings.Join(strings.Fields(string(b)), "-")
	}
	fmt.Fprintf(w, "this network namespace: ports %s, reserved %s, tcp_tw_reuse %s (others need CAP_SYS_ADMIN to enter)\n",
		read("ip_local_port_range"), cmp.Or(read("ip_local_reserved_ports"), "-"), read("tcp_tw_reuse"))
}

func describeCaps() string {
	caps, err := tracer.EffectiveCaps()
	if err != nil {
		return "unknown: " + err.Error()
	}
	var parts []string
	for _, c := range []need{needSysAdmin, needBPF, needPerfmon, needNetAdmin, needDAC, {name: "CAP_SYS_PTRACE", bit: capSysPtrace}} {
		mark := "no"
		if caps&(1<<c.bit) != 0 {
			mark = "yes"
		}
		parts = append(parts, c.name+" "+mark)
	}
	who := "uid " + fmt.Sprint(os.Geteuid())
	if os.Geteuid() == 0 {
		who = "root"
	}
	return who + " (" + strings.Join(parts, ", ") + ")"
}

// doctorBackends tries each backend in turn and returns the one that auto
// would choose.
func doctorBackends(w io.Writer) string {
	fmt.Fprintln(w, "backends (best first)")
	chosen := ""
	for _, b := range tracer.Backends {
		t, err := tracer.Open(tracer.Options{Backend: b})
		var attempt tracer.Attempt
		var nb *tracer.NoBackendError
		switch {
		case err == nil:
			attempt = t.Attempts()[0]
			t.Close()
		case errors.As(err, &nb):
			attempt = nb.Attempts[0]
		default:
			fmt.Fprintf(w, "  %-11s cannot be checked: %v\n", b, err)
			continue
		}
		status := "refused: " + fmt.Sprint(attempt.Err)
		if attempt.Err == nil {
			status = "attaches"
			if chosen == "" {
				chosen = string(b)
				status += " (auto chooses this one)"
			}
			if !b.ExactLatency() {
				status += "; port search latency approximate"
			}
		}
		fmt.Fprintf(w, "  %-11s %s\n", b, status)
		for _, h := range attempt.Hooks {
			hs := "ok"
			if h.Err != nil {
				hs = fmt.Sprint(h.Err)
				if h.Optional != "" {
					hs = "optional, missing (" + h.Optional + "): " + hs
				}
			}
			fmt.Fprintf(w, "      %-18s %s\n", h.Name, hs)
		}
	}
	return chosen
}

func doctorNetns(w io.Writer) {
	all, err := netns.All()
	if err != nil {
		fmt.Fprintf(w, "network namespaces: %v\n", err)
		return
	}
	fmt.Fprintln(w, "network namespaces")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NETNS\tPORT RANGE\tRESERVED\tUSABLE\tTW_REUSE\tFIN_TIMEOUT\tMAX_TW_BUCKETS\tSEEN AS")
	for _, s := range all {
		reserved := s.Reserved
		if reserved == "" {
			reserved = "-"
		}
		fmt.Fprintf(tw, "  %d\t%d-%d\t%s\t%d\t%d\t%d\t%d\t%s\n", s.Inode, s.PortLow, s.PortHigh, reserved,
			s.Usable(), s.TWReuse, s.FinTimeout, s.MaxTWBuckets, strings.Join(s.Names, ", "))
	}
	tw.Flush()
	fmt.Fprintln(w, "  (one port space sustains about USABLE/60 new connections/s per upstream without reuse: TIME_WAIT lasts 60 s)")
}

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/porttrace/porttrace/tracer"
)

// Capability bits (linux/capability.h) that porttrace was measured to need;
// see the README's Privileges section and TestCapabilities.
const (
	capDACOverride   = 1
	capDACReadSearch = 2
	capNetAdmin      = 12
	capSysPtrace     = 19
	capSysAdmin      = 21
	capPerfmon       = 38
	capBPF           = 39
)

// need is one capability, and what porttrace does with it.
type need struct {
	name string
	bit  uint
	why  string
}

var (
	needBPF      = need{"CAP_BPF", capBPF, "load the BPF programs"}
	needPerfmon  = need{"CAP_PERFMON", capPerfmon, "attach them to tracepoints"}
	needNetAdmin = need{"CAP_NET_ADMIN", capNetAdmin, "attach the sock_ops program to the cgroup"}
	needDAC      = need{"CAP_DAC_READ_SEARCH", capDACReadSearch, "read the tracepoint ids in /sys/kernel/tracing, which only root may read"}
	needSysAdmin = need{"CAP_SYS_ADMIN", capSysAdmin, "enter network namespaces (setns) to read their port settings and socket tables, and load and attach the programs"}
)

// privilegeError names the capabilities missing; it is tracer.ErrPrivileges
// for the exit status (77).
type privilegeError struct {
	missing []need
	forNS   bool
}

func (e *privilegeError) Error() string {
	var names, whys []string
	for _, n := range e.missing {
		names = append(names, n.name)
		whys = append(whys, n.name+" to "+n.why)
	}
	all := "CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_DAC_READ_SEARCH"
	if e.forNS {
		all = "CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH"
	}
	return fmt.Sprintf("porttrace needs root, or the capabilities %s: missing %s (%s)",
		all, strings.Join(names, ", "), strings.Join(whys, "; "))
}

func (e *privilegeError) Is(target error) bool { return target == tracer.ErrPrivileges }

// missingCaps is what this process lacks, as measured: CAP_SYS_ADMIN
// stands for CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN; tracefs needs
// CAP_DAC_READ_SEARCH only when its files are not readable (not root's
// uid); namespaces need CAP_SYS_ADMIN even for porttrace's own (setns), so
// that is what commands that read them are told to get.
func missingCaps(caps uint64, namespaces bool) []need {
	has := func(bit uint) bool { return caps&(1<<bit) != 0 }
	var missing []need
	if namespaces && !has(capSysAdmin) {
		missing = append(missing, needSysAdmin)
	}
	if !namespaces && !has(capSysAdmin) {
		for _, n := range []need{needBPF, needPerfmon, needNetAdmin} {
			if !has(n.bit) {
				missing = append(missing, n)
			}
		}
	}
	if !has(capDACReadSearch) && !has(capDACOverride) && !tracefsReadable() {
		missing = append(missing, needDAC)
	}
	return missing
}

// tracefsReadable reports whether the tracepoint ids can be read without
// capabilities: tracefs's events directory is root's, mode 0700.
func tracefsReadable() bool {
	for _, dir := range []string{"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"} {
		if _, err := os.Stat(dir + "/sock/inet_sock_set_state/id"); err == nil {
			return true
		} else if errors.Is(err, os.ErrPermission) {
			return false
		}
	}
	return true // not mounted: the tracer mounts it, and says so if it cannot
}

// checkCaps refuses, in one sentence naming each missing capability, to
// start without what the command needs; without CAP_SYS_PTRACE it warns
// that namespaces only other users' processes hold are not seen.
func checkCaps(stderr io.Writer, namespaces bool) error {
	caps, err := tracer.EffectiveCaps()
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	if m := missingCaps(caps, namespaces); len(m) > 0 {
		return &privilegeError{missing: m, forNS: namespaces}
	}
	if namespaces && caps&(1<<capSysPtrace) == 0 {
		fmt.Fprintln(stderr, "porttrace: without CAP_SYS_PTRACE, network namespaces that only other users' processes hold (containers not under /run/netns) are not seen")
	}
	return nil
}

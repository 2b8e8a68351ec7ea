package tracer

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

var (
	// ErrPrivileges means the process may not load BPF programs.
	ErrPrivileges = errors.New("porttrace needs root, or the capabilities CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_DAC_READ_SEARCH (top, record and agent: CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH, plus CAP_SYS_PTRACE for other users' namespaces): run it with sudo")
	// ErrNoBTF means the kernel does not describe its own types.
	ErrNoBTF = errors.New("this kernel has no BTF type information (/sys/kernel/btf/vmlinux): porttrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (5.5 or newer)")
	// ErrNotLinux is Open's answer on any other system.
	ErrNotLinux = errors.New("porttrace traces the kernel with eBPF, which only Linux has: top, record and agent run on Linux; report and top --replay read their captures on any system")
)

// Capability bits (linux/capability.h).
const (
	CapNetAdmin = 12
	CapSysAdmin = 21
	CapPerfmon  = 38
	CapBPF      = 39
)

// EffectiveCaps returns the effective capability set of this process.
func EffectiveCaps() (uint64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}

// CheckPrivileges returns ErrPrivileges unless the process can load and
// attach tracing programs.
func CheckPrivileges() error {
	caps, err := EffectiveCaps()
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	has := func(c uint) bool { return caps&(1<<c) != 0 }
	if has(CapSysAdmin) || (has(CapBPF) && has(CapPerfmon)) {
		return nil
	}
	return ErrPrivileges
}

// KernelRelease is uname -r.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

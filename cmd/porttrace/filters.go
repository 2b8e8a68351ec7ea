package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/view"
)

// filterFlags are the filters of top, report and trace. Short flags are
// BCC's where BCC agrees with itself: -p PID, -P destination port (as in
// tcpconnect), -4/-6. BCC's -c means a count in tcpconnect and is left out.
type filterFlags struct {
	pids         []uint
	comm         string
	netns        string
	dport        uint
	dst          string
	ipv4, ipv6   bool
	failuresOnly bool
}

func (f *filterFlags) register(cmd *cobra.Command, trace bool) {
	fl := cmd.Flags()
	fl.UintSliceVarP(&f.pids, "pid", "p", nil, "only this process id (repeat, or separate with commas, for several)")
	fl.StringVar(&f.comm, "comm", "", "only processes with this name, as in ps -o comm (at most 15 characters)")
	fl.StringVar(&f.netns, "netns", "", "only this network namespace: its inode number, or its name under /run/netns")
	fl.UintVarP(&f.dport, "dport", "P", 0, "only connections toward this destination port")
	fl.StringVar(&f.dst, "dst", "", "only connections toward this destination address (ADDR or ADDR:PORT)")
	if trace {
		fl.BoolVarP(&f.ipv4, "ipv4", "4", false, "only IPv4")
		fl.BoolVarP(&f.ipv6, "ipv6", "6", false, "only IPv6")
		fl.BoolVar(&f.failuresOnly, "failures-only", false, "only failed connect(), port searches and bind()")
	}
}

// selection checks the values and returns them as a view.Select.
func (f *filterFlags) selection() (view.Select, error) {
	var s view.Select
	for _, p := range f.pids {
		if p == 0 || p > 1<<22 {
			return s, fmt.Errorf("--pid %d is not a process id (1 to %d)", p, 1<<22)
		}
		s.PIDs = append(s.PIDs, uint32(p))
	}
	if err := checkComm(f.comm); err != nil {
		return s, err
	}
	s.Comm = f.comm
	if f.dport > 65535 {
		return s, fmt.Errorf("--dport %d is not a port number (1 to 65535)", f.dport)
	}
	s.DPort = uint16(f.dport)
	if f.dst != "" {
		if ap, err := netip.ParseAddrPort(f.dst); err == nil {
			if s.DPort != 0 && s.DPort != ap.Port() {
				return s, fmt.Errorf("--dst %s and --dport %d name different ports", f.dst, f.dport)
			}
			s.Dst, s.DPort = ap.Addr(), ap.Port()
		} else if a, err := netip.ParseAddr(f.dst); err == nil {
			s.Dst = a
		} else {
			return s, fmt.Errorf("--dst %q is not an address such as 10.0.0.5, ::1 or [::1]:8080", f.dst)
		}
	}
	if f.netns != "" {
		ino, err := netnsInode(f.netns)
		if err != nil {
			return s, err
		}
		s.Netns = ino
	}
	if f.ipv4 && f.ipv6 {
		return s, fmt.Errorf("-4 and -6 exclude each other: leave both out for both families")
	}
	return s, nil
}

// netnsInode reads --netns: an inode number as porttrace prints it, or a
// name that `ip netns` knows.
func netnsInode(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil && n > 0 {
		return uint32(n), nil
	}
	var st unix.Stat_t
	if err := unix.Stat("/run/netns/"+s, &st); err != nil {
		return 0, fmt.Errorf("--netns %q is neither a namespace inode number nor a name under /run/netns", s)
	}
	return uint32(st.Ino), nil
}

// eventFilter is what trace keeps of the event stream.
type eventFilter struct {
	sel    view.Select
	base   event.Filter
	family uint16 // 0 for both
}

func (f *filterFlags) events() (eventFilter, error) {
	sel, err := f.selection()
	if err != nil {
		return eventFilter{}, err
	}
	ef := eventFilter{sel: sel, base: event.Filter{Comm: sel.Comm, DPort: sel.DPort, FailuresOnly: f.failuresOnly}}
	switch {
	case f.ipv4:
		ef.family = syscall.AF_INET
	case f.ipv6:
		ef.family = syscall.AF_INET6
	}
	return ef, nil
}

func (f eventFilter) match(e *event.Event) bool {
	switch {
	case !f.base.Match(e):
		return false
	case len(f.sel.PIDs) > 0 && !slices.Contains(f.sel.PIDs, e.PID):
		return false
	case f.sel.Netns != 0 && e.Netns != f.sel.Netns:
		return false
	case f.sel.Dst.IsValid() && e.Dst.Addr().Unmap() != f.sel.Dst.Unmap():
		return false
	case f.family != 0 && e.Family != f.family:
		return false
	}
	return true
}

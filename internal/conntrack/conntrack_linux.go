//go:build linux

package conntrack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	ct "github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/netns"
)

// Read reads the namespace at path (a /proc/PID/ns/net or /run/netns/NAME;
// "" for porttrace's own), whose inode is inode, in full: conntrack, NAT
// rules and addresses. What can be read is returned with the rest's
// trouble in Table.Err; the error is for a namespace that could not be
// entered at all.
func Read(path string, inode uint32) (nat.Table, error) {
	t, err := readNetns(path, inode)
	if err == nil {
		addAddrs(path, &t)
	}
	return t, err
}

// readNetns reads a namespace's conntrack counters, translated entries and
// NAT rules.
func readNetns(path string, inode uint32) (nat.Table, error) {
	t := nat.Table{Netns: inode, Time: time.Now(), TakesOverClosing: takesOverClosing}
	read := func() {
		var errs []error
		if err := readConntrack(&t); err != nil {
			errs = append(errs, fmt.Errorf("conntrack: %w", err))
		}
		r, err := readRules()
		if err != nil {
			errs = append(errs, fmt.Errorf("nftables: %w", err))
		}
		t.Rules = r
		for _, e := range errs {
			t.Err = joinErr(t.Err, e.Error()) // one line, for doctor and the views
		}
	}
	if path == "" {
		read()
		return t, nil
	}
	// The namespace is entered here, not through the netlink libraries'
	// NetNS option: under that option mdlayher/socket v0.5.1 (withNetNS)
	// drops socket()'s error, so on a kernel without nfnetlink loaded
	// conntrack.Dial panicked on a nil connection instead of failing.
	return t, netns.Within(path, read)
}

// addAddrs adds the namespace's addresses to t, or their trouble to its
// Err.
func addAddrs(path string, t *nat.Table) {
	addrs, err := readAddrs(path)
	t.Addrs = addrs
	if err != nil {
		t.Err = joinErr(t.Err, "addresses: "+err.Error())
	}
}

// readConntrack reads the conntrack table of the calling thread's network
// namespace into t.
func readConntrack(t *nat.Table) error {
	c, err := ct.Dial(nil)
	if err != nil {
		return noNetfilter(err)
	}
	defer c.Close()
	g, err := c.StatsGlobal()
	if err != nil {
		return err
	}
	t.Count, t.Max = int(g.Entries), int(g.MaxEntries)
	cpus, err := c.Stats()
	if err != nil {
		return err
	}
	for _, s := range cpus {
		t.Stats.Found += uint64(s.Found)
		t.Stats.Invalid += uint64(s.Invalid)
		t.Stats.Insert += uint64(s.Insert)
		t.Stats.InsertFailed += uint64(s.InsertFailed)
		t.Stats.Drop += uint64(s.Drop)
		t.Stats.EarlyDrop += uint64(s.EarlyDrop)
		t.Stats.Error += uint64(s.Error)
		t.Stats.SearchRestart += uint64(s.SearchRestart)
	}
	if t.Count > MaxDump {
		return fmt.Errorf("%d entries, more than the %d porttrace lists: NAT spaces not counted", t.Count, MaxDump)
	}
	if t.Count == 0 {
		return nil
	}
	flows, err := c.Dump(nil)
	if err != nil {
		return err
	}
	for _, f := range flows {
		if e, ok := entry(f); ok {
			if len(t.Entries) >= nat.MaxEntries {
				t.Dropped++
				continue
			}
			t.Entries = append(t.Entries, e)
		}
	}
	return nil
}

// entry converts a source-translated flow; other flows are not NAT's.
func entry(f ct.Flow) (nat.Entry, bool) {
	if !f.Status.SrcNAT() {
		return nat.Entry{}, false
	}
	o, r := f.TupleOrig, f.TupleReply
	e := nat.Entry{
		Proto:  o.Proto.Protocol,
		Src:    netip.AddrPortFrom(o.IP.SourceAddress.Unmap(), o.Proto.SourcePort),
		Dst:    netip.AddrPortFrom(o.IP.DestinationAddress.Unmap(), o.Proto.DestinationPort),
		NATSrc: netip.AddrPortFrom(r.IP.DestinationAddress.Unmap(), r.Proto.DestinationPort),
	}
	if f.ProtoInfo.TCP != nil && int(f.ProtoInfo.TCP.State) < len(nat.TCPStates) {
		e.State = nat.TCPStates[f.ProtoInfo.TCP.State]
	}
	return e, true
}

// readAddrs lists the addresses of the namespace's interfaces with their
// prefix lengths.
func readAddrs(path string) ([]netip.Prefix, error) {
	var list []net.Addr
	var err error
	read := func() { list, err = net.InterfaceAddrs() }
	if path == "" {
		read()
	} else if e := netns.Within(path, read); e != nil {
		return nil, e
	}
	var out []netip.Prefix
	for _, a := range list {
		if n, ok := a.(*net.IPNet); ok {
			ip, ok := netip.AddrFromSlice(n.IP)
			ones, bits := n.Mask.Size()
			if ok {
				if ip.Is4In6() {
					ip = ip.Unmap()
					if bits == 128 {
						ones -= 96
					}
				}
				out = append(out, netip.PrefixFrom(ip, ones))
			}
		}
	}
	return out, err
}

// takesOverClosing says whether this kernel's nf_nat evicts a closing TCP
// entry whose port a new flow needs: Linux 6.5 on (nat.Table's
// TakesOverClosing). A kernel whose release cannot be parsed is taken to
// be recent.
var takesOverClosing = func() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return true
	}
	return KernelAtLeast(unix.ByteSliceToString(u.Release[:]), 6, 5)
}()

// noNetfilter names the usual reason a netfilter netlink socket cannot be
// made: a kernel without nfnetlink (module not loaded, or not built),
// which has no conntrack and no nftables, hence no source NAT to read.
func noNetfilter(err error) error {
	if errors.Is(err, unix.EPROTONOSUPPORT) {
		return fmt.Errorf("nfnetlink is not loaded: this kernel has no conntrack or nftables to read (%w)", err)
	}
	return err
}

package sockdiag

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/porttrace/porttrace/internal/event"
	pnetns "github.com/porttrace/porttrace/internal/netns"
)

const timerTW = 3 // idiag_timer of a time-wait socket

// Dump lists the TCP sockets, IPv4 and IPv6, of the network namespace
// at path ("" for porttrace's own), listeners included. A dump the kernel
// interrupted (the table changed under it) is retried, then reported.
func Dump(path string) ([]event.Socket, error) {
	h, err := handle(path)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var out []event.Socket
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		var socks []*netlink.Socket
		for try := 0; try < 3; try++ {
			socks, err = h.SocketDiagTCP(family)
			if !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		if errors.Is(err, unix.ENOENT) {
			// inet_diag answers ENOENT when tcp_diag is not loaded.
			return nil, fmt.Errorf("sock_diag dump of %s: %w (is the tcp_diag module loaded?)", describe(path), err)
		}
		if err != nil {
			return nil, fmt.Errorf("sock_diag dump of %s: %w", describe(path), err)
		}
		for _, s := range socks {
			out = append(out, convert(s))
		}
	}
	return out, nil
}

func handle(path string) (*netlink.Handle, error) {
	if path == "" {
		return netlink.NewHandle(unix.NETLINK_INET_DIAG)
	}
	ns, err := vnetns.GetFromPath(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrGone, path)
	}
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_INET_DIAG)
	if err != nil && !pnetns.IsNamespace(path) {
		return nil, fmt.Errorf("%w: %s", ErrGone, path)
	}
	if err != nil {
		return nil, fmt.Errorf("netlink socket in %s: %w", path, err)
	}
	return h, nil
}

func describe(path string) string {
	if path == "" {
		return "this network namespace"
	}
	return path
}

func convert(s *netlink.Socket) event.Socket {
	out := event.Socket{
		Src:      netip.AddrPortFrom(addr(s.ID.Source), s.ID.SourcePort),
		Dst:      netip.AddrPortFrom(addr(s.ID.Destination), s.ID.DestinationPort),
		State:    s.State,
		TimeWait: s.Timer == timerTW,
		Cookie:   uint64(s.ID.Cookie[0]) | uint64(s.ID.Cookie[1])<<32,
		Inode:    s.INode,
	}
	if out.TimeWait {
		out.Expires = time.Duration(s.Expires) * time.Millisecond
	}
	return out
}

// addr unmaps v4-mapped IPv6 addresses: such sockets draw on the IPv4 port
// space, and porttrace's events name them the same way.
func addr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

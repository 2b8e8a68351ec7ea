package cluster

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/testkit/otlptest"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
	"golang.org/x/sys/unix"
)

// The upstream outside the pod network: a namespace of the test's own,
// joined to the node by the veth pair upLink (node side) on a private
// /24. Nothing routes the pod network back from it, so a pod reaches it
// only through the CNI bridge plugin's masquerade, as a pod reaches
// anything off the node.
const (
	upLink     = "ptup0"
	upNodeAddr = "10.250.77.1"
	upAddr     = "10.250.77.2"
	upPort     = 8080
	// upConns is how many connections the client pod holds to the
	// upstream, within its 10 ports.
	upConns = 6
)

type upstream struct {
	ns   *testnet.Netns
	dst  netip.AddrPort
	mu   sync.Mutex
	from []netip.Addr // each accepted connection's peer address
}

// startUpstream makes the upstream namespace, its link and a server on
// upAddr:upPort that records who connected; all removed with the test.
func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{ns: testnet.New(t, 32768, 60999)}
	t.Cleanup(func() { exec.Command("ip", "link", "delete", upLink).Run() })
	sh(t, "ip", "link", "add", upLink, "type", "veth", "peer", "name", upLink+"b")
	sh(t, "ip", "link", "set", upLink+"b", "netns", u.ns.Name, "name", "eth0")
	sh(t, "ip", "addr", "add", upNodeAddr+"/24", "dev", upLink)
	sh(t, "ip", "link", "set", upLink, "up")
	u.ns.Exec(t, "ip", "addr", "add", upAddr+"/24", "dev", "eth0")
	u.ns.Exec(t, "ip", "link", "set", "eth0", "up")
	u.dst = u.ns.Serve(t, fmt.Sprintf("%s:%d", upAddr, upPort), func(c net.Conn) {
		u.mu.Lock()
		u.from = append(u.from, netip.MustParseAddrPort(c.RemoteAddr().String()).Addr())
		u.mu.Unlock()
		io.Copy(io.Discard, c)
	})
	return u
}

func (u *upstream) peers() []netip.Addr {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]netip.Addr(nil), u.from...)
}

// hostNetns names the node's own network namespace (the test's: pid 1's
// may not be readable in a sandbox) for ip netns exec, so that testnet's
// conntrack readers read the node's table.
func hostNetns(t *testing.T) *testnet.Netns {
	t.Helper()
	name := fmt.Sprintf("porttrace-node-%d", os.Getpid())
	sh(t, "ip", "netns", "attach", name, fmt.Sprint(os.Getpid()))
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return &testnet.Netns{Name: name, Inode: uint32(st.Ino)}
}

// checkNAT waits until the client pod (clientIP) holds upConns
// connections to the upstream, then compares the node's NAT space in
// Prometheus with conntrack -L (held entries from the pod, translated to
// the node's address on upLink) and -S (insert_failed, drop), and with
// what the upstream saw (every connection from that address).
func checkNAT(t *testing.T, prom *prometheus, u *upstream, host *testnet.Netns, clientIP string) {
	t.Helper()
	pod := netip.MustParseAddr(clientIP)
	var held, fromPod int
	err := otlptest.Eventually(60*time.Second, func() bool {
		held, fromPod = 0, 0
		for _, e := range host.ConntrackL(t) {
			if e.Dst != u.dst || e.Src.Addr() != pod {
				continue
			}
			fromPod++
			if e.ReplyDst.Addr() == netip.MustParseAddr(upNodeAddr) && e.State == "ESTABLISHED" {
				held++
			}
		}
		return held == upConns
	})
	if err != nil {
		t.Fatalf("conntrack -L on the node: %d of the client's %d entries toward %s ESTABLISHED and masqueraded to %s, want %d",
			held, fromPod, u.dst, upNodeAddr, upConns)
	}
	peers := u.peers()
	for _, p := range peers {
		if p.String() != upNodeAddr {
			t.Errorf("the upstream saw a connection from %s: want only the node's masquerade address %s", p, upNodeAddr)
		}
	}
	if len(peers) != upConns {
		t.Errorf("the upstream accepted %d connections, want %d", len(peers), upConns)
	}
	s := host.ConntrackS(t)
	space := fmt.Sprintf(`porttrace_netns="%d",network_local_address=%q,server_address=%q,server_port="%d"`, host.Inode, upNodeAddr, upAddr, upPort)
	prom.waitValue(t, `sum(porttrace_nat_ports_used{`+space+`})`, held)
	// The bridge plugin's MASQUERADE names no port range: nf_nat's
	// default for client ports >= 1024, 1024-65535.
	prom.waitValue(t, `sum(porttrace_nat_ports_usable{`+space+`})`, 65535-1024+1)
	ns := fmt.Sprintf(`porttrace_netns="%d"`, host.Inode)
	prom.waitValue(t, `sum(porttrace_conntrack_insert_failed_total{`+ns+`})`, int(s["insert_failed"]))
	prom.waitValue(t, `sum(porttrace_conntrack_drop_total{`+ns+`})`, int(s["drop"]))
	t.Logf("the node's NAT space %s:%d via %s: %d held, as conntrack -L and the upstream count; insert_failed %d, drop %d as conntrack -S",
		upAddr, upPort, upNodeAddr, held, s["insert_failed"], s["drop"])
}

package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// NATNet is a node that routes pods to an upstream: every one a network
// namespace of its own, joined by veth pairs. Pod i is 10.P.i.2 behind
// the node's 10.P.i.1, P drawn at random so that the pods of tests that
// run at once have addresses of their own (PodNet is 10.P.0.0/16); the node is 10.78.0.1 toward the upstream at
// 10.78.0.2 (and 10.78.0.3, a second upstream address), on the node's
// interface UpLink. No route leads back to the pods from the upstream:
// only translated traffic gets answers, as on a node whose pod network
// the outside does not know. The node translates nothing until the test
// adds its rule (Node.Exec with iptables or nft).
type NATNet struct {
	Pods     []*Netns
	PodAddrs []netip.Addr
	PodNet   netip.Prefix
	Node     *Netns
	Upstream *Netns
	NodeAddr netip.Addr
	UpAddrs  []netip.Addr
}

// UpLink is the node's interface toward the upstream.
const UpLink = "up0"

// NewNAT builds the namespaces and links for n pods.
func NewNAT(t testing.TB, pods int) *NATNet {
	t.Helper()
	RequireTool(t, "iptables")
	RequireTool(t, "nft")
	RequireTool(t, "conntrack")
	nn := &NATNet{Node: New(t, 32768, 60999), Upstream: New(t, 32768, 60999), NodeAddr: netip.MustParseAddr("10.78.0.1")}
	nn.UpAddrs = []netip.Addr{netip.MustParseAddr("10.78.0.2"), netip.MustParseAddr("10.78.0.3")}
	tag := fmt.Sprint(nn.Node.Inode % 100000)
	p := 16 + rand.IntN(200) // 10.16-215: clear of 10.78.0.0/24
	nn.PodNet = netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", p))
	link(t, nn.Node, UpLink, nn.Upstream, "eth0", "up"+tag)
	nn.Node.Exec(t, "ip", "addr", "add", "10.78.0.1/24", "dev", UpLink)
	nn.Upstream.Exec(t, "ip", "addr", "add", "10.78.0.2/24", "dev", "eth0")
	nn.Upstream.Exec(t, "ip", "addr", "add", "10.78.0.3/24", "dev", "eth0")
	nn.Node.Sysctl(t, "net/ipv4/ip_forward", "1")
	for i := 1; i <= pods; i++ {
		pod := New(t, 32768, 60999)
		dev := fmt.Sprintf("pod%d", i)
		link(t, nn.Node, dev, pod, "eth0", fmt.Sprintf("p%d-%s", i, tag))
		nn.Node.Exec(t, "ip", "addr", "add", fmt.Sprintf("10.%d.%d.1/24", p, i), "dev", dev)
		pod.Exec(t, "ip", "addr", "add", fmt.Sprintf("10.%d.%d.2/24", p, i), "dev", "eth0")
		pod.Exec(t, "ip", "route", "add", "default", "via", fmt.Sprintf("10.%d.%d.1", p, i))
		nn.Pods = append(nn.Pods, pod)
		nn.PodAddrs = append(nn.PodAddrs, netip.MustParseAddr(fmt.Sprintf("10.%d.%d.2", p, i)))
	}
	return nn
}

// link joins a's interface an to b's interface bn by a veth pair, both up.
// tmp is the pair's name while it is made in the root namespace (at most
// 15 bytes, unique to the test).
func link(t testing.TB, a *Netns, an string, b *Netns, bn string, tmp string) {
	t.Helper()
	run(t, "ip", "link", "add", tmp+"a", "type", "veth", "peer", "name", tmp+"b")
	run(t, "ip", "link", "set", tmp+"a", "netns", a.Name, "name", an)
	run(t, "ip", "link", "set", tmp+"b", "netns", b.Name, "name", bn)
	a.Exec(t, "ip", "link", "set", an, "up")
	b.Exec(t, "ip", "link", "set", bn, "up")
}

// Exec runs a program inside the namespace and returns its output; a
// failure fails the test.
func (n *Netns) Exec(t testing.TB, name string, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Outcome is what one client saw of its connect().
type Outcome struct {
	Pod  int
	Src  netip.AddrPort // the client's own address and port, when it connected
	Err  error
	Conn net.Conn
}

// Connect opens count connections from each pod to dst at once, each
// given timeout to connect, and returns every outcome. Connections that
// succeeded stay open until the test ends.
func (nn *NATNet) Connect(t testing.TB, dst netip.AddrPort, count int, timeout time.Duration) []Outcome {
	t.Helper()
	var mu sync.Mutex
	var out []Outcome
	var wg sync.WaitGroup
	for i, p := range nn.Pods {
		for range count {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := Outcome{Pod: i}
				d := net.Dialer{Timeout: timeout}
				p.Do(t, func() { o.Conn, o.Err = d.Dial("tcp", dst.String()) })
				if o.Err == nil {
					o.Src = netip.MustParseAddrPort(o.Conn.LocalAddr().String())
					t.Cleanup(func() { o.Conn.Close() })
				}
				mu.Lock()
				out = append(out, o)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return out
}

// CTEntry is one line of conntrack -L: the original and reply tuples.
type CTEntry struct {
	Proto, State       string
	Src, Dst           netip.AddrPort
	ReplySrc, ReplyDst netip.AddrPort
}

// ConntrackL lists the namespace's conntrack table with conntrack -L.
func (n *Netns) ConntrackL(t testing.TB) []CTEntry {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", n.Name, "conntrack", "-L").Output()
	if err != nil {
		t.Fatalf("conntrack -L: %v", err)
	}
	var list []CTEntry
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		e := CTEntry{Proto: f[0]}
		if e.Proto == "tcp" {
			e.State = f[3]
		}
		var kv [][2]string
		for _, w := range f {
			if k, v, ok := strings.Cut(w, "="); ok {
				kv = append(kv, [2]string{k, v})
			}
		}
		var vals []string
		for _, key := range []string{"src", "dst", "sport", "dport"} {
			for _, p := range kv {
				if p[0] == key {
					vals = append(vals, p[1])
				}
			}
		}
		if len(vals) != 8 {
			continue
		}
		ap := func(a, p string) netip.AddrPort {
			port, _ := strconv.Atoi(p)
			return netip.AddrPortFrom(netip.MustParseAddr(a), uint16(port))
		}
		// vals: src src dst dst sport sport dport dport (original, reply)
		e.Src, e.ReplySrc = ap(vals[0], vals[4]), ap(vals[1], vals[5])
		e.Dst, e.ReplyDst = ap(vals[2], vals[6]), ap(vals[3], vals[7])
		list = append(list, e)
	}
	return list
}

// ConntrackS sums conntrack -S's per-CPU counters by name, and adds
// conntrack -C's count as "count".
func (n *Netns) ConntrackS(t testing.TB) map[string]uint64 {
	t.Helper()
	sum := map[string]uint64{}
	for _, w := range strings.Fields(n.Exec(t, "conntrack", "-S")) {
		if k, v, ok := strings.Cut(w, "="); ok && k != "cpu" {
			x, _ := strconv.ParseUint(v, 10, 64)
			sum[k] += x
		}
	}
	c, _ := strconv.ParseUint(strings.TrimSpace(n.Exec(t, "conntrack", "-C")), 10, 64)
	sum["count"] = c
	return sum
}

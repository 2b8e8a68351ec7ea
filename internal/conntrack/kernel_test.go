package conntrack

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// read reads every namespace of the NAT network as one round.
func read(t *testing.T, nn *testnet.NATNet) []nat.Table {
	t.Helper()
	var round []nat.Table
	for _, n := range append([]*testnet.Netns{nn.Node, nn.Upstream}, nn.Pods...) {
		tb, err := Read("/run/netns/"+n.Name, n.Inode)
		if err != nil {
			t.Fatal(err)
		}
		round = append(round, tb)
	}
	return round
}

// held is ground truth: conntrack -L's translated entries toward dst that
// hold a NAT port (any state but TIME_WAIT and CLOSE), by client address.
func held(list []testnet.CTEntry, natAddr netip.Addr, dst netip.AddrPort) (map[netip.Addr]int, int) {
	by, n := map[netip.Addr]int{}, 0
	for _, e := range list {
		if e.Dst == dst && e.ReplyDst.Addr() == natAddr && e.State != "TIME_WAIT" && e.State != "CLOSE" {
			by[e.Src.Addr()]++
			n++
		}
	}
	return by, n
}

// TestNATExhaustion is the situation: three pods behind a node
// that masquerades toward one upstream with 20 ports keep 30 connections
// open. 20 connect, 10 time out; porttrace names the node's NAT space,
// 20 of 20 ports, insert_failed rising as conntrack -S counts it, and the
// pods with the shares conntrack -L and the clients saw.
func TestNATExhaustion(t *testing.T) {
	testnet.RequireRoot(t)
	nn := testnet.NewNAT(t, 3)
	nn.Node.Exec(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", testnet.UpLink, "-p", "tcp", "-j", "MASQUERADE", "--to-ports", "41000-41019")
	dst := nn.Upstream.Serve(t, "10.78.0.2:8080", holdOpen)

	tr := nat.NewTracker(time.Minute)
	tr.Add(read(t, nn))
	before := nn.Node.ConntrackS(t)
	outcomes := nn.Connect(t, dst, 10, 2500*time.Millisecond)
	tr.Add(read(t, nn))
	after := nn.Node.ConntrackS(t)
	list := nn.Node.ConntrackL(t)

	ok := map[int]int{}
	failed := 0
	for _, o := range outcomes {
		if o.Err != nil {
			failed++
		} else {
			ok[o.Pod]++
		}
	}
	byClient, used := held(list, nn.NodeAddr, dst)
	t.Logf("clients: %v connected, %d failed; conntrack -L: %d held %v; conntrack -S rise: insert_failed %d drop %d",
		ok, failed, used, byClient, after["insert_failed"]-before["insert_failed"], after["drop"]-before["drop"])
	if failed != 10 || used != 20 {
		t.Fatalf("the situation did not happen: %d failed, %d held (want 10, 20)", failed, used)
	}

	s := tr.Summary(nil)
	if len(s.Spaces) != 1 {
		t.Fatalf("want the node's one NAT space, got %+v", s.Spaces)
	}
	sp := s.Spaces[0]
	t.Logf("porttrace: %+v", sp)
	if sp.Netns != nn.Node.Inode || sp.Addr != nn.NodeAddr || sp.Dst != dst || sp.Proto != "tcp" {
		t.Errorf("space %d %s -> %s, want node %d %s -> %s", sp.Netns, sp.Addr, sp.Dst, nn.Node.Inode, nn.NodeAddr, dst)
	}
	if sp.Ports != 20 || sp.Used != used || !sp.Full() {
		t.Errorf("space holds %d of %d ports, conntrack -L %d of the rule's 20", sp.Used, sp.Ports, used)
	}
	if want := "masquerade to :41000-41019"; !strings.Contains(sp.Rule, want) {
		t.Errorf("rule %q does not name %q", sp.Rule, want)
	}
	if d := after["insert_failed"] - before["insert_failed"]; sp.InsertFailed != d || d == 0 {
		t.Errorf("insert_failed rose by %d, conntrack -S by %d", sp.InsertFailed, d)
	}
	if d := after["drop"] - before["drop"]; sp.Drop != d {
		t.Errorf("drop rose by %d, conntrack -S by %d", sp.Drop, d)
	}
	if len(sp.Clients) != len(byClient) {
		t.Errorf("%d clients, conntrack -L has %d", len(sp.Clients), len(byClient))
	}
	for _, c := range sp.Clients {
		pod := -1
		for i, a := range nn.PodAddrs {
			if a == c.Addr {
				pod = i
			}
		}
		if pod < 0 || c.Used != byClient[c.Addr] || c.Used != ok[pod] || c.Netns != nn.Pods[pod].Inode {
			t.Errorf("client %s (netns %d) holds %d; conntrack -L %d, the pod connected %d times", c.Addr, c.Netns, c.Used, byClient[c.Addr], ok[pod])
		}
	}
	var c nat.Conntrack
	for _, x := range s.Tables {
		if x.Netns == nn.Node.Inode {
			c = x
		}
	}
	if uint64(c.Count) != after["count"] || c.Stats.InsertFailed != after["insert_failed"] {
		t.Errorf("table %d entries, insert_failed %d; conntrack -C %d, -S %d", c.Count, c.Stats.InsertFailed, after["count"], after["insert_failed"])
	}
}

// holdOpen keeps a connection open until the client closes it.
func holdOpen(c net.Conn) { io.Copy(io.Discard, c) }

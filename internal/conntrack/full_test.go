package conntrack

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

const maxPath = "/proc/sys/net/netfilter/nf_conntrack_max"

// TestConntrackTableFull fills a node's conntrack table for real.
// nf_conntrack_max is read-only in a child namespace, but it is one limit
// for the whole kernel while each namespace counts its own entries
// (nf_conntrack_core.c, __nf_conntrack_alloc): the test lowers the
// host's nf_conntrack_max to twice the fullest namespace's count (so no
// other namespace reaches it), fills the node's table past it with
// unanswered UDP flows, and restores the limit within seconds, also if
// the test dies. porttrace's table (count at max, early_drop and drop's
// rise) is compared with conntrack -C/-S and the sysctl in the node, and
// the conntrack-table-full finding fires, with no NAT finding.
func TestConntrackTableFull(t *testing.T) {
	testnet.RequireRoot(t)
	nn := testnet.NewNAT(t, 0)
	// A NAT rule makes the namespace track connections at all.
	nn.Node.Exec(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", testnet.UpLink, "-j", "MASQUERADE")
	all, err := netns.All()
	if err != nil {
		t.Fatal(err)
	}
	round, _ := NewReader().Read(all)
	fullest := 0
	for _, tb := range round {
		fullest = max(fullest, tb.Count)
	}
	limit := max(2*fullest, 512)
	if limit > 16384 {
		t.Skipf("a namespace of this machine holds %d conntrack entries: lowering the kernel's limit to %d would need as many flows; not done", fullest, limit)
	}
	old := setMax(t, strconv.Itoa(limit))
	var once sync.Once
	restore := func() { once.Do(func() { os.WriteFile(maxPath, []byte(old), 0o644) }) }
	timer := time.AfterFunc(20*time.Second, restore) // bounded even if the test hangs
	t.Cleanup(func() { timer.Stop(); restore() })

	tr := nat.NewTracker(time.Minute)
	node := func() nat.Table {
		tb, err := Read("/run/netns/"+nn.Node.Name, nn.Node.Inode)
		if err != nil {
			t.Fatal(err)
		}
		return tb
	}
	tr.Add([]nat.Table{node()})
	before := nn.Node.ConntrackS(t)
	sent := 0
	nn.Node.Do(t, func() {
		for port := 1; port <= limit+200; port++ {
			c, err := net.Dial("udp", fmt.Sprintf("10.78.0.2:%d", port))
			if err != nil {
				continue
			}
			if _, err := c.Write([]byte("x")); err == nil {
				sent++
			}
			c.Close()
		}
	})
	tr.Add([]nat.Table{node()})
	after := nn.Node.ConntrackS(t)
	nodeMax := strings.TrimSpace(nn.Node.Exec(t, "cat", maxPath))
	restore()
	s := tr.Summary(nil)
	t.Logf("fullest namespace %d entries: nf_conntrack_max %s -> %d; %d datagrams sent (a dropped one fails with EPERM); conntrack -C %d, -S early_drop +%d drop +%d insert_failed +%d; node's nf_conntrack_max %s",
		fullest, strings.TrimSpace(old), limit, sent, after["count"], after["early_drop"]-before["early_drop"], after["drop"]-before["drop"], after["insert_failed"]-before["insert_failed"], nodeMax)
	if len(s.Tables) != 1 {
		t.Fatalf("tables %+v", s.Tables)
	}
	c := s.Tables[0]
	t.Logf("porttrace: %d of %d entries, rise %+v, table full %v", c.Count, c.Max, c.Rise, c.TableFull())
	if after["count"] != uint64(limit) || after["early_drop"]+after["drop"] == before["early_drop"]+before["drop"] {
		t.Fatalf("the table did not fill: conntrack -C %d of %d", after["count"], limit)
	}
	if uint64(c.Count) != after["count"] || strconv.Itoa(c.Max) != nodeMax || c.Rise.EarlyDrop != after["early_drop"]-before["early_drop"] ||
		c.Rise.Drop != after["drop"]-before["drop"] || !c.TableFull() {
		t.Errorf("porttrace %d of %d, early_drop +%d, drop +%d; conntrack -C %d, max %s, -S early_drop +%d drop +%d",
			c.Count, c.Max, c.Rise.EarlyDrop, c.Rise.Drop, after["count"], nodeMax, after["early_drop"]-before["early_drop"], after["drop"]-before["drop"])
	}
	var rules []string
	for _, f := range diagnose.NAT(s, nil) {
		rules = append(rules, f.Rule)
	}
	if strings.Join(rules, " ") != "conntrack-table-full" {
		t.Errorf("findings %v, want conntrack-table-full alone", rules)
	}
}

// setMax writes the host's nf_conntrack_max and returns what it was.
func setMax(t *testing.T, v string) string {
	t.Helper()
	old, err := os.ReadFile(maxPath)
	if err != nil {
		t.Fatalf("nf_conntrack_max: %v", err)
	}
	if err := os.WriteFile(maxPath, []byte(v), 0o644); err != nil {
		t.Fatalf("nf_conntrack_max: %v", err)
	}
	return string(old)
}

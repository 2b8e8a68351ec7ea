package e2e

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porttrace/porttrace/internal/frame"
	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
	"github.com/porttrace/porttrace/tracer"
)

// TestTopNAT is the situation seen through `porttrace top --json`
// as a user runs it: three pods behind a node that masquerades to one
// upstream with 20 ports keep 30 connections open. top names the node's
// NAT space toward the upstream, 20 of 20 ports, insert_failed's rise as
// conntrack -S counts it, the three pods with the shares conntrack -L and
// the clients saw (and, once a resync has read the socket tables, the
// process that owns their sockets), the fixes, and ties the pods' failed connects to the
// NAT space.
func TestTopNAT(t *testing.T) {
	testnet.RequireRoot(t)
	nn := testnet.NewNAT(t, 3)
	nn.Node.Exec(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", testnet.UpLink, "-p", "tcp", "-j", "MASQUERADE", "--to-ports", "41000-41019")
	r := topNAT(t, nn, "10.78.0.2:8080", "12s", 10, 10)
	f, top, dst, outcomes, ok, failed, held, insertFailed, after := r.f, r.top, r.dst, r.outcomes, r.ok, r.failed, r.held, r.insertFailed, r.after
	if f.NAT == nil {
		t.Fatalf("top read no NAT spaces:\n%s", strings.Join(top.log, "\n"))
	}
	// top sees every namespace on the machine: other tests' too.
	var mine []nat.Space
	for _, sp := range f.NAT.Spaces {
		if sp.Netns == nn.Node.Inode {
			mine = append(mine, sp)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("top shows %d NAT spaces of the node: %+v\n%s", len(mine), f.NAT, strings.Join(top.log, "\n"))
	}
	sp := mine[0]
	if sp.Netns != nn.Node.Inode || sp.Addr != nn.NodeAddr || sp.Dst != dst || sp.Ports != 20 || sp.Used != 20 {
		t.Errorf("NAT space netns %d %s->%s %d/%d, want node %d %s->%s 20/20", sp.Netns, sp.Addr, sp.Dst, sp.Used, sp.Ports, nn.Node.Inode, nn.NodeAddr, dst)
	}
	// The node is new: conntrack -S's counters are this test's. top's rise
	// counts from its first reading, which a loaded machine may make after
	// the failures: it is at most the total (internal/conntrack's tests
	// compare it exactly, reading before and after).
	var node nat.Conntrack
	for _, c := range f.NAT.Tables {
		if c.Netns == nn.Node.Inode {
			node = c
		}
	}
	if node.Stats.InsertFailed != after["insert_failed"] || node.Stats.Drop != after["drop"] || uint64(node.Count) != after["count"] {
		t.Errorf("conntrack table: insert_failed %d drop %d entries %d; conntrack -S %d %d, -C %d", node.Stats.InsertFailed, node.Stats.Drop, node.Count, after["insert_failed"], after["drop"], after["count"])
	}
	if sp.InsertFailed > insertFailed || sp.InsertFailed != node.Rise.InsertFailed || sp.Drop != node.Rise.Drop {
		t.Errorf("insert_failed +%d drop +%d (table +%d +%d); conntrack -S +%d +%d", sp.InsertFailed, sp.Drop, node.Rise.InsertFailed, node.Rise.Drop, insertFailed, r.drop)
	}
	for _, c := range sp.Clients {
		pod := slices.Index(nn.PodAddrs, c.Addr)
		if c.Used == 0 {
			continue // held none: checkNATFlows checks its refusals
		}
		if pod < 0 || c.Used != held[c.Addr] || c.Used != ok[pod] || c.Netns != nn.Pods[pod].Inode || len(c.Names) == 0 || c.PID != 0 && c.PID != uint32(os.Getpid()) {
			t.Errorf("client %+v; conntrack -L %d, the pod connected %d", c, held[c.Addr], ok[pod])
		}
	}
	checkNATFlows(t, sp, nn, held, insertFailed, failed, outcomes)
	// The pods' failed connects toward the upstream, as their own spaces
	// count them, are the NAT space's refusals.
	var podFailures uint64
	for _, s := range f.Spaces {
		if s.Dst == dst.String() && slices.ContainsFunc(nn.Pods, func(p *testnet.Netns) bool { return p.Inode == s.Netns }) {
			for _, x := range s.Failures {
				podFailures += x.Last
			}
		}
	}
	var rules []string
	situation := ""
	for _, x := range f.Findings {
		if x.Netns == nn.Node.Inode && strings.HasPrefix(x.Space, "NAT ") {
			rules, situation = append(rules, x.Rule), x.Situation
		}
	}
	t.Logf("pods' failures toward %s: %d; findings %v: %s", dst, podFailures, rules, situation)
	if strings.Join(rules, " ") != "nat-reuse-connections nat-more-addresses nat-exempt-destination nat-wider-range" {
		t.Errorf("findings %v", rules)
	}
	if podFailures != uint64(failed) || !strings.Contains(situation, fmt.Sprintf("clients' failed connects in the last minute (%d ", failed)) {
		t.Errorf("the pods' own spaces count %d failures toward %s (the clients saw %d); the NAT finding says %q", podFailures, dst, failed, situation)
	}
}

// TestAgentNATMetrics: the agent's /metrics carries the node's NAT space
// (ports held and usable) and its conntrack counters as conntrack -L and
// -S count them.
func TestAgentNATMetrics(t *testing.T) {
	testnet.RequireRoot(t)
	nn := testnet.NewNAT(t, 2)
	nn.Node.Exec(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", testnet.UpLink, "-p", "tcp", "-j", "MASQUERADE", "--to-ports", "41000-41009")
	dst := nn.Upstream.Serve(t, "10.78.0.2:8080", func(c net.Conn) { io.Copy(io.Discard, c) })
	agent := startAgent(t, nil, "--metrics-addr", "127.0.0.1:0")
	addr := agent.metricsAddr(t)
	outcomes := nn.Connect(t, dst, 8, 2500*time.Millisecond)
	ok, failed := 0, 0
	for _, o := range outcomes {
		if o.Err != nil {
			failed++
		} else {
			ok++
		}
	}
	s := nn.Node.ConntrackS(t)
	held := 0
	for _, e := range nn.Node.ConntrackL(t) {
		if e.Dst == dst && e.ReplyDst.Addr() == nn.NodeAddr && e.State != "TIME_WAIT" && e.State != "CLOSE" {
			held++
		}
	}
	t.Logf("%d connected, %d failed; conntrack -L %d held; conntrack -S insert_failed %d drop %d", ok, failed, held, s["insert_failed"], s["drop"])
	if ok != 10 || held != 10 {
		t.Fatalf("the situation did not happen")
	}
	ns := fmt.Sprintf(`porttrace_netns="%d"`, nn.Node.Inode)
	want := map[string]float64{
		"porttrace_nat_ports_used":                float64(held),
		"porttrace_nat_ports_usable":              10,
		"porttrace_conntrack_insert_failed_total": float64(s["insert_failed"]),
		"porttrace_conntrack_drop_total":          float64(s["drop"]),
		"porttrace_conntrack_entries":             float64(s["count"]),
	}
	// With the NAT probe, the space's refusals of the last minute: the
	// node is new, so all of insert_failed's.
	if b := os.Getenv("PORTTRACE_BACKEND"); b == "fentry" || b == "kprobe" {
		want["porttrace_nat_failures"] = float64(s["insert_failed"])
	}
	var got map[string]float64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		got = map[string]float64{}
		for _, line := range strings.Split(get(t, "http://"+addr+"/metrics", 200), "\n") {
			name, rest, _ := strings.Cut(line, "{")
			if _, ok := want[name]; ok && strings.Contains(rest, ns) {
				var v float64
				fmt.Sscan(rest[strings.LastIndexByte(rest, ' ')+1:], &v)
				got[name] = v
			}
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
	}
	t.Logf("/metrics: %v", got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("/metrics %v, conntrack says %v", got, want)
	}
	agent.stop(t)
}

// TestRecordNAT records the issue's situation and reads it back: `report
// --json` names the node's NAT space toward the upstream, 20 of 20 ports,
// insert_failed's rise and the table's counters as conntrack -S counted
// them in the same run, the pods' shares as conntrack -L and the pods'
// own successes, their process, and the NAT findings with the pods'
// failed connects tied to the space.
func TestRecordNAT(t *testing.T) {
	testnet.RequireRoot(t)
	nn := testnet.NewNAT(t, 3)
	nn.Node.Exec(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", testnet.UpLink, "-p", "tcp", "-j", "MASQUERADE", "--to-ports", "41000-41019")
	dst := nn.Upstream.Serve(t, "10.78.0.2:8080", func(c net.Conn) { io.Copy(io.Discard, c) })
	before := nn.Node.ConntrackS(t)
	file := filepath.Join(t.TempDir(), "nat.ptcap")
	rec, log := startRecord(t, "-o", file, "--duration", "9s")
	// The capture exists once its first round (conntrack included) is read.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, err := os.Stat(file); err == nil && st.Size() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no capture:\n%s", log)
		}
	}
	outcomes := nn.Connect(t, dst, 10, 2500*time.Millisecond)
	after := nn.Node.ConntrackS(t)
	list := nn.Node.ConntrackL(t)
	if err := rec.Wait(); err != nil {
		t.Fatalf("record: %v\n%s", err, log)
	}
	ok, failed, held := natOutcomes(nn, dst, outcomes, list)
	insertFailed, drop := after["insert_failed"]-before["insert_failed"], after["drop"]-before["drop"]
	t.Logf("clients %v connected, %d failed; conntrack -L held %v; conntrack -S insert_failed +%d drop +%d, -C %d", ok, failed, held, insertFailed, drop, after["count"])
	if failed != 10 {
		t.Fatalf("%d connects failed, want 10: the situation did not happen", failed)
	}
	r := runReport(t, file)
	if r.NAT == nil {
		t.Fatalf("report has no NAT section:\n%s", log)
	}
	var sp *nat.Space
	for i := range r.NAT.Spaces {
		if r.NAT.Spaces[i].Netns == nn.Node.Inode {
			if sp != nil {
				t.Fatalf("two NAT spaces of the node: %+v", r.NAT.Spaces)
			}
			sp = &r.NAT.Spaces[i]
		}
	}
	if sp == nil {
		t.Fatalf("no NAT space of the node: %+v", r.NAT)
	}
	t.Logf("report: NAT %s %s->%s %d/%d, insert_failed +%d drop +%d, clients %+v", sp.Proto, sp.Addr, sp.Dst, sp.Used, sp.Ports, sp.InsertFailed, sp.Drop, sp.Clients)
	if sp.Addr != nn.NodeAddr || sp.Dst != dst || sp.Ports != 20 || sp.Used != 20 || len(list) == 0 {
		t.Errorf("NAT space %s->%s %d/%d, want %s->%s 20/20", sp.Addr, sp.Dst, sp.Used, sp.Ports, nn.NodeAddr, dst)
	}
	if sp.InsertFailed != insertFailed || sp.Drop != drop || insertFailed == 0 {
		t.Errorf("insert_failed +%d drop +%d; conntrack -S +%d +%d", sp.InsertFailed, sp.Drop, insertFailed, drop)
	}
	for _, c := range r.NAT.Tables {
		if c.Netns == nn.Node.Inode && (c.Stats.InsertFailed != after["insert_failed"] || c.Stats.Drop != after["drop"] || uint64(c.Count) != after["count"]) {
			t.Errorf("conntrack table: insert_failed %d drop %d entries %d; conntrack -S %d %d, -C %d", c.Stats.InsertFailed, c.Stats.Drop, c.Count, after["insert_failed"], after["drop"], after["count"])
		}
	}
	checkNATFlows(t, *sp, nn, held, insertFailed, failed, outcomes)
	for _, c := range sp.Clients {
		pod := slices.Index(nn.PodAddrs, c.Addr)
		if c.Used == 0 {
			continue // held none: checkNATFlows checks its refusals
		}
		if pod < 0 || c.Used != held[c.Addr] || c.Used != ok[pod] || c.Netns != nn.Pods[pod].Inode || c.PID != uint32(os.Getpid()) {
			t.Errorf("client %+v; conntrack -L %d, the pod connected %d, pid %d", c, held[c.Addr], ok[pod], os.Getpid())
		}
	}
	var rules []string
	situation := ""
	for _, x := range r.Findings {
		if x.Netns == nn.Node.Inode && strings.HasPrefix(x.Space, "NAT ") {
			rules, situation = append(rules, x.Rule), x.Situation
		}
	}
	t.Logf("findings %v: %s", rules, situation)
	if strings.Join(rules, " ") != "nat-reuse-connections nat-more-addresses nat-exempt-destination nat-wider-range" {
		t.Errorf("findings %v", rules)
	}
	if !strings.Contains(situation, fmt.Sprintf("clients' failed connects in the last minute (%d ", failed)) {
		t.Errorf("the NAT finding does not tie the pods' %d failures to the space: %q", failed, situation)
	}
}

// TestNATIPv6: two pods behind a node that masquerades IPv6 (nft's ip6
// family, and ip6tables-nft, whose range the nftables library leaves
// undecoded) to one upstream with 10 ports open 15 connections each: 10
// connect, 20 time out. top names the node's IPv6 NAT space, 10 of 10
// ports held as conntrack -L shows, the rule it comes from, and (fentry,
// kprobe) its refusals as conntrack -S's insert_failed rise and the
// clients' failed connects.
func TestNATIPv6(t *testing.T) {
	testnet.RequireRoot(t)
	for _, c := range []struct {
		name, rule string
		add        []string
	}{
		{"nft", "masquerade to :41000-41009", []string{"nft", "add table ip6 nat; add chain ip6 nat post { type nat hook postrouting priority 100; }; add rule ip6 nat post oifname " + testnet.UpLink + " meta l4proto tcp masquerade to :41000-41009"}},
		{"ip6tables", "masquerade to :41000-41009 (iptables-nft)", []string{"ip6tables", "-t", "nat", "-A", "POSTROUTING", "-o", testnet.UpLink, "-p", "tcp", "-j", "MASQUERADE", "--to-ports", "41000-41009"}},
	} {
		t.Run(c.name, func(t *testing.T) { natIPv6(t, c.add, c.rule) })
	}
}

func natIPv6(t *testing.T, add []string, rule string) {
	nn := testnet.NewNAT(t, 2)
	node := netip.MustParseAddr("fd78::1")
	nn.Node.Sysctl(t, "net/ipv6/conf/all/forwarding", "1")
	nn.Node.Exec(t, "ip", "-6", "addr", "add", "fd78::1/64", "dev", testnet.UpLink, "nodad")
	nn.Upstream.Exec(t, "ip", "-6", "addr", "add", "fd78::2/64", "dev", "eth0", "nodad")
	for i, pod := range nn.Pods {
		nn.Node.Exec(t, "ip", "-6", "addr", "add", fmt.Sprintf("fd77:%d::1/64", i+1), "dev", fmt.Sprintf("pod%d", i+1), "nodad")
		pod.Exec(t, "ip", "-6", "addr", "add", fmt.Sprintf("fd77:%d::2/64", i+1), "dev", "eth0", "nodad")
		pod.Exec(t, "ip", "-6", "route", "add", "default", "via", fmt.Sprintf("fd77:%d::1", i+1))
		nn.PodAddrs[i] = netip.MustParseAddr(fmt.Sprintf("fd77:%d::2", i+1))
	}
	nn.NodeAddr = node
	nn.Node.Exec(t, add[0], add[1:]...)
	r := topNAT(t, nn, "[fd78::2]:8080", "10s", 15, 20)
	f, top, dst := r.f, r.top, r.dst
	var sp *nat.Space
	if f.NAT != nil {
		for i := range f.NAT.Spaces {
			if f.NAT.Spaces[i].Netns == nn.Node.Inode {
				sp = &f.NAT.Spaces[i]
			}
		}
	}
	if sp == nil {
		t.Fatalf("top shows no NAT space of the node: %+v\n%s", f.NAT, strings.Join(top.log, "\n"))
	}
	t.Logf("top: NAT %s %s->%s %d/%d, rule %q, clients %+v", sp.Proto, sp.Addr, sp.Dst, sp.Used, sp.Ports, sp.Rule, sp.Clients)
	if sp.Addr != node || sp.Dst != dst || sp.Ports != 10 || sp.Used != 10 || !strings.Contains(sp.Rule, rule) {
		t.Errorf("NAT space %s->%s %d/%d, rule %q; want %s->%s 10/10, a rule with %q", sp.Addr, sp.Dst, sp.Used, sp.Ports, sp.Rule, node, dst, rule)
	}
	checkNATFlows(t, *sp, nn, r.held, r.insertFailed, r.failed, r.outcomes)
}

// natRun is one run of the situation under `porttrace top --json`
// and its ground truth.
type natRun struct {
	f            frame.Frame
	top          *topRun
	dst          netip.AddrPort
	outcomes     []testnet.Outcome
	ok           map[int]int
	failed       int
	held         map[netip.Addr]int
	insertFailed uint64 // conntrack -S's rise
	drop         uint64
	after        map[string]uint64
}

// topNAT serves upstream, runs top for interval while each pod opens
// count connections to it (2.5 s each to connect), and reads conntrack
// -S and -L in the node after: the test stops unless want connects failed.
func topNAT(t *testing.T, nn *testnet.NATNet, upstream, interval string, count, want int) natRun {
	t.Helper()
	r := natRun{dst: nn.Upstream.Serve(t, upstream, func(c net.Conn) { io.Copy(io.Discard, c) })}
	before := nn.Node.ConntrackS(t)
	r.top = startTop(t, interval)
	r.outcomes = nn.Connect(t, r.dst, count, 2500*time.Millisecond)
	r.f = r.top.wait(t)
	r.after = nn.Node.ConntrackS(t)
	r.ok, r.failed, r.held = natOutcomes(nn, r.dst, r.outcomes, nn.Node.ConntrackL(t))
	r.insertFailed, r.drop = r.after["insert_failed"]-before["insert_failed"], r.after["drop"]-before["drop"]
	t.Logf("clients %v connected, %d failed; conntrack -L held %v; conntrack -S insert_failed +%d drop +%d", r.ok, r.failed, r.held, r.insertFailed, r.drop)
	if r.failed != want {
		t.Fatalf("%d connects failed, want %d: the situation did not happen", r.failed, want)
	}
	return r
}

// natOutcomes tallies a NAT test's ground truth: each pod's successful
// connects, the failed ones, and the ports conntrack -L shows each client
// holding toward dst through the node.
func natOutcomes(nn *testnet.NATNet, dst netip.AddrPort, outcomes []testnet.Outcome, list []testnet.CTEntry) (ok map[int]int, failed int, held map[netip.Addr]int) {
	ok, held = map[int]int{}, map[netip.Addr]int{}
	for _, o := range outcomes {
		if o.Err != nil {
			failed++
		} else {
			ok[o.Pod]++
		}
	}
	for _, e := range list {
		if e.Dst == dst && e.ReplyDst.Addr() == nn.NodeAddr && e.State != "TIME_WAIT" && e.State != "CLOSE" {
			held[e.Src.Addr()]++
		}
	}
	return ok, failed, held
}

// checkNATFlows checks a NAT space's clients and per-flow figures against
// the same run: as many clients hold ports as conntrack -L shows; with the fentry or kprobe backend, its refused flows are
// insert_failed's rise (conntrack -S: one per SYN that found no port,
// retransmissions included), the distinct tuples among them the clients'
// failed connects, each pod's refusals its own failed connects, and the
// NAT's port search was timed once per flow; with the tracepoint backend
// there are none (no probe).
func checkNATFlows(t *testing.T, sp nat.Space, nn *testnet.NATNet, held map[netip.Addr]int, insertFailed uint64, failed int, outcomes []testnet.Outcome) {
	t.Helper()
	holding := 0
	for _, c := range sp.Clients {
		if c.Used > 0 {
			holding++
		}
	}
	if holding != len(held) {
		t.Errorf("%d clients hold ports, conntrack -L %d", holding, len(held))
	}
	podFailed := map[netip.Addr]uint64{}
	for _, o := range outcomes {
		if o.Err != nil {
			podFailed[nn.PodAddrs[o.Pod]]++
		}
	}
	got := map[netip.Addr]uint64{}
	for _, c := range sp.Clients {
		if c.Failures > 0 {
			got[c.Addr] = c.Failures
		}
		if pod := slices.Index(nn.PodAddrs, c.Addr); c.Failures > 0 && (pod < 0 || c.Netns != nn.Pods[pod].Inode) {
			t.Errorf("refused client %+v is no pod's", c)
		}
	}
	t.Logf("per flow: %d flows, %d refused (%d distinct), search p50 %s p99 %s over %d; clients' refusals %v, failed connects %v",
		sp.Flows, sp.Failures, sp.FailedFlows, sp.AllocLatency.P50, sp.AllocLatency.P99, sp.AllocLatency.Count, got, podFailed)
	if b := os.Getenv("PORTTRACE_BACKEND"); b != "fentry" && b != "kprobe" {
		if sp.Flows+sp.Failures != 0 {
			t.Errorf("backend %q has no NAT probe, yet the space counts %d flows", b, sp.Flows)
		}
		return
	}
	if sp.Failures != insertFailed || sp.FailedFlows != failed || sp.AllocLatency.Count != sp.Flows || sp.Flows < sp.Failures+uint64(sp.Used) {
		t.Errorf("per flow: %d refused, %d distinct, %d flows, %d timed; conntrack -S insert_failed +%d, the clients' failed connects %d, %d ports held", sp.Failures, sp.FailedFlows, sp.Flows, sp.AllocLatency.Count, insertFailed, failed, sp.Used)
	}
	// A pod's refusals are its SYNs: at least one per failed connect.
	for a, n := range podFailed {
		if got[a] < n {
			t.Errorf("pod %s: %d refusals, %d failed connects", a, got[a], n)
		}
	}
	var sum uint64
	for _, n := range got {
		sum += n
	}
	if sum != sp.Failures || len(got) != len(podFailed) {
		t.Errorf("clients' refusals %v sum to %d of %d; the pods that failed: %v", got, sum, sp.Failures, podFailed)
	}
}

// TestWithoutConntrack: on a kernel without nfnetlink (make test-vm boots
// 6.1 once without its netfilter modules for this), doctor says that
// conntrack cannot be read and why, top shows its port spaces without
// NAT, and a capture recorded there reports without NAT.
func TestWithoutConntrack(t *testing.T) {
	testnet.RequireRoot(t)
	if fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_NETFILTER); err == nil {
		unix.Close(fd)
		t.Skip("this kernel has nfnetlink: make test-vm runs this test in a VM without netfilter modules")
	}
	out, _ := exec.Command(binary, "doctor").CombinedOutput()
	t.Logf("doctor:\n%s", out)
	if !strings.Contains(string(out), "nfnetlink is not loaded") || strings.Contains(string(out), "panic") {
		t.Errorf("doctor does not say that conntrack cannot be read")
	}
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 0)
	top := startTop(t, "3s")
	if res := ns.StartClient(t, churn.Config{Target: dst, Count: 5, Close: churn.CloseFin}).Wait(t); res.Connected != 5 {
		t.Fatalf("client %+v", res)
	}
	f := top.wait(t)
	if f.NAT != nil && len(f.NAT.Spaces)+len(f.NAT.Tables) > 0 || spaceToward(t, f, ns.Inode, dst).TotalConns != 5 {
		t.Errorf("top: NAT %+v; its space toward %s should count the 5 connections", f.NAT, dst)
	}
	// The NAT probe's hooks are left out, said once, and the backend runs.
	topLog := strings.Join(top.log, "\n")
	t.Logf("top: %s", topLog)
	if b := os.Getenv("PORTTRACE_BACKEND"); (b == "fentry" || b == "kprobe") && strings.Count(topLog, "missing ("+tracer.NATLoss+"): no source NAT here: nf_conntrack is not loaded") != 1 {
		t.Errorf("top does not say once that the NAT hooks are missing for want of nf_conntrack")
	}
	file := filepath.Join(t.TempDir(), "nonat.ptcap")
	rec, log := startRecord(t, "-o", file, "--duration", "2s")
	if err := rec.Wait(); err != nil {
		t.Fatalf("record: %v\n%s", err, log)
	}
	if r := runReport(t, file); r.NAT != nil && len(r.NAT.Spaces)+len(r.NAT.Tables) > 0 {
		t.Errorf("report: NAT %+v", r.NAT)
	}
}

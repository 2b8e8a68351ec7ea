package conntrack

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// truth is conntrack -L's translated entries grouped as NAT spaces.
type truth struct {
	held, lingering int
	clients         map[string]int
}

func truths(list []testnet.CTEntry) map[[2]string]*truth {
	out := map[[2]string]*truth{}
	for _, e := range list {
		if e.Proto != "tcp" || e.ReplyDst.Addr() == e.Src.Addr() {
			continue // not source-translated
		}
		k := [2]string{e.ReplyDst.Addr().String(), e.Dst.String()}
		if out[k] == nil {
			out[k] = &truth{clients: map[string]int{}}
		}
		if takesOverClosing && (e.State == "TIME_WAIT" || e.State == "CLOSE") {
			out[k].lingering++
		} else {
			out[k].held++
			out[k].clients[e.Src.Addr().String()]++
		}
	}
	return out
}

// compare checks every NAT space against conntrack -L: one space per
// translated address and destination, its held and lingering entries,
// its clients, its capacity from the rule, and never more used than that.
func compare(t *testing.T, s *nat.Summary, list []testnet.CTEntry, ports int, rule string) {
	t.Helper()
	want := truths(list)
	if len(s.Spaces) != len(want) {
		t.Errorf("%d NAT spaces, conntrack -L shows %d", len(s.Spaces), len(want))
	}
	for _, sp := range s.Spaces {
		k := [2]string{sp.Addr.String(), sp.Dst.String()}
		w := want[k]
		t.Logf("space %s->%s: %d/%d used, %d lingering, %d clients; conntrack -L %+v", sp.Addr, sp.Dst, sp.Used, sp.Ports, sp.Lingering, len(sp.Clients), w)
		if w == nil {
			t.Errorf("space %v not in conntrack -L", k)
			continue
		}
		if sp.Used != w.held || sp.Lingering != w.lingering || sp.Ports != ports || sp.Used > sp.Ports || !strings.Contains(sp.Rule, rule) {
			t.Errorf("space %v: %d/%d used, %d lingering, rule %q; conntrack -L %d held, %d lingering; want %d ports from %q", k, sp.Used, sp.Ports, sp.Lingering, sp.Rule, w.held, w.lingering, ports, rule)
		}
		for _, c := range sp.Clients {
			if c.Used != w.clients[c.Addr.String()] {
				t.Errorf("client %s holds %d, conntrack -L %d", c.Addr, c.Used, w.clients[c.Addr.String()])
			}
		}
	}
}

func failures(os []testnet.Outcome) (ok, failed int) {
	for _, o := range os {
		if o.Err != nil {
			failed++
		} else {
			ok++
		}
	}
	return ok, failed
}

// Churn through a NAT range: from Linux 6.5 nf_nat takes over the port of
// an entry in TIME_WAIT, so 48 short connections through 20 ports all
// connect and porttrace counts none of the lingering entries; before, the
// TIME_WAIT entries hold their ports, 28 of the 48 fail, and porttrace
// counts the space full. Either way porttrace says what the kernel did.
func TestNATChurn(t *testing.T) {
	testnet.RequireRoot(t)
	nn := testnet.NewNAT(t, 1)
	nn.Node.Exec(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", testnet.UpLink, "-p", "tcp", "-j", "MASQUERADE", "--to-ports", "41000-41019")
	dst := nn.Upstream.Serve(t, "10.78.0.2:8080", holdOpen)
	tr := nat.NewTracker(time.Minute)
	tr.Add(read(t, nn))
	before := nn.Node.ConntrackS(t)
	failed := 0
	for range 48 {
		o := nn.Connect(t, dst, 1, 2*time.Second)[0]
		if o.Err != nil {
			failed++
			continue
		}
		o.Conn.Close() // the client closes first: its flow ends in TIME_WAIT
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	tr.Add(read(t, nn))
	after := nn.Node.ConntrackS(t)
	list := nn.Node.ConntrackL(t)
	s := tr.Summary(nil)
	tw := 0
	for _, e := range list {
		if e.State == "TIME_WAIT" {
			tw++
		}
	}
	t.Logf("48 connects, %d failed; conntrack -L %d entries, %d in TIME_WAIT; insert_failed +%d", failed, len(list), tw, after["insert_failed"]-before["insert_failed"])
	want := 0
	if !takesOverClosing {
		want = 48 - 20
	}
	if failed != want || tw == 0 {
		t.Fatalf("%d failed, %d TIME_WAIT entries: want %d failed (kernel takes over closing entries: %v) and TIME_WAIT entries", failed, tw, want, takesOverClosing)
	}
	compare(t, s, list, 20, "masquerade to :41000-41019")
	if sp := s.Spaces[0]; sp.Full() == takesOverClosing || sp.InsertFailed != after["insert_failed"]-before["insert_failed"] {
		t.Errorf("space %d/%d, insert_failed +%d; conntrack -S +%d", sp.Used, sp.Ports, sp.InsertFailed, after["insert_failed"]-before["insert_failed"])
	}
}

// A destination exempt from SNAT (a RETURN before MASQUERADE, as
// ip-masq-agent writes) is no NAT space: its flows keep the pod's address.
func TestNATExemptDestination(t *testing.T) {
	testnet.RequireRoot(t)
	nn := testnet.NewNAT(t, 2)
	nn.Upstream.Exec(t, "ip", "route", "add", nn.PodNet.String(), "via", "10.78.0.1") // the exempt destination routes back to the pods
	nn.Node.Exec(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-d", "10.78.0.3/32", "-j", "RETURN")
	nn.Node.Exec(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", testnet.UpLink, "-p", "tcp", "-j", "MASQUERADE", "--to-ports", "41000-41019")
	natted := nn.Upstream.Serve(t, "10.78.0.2:8080", holdOpen)
	exempt := nn.Upstream.Serve(t, "10.78.0.3:8080", holdOpen)
	tr := nat.NewTracker(time.Minute)
	tr.Add(read(t, nn))
	okN, failN := failures(nn.Connect(t, natted, 4, 2*time.Second))
	okE, failE := failures(nn.Connect(t, exempt, 6, 2*time.Second))
	tr.Add(read(t, nn))
	list := nn.Node.ConntrackL(t)
	untranslated := 0
	for _, e := range list {
		if e.Dst == exempt && e.ReplyDst.Addr() == e.Src.Addr() {
			untranslated++
		}
	}
	t.Logf("translated: %d ok %d failed; exempt: %d ok %d failed; conntrack -L: %d untranslated flows to %s", okN, failN, okE, failE, untranslated, exempt)
	if okN != 8 || okE != 12 || untranslated != 12 {
		t.Fatalf("the situation did not happen")
	}
	s := tr.Summary(nil)
	compare(t, s, list, 20, "masquerade to :41000-41019")
	for _, sp := range s.Spaces {
		if sp.Dst == exempt {
			t.Errorf("a NAT space toward the exempt %s", exempt)
		}
	}
	var node nat.Conntrack
	for _, c := range s.Tables {
		if c.Netns == nn.Node.Inode {
			node = c
		}
	}
	if len(node.Rules) != 2 || node.Rules[0].Kind != "return" || node.Rules[0].Dst.Prefix != netip.MustParsePrefix("10.78.0.3/32") {
		t.Errorf("rules %v: want the RETURN for 10.78.0.3/32, then the MASQUERADE", node.Rules)
	}
}

// Two SNAT addresses are two spaces: nf_nat hashes each client and
// destination to one of them. Each is counted against conntrack -L.
func TestNATTwoSNATAddresses(t *testing.T) {
	testnet.RequireRoot(t)
	nn := testnet.NewNAT(t, 3)
	for _, a := range []string{"10.78.0.11/24", "10.78.0.12/24"} {
		nn.Node.Exec(t, "ip", "addr", "add", a, "dev", testnet.UpLink)
	}
	nn.Node.Exec(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", testnet.UpLink, "-p", "tcp", "-j", "SNAT", "--to-source", "10.78.0.11-10.78.0.12:41000-41004")
	dst := nn.Upstream.Serve(t, "10.78.0.2:8080", holdOpen)
	tr := nat.NewTracker(time.Minute)
	tr.Add(read(t, nn))
	ok, failed := failures(nn.Connect(t, dst, 4, 2*time.Second))
	tr.Add(read(t, nn))
	list := nn.Node.ConntrackL(t)
	t.Logf("%d connected, %d failed", ok, failed)
	s := tr.Summary(nil)
	compare(t, s, list, 5, "snat to 10.78.0.11-10.78.0.12:41000-41004")
	used := 0
	for _, sp := range s.Spaces {
		used += sp.Used
		if sp.Addrs != 2 {
			t.Errorf("space %s: rule of %d addresses, want 2", sp.Addr, sp.Addrs)
		}
	}
	if used != ok {
		t.Errorf("spaces hold %d ports, %d clients connected", used, ok)
	}
}

// nft's own masquerade and snat, as nft writes them.
func TestNATNftRules(t *testing.T) {
	testnet.RequireRoot(t)
	for _, c := range []struct {
		rule, want string
		ports      int
	}{
		{"ip daddr != 10.1.0.0/16 meta l4proto tcp masquerade to :42000-42009 fully-random", "daddr != 10.1.0.0/16 masquerade to :42000-42009 fully-random", 10},
		{"meta l4proto tcp snat to 10.78.0.1:43000-43002", "snat to 10.78.0.1:43000-43002", 3},
		{"oifname \"" + testnet.UpLink + "\" masquerade", "oifname \"" + testnet.UpLink + "\" masquerade", 64512},
	} {
		t.Run(fmt.Sprint(c.ports), func(t *testing.T) {
			nn := testnet.NewNAT(t, 1)
			nn.Node.Exec(t, "nft", "add table ip pt")
			nn.Node.Exec(t, "nft", "add chain ip pt post { type nat hook postrouting priority 100 ; }")
			nn.Node.Exec(t, "nft", "add rule ip pt post "+c.rule)
			dst := nn.Upstream.Serve(t, "10.78.0.2:8080", holdOpen)
			tr := nat.NewTracker(time.Minute)
			ok, failed := failures(nn.Connect(t, dst, 5, 2*time.Second))
			tr.Add(read(t, nn))
			t.Logf("%d connected, %d failed", ok, failed)
			compare(t, tr.Summary(nil), nn.Node.ConntrackL(t), c.ports, c.want)
			if sp := tr.Summary(nil).Spaces; len(sp) == 1 && sp[0].Used != min(ok, c.ports) {
				t.Errorf("%d used, %d connected", sp[0].Used, ok)
			}
		})
	}
}

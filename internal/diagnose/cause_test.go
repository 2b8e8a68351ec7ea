package diagnose

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/summary"
)

// small is a 20-port space toward a local upstream, as the kernel tests
// make it, full and failing.
func small() *summary.SpaceSummary {
	return &summary.SpaceSummary{
		Key:   summary.SpaceKey{Netns: ino, Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddrPort("127.0.0.1:8080")},
		Name:  "127.0.0.1 -> 127.0.0.1:8080",
		Netns: ino, Src: "127.0.0.1", Dst: "127.0.0.1:8080",
		Processes: []summary.ProcRef{{PID: 4242, Comm: "app"}},
		Conns:     summary.Rates{S1: 5, S10: 5, S60: 2},
		Failures:  []summary.Failure{{Errno: "EADDRNOTAVAIL", Exhaustion: true, Rates: summary.Rates{S10: 1}, Last: 5, Total: 5}},
		Used:      20, Usable: 20, UsedPct: 100, Exhausted: true,
	}
}

func smallNetns(st netns.Settings) []summary.NetnsSummary {
	st.Inode, st.PortLow, st.PortHigh = ino, 40000, 40019
	return []summary.NetnsSummary{{Settings: st, Usable: st.Usable(),
		Listeners: []summary.Listener{{Addr: netip.MustParseAddrPort("127.0.0.1:8080"), PID: 77, Comm: "server"}}}}
}

func diagnoseIn(st netns.Settings, s *summary.SpaceSummary) []Finding {
	return Diagnose(&summary.Summary{Netns: smallNetns(st), Spaces: []summary.SpaceSummary{*s}})
}

// capacity are the rules that offer ports: none helps a leak, orphans or
// unanswered attempts.
var capacity = []string{"keepalive", "idle_pool", "tcp_tw_reuse", "more_destinations", "unix_socket", "port_range", "source_addresses"}

func wantOnly(t *testing.T, fs []Finding, rule string, texts ...string) {
	t.Helper()
	if got := ruleNames(fs); !slices.Equal(got, []string{rule}) {
		t.Fatalf("rules %v, want %s alone", got, rule)
	}
	for _, s := range texts {
		if !strings.Contains(fs[0].String(), s) {
			t.Errorf("%s finding %q lacks %q", rule, fs[0], s)
		}
	}
}

// TestCauseOrphans: 20 orphans in FIN_WAIT2 fill the space with
// tcp_tw_reuse=1: the finding names the peer, the capacity the
// tcp_fin_timeout allows, and never tcp_tw_reuse or more ports.
func TestCauseOrphans(t *testing.T) {
	s := small()
	s.FinWait2, s.PeerCloseWait = 20, 20
	fs := diagnoseIn(netns.Settings{TWReuse: 1, Timestamps: 1, FinTimeout: 60}, s)
	wantOnly(t, fs, "fin_wait2_orphans", "20 orphaned in FIN_WAIT2", "20 of the 20 ports are held by orphaned sockets in FIN_WAIT2",
		"the peer is 127.0.0.1:8080 (server, pid 77) holds 20 connections in CLOSE_WAIT", "tcp_fin_timeout (60 s): 20 ports sustain 0.3 connections/s",
		"tcp_fin_timeout=10", "2.0 connections/s")
	// The same space full of TIME_WAIT instead is churn: capacity advice.
	s.FinWait2, s.PeerCloseWait, s.TimeWait = 0, 0, 20
	s.Closed60, s.ShortPct = 100, 100
	fs = diagnoseIn(netns.Settings{TWReuse: 0, Timestamps: 1, FinTimeout: 60}, s)
	if got := ruleNames(fs); !slices.Contains(got, "tcp_tw_reuse") || slices.Contains(got, "fin_wait2_orphans") {
		t.Errorf("TIME_WAIT churn: rules %v", got)
	}
}

// TestCauseCloseWait: a process holds 20 sockets the peer closed; the
// finding names it, how many and since when, and what widening buys.
func TestCauseCloseWait(t *testing.T) {
	s := small()
	s.Live, s.States = 20, map[string]int{"CLOSE_WAIT": 20}
	s.Holders = []summary.Holder{{State: "CLOSE_WAIT", PID: 4242, Comm: "app", Sockets: 20, Oldest: 40}}
	fs := diagnoseIn(netns.Settings{TWReuse: 1, Timestamps: 1, FinTimeout: 60}, s)
	// 20 sockets over 40 s: 0.5/s; 1024-65535 is 64,492 more ports than
	// 20: 128,984 s.
	wantOnly(t, fs, "close_wait_leak", "20 open in CLOSE_WAIT", "app (pid 4242) holds 20 sockets in CLOSE_WAIT, the oldest open for 40s",
		"adds 64,492 ports, which at the leak's 0.5 ports/s delays the failure by 35h49m44s")
}

// TestCauseEstablishedLeak: open connections that never close are a
// leak; the same number closing and reopening is a pool, and churn.
func TestCauseEstablishedLeak(t *testing.T) {
	s := small()
	s.Live, s.States, s.FillRate = 20, map[string]int{"ESTABLISHED": 20}, 2
	s.Holders = []summary.Holder{{State: "ESTABLISHED", PID: 4242, Comm: "app", Sockets: 20, Oldest: 10}}
	fs := diagnoseIn(netns.Settings{TWReuse: 1, Timestamps: 1}, s)
	wantOnly(t, fs, "established_leak", "app (pid 4242) holds 20 sockets in ESTABLISHED", "at the leak's 2 ports/s delays the failure by 8h57m26s")
	s.Closed60 = 200
	if got := ruleNames(diagnoseIn(netns.Settings{TWReuse: 1, Timestamps: 1}, s)); slices.Contains(got, "established_leak") || !slices.Contains(got, "port_range") {
		t.Errorf("a pool closing 200 a minute: rules %v, want capacity, not a leak", got)
	}
}

// TestCauseSynSent: attempts the upstream never answers: the upstream or
// the route, a shorter timeout; no capacity.
func TestCauseSynSent(t *testing.T) {
	s := small()
	s.Live, s.States = 20, map[string]int{"SYN_SENT": 20}
	s.Holders = []summary.Holder{{State: "SYN_SENT", PID: 4242, Comm: "app", Sockets: 20, Oldest: 5}}
	s.Failures = append(s.Failures, summary.Failure{Errno: "ETIMEDOUT", Last: 3, Total: 3})
	wantOnly(t, diagnoseIn(netns.Settings{}, s), "syn_sent", "the upstream does not answer", "3 attempts timed out", "tcp_syn_retries")
}

// TestCauseHalfClosed: shutdown() without close(): no timer.
func TestCauseHalfClosed(t *testing.T) {
	s := small()
	s.Live, s.States = 20, map[string]int{"FIN_WAIT2": 20}
	s.Holders = []summary.Holder{{State: "FIN_WAIT2", PID: 4242, Comm: "app", Sockets: 20}}
	wantOnly(t, diagnoseIn(netns.Settings{FinTimeout: 60}, s), "half_closed", "app (pid 4242) holds 20 sockets in FIN_WAIT2", "adds 64,492 ports, which the leak fills")
}

// TestNotExhaustion: timeouts with the ports free: said, and nothing
// offered about ports; refusals alone say nothing.
func TestNotExhaustion(t *testing.T) {
	s := small()
	s.Used, s.UsedPct, s.Exhausted = 2, 10, false
	s.Failures = []summary.Failure{{Errno: "ETIMEDOUT", Last: 7, Total: 7}}
	wantOnly(t, diagnoseIn(netns.Settings{}, s), "not_port_exhaustion", "7 ETIMEDOUT", "2 of 20 ports in use", "not port exhaustion")
	s.Failures = []summary.Failure{{Errno: "ECONNREFUSED", Last: 7, Total: 7}}
	if fs := diagnoseIn(netns.Settings{}, s); len(fs) != 0 {
		t.Errorf("refusals: %v", fs)
	}
}

// TestFullWithoutFailures: a space whose every port is taken and whose
// calls have not failed yet is not "full in 0 s".
func TestFullWithoutFailures(t *testing.T) {
	s := small()
	s.Failures, s.TimeWait, s.Closed60, s.ShortPct = nil, 20, 100, 100
	zero := 0.0
	s.ETA = &zero
	fs := diagnoseIn(netns.Settings{}, s)
	if len(fs) == 0 || strings.Contains(fs[0].Situation, "full in 0s") || !strings.Contains(fs[0].Situation, "no port left") {
		t.Errorf("situation %q", fs[0].Situation)
	}
}

func TestCapacityListIsRules(t *testing.T) {
	// Every capacity rule named above exists: a renamed rule would make
	// the tests above pass vacuously.
	s := incident()
	names := ruleNames(diagnose(0, s))
	for _, r := range []string{"keepalive", "tcp_tw_reuse", "more_destinations", "unix_socket", "port_range"} {
		if !slices.Contains(names, r) || !slices.Contains(capacity, r) {
			t.Errorf("%s: in findings %v", r, names)
		}
	}
}

// TestReservedLinesAgree: every ip_local_reserved_ports line of a
// namespace is the same whole list: what is reserved now, the listeners
// the widest range would take, the one inside the range now, a conflict.
func TestReservedLinesAgree(t *testing.T) {
	r := &summary.Summary{Netns: settings(0), Spaces: []summary.SpaceSummary{*incident()}}
	r.Netns[0].Reserved = "9000"
	r.Netns[0].Listeners = []summary.Listener{{Addr: netip.MustParseAddrPort("0.0.0.0:8080")}, {Addr: netip.MustParseAddrPort("[::]:40000")},
		{Addr: netip.MustParseAddrPort("127.0.0.1:40000")}, {Addr: netip.MustParseAddrPort("0.0.0.0:9000")}}
	r.Netns[0].Conflicts = []summary.Conflict{{Addr: "0.0.0.0:41006", Port: 41006, By: summary.ProcRef{PID: 10, Comm: "svc"}, Total: 1}}
	var lines []string
	for _, f := range Diagnose(r) {
		if _, rest, ok := strings.Cut(f.Fix, "ip_local_reserved_ports="); ok {
			lines = append(lines, f.Rule+": "+strings.Fields(rest)[0])
		}
	}
	want := []string{`port_range: "9000,8080,40000,41006"`, `bind_conflict: "9000,8080,40000,41006"`, `listener_in_range: "9000,8080,40000,41006"`}
	if !slices.Equal(lines, want) {
		t.Errorf("reserved-ports lines %q, want %q", lines, want)
	}
}

// TestMoreDestinationsAreNew: the process already connects to
// 127.0.0.2:8080: the advice proposes 127.0.0.3 and 127.0.0.4; another
// process's destination does not count.
func TestMoreDestinationsAreNew(t *testing.T) {
	a, b := *incident(), *incident()
	b.Key.Dst, b.Dst, b.Name = netip.MustParseAddrPort("127.0.0.2:8080"), "127.0.0.2:8080", "127.0.0.1 -> 127.0.0.2:8080"
	r := &summary.Summary{Netns: settings(0), Spaces: []summary.SpaceSummary{a, b}}
	r.Netns[0].Listeners = []summary.Listener{{Addr: netip.MustParseAddrPort("0.0.0.0:8080")}}
	f := find(Diagnose(r), "more_destinations")
	if f == nil || !strings.Contains(f.Fix, "adding 127.0.0.3:8080 and 127.0.0.4:8080") {
		t.Errorf("more destinations with 127.0.0.2 in use: %v", f)
	}
	r.Spaces[1].Processes = []summary.ProcRef{{PID: 999, Comm: "other"}}
	if f := find(Diagnose(r), "more_destinations"); f == nil || !strings.Contains(f.Fix, "adding 127.0.0.2:8080 and 127.0.0.3:8080") {
		t.Errorf("another process's destination: %v", f)
	}
}

// TestRateIsTheProcesses: a space shared by two task names, and by more
// processes than it lists, quotes the space's rate as the space's and
// each name's own count, with the pids not listed counted.
func TestRateIsTheProcesses(t *testing.T) {
	s := incident()
	s.Processes = nil
	for i := range 6 {
		s.Processes = append(s.Processes, summary.ProcRef{PID: uint32(100 + i), Comm: "curl-like", Conns60: 10})
	}
	s.Processes = append(s.Processes, summary.ProcRef{PID: 200, Comm: "wget", Conns60: 90}, summary.ProcRef{PID: 201, Comm: "wget", Conns60: 60})
	s.ProcessCount = 17
	k := find(diagnose(0, s), "keepalive")
	for _, want := range []string{"1,950 connection attempts/s to 127.0.0.1:8080 were made: ",
		"curl-like (pids 100, 101, 102, 103, and 2 more) 60 in the last minute", "wget (pids 200, 201) 150 in the last minute", "9 processes more not listed"} {
		if k == nil || !strings.Contains(k.Evidence, want) {
			t.Errorf("keepalive %v lacks %q", k, want)
		}
	}
	if strings.Contains(k.Evidence, "curl-like (pids 100, 101, 102, 103, and 2 more) made") {
		t.Errorf("one process name given the space's rate: %s", k.Evidence)
	}
}

// TestCauseSocketPortRange: a process's own IP_LOCAL_PORT_RANGE of 5
// ports fills while the namespace has 20: the finding names the process
// and its option with the arithmetic of both windows, and no finding
// offers the sysctl; without the option the same space gets port_range.
func TestCauseSocketPortRange(t *testing.T) {
	s := small()
	s.Used, s.Usable, s.TimeWait, s.Closed60, s.ShortPct = 5, 5, 5, 100, 100
	s.SocketRange = &summary.SocketRange{Low: 40000, High: 40004, SearchLow: 40000, SearchHigh: 40004, By: summary.ProcRef{PID: 4242, Comm: "app"}}
	fs := diagnoseIn(netns.Settings{Timestamps: 1}, s)
	got := ruleNames(fs)
	if !slices.Contains(got, "socket_port_range") || slices.Contains(got, "port_range") {
		t.Fatalf("rules %v: want socket_port_range, never port_range", got)
	}
	for _, f := range fs {
		if strings.Contains(f.Fix, "ip_local_port_range") {
			t.Errorf("%s offers the sysctl: %s", f.Rule, f.Fix)
		}
		if f.Rule != "socket_port_range" {
			continue
		}
		// 5 ports / 60 s: 0.1 connections/s; 20 / 60: 0.3.
		for _, want := range []string{"app[4242] sets IP_LOCAL_PORT_RANGE 40000-40004", "searches 40000-40004 only, 5 usable ports (0.1 connections/s", "of the namespace's 20",
			"widen or drop that option in app", "namespace's 40000-40019, 20 usable ports, 0.3 connections/s"} {
			if !strings.Contains(f.String(), want) {
				t.Errorf("finding %q lacks %q", f, want)
			}
		}
	}
	s.SocketRange = nil
	if got := ruleNames(diagnoseIn(netns.Settings{Timestamps: 1}, s)); slices.Contains(got, "socket_port_range") || !slices.Contains(got, "port_range") {
		t.Errorf("without the option: rules %v, want port_range", got)
	}
}

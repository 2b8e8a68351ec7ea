package diagnose

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/summary"
)

const ino = 4026532177

// incident is the seed articles' case: nginx churning toward a localhost
// upstream, 28,232 ports nearly all in TIME_WAIT, connect() failing.
func incident() *summary.SpaceSummary {
	return &summary.SpaceSummary{
		Key:   summary.SpaceKey{Netns: ino, Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddrPort("127.0.0.1:8080")},
		Name:  "127.0.0.1 -> 127.0.0.1:8080",
		Netns: ino, Src: "127.0.0.1", Dst: "127.0.0.1:8080",
		Processes: []summary.ProcRef{{PID: 812, Comm: "nginx"}, {PID: 813, Comm: "nginx"}},
		Conns:     summary.Rates{S1: 1950, S10: 1950, S60: 1900},
		Failures:  []summary.Failure{{Errno: "EADDRNOTAVAIL", Exhaustion: true, Rates: summary.Rates{S10: 30}, Last: 312, Total: 312}},
		TimeWait:  27610, Live: 90, Used: 27700, Usable: 28232, UsedPct: 98.1,
		Closed60: 100000, ShortPct: 98,
	}
}

func settings(twReuse int) []summary.NetnsSummary {
	s := netns.Settings{Inode: ino, PortLow: 32768, PortHigh: 60999, TWReuse: twReuse}
	return []summary.NetnsSummary{{Settings: s, Usable: s.Usable()}}
}

func ruleNames(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Rule)
	}
	return out
}

func find(fs []Finding, rule string) *Finding {
	for i := range fs {
		if fs[i].Rule == rule {
			return &fs[i]
		}
	}
	return nil
}

func diagnose(twReuse int, spaces ...*summary.SpaceSummary) []Finding {
	r := &summary.Summary{Netns: settings(twReuse)}
	for _, s := range spaces {
		r.Spaces = append(r.Spaces, *s)
	}
	return Diagnose(r)
}

func TestIncident(t *testing.T) {
	fs := diagnose(0, incident())
	want := "keepalive tcp_tw_reuse more_destinations unix_socket port_range"
	if got := strings.Join(ruleNames(fs), " "); got != want {
		t.Fatalf("rules %q, want %q", got, want)
	}
	k := find(fs, "keepalive")
	for _, s := range []string{k.Situation + "; nginx (pids 812, 813)", "1,950 connection attempts/s to 127.0.0.1:8080", "98% of the 100,000 closed in the last minute lived under 1 s",
		"27,700 of 28,232 ports in use (27,610 in TIME_WAIT)", "312 EADDRNOTAVAIL", "28,232 ports sustain 470 connections/s"} {
		if !strings.Contains(k.String(), s) {
			t.Errorf("keepalive finding %q lacks %q", k, s)
		}
	}
	if !strings.Contains(k.Fix, "keepalive 32;") || !strings.Contains(k.Fix, "proxy_http_version 1.1") {
		t.Errorf("nginx fix: %q", k.Fix)
	}
	if f := find(fs, "more_destinations"); !strings.Contains(f.Fix, "127.0.0.2:8080 and 127.0.0.3:8080") || !strings.Contains(f.Fix, "84,696 ports") {
		t.Errorf("more destinations: %q", f.Fix)
	}
	if f := find(fs, "port_range"); !strings.Contains(f.Fix, "64,512 ports, 1,075 connections/s") {
		t.Errorf("port range: %q", f.Fix)
	}
	if f := find(fs, "tcp_tw_reuse"); !strings.Contains(f.Evidence, "tcp_tw_reuse is 0") {
		t.Errorf("tw_reuse: %q", f.Evidence)
	}
}

func TestKeepaliveConfigured(t *testing.T) {
	// The same space a few seconds after keepalive: few new connections,
	// TIME_WAIT still draining.
	s := incident()
	s.Conns = summary.Rates{S1: 0, S10: 0.4, S60: 1200}
	if f := find(diagnose(0, s), "keepalive"); f != nil {
		t.Errorf("keepalive advised without churn: %v", f)
	}
	// Churn, but long-lived connections: not a keepalive problem.
	s = incident()
	s.ShortPct = 10
	if f := find(diagnose(0, s), "keepalive"); f != nil {
		t.Errorf("keepalive advised for long-lived connections: %v", f)
	}
	// A pool growing: connections open, none closed yet.
	s = incident()
	s.Closed60, s.ShortPct = 0, 0
	if f := find(diagnose(0, s), "keepalive"); f != nil {
		t.Errorf("keepalive advised while no connection closed: %v", f)
	}
	// Generic client: generic advice.
	s = incident()
	s.Processes = []summary.ProcRef{{PID: 900, Comm: "python3"}}
	if f := find(diagnose(0, s), "keepalive"); f == nil || strings.Contains(f.Fix, "proxy_http_version") || !strings.Contains(f.Evidence, "python3 (pid 900)") {
		t.Errorf("generic keepalive: %v", f)
	}
}

func TestHealthy(t *testing.T) {
	s := incident()
	s.Failures, s.TimeWait, s.Used, s.UsedPct, s.Conns = nil, 900, 1000, 3.5, summary.Rates{S10: 15}
	if fs := diagnose(0, s); len(fs) != 0 {
		t.Errorf("advice for a healthy space: %v", fs)
	}
	// Filling, and soon full: pressure without failures yet.
	eta := (4 * time.Minute).Seconds()
	s.ETA = &eta
	if fs := diagnose(0, s); find(fs, "more_destinations") == nil || !strings.Contains(fs[0].Situation, "full in 4m0s") {
		t.Errorf("a space full in 4 minutes: %v", fs)
	}
}

func TestTWReuse(t *testing.T) {
	if f := find(diagnose(1, incident()), "tcp_tw_reuse"); f != nil {
		t.Errorf("tcp_tw_reuse advised where it is 1: %v", f)
	}
	// 2 reuses on loopback only.
	if f := find(diagnose(2, incident()), "tcp_tw_reuse"); f != nil {
		t.Errorf("tcp_tw_reuse advised toward loopback where it is 2: %v", f)
	}
	s := remote()
	if f := find(diagnose(2, s), "tcp_tw_reuse"); f == nil {
		t.Error("tcp_tw_reuse=2 does not help a remote upstream: want the advice")
	}
	s.TimeWait, s.Live = 100, 27600
	if f := find(diagnose(0, s), "tcp_tw_reuse"); f != nil {
		t.Errorf("tcp_tw_reuse advised when TIME_WAIT holds few ports: %v", f)
	}
}

func remote() *summary.SpaceSummary {
	s := incident()
	s.Key.Src, s.Key.Dst = netip.MustParseAddr("10.0.0.5"), netip.MustParseAddrPort("10.0.0.9:5432")
	s.Src, s.Dst = "10.0.0.5", "10.0.0.9:5432"
	return s
}

func TestRemoteUpstream(t *testing.T) {
	fs := diagnose(0, remote())
	if find(fs, "unix_socket") != nil || find(fs, "source_addresses") == nil {
		t.Errorf("remote upstream: %v", ruleNames(fs))
	}
	if f := find(fs, "more_destinations"); f == nil || strings.Contains(f.Fix, "127.0.0") {
		t.Errorf("remote more destinations: %v", f)
	}
}

func TestWideRangeNoRangeAdvice(t *testing.T) {
	r := &summary.Summary{Spaces: []summary.SpaceSummary{*incident()}}
	s := netns.Settings{Inode: ino, PortLow: 1024, PortHigh: 65535}
	r.Netns = []summary.NetnsSummary{{Settings: s, Usable: s.Usable()}}
	if f := find(Diagnose(r), "port_range"); f != nil {
		t.Errorf("range advice for the widest range: %v", f)
	}
}

func TestBindNoPort(t *testing.T) {
	s := incident()
	s.Key.Dst, s.Dst = netip.AddrPort{}, ""
	s.Failures = []summary.Failure{{Errno: "EADDRINUSE", Exhaustion: true, Last: 40, Total: 40}}
	fs := diagnose(0, s)
	if f := find(fs, "bind_no_port"); f == nil || !strings.Contains(f.Fix, "IP_BIND_ADDRESS_NO_PORT") || !strings.Contains(f.Situation, "40 EADDRINUSE") {
		t.Errorf("bind pool: %v", fs)
	}
	if find(fs, "keepalive") != nil || find(fs, "tcp_tw_reuse") != nil {
		t.Errorf("connect() advice for a bind() pool: %v", ruleNames(fs))
	}
	if f := find(diagnose(0, incident()), "bind_no_port"); f != nil {
		t.Errorf("bind advice without bind(): %v", f)
	}
}

func TestSlowPortSearch(t *testing.T) {
	s := incident()
	s.AllocLatency = summary.Durations{Count: 500, P50: 1340 * time.Microsecond, P99: 2700 * time.Microsecond, Max: 3 * time.Millisecond}
	if f := find(diagnose(0, s), "slow_port_search"); f == nil || !strings.Contains(f.Evidence, "2.7ms at p99") {
		t.Errorf("slow search: %v", f)
	}
	s.AllocLatency.P99 = 20 * time.Microsecond
	if f := find(diagnose(0, s), "slow_port_search"); f != nil {
		t.Errorf("fast search flagged: %v", f)
	}
	s.AllocLatency = summary.Durations{Count: 3, P99: time.Second}
	if f := find(diagnose(0, s), "slow_port_search"); f != nil {
		t.Errorf("flagged from 3 searches: %v", f)
	}
}

func TestUnknownNamespaceAndOther(t *testing.T) {
	s := incident()
	s.Netns, s.Key.Netns = 1, 1
	o := incident()
	o.Other = true
	if fs := diagnose(0, s, o); len(fs) != 0 {
		t.Errorf("advice without the namespace's settings or for 'other': %v", fs)
	}
}

// TestNoSourceAddress: EADDRNOTAVAIL without a port search is named for
// what it is, with no exhaustion advice and no ETA.
func TestNoSourceAddress(t *testing.T) {
	s := &summary.SpaceSummary{
		Key:   summary.SpaceKey{Netns: ino, Src: netip.IPv6Unspecified(), Dst: netip.MustParseAddrPort("[2001:db8::1]:80")},
		Netns: ino, Src: "::", Dst: "[2001:db8::1]:80", Usable: 28232,
		Conns:    summary.Rates{S10: 50},
		Failures: []summary.Failure{{Errno: "EADDRNOTAVAIL", Rates: summary.Rates{S10: 50}, Last: 500, Total: 500}},
	}
	fs := diagnose(0, s)
	if got := strings.Join(ruleNames(fs), " "); got != "no_source_address" {
		t.Fatalf("rules %q, want only no_source_address", got)
	}
	if f := fs[0]; !strings.Contains(f.Evidence, "500 connect()") || !strings.Contains(f.Evidence, "not a lack of ports") ||
		f.Netns != ino || f.Dst != "[2001:db8::1]:80" || f.DPort != 80 {
		t.Errorf("finding %+v", f)
	}
}

// TestMoreDestinationsFollowsTheListener: 127.0.0.2 is offered only where
// the listener accepts on it.
func TestMoreDestinationsFollowsTheListener(t *testing.T) {
	for _, tc := range []struct {
		listen   string
		want     string
		wantNot  string
		wantCond bool
	}{
		{"0.0.0.0:8080", "adding 127.0.0.2:8080 and 127.0.0.3:8080", "accepts only", false},
		{"127.0.0.1:8080", "accepts only on 127.0.0.1: make it listen on 0.0.0.0", "", false},
		{"", "if the upstream listens on 0.0.0.0", "", true},
	} {
		r := &summary.Summary{Netns: settings(0), Spaces: []summary.SpaceSummary{*incident()}}
		if tc.listen != "" {
			r.Netns[0].Listeners = []summary.Listener{{Addr: netip.MustParseAddrPort(tc.listen), PID: 77, Comm: "app"}}
		}
		f := find(Diagnose(r), "more_destinations")
		if f == nil || !strings.Contains(f.Fix, tc.want) || tc.wantNot != "" && strings.Contains(f.Fix, tc.wantNot) {
			t.Errorf("listener %q: %v", tc.listen, f)
		}
	}
}

// TestPortRangeNamesListeners: a wider range would hand out the ports that
// services listen on: the advice names them and the reserved-ports line.
func TestPortRangeNamesListeners(t *testing.T) {
	r := &summary.Summary{Netns: settings(0), Spaces: []summary.SpaceSummary{*incident()}}
	r.Netns[0].Reserved = "9000"
	r.Netns[0].Listeners = []summary.Listener{{Addr: netip.MustParseAddrPort("0.0.0.0:8080")},
		{Addr: netip.MustParseAddrPort("[::]:8080")}, {Addr: netip.MustParseAddrPort("0.0.0.0:9000")}, {Addr: netip.MustParseAddrPort("0.0.0.0:22")}}
	f := find(Diagnose(r), "port_range")
	if f == nil || !strings.Contains(f.Fix, "listening ports 8080 would fall inside it") ||
		!strings.Contains(f.Fix, `ip_local_reserved_ports="9000,8080"`) {
		t.Errorf("port range: %v", f)
	}
}

// TestNamespaceFindings: a listener inside the ephemeral range, and a
// bind() to a named port that an outgoing connection took.
func TestNamespaceFindings(t *testing.T) {
	r := &summary.Summary{Netns: settings(0)}
	r.Netns[0].Listeners = []summary.Listener{{Addr: netip.MustParseAddrPort("0.0.0.0:41005"), PID: 9, Comm: "svc"}}
	r.Netns[0].Conflicts = []summary.Conflict{{Addr: "0.0.0.0:41006", Port: 41006, By: summary.ProcRef{PID: 10, Comm: "svc2"},
		Holder: &summary.ProcRef{PID: 11, Comm: "client"}, Total: 3}}
	fs := Diagnose(r)
	if got := strings.Join(ruleNames(fs), " "); got != "bind_conflict listener_in_range" {
		t.Fatalf("rules %q", got)
	}
	if f := fs[0]; !strings.Contains(f.Evidence, "svc2 (pid 10) failed with EADDRINUSE 3 times") ||
		!strings.Contains(f.Evidence, "client (pid 11)") || !strings.Contains(f.Fix, `ip_local_reserved_ports="41005,41006"`) {
		t.Errorf("conflict: %+v", f)
	}
	// Each line is the whole list: writing one never undoes the other.
	if f := fs[1]; !strings.Contains(f.Evidence, "svc, pid 9") || !strings.Contains(f.Fix, `"41005,41006"`) {
		t.Errorf("listener: %+v", f)
	}
}

// TestViaBindDefersToThePool: a connect space whose sockets bind() first
// gets no connect-side advice: more upstreams would not help.
func TestViaBindDefersToThePool(t *testing.T) {
	s := incident()
	s.BoundPct = 100
	for _, rule := range []string{"keepalive", "tcp_tw_reuse", "more_destinations", "unix_socket", "port_range", "source_addresses"} {
		if f := find(diagnose(0, s), rule); f != nil {
			t.Errorf("%s advice for bound sockets: %v", rule, f)
		}
	}
}

// TestNoEmptyClaims: nothing in TIME_WAIT, no tcp_tw_reuse advice; every
// attempt failed (none closed), no keep-alive advice quoting a rate.
func TestNoEmptyClaims(t *testing.T) {
	s := incident()
	s.TimeWait, s.Live, s.Used, s.Closed60 = 0, 28232, 28232, 0
	fs := diagnose(0, s)
	if find(fs, "tcp_tw_reuse") != nil || find(fs, "keepalive") != nil {
		t.Errorf("claims without evidence: %v", ruleNames(fs))
	}
	for _, f := range fs {
		if strings.Contains(f.String(), "up to 0") {
			t.Errorf("%v", f)
		}
	}
}

// TestIdlePool: connections that live for minutes yet churn: the pool is
// too small, keep-alive is already on.
func TestIdlePool(t *testing.T) {
	s := incident()
	s.ShortPct, s.Lifetime = 10, summary.Durations{Count: 100, P50: 90 * time.Second}
	fs := diagnose(0, s)
	if find(fs, "keepalive") != nil || find(fs, "idle_pool") == nil {
		t.Errorf("rules %v, want idle_pool and no keepalive", ruleNames(fs))
	}
}

// TestGoneNamespace: the space of a namespace that went gets the same
// advice, said of the ports it held at its peak, not of the none it holds.
func TestGoneNamespace(t *testing.T) {
	s := incident()
	s.Gone, s.UsedMax60, s.Used, s.TimeWait, s.Live, s.UsedPct, s.ETA = true, 28232, 0, 0, 0, 0, nil
	fs := diagnose(0, s)
	k := find(fs, "keepalive")
	if k == nil || !strings.HasPrefix(k.Situation, "namespace gone; up to 28,232 of 28,232 ports were in use in the last minute, 312 EADDRNOTAVAIL") {
		t.Fatalf("findings %v", fs)
	}
}

// TestHeldThen: a finding says what was in use when the last call failed
// for want of a port only where fewer ports are in use now; where as many
// still are, the figures now say it.
func TestHeldThen(t *testing.T) {
	ago := 4.0
	for used, want := range map[int]string{
		1200:  "312 EADDRNOTAVAIL in the last minute, the last 4s ago, when 28,232 of 28,232 ports were in use",
		28232: "312 EADDRNOTAVAIL in the last minute",
	} {
		s := incident()
		s.Used, s.LastExhaustion, s.UsedAtExhaustion = used, &ago, 28232
		fs := diagnose(1, s)
		if len(fs) == 0 {
			t.Fatalf("used %d: no finding", used)
		}
		if !strings.HasSuffix(fs[0].Situation, want) {
			t.Errorf("used %d: situation %q, want it to end with %q", used, fs[0].Situation, want)
		}
	}
}

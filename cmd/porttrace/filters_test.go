package main

import (
	"net/netip"
	"slices"
	"syscall"
	"testing"

	"github.com/spf13/cobra"

	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/report"
	"github.com/porttrace/porttrace/internal/summary"
	"github.com/porttrace/porttrace/internal/view"
)

// TestTraceFilters parses trace's filter flags as cobra does and matches
// synthetic events: several --pid, --netns, --dst with a port, -6.
func TestTraceFilters(t *testing.T) {
	var ff filterFlags
	cmd := &cobra.Command{Use: "trace"}
	ff.register(cmd, true)
	if err := cmd.ParseFlags([]string{"-p", "10", "--pid", "20,30", "--netns", "7", "--dst", "[::1]:8080", "-6"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ff.pids, []uint{10, 20, 30}) {
		t.Errorf("--pid parsed as %v", ff.pids)
	}
	f, err := ff.events()
	if err != nil {
		t.Fatal(err)
	}
	base := event.Event{PID: 20, Netns: 7, Family: syscall.AF_INET6, Dst: netip.MustParseAddrPort("[::1]:8080")}
	if !f.match(&base) {
		t.Errorf("the matching event was dropped")
	}
	for name, change := range map[string]func(*event.Event){
		"another pid":     func(e *event.Event) { e.PID = 40 },
		"another netns":   func(e *event.Event) { e.Netns = 8 },
		"another port":    func(e *event.Event) { e.Dst = netip.MustParseAddrPort("[::1]:8081") },
		"another address": func(e *event.Event) { e.Dst = netip.MustParseAddrPort("[::2]:8080") },
		"IPv4":            func(e *event.Event) { e.Family = syscall.AF_INET },
	} {
		e := base
		change(&e)
		if f.match(&e) {
			t.Errorf("%s passed the filter", name)
		}
	}
}

// TestReportSelectsNAT: report --netns keeps the NAT spaces of that
// namespace (or with a client there) and their findings, as top does;
// with no filter, everything stays.
func TestReportSelectsNAT(t *testing.T) {
	sp := func(netns uint32) nat.Space {
		return nat.Space{Netns: netns, Proto: "tcp", Addr: netip.MustParseAddr("10.78.0.1"), Dst: netip.MustParseAddrPort("10.78.0.2:8080")}
	}
	newReport := func() *report.Report {
		n := &nat.Summary{Spaces: []nat.Space{sp(7), sp(8)}, Tables: []nat.Conntrack{{Netns: 7}, {Netns: 8}}}
		var fs []diagnose.Finding
		for i := range n.Spaces {
			fs = append(fs, diagnose.Finding{Rule: "nat-full", Space: diagnose.NATWhere(&n.Spaces[i]), Netns: n.Spaces[i].Netns})
		}
		return &report.Report{Final: &summary.Summary{}, NAT: n, Findings: fs}
	}
	r := newReport()
	selectReport(r, view.Select{})
	if len(r.NAT.Spaces) != 2 || len(r.Findings) != 2 {
		t.Errorf("no filter: %d NAT spaces, %d findings; want 2, 2", len(r.NAT.Spaces), len(r.Findings))
	}
	r = newReport()
	selectReport(r, view.Select{Netns: 8})
	if len(r.NAT.Spaces) != 1 || r.NAT.Spaces[0].Netns != 8 || len(r.NAT.Tables) != 1 || len(r.Findings) != 1 || r.Findings[0].Netns != 8 {
		t.Errorf("--netns 8: NAT %+v, findings %+v; want netns 8's alone", r.NAT, r.Findings)
	}
}

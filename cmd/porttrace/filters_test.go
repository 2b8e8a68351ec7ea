package main

import (
	"net/netip"
	"slices"
	"syscall"
	"testing"

	"github.com/spf13/cobra"

	"github.com/porttrace/porttrace/internal/event"
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

package aggregate

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/frame"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/view"
)

// TestFullThenFreed: tcp_tw_reuse=2 on loopback, 10 ports. Ten
// connections close into TIME_WAIT and 15 connects fail with
// EADDRNOTAVAIL in the same second: the time-wait sockets are younger
// than tcp_tw_reuse_delay (1 s). 3 s later they may be taken over, so no
// port is used, while the failures still count. The row, the JSON and the
// diagnosis say that the ports were all in use when the calls failed, 3 s
// ago, instead of "0/10 used, EXHAUSTED".
//
// The other way the holders go between a failure and the next sample:
// sockets still closing (FIN_WAIT2) when the calls fail, reset a moment
// later when the server exits, before any sample saw them.
func TestFullThenFreed(t *testing.T) {
	for _, reset := range []bool{false, true} {
		s := newStream(t, DefaultLimits)
		s.a.SetNetns([]netns.Settings{{Inode: testNetns, PortLow: 40000, PortHigh: 40009, TWReuse: 2, Timestamps: 1, TWReuseDelay: 1000}})
		var open []uint64
		for i := range 10 {
			c := s.open(at(1.1+0.01*float64(i)), curl, upstream, time.Microsecond)
			if open = append(open, c); !reset {
				s.closeTW(at(1.2+0.01*float64(i)), curl, c, upstream)
			}
		}
		for range 15 {
			s.fail(at(1.5), curl, upstream, syscall.EADDRNOTAVAIL)
		}
		if reset {
			for _, c := range open {
				s.state(at(1.6), curl, c, upstream, event.FinWait2, event.Close)
			}
		}
		checkFullThenFreed(t, s, reset)
	}
}

func checkFullThenFreed(t *testing.T, s *stream, reset bool) {
	t.Helper()
	r := s.summary(4.6)
	sp := s.space(r, upstream)
	if tw := map[bool]int{false: 10, true: 0}[reset]; sp.Used != 0 || sp.TimeWait != tw || sp.Reusable != tw || !sp.Exhausted {
		t.Fatalf("reset %v: used %d, TIME_WAIT %d (%d reusable), exhausted %v; want 0, %d (%d), true", reset, sp.Used, sp.TimeWait, sp.Reusable, sp.Exhausted, tw, tw)
	}
	f := &frame.Frame{Summary: r, Findings: diagnose.Diagnose(r)}
	row := view.Spaces(f, view.Options{Window: 10})[0]
	if !strings.Contains(row, "0/10") || strings.Contains(row, "EXHAUSTED") || !strings.Contains(row, "full 3s ago") {
		t.Errorf("the row says the ports are free and exhausted at once, not when they were full:\n%s", row)
	}
	b, _ := json.Marshal(sp)
	for _, want := range []string{`"used":0,`, `"last_exhaustion_ago_seconds":3,`, `"used_at_last_exhaustion":10,`, `"exhausted":true`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("no %s in the JSON:\n%s", want, b)
		}
	}
	text := strings.Join(diagnose.Paragraphs(f.Findings), "\n")
	if want := "15 EADDRNOTAVAIL in the last minute, the last 3s ago, when 10 of 10 ports were in use"; !strings.Contains(text, want) {
		t.Errorf("the diagnosis does not say %q:\n%s", want, text)
	}
}

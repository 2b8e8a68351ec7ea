package view

import (
	"strings"
	"testing"

	"github.com/charmbracelet/x/ansi"
)

// TestFreedSinceFailures: a space whose calls failed for want of a port
// 3 s ago, every port held then, none now (the time-wait sockets may be
// taken over). The live view says when it was full wherever the ETA
// column is wide enough for it, "was full" where it is not, and never
// "EXHAUSTED" beside 0% used.
func TestFreedSinceFailures(t *testing.T) {
	f := testFrame()
	ago := 3.0
	sp := &f.Spaces[0]
	sp.Used, sp.UsedPct, sp.Reusable, sp.LastExhaustion, sp.UsedAtExhaustion = 0, 0, sp.TimeWait, &ago, sp.Usable
	for w, want := range map[int]string{80: "was full", 100: "full 3s ago", 200: "full 3s ago"} {
		v := ansi.Strip(sized(NewModel(&fixed{f}, Info{}, 1), w, 24).View())
		row := v[strings.Index(v, "-> 127.0.0.1:8080"):]
		row = row[:strings.IndexByte(row, '\n')]
		if !strings.Contains(row, want) || strings.Contains(row, "EXHAUSTED") {
			t.Errorf("%d wide: the row does not say %q:\n%s", w, want, row)
		}
	}
	if text := Text(&f, Info{}, Options{Window: 10}); !strings.Contains(text, "0/28,232") || !strings.Contains(text, "full 3s ago") {
		t.Errorf("the text table does not say when the space was full:\n%s", text)
	}
}

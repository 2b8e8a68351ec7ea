package live

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/porttrace/porttrace/internal/diagnose"
)

// Rate limits of the findings log.
const (
	// FindingRepeat is how long a finding whose evidence changed (its
	// figures move every second) waits before it is logged again; a new
	// fix is logged at once.
	FindingRepeat = time.Minute
	// FindingBurst is the most records one check writes; the rest are
	// counted in one record and logged at the next check.
	FindingBurst = 20
)

// findingLog logs findings as they appear, change and clear.
type findingLog struct {
	log  *slog.Logger
	last map[string]loggedFinding // by findingKey
}

// loggedFinding is what was logged last of a finding, and when.
type loggedFinding struct {
	at  time.Time
	f   diagnose.Finding
	fix string // its fix without figures (shape)
}

var figures = regexp.MustCompile(`[0-9][0-9,.]*`)

// shape is a text with its figures left out: a fix whose only change is
// how many ports it frees is the same fix.
func shape(s string) string { return figures.ReplaceAllString(s, "#") }

// findingKey names a finding: its rule in its port space.
func findingKey(f *diagnose.Finding) string {
	return fmt.Sprintf("%s|%d|%s", f.Rule, f.Netns, f.Space)
}

// LogFindings has the monitor log each finding, structured (rule, port
// space, situation, evidence, fix), when it appears, when its fix
// changes (a fix whose figures alone moved is the same fix), when its
// figures change (at most once per FindingRepeat),
// and when it clears; at most FindingBurst records per check, which runs
// after each socket-table round on the clock (Resync), on the summary of
// the next tick. Call it before Run.
func (m *Monitor) LogFindings(l *slog.Logger) {
	m.findings = &findingLog{log: l, last: map[string]loggedFinding{}}
}

// check logs what changed in fs since the last check, at now.
func (fl *findingLog) check(fs []diagnose.Finding, now time.Time) {
	written, held := 0, 0
	emit := func(msg string, level slog.Level, f *diagnose.Finding) bool {
		if written >= FindingBurst {
			held++
			return false
		}
		written++
		fl.log.Log(context.Background(), level, msg, "rule", f.Rule, "port_space", f.Space, "netns", f.Netns,
			"src", f.Src, "dst", f.Dst, "situation", f.Situation, "evidence", f.Evidence, "fix", f.Fix)
		return true
	}
	seen := map[string]bool{}
	for i := range fs {
		f := &fs[i]
		k := findingKey(f)
		seen[k] = true
		prev, ok := fl.last[k]
		var msg string
		switch {
		case !ok:
			msg = "finding"
		case prev.fix != shape(f.Fix):
			msg = "finding changed"
		case (prev.f.Evidence != f.Evidence || prev.f.Fix != f.Fix) && now.Sub(prev.at) >= FindingRepeat:
			msg = "finding still holds"
		default:
			continue
		}
		if emit(msg, slog.LevelWarn, f) {
			fl.last[k] = loggedFinding{at: now, f: *f, fix: shape(f.Fix)}
		}
	}
	for k, prev := range fl.last {
		if !seen[k] && emit("finding cleared", slog.LevelInfo, &prev.f) {
			delete(fl.last, k)
		}
	}
	if held > 0 {
		fl.log.Warn("findings not logged yet: too many at once", "held", held, "next_check", Resync)
	}
}

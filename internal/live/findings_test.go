package live

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/diagnose"
)

// records decodes the JSON log lines written since the last call.
func records(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(buf)
	for dec.More() {
		var r map[string]any
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func msgs(rs []map[string]any) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprint(r["msg"]))
	}
	return out
}

// TestFindingLog: a finding is logged when it appears, with its rule,
// space and evidence as fields; not again while only its figures move
// (in its evidence or its fix),
// until FindingRepeat has passed; at once when its fix changes; once
// when it clears. A burst of findings is capped, and the rest follow at
// the next check.
func TestFindingLog(t *testing.T) {
	var buf bytes.Buffer
	fl := &findingLog{log: slog.New(slog.NewJSONHandler(&buf, nil)), last: map[string]loggedFinding{}}
	t0 := time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC)
	f := diagnose.Finding{Rule: "tcp_tw_reuse", Space: "127.0.0.1 -> 127.0.0.1:8080", Netns: 7, Src: "127.0.0.1", Dst: "127.0.0.1:8080",
		Situation: "20 of 20 ports in use", Evidence: "20 ports in TIME_WAIT", Fix: "net.ipv4.tcp_tw_reuse=1 frees 20"}
	moved := f
	moved.Evidence, moved.Fix = "19 ports in TIME_WAIT", "net.ipv4.tcp_tw_reuse=1 frees 19"
	refixed := moved
	refixed.Fix = "something else"
	for _, c := range []struct {
		at   time.Duration
		fs   []diagnose.Finding
		want []string
	}{
		{0, []diagnose.Finding{f}, []string{"finding"}},
		{5 * time.Second, []diagnose.Finding{f}, nil},
		{10 * time.Second, []diagnose.Finding{moved}, nil},
		{FindingRepeat, []diagnose.Finding{moved}, []string{"finding still holds"}},
		{FindingRepeat + 5*time.Second, []diagnose.Finding{refixed}, []string{"finding changed"}},
		{FindingRepeat + 10*time.Second, nil, []string{"finding cleared"}},
		{FindingRepeat + 15*time.Second, nil, nil},
	} {
		fl.check(c.fs, t0.Add(c.at))
		rs := records(t, &buf)
		if got := msgs(rs); !slices.Equal(got, c.want) {
			t.Fatalf("at %s: logged %v, want %v", c.at, got, c.want)
		}
		for _, r := range rs {
			if r["rule"] != "tcp_tw_reuse" || r["port_space"] != f.Space || r["netns"] != 7.0 || r["evidence"] == "" || r["fix"] == "" {
				t.Errorf("at %s: record %v lacks the finding's fields", c.at, r)
			}
		}
	}
	var many []diagnose.Finding
	for i := range FindingBurst + 5 {
		g := f
		g.Space = fmt.Sprintf("127.0.0.1 -> 127.0.0.1:%d", 9000+i)
		many = append(many, g)
	}
	at := t0.Add(time.Hour)
	fl.check(many, at)
	rs := records(t, &buf)
	if len(rs) != FindingBurst+1 || rs[FindingBurst]["held"] != 5.0 {
		t.Fatalf("a burst of %d: %d records (last %v), want %d and one saying 5 held", len(many), len(rs), rs[len(rs)-1], FindingBurst+1)
	}
	fl.check(many, at.Add(Resync))
	if got := records(t, &buf); len(got) != 5 {
		t.Errorf("next check: %d records, want the 5 held", len(got))
	}
}

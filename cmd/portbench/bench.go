package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// churnResult is what cmd/churn prints with --json.
type churnResult struct {
	Rate     float64        `json:"connects_per_second"`
	Attempts int            `json:"attempts"`
	Failures map[string]int `json:"failures"`
	Elapsed  time.Duration  `json:"elapsed_ns"`
	P50      time.Duration  `json:"connect_p50_ns"`
}

// sample is one measurement of one condition.
type sample struct {
	churn churnResult
	stats Stats
}

type bench struct {
	o       options
	conds   []condition
	results map[string]map[string][]sample // mode → condition → samples
	paired  map[string]map[string][]sample // the pair rounds: mode → condition → samples
	max     struct {
		eventsPerSec, connsPerSec float64
		lost                      uint64
		cpuPerMillion             time.Duration
		name                      string
	}
	spacesRSS   int
	spacesSeen  uint64
	spacesLost  uint64
	getppid     map[string]float64 // condition → rate against no tracer
	idleResults []idleResult
}

// churn runs the load generator once.
func (b *bench) churn(args ...string) (churnResult, error) {
	argv := append([]string{"--json"}, args...)
	out, err := exec.Command(b.o.churn, argv...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return churnResult{}, fmt.Errorf("churn %s: %s", strings.Join(argv, " "), ee.Stderr)
		}
		return churnResult{}, err
	}
	var r churnResult
	return r, json.Unmarshal(out, &r)
}

// measure runs churn under condition c.
func (b *bench) measure(c condition, args ...string) (sample, error) {
	var t *tracer
	if c.argv != nil {
		var err error
		if t, err = start(c); err != nil {
			return sample{}, err
		}
	}
	r, err := b.churn(args...)
	var st Stats
	if t != nil {
		var err2 error
		st, err2 = t.stop()
		err = cmpErr(err, err2)
	}
	return sample{r, st}, err
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// compare alternates every condition over the rounds (roundOrder).
func (b *bench) compare(mode string, conds []condition) error {
	if b.results == nil {
		b.results = map[string]map[string][]sample{}
	}
	var err error
	b.results[mode], err = b.rounds(mode, "round", b.o.rounds, b.o.duration, func(round int) []condition { return roundOrder(conds, round) })
	if err != nil {
		return err
	}
	b.table(mode, conds)
	return nil
}

// rounds runs churn in mode for d under each condition order(round)
// gives, for n rounds, and returns the samples by condition, one per
// round in which it ran.
func (b *bench) rounds(mode, label string, n int, d time.Duration, order func(round int) []condition) (map[string][]sample, error) {
	out := map[string][]sample{}
	for round := range n {
		for _, c := range order(round) {
			fmt.Fprintf(os.Stderr, "portbench: %s close, %s %d/%d: %s\n", mode, label, round+1, n, c.name)
			s, err := b.measure(c, "--mode", mode, "--duration", d.String())
			if err != nil {
				return nil, err
			}
			out[c.name] = append(out[c.name], s)
		}
	}
	return out, nil
}

// Names of the conditions porttrace's rates are judged against, in the
// pair rounds (pairTargets).
const (
	bareName   = "bare program (counts)"
	streamName = "minimal streamer"
)

// roundOrder is the order of the conditions in a round of the table (the
// verdicts have rounds of their own: pairs). porttrace runs between the
// bare program and the streamer, first one then the other ahead as the
// rounds alternate, so that the table's ratios to them are of runs
// seconds apart: the machine's speed drifts over tens of seconds (its
// other tenants). The other conditions follow, rotated each round so
// that none always follows the same one.
func roundOrder(conds []condition, round int) []condition {
	var before, after, porttrace, rest []condition
	for _, c := range conds {
		switch {
		case c.name == bareName:
			before = append(before, c)
		case c.name == streamName:
			after = append(after, c)
		case c.porttrace:
			porttrace = append(porttrace, c)
		default:
			rest = append(rest, c)
		}
	}
	group := slices.Concat(before, porttrace, after)
	if round%2 == 1 {
		slices.Reverse(group)
	}
	for i := range rest {
		group = append(group, rest[(i+round)%len(rest)])
	}
	return group
}

func median[T float64 | time.Duration | uint64](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func column[T any](ss []sample, f func(sample) T) []T {
	out := make([]T, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

func (b *bench) table(mode string, conds []condition) {
	title := map[string]string{"reset": "Reset close (RST, no TIME_WAIT): CPU-bound churn", "fin": "TIME_WAIT close (the client closes first)"}[mode]
	fmt.Printf("%s, 1 client thread\n", title)
	fmt.Printf("  %-24s %12s %7s %8s %9s %12s %7s %12s %9s %7s\n", "condition", "connects/s", "ratio", "of bare", "spread", "connect p50", "ratio", "events", "lost", "lost %")
	base := b.results[mode]["no tracer"]
	baseRate := median(column(base, rateOf))
	baseP50 := median(column(base, func(s sample) time.Duration { return s.churn.P50 }))
	bareRate := b.rate(mode, bareName)
	for _, c := range conds {
		ss := b.results[mode][c.name]
		rates := column(ss, rateOf)
		rate := median(rates)
		p50 := median(column(ss, func(s sample) time.Duration { return s.churn.P50 }))
		line := fmt.Sprintf("  %-24s %12s %6.3fx %7.3fx %9s %12s %6.2fx", c.name, humanize.Comma(int64(rate)), rate/baseRate, rate/bareRate,
			fmt.Sprintf("±%.1f%%", 100*(slices.Max(rates)-slices.Min(rates))/2/rate), p50.Round(100*time.Nanosecond), float64(p50)/float64(baseP50))
		if c.argv != nil {
			ev := median(column(ss, func(s sample) uint64 { return s.stats.Events }))
			lost := median(column(ss, func(s sample) uint64 { return s.stats.Lost }))
			line += fmt.Sprintf(" %12s %9s %6.1f%%", humanize.Comma(int64(ev)), humanize.Comma(int64(lost)), 100*float64(lost)/float64(max(ev+lost, 1)))
		}
		fmt.Println(line)
	}
	fmt.Println()
}

// rate is the median connects/s of a condition in a mode, 0 if it was not
// measured.
func (b *bench) rate(mode, name string) float64 {
	ss := b.results[mode][name]
	if len(ss) == 0 {
		return 0
	}
	return median(column(ss, rateOf))
}

// best is the first porttrace condition: the backend auto would choose.
func best(conds []condition) (condition, bool) {
	i := slices.IndexFunc(conds, func(c condition) bool { return c.porttrace })
	if i < 0 {
		return condition{}, false
	}
	return conds[i], true
}

// maxChurn runs every CPU's worth of client threads under porttrace, in
// both close modes, and keeps the one with the most events per second.
func (b *bench) maxChurn(conds []condition) error {
	c, ok := best(conds)
	if !ok {
		return fmt.Errorf("no porttrace backend attaches here")
	}
	threads := fmt.Sprint(runtime.NumCPU())
	for _, mode := range []string{"reset", "fin"} {
		fmt.Fprintf(os.Stderr, "portbench: highest churn, %s close, %s threads, %s\n", mode, threads, c.name)
		s, err := b.measure(c, "--mode", mode, "--threads", threads, "--duration", b.o.duration.String())
		if err != nil {
			return err
		}
		eps := float64(s.stats.Events) / s.churn.Elapsed.Seconds()
		if eps > b.max.eventsPerSec {
			b.max.eventsPerSec, b.max.connsPerSec, b.max.lost = eps, s.churn.Rate, s.stats.Lost
			b.max.cpuPerMillion = time.Duration(float64(s.stats.CPU) / float64(s.stats.Events) * 1e6)
			b.max.name = fmt.Sprintf("%s close, %s client threads, %s", mode, threads, c.name)
		}
	}
	m := b.max
	fmt.Printf("Highest churn (%s):\n  %s connects/s, %s events/s, %d lost; porttrace used %.2f CPU-seconds per million events\n\n",
		m.name, humanize.Comma(int64(m.connsPerSec)), humanize.Comma(int64(m.eventsPerSec)), m.lost, m.cpuPerMillion.Seconds())
	return nil
}

// spaces makes one attempt toward each of 100,000 destinations and reads
// porttrace's peak RSS.
func (b *bench) spaces(conds []condition) error {
	c, _ := best(conds)
	fmt.Fprintf(os.Stderr, "portbench: 100,000 port spaces, %s\n", c.name)
	t, err := start(c)
	if err != nil {
		return err
	}
	r, err := b.churn("--mode", "spaces", "--spaces", "100000", "--threads", fmt.Sprint(runtime.NumCPU()))
	time.Sleep(2 * time.Second) // a tick and a resync of the socket tables
	st, err2 := t.stop()
	if err = cmpErr(err, err2); err != nil {
		return err
	}
	b.spacesRSS, b.spacesSeen, b.spacesLost = st.PeakRSS, uint64(r.Attempts), st.Lost
	fmt.Printf("100,000 port spaces (one refused connect() each, %s):\n  porttrace peak RSS %s (1,024 spaces are tracked one by one, the rest together as \"other\"), %d lost\n\n",
		c.name, humanize.IBytes(uint64(st.PeakRSS)<<10), st.Lost)
	return nil
}

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// bpfProg is what `bpftool prog show -j` says of a program once
// kernel.bpf_stats_enabled is on.
type bpfProg struct {
	ID        int    `json:"id"`
	Name      string `json:"name"`
	RunTimeNs uint64 `json:"run_time_ns"`
	RunCnt    uint64 `json:"run_cnt"`
}

const statsSysctl = "/proc/sys/kernel/bpf_stats_enabled"

// bpfCost runs reset churn once more with the kernel's BPF statistics on
// (they cost a little themselves, so the ratio runs go without), then again
// with bind() before each connect(), under porttrace and under the minimal
// streamer, and prints what each of their programs costs per connection:
// this is where the traced machine's time goes.
func (b *bench) bpfCost(conds []condition) error {
	c, _ := best(conds)
	old, err := os.ReadFile(statsSysctl)
	if err != nil {
		return err
	}
	if err := os.WriteFile(statsSysctl, []byte("1"), 0o644); err != nil {
		return err
	}
	defer os.WriteFile(statsSysctl, old, 0o644)
	runs := []condition{c}
	for _, f := range floorConditions() {
		if f.name == streamName {
			runs = append(runs, f)
		}
	}
	// Reset churn, then the same with bind() before each connect(): the
	// bind() hooks run only there, and the first table shows that
	// connections without bind() do not pay for them.
	for _, bind := range []bool{false, true} {
		for _, c := range runs {
			if err := b.bpfCostOf(c, bind); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *bench) bpfCostOf(c condition, bind bool) error {
	before, err := programs()
	if err != nil {
		return err
	}
	t, err := start(c)
	if err != nil {
		return err
	}
	args := []string{"--mode", "reset", "--duration", b.o.duration.String()}
	what := "reset close"
	if bind {
		args, what = append(args, "--bind"), "reset close, bind() before each connect()"
	}
	r, err := b.churn(args...)
	after, err2 := programs()
	_, err3 := t.stop()
	if err = cmpErr(cmpErr(err, err2), err3); err != nil {
		return err
	}
	// Its own programs: those loaded since, with a name it gives.
	seen := map[int]bool{}
	for _, p := range before {
		seen[p.ID] = true
	}
	progs := slices.DeleteFunc(after, func(p bpfProg) bool {
		return seen[p.ID] || p.RunCnt == 0 || !(strings.HasPrefix(p.Name, "pt_") || strings.HasPrefix(p.Name, "floor_"))
	})
	slices.SortFunc(progs, func(x, y bpfProg) int { return int(y.RunTimeNs) - int(x.RunTimeNs) })
	conns := float64(r.Attempts)
	perConn := 1e9 / r.Rate
	fmt.Printf("Where the traced machine's time goes (%s, %s, kernel BPF statistics on):\n", what, c.name)
	fmt.Printf("  %-18s %10s %10s %12s\n", "program", "runs/conn", "ns/run", "ns/conn")
	var total float64
	for _, p := range progs {
		ns := float64(p.RunTimeNs) / conns
		total += ns
		fmt.Printf("  %-18s %10.2f %10.0f %12.0f\n", p.Name, float64(p.RunCnt)/conns, float64(p.RunTimeNs)/float64(max(p.RunCnt, 1)), ns)
	}
	fmt.Printf("  %-18s %10s %10s %12.0f  (%.1f%% of the %.1f µs each connection took)\n\n", "total", "", "", total, 100*total/perConn, perConn/1e3)
	return nil
}

// programs are the loaded BPF programs.
func programs() ([]bpfProg, error) {
	out, err := exec.Command("bpftool", "prog", "show", "-j").Output()
	if err != nil {
		return nil, fmt.Errorf("bpftool prog show: %w", err)
	}
	var all []bpfProg
	if err := json.Unmarshal(out, &all); err != nil {
		return nil, fmt.Errorf("bpftool prog show: %w", err)
	}
	return all, nil
}

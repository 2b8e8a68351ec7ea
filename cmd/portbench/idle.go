package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// idleResult is the idle agent's cost with some idle namespaces.
type idleResult struct {
	namespaces int
	cores      float64 // CPU-seconds per second
}

// idleCost runs `porttrace agent` (Prometheus only, never scraped: no
// export traffic) beside n idle network namespaces, and measures the CPU
// time it uses over window, after a warm-up. An idle namespace holds no
// socket, as a Kubernetes node's paused pods mostly do.
func (b *bench) idleCost(n int) (idleResult, error) {
	names := make([]string, 0, n)
	defer func() {
		for _, name := range names {
			exec.Command("ip", "netns", "del", name).Run()
		}
	}()
	for i := range n {
		name := fmt.Sprintf("portbench-idle-%d-%d", os.Getpid(), i)
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			return idleResult{}, fmt.Errorf("ip netns add: %v: %s", err, out)
		}
		names = append(names, name)
	}
	c := condition{name: "porttrace agent", ready: "exporting", jsonStats: false,
		argv: []string{b.o.porttrace, "agent", "--metrics-addr", "127.0.0.1:0"}}
	t, err := start(c)
	if err != nil {
		return idleResult{}, err
	}
	defer t.cmd.Process.Kill()
	time.Sleep(5 * time.Second) // past the first rounds of socket tables
	pid := t.cmd.Process.Pid
	cpu0, err := cpuTime(pid)
	if err != nil {
		return idleResult{}, err
	}
	t0 := time.Now()
	time.Sleep(b.o.idleWindow)
	cpu1, err := cpuTime(pid)
	if err != nil {
		return idleResult{}, err
	}
	_, err = t.stop()
	return idleResult{n, (cpu1 - cpu0).Seconds() / time.Since(t0).Seconds()}, err
}

// cpuTime is a process's user and system time, from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on Linux.
const clockTicks = 100

// idle measures the idle agent at each count of namespaces.
func (b *bench) idle() error {
	var counts []int
	for _, s := range strings.Split(b.o.idle, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 5000 {
			return fmt.Errorf("-idle %q: want counts of namespaces from 0 to 5000", b.o.idle)
		}
		counts = append(counts, n)
	}
	if len(counts) == 0 {
		return nil
	}
	fmt.Printf("The idle agent (porttrace agent, Prometheus only, never scraped), CPU time over %s:\n", b.o.idleWindow)
	fmt.Printf("  %-26s %10s\n", "idle network namespaces", "cores")
	for _, n := range counts {
		fmt.Fprintf(os.Stderr, "portbench: idle agent, %d namespaces\n", n)
		r, err := b.idleCost(n)
		if err != nil {
			return err
		}
		b.idleResults = append(b.idleResults, r)
		fmt.Printf("  %-26d %10.3f\n", r.namespaces, r.cores)
	}
	fmt.Println()
	return nil
}

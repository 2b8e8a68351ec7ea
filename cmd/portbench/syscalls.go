package main

import (
	"fmt"
	"os"
	"time"

	"github.com/porttrace/porttrace/internal/testkit/churn"
)

// syscallConditions are what an unrelated program pays: no tracer,
// porttrace with its defaults (every backend that attaches), porttrace
// with --syscalls, and bpftrace counting one syscall tracepoint (the
// smallest thing that turns the kernel's syscall tracing slow path on).
func syscallConditions(conds []condition) []condition {
	out := []condition{{name: "no tracer"}}
	for _, c := range conds {
		if c.porttrace {
			out = append(out, c)
		}
	}
	if c, ok := best(conds); ok {
		s := c
		s.name = c.name[:len(c.name)-1] + ", --syscalls)"
		s.argv = append(append([]string{}, c.argv...), "--syscalls")
		out = append(out, s)
	}
	for _, c := range conds {
		if c.name == "bpftrace printf" {
			b := c
			b.name = "bpftrace sys_exit_connect"
			b.argv = []string{c.argv[0], "-e", "tracepoint:syscalls:sys_exit_connect { @ = count(); }"}
			out = append(out, b)
		}
	}
	return out
}

// unrelated alternates the conditions over the rounds and prints the rate
// of a getppid() loop under each, against none.
func (b *bench) unrelated(conds []condition) error {
	cs := syscallConditions(conds)
	costs := map[string][]time.Duration{}
	for round := range b.o.rounds {
		for i := range cs {
			c := cs[(i+round)%len(cs)]
			fmt.Fprintf(os.Stderr, "portbench: getppid() loop, round %d/%d: %s\n", round+1, b.o.rounds, c.name)
			var t *tracer
			if c.argv != nil {
				var err error
				if t, err = start(c); err != nil {
					return err
				}
			}
			costs[c.name] = append(costs[c.name], churn.SyscallCost(b.o.duration/2))
			if t != nil {
				if _, err := t.stop(); err != nil {
					return err
				}
			}
		}
	}
	fmt.Println("Unrelated work: a getppid() loop on one thread, CPU time per call (no network at all)")
	fmt.Printf("  %-36s %10s %7s\n", "condition", "ns/call", "rate")
	base := median(costs["no tracer"])
	b.getppid = map[string]float64{}
	for _, c := range cs {
		m := median(costs[c.name])
		ratio := float64(base) / float64(m)
		b.getppid[c.name] = ratio
		fmt.Printf("  %-36s %10.1f %6.2fx\n", c.name, float64(m.Nanoseconds()), ratio)
	}
	fmt.Println()
	return nil
}

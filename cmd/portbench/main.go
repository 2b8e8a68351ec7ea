// Command portbench measures what porttrace costs the machine it traces,
// side by side with the tracers people use today (BCC's tcpstates and
// bpftrace), in one run: it alternates the conditions over several rounds
// of connection churn and reports medians and ratios against no tracer.
// `make bench` runs it as root; see docs/performance.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	pt "github.com/porttrace/porttrace/tracer"
)

type options struct {
	porttrace, churn string
	rounds           int
	duration         time.Duration
	pairs            int
	pairDuration     time.Duration
	bccSource        string
	floor            string
	idle             string
	idleWindow       time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.porttrace, "porttrace", "bin/porttrace", "the porttrace binary")
	flag.StringVar(&o.churn, "churn", "bin/churn", "the churn load generator")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds of every condition, alternated")
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "churn per measurement")
	flag.IntVar(&o.pairs, "pairs", 16, "rounds of the short runs the targets are judged by: porttrace between the bare program and the streamer (reset close), beside no tracer (TIME_WAIT close)")
	flag.DurationVar(&o.pairDuration, "pair-duration", 3*time.Second, "churn per short run")
	flag.StringVar(&o.bccSource, "bcc-kernel-source", os.Getenv("BCC_KERNEL_SOURCE"), "kernel headers for BCC, when this kernel has none")
	flag.StringVar(&o.floor, "floor", "", "run only the floor program, count or stream, until interrupted (how portbench runs the floor conditions)")
	flag.StringVar(&o.idle, "idle", "0,200,1000", "idle network namespaces to measure the idle agent with, comma-separated")
	flag.DurationVar(&o.idleWindow, "idle-window", 65*time.Second, "how long the idle agent's CPU time is measured (at least a minute: idle namespaces are read once a minute)")
	flag.Parse()
	if o.floor != "" {
		if err := runFloor(o.floor); err != nil {
			fmt.Fprintln(os.Stderr, "portbench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "portbench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.pairs < minPairs {
		return fmt.Errorf("--pairs %d: at least %d rounds give the verdicts' median a %.0f%% interval", o.pairs, minPairs, 100*confidence)
	}
	if os.Geteuid() != 0 {
		return errors.New("run as root: tracers attach BPF programs and churn makes a network namespace")
	}
	for _, p := range []string{o.porttrace, o.churn} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%w (make bench builds it)", err)
		}
	}
	host, _ := os.Hostname()
	fmt.Printf("portbench: host %s, kernel %s, %d CPUs; %d rounds of %s per condition, alternated; medians\n\n",
		host, pt.KernelRelease(), runtime.NumCPU(), o.rounds, o.duration)
	conds, notes := conditions(o)
	for _, n := range notes {
		fmt.Println(n)
	}
	b := &bench{o: o, conds: conds}
	if err := b.unrelated(conds); err != nil {
		return err
	}
	for _, mode := range []string{"reset", "fin"} {
		if err := b.compare(mode, conds); err != nil {
			return err
		}
	}
	for _, mode := range []string{"reset", "fin"} {
		if err := b.pairs(mode, conds); err != nil {
			return err
		}
		b.pairTable(mode)
	}
	if err := b.maxChurn(conds); err != nil {
		return err
	}
	if err := b.spaces(conds); err != nil {
		return err
	}
	if err := b.bpfCost(conds); err != nil {
		return err
	}
	if err := b.idle(); err != nil {
		return err
	}
	b.verdicts()
	return nil
}

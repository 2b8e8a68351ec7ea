package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
	"github.com/porttrace/porttrace/tracer"
)

// BenchmarkTracerCost measures, in one run, what the backend under test
// (PORTTRACE_BACKEND, or the automatic choice) costs the machine with its
// default settings: an unrelated getppid() loop, and connect churn with a
// reset close and with a TIME_WAIT close, each alternated with no tracer
// over rounds, medians compared. It prints ratios only: make test-vm-bench
// runs it for fentry and kprobe under qemu, where TCG's emulation distorts
// absolute times (and one vCPU shares the reader with the load), and make
// bench's portbench measures the host's backend beside the peers.
//
//	go test -run '^$' -bench TracerCost -benchtime 1x ./cmd/porttrace
func BenchmarkTracerCost(b *testing.B) {
	testnet.RequireRoot(b)
	testnet.Quiet(b) // the machine's cost, with no other test's traffic
	ns := testnet.New(b, 32768, 60999)
	// Sustained TIME_WAIT churn outruns 28,232 ports in seconds without
	// reuse; with it, each round starts alike.
	ns.Sysctl(b, "net/ipv4/tcp_tw_reuse", "1")
	dst := ns.Listen(b, "127.0.0.1:8080", 0)
	rounds, d := 3, 3*time.Second
	type costs struct{ getppid, reset, fin, finP50 []float64 }
	var none, with costs
	measure := func(c *costs) {
		c.getppid = append(c.getppid, float64(churn.SyscallCost(d)))
		for _, mode := range []churn.CloseMode{churn.CloseReset, churn.CloseFin} {
			r := ns.StartClient(b, churn.Config{Target: dst, Duration: d, Close: mode}).Wait(b)
			if r.Connected == 0 {
				b.Fatalf("churn %s: %+v", mode, r)
			}
			if mode == churn.CloseReset {
				c.reset = append(c.reset, r.Rate())
			} else {
				c.fin, c.finP50 = append(c.fin, r.Rate()), append(c.finP50, float64(r.P50))
			}
			// The fin round leaves TIME_WAIT ports: let the range
			// recover a little, alike for both conditions.
			time.Sleep(500 * time.Millisecond)
		}
	}
	for i := 0; b.Loop(); i++ {
		for round := range rounds {
			for _, on := range []bool{round%2 == 0, round%2 != 0} {
				if !on {
					measure(&none)
					continue
				}
				top := startCost(b)
				measure(&with)
				top.Process.Kill()
				top.Wait()
			}
		}
	}
	med := func(xs []float64) float64 { s := slices.Clone(xs); slices.Sort(s); return s[len(s)/2] }
	ratio := func(a, b []float64) float64 { return med(a) / med(b) }
	backend := os.Getenv("PORTTRACE_BACKEND")
	if backend == "" {
		backend = "auto"
	}
	b.ReportMetric(ratio(none.getppid, with.getppid), "getppid-rate-x")
	b.ReportMetric(ratio(with.reset, none.reset), "reset-connects-x")
	b.ReportMetric(ratio(with.fin, none.fin), "fin-connects-x")
	b.ReportMetric(ratio(with.finP50, none.finP50), "fin-p50-x")
	fmt.Printf("PORTTRACE-COST backend=%s kernel=%s getppid %.2fx, reset connects/s %.2fx, TIME_WAIT connects/s %.2fx, connect() p50 %.2fx (medians of %d, alternated)\n",
		backend, tracer.KernelRelease(), ratio(none.getppid, with.getppid), ratio(with.reset, none.reset), ratio(with.fin, none.fin), ratio(with.finP50, none.finP50), rounds)
}

// startCost runs porttrace with its defaults, headless, and returns once
// its probes are attached.
func startCost(b *testing.B) *exec.Cmd {
	args := []string{"top", "--json", "--interval", "1h"}
	if be := os.Getenv("PORTTRACE_BACKEND"); be != "" {
		args = append(args, "--backend", be)
	}
	cmd := exec.Command(binary, args...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4096)
	var seen strings.Builder
	for !strings.Contains(seen.String(), "tracing with") {
		n, err := stderr.Read(buf)
		if err != nil {
			b.Fatalf("porttrace did not start: %s", seen.String())
		}
		seen.Write(buf[:n])
	}
	go func() {
		for {
			if _, err := stderr.Read(buf); err != nil {
				return
			}
		}
	}()
	time.Sleep(time.Second)
	return cmd
}

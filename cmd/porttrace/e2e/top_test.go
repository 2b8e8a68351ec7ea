package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"

	"github.com/porttrace/porttrace/internal/frame"

	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/summary"
	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// topRun is `porttrace top --json` running in the background.
type topRun struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr *bufio.Scanner
	log    []string
}

// startTop starts `top --json --interval` and returns once the probes are
// attached and the first socket tables read.
func startTop(t *testing.T, interval string, args ...string) *topRun {
	t.Helper()
	// In the VM, each run names the backend under test.
	if b := os.Getenv("PORTTRACE_BACKEND"); b != "" {
		args = append(args, "--backend", b)
	}
	r := &topRun{cmd: exec.Command(binary, append([]string{"top", "--json", "--interval", interval}, args...)...)}
	r.cmd.Stdout = &r.stdout
	stderr, _ := r.cmd.StderrPipe()
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Kill(); r.cmd.Wait() })
	r.stderr = bufio.NewScanner(stderr)
	for r.stderr.Scan() {
		r.log = append(r.log, r.stderr.Text())
		if strings.Contains(r.stderr.Text(), "tracing with") {
			time.Sleep(300 * time.Millisecond) // the seeding socket tables follow
			return r
		}
	}
	t.Fatalf("porttrace top did not start:\n%s", strings.Join(r.log, "\n"))
	return nil
}

// wait returns the frame top printed when its interval ended.
func (r *topRun) wait(t *testing.T) frame.Frame {
	t.Helper()
	for r.stderr.Scan() {
		r.log = append(r.log, r.stderr.Text())
	}
	if err := r.cmd.Wait(); err != nil {
		t.Fatalf("porttrace top: %v\n%s", err, strings.Join(r.log, "\n"))
	}
	var s frame.Frame
	if err := json.Unmarshal(r.stdout.Bytes(), &s); err != nil {
		t.Fatalf("top --json output: %v\n%s", err, r.stdout.String())
	}
	return s
}

// spaceToward is the one port space toward dst in namespace ino. A
// second one toward dst fails the test: its events would have another
// source address than their attempts' (an address a failure reset).
func spaceToward(t *testing.T, s frame.Frame, ino uint32, dst netip.AddrPort) summary.SpaceSummary {
	t.Helper()
	var found []summary.SpaceSummary
	for _, sp := range s.Spaces {
		if sp.Netns == ino && sp.Dst == dst.String() {
			found = append(found, sp)
		}
	}
	if len(found) != 1 {
		names := make([]string, len(found))
		for i, sp := range found {
			names[i] = sp.Name
		}
		t.Fatalf("port spaces toward %s in netns %d: %q, want one:\n%+v", dst, ino, names, s.Spaces)
	}
	return found[0]
}

func failures(sp summary.SpaceSummary, errno string) uint64 {
	for _, f := range sp.Failures {
		if f.Errno == errno {
			return f.Total
		}
	}
	return 0
}

// TestTopAgainstSS: porttrace starts during an exhaustion already under way
// (TIME_WAIT from before it started), the client makes it worse, and
// `top --json` must agree with ss and with what the client saw.
func TestTopAgainstSS(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	// The server closes after the client, so every client port ends in
	// TIME_WAIT proper (not its FIN_WAIT2 substate), as ss counts it.
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	before := ns.StartClient(t, churn.Config{Target: dst, Count: 8, Close: churn.CloseFin}).Wait(t)
	if before.Connected != 8 {
		t.Fatalf("setup: %+v", before)
	}
	time.Sleep(100 * time.Millisecond)

	top := startTop(t, "3s")
	cl := ns.StartClient(t, churn.Config{Target: dst, Count: 30, Close: churn.CloseFin})
	res := cl.Wait(t)
	time.Sleep(200 * time.Millisecond)
	wantTW := ns.TimeWait(t, dst)
	snap := top.wait(t)

	sp := spaceToward(t, snap, ns.Inode, dst)
	if res.Connected != 12 || res.Failures[testnet.EADDRNOTAVAIL] != 18 || wantTW != 20 {
		t.Fatalf("setup: client %+v, ss TIME_WAIT %d; want 12 connected, 18 EADDRNOTAVAIL, 20", res, wantTW)
	}
	if sp.TimeWait != wantTW || sp.Used != wantTW || sp.Live != 0 {
		t.Errorf("TIME_WAIT %d used %d live %d, ss says %d in TIME_WAIT and nothing open", sp.TimeWait, sp.Used, sp.Live, wantTW)
	}
	if sp.Usable != 20 || sp.UsedPct != 100 || !sp.Exhausted {
		t.Errorf("usable %d used %.1f%% exhausted %v, want 20, 100%%, true", sp.Usable, sp.UsedPct, sp.Exhausted)
	}
	if got := failures(sp, "EADDRNOTAVAIL"); got != 18 || len(sp.Failures) != 1 {
		t.Errorf("failures %+v, the client saw 18 EADDRNOTAVAIL and nothing else", sp.Failures)
	}
	if sp.TotalConns != uint64(res.Attempts) || sp.TotalTWIn != 12 {
		t.Errorf("attempts %d, TIME_WAIT entries %d; the client made %d attempts, 12 connections", sp.TotalConns, sp.TotalTWIn, res.Attempts)
	}
	pid := uint32(cl.Cmd.Process.Pid)
	if len(sp.Processes) != 1 || sp.Processes[0].PID != pid {
		t.Errorf("processes %+v, want only the client, pid %d", sp.Processes, pid)
	}
	if !slices.ContainsFunc(snap.Findings, func(f diagnose.Finding) bool { return f.Rule == "tcp_tw_reuse" }) {
		t.Errorf("no tcp_tw_reuse advice for a full space in TIME_WAIT with tcp_tw_reuse=0: %+v", snap.Findings)
	}
	if snap.Lost != 0 {
		t.Errorf("%d events lost", snap.Lost)
	}
}

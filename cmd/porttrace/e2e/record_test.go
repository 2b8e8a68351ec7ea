package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/frame"

	"github.com/porttrace/porttrace/internal/report"
	"github.com/porttrace/porttrace/internal/summary"
	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// startRecord starts `record` and returns once the probes are attached.
func startRecord(t *testing.T, args ...string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	// In the VM, each run names the backend under test.
	if b := os.Getenv("PORTTRACE_BACKEND"); b != "" {
		args = append(args, "--backend", b)
	}
	cmd := exec.Command(binary, append([]string{"record"}, args...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	log := &strings.Builder{}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "tracing with") {
			go func() {
				for sc.Scan() {
					log.WriteString(sc.Text() + "\n")
				}
			}()
			return cmd, log
		}
	}
	t.Fatalf("record did not start:\n%s", log)
	return nil, nil
}

func runReport(t *testing.T, file string) *report.Report {
	t.Helper()
	r, _ := runReportExit(t, file, 0)
	return r
}

// runReportExit runs report --json, which must exit with code; it returns
// the report and stderr.
func runReportExit(t *testing.T, file string, code int) (*report.Report, string) {
	t.Helper()
	cmd := exec.Command(binary, "report", "--json", file)
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	got := 0
	if ee, ok := err.(*exec.ExitError); ok {
		got = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if got != code {
		t.Fatalf("report %s: exit %d, want %d\n%s", file, got, code, errb.String())
	}
	var r report.Report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("report --json: %v", err)
	}
	return &r, errb.String()
}

// recorded is the event count record printed at its end.
func recorded(t *testing.T, log string) uint64 {
	t.Helper()
	i := strings.Index(log, " events written to ")
	if i < 0 {
		t.Fatalf("record did not say how many events it wrote:\n%s", log)
	}
	f := strings.Fields(log[:i])
	n, err := strconv.ParseUint(strings.ReplaceAll(f[len(f)-1], ",", ""), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRecordReport records a real exhaustion, one already under way when
// recording starts, and checks the report against the client and ss.
func TestRecordReport(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	if res := ns.StartClient(t, churn.Config{Target: dst, Count: 8, Close: churn.CloseFin}).Wait(t); res.Connected != 8 {
		t.Fatalf("setup: %+v", res)
	}
	time.Sleep(100 * time.Millisecond)
	file := filepath.Join(t.TempDir(), "incident.ptcap")
	rec, log := startRecord(t, "-o", file, "--duration", "3s")
	cl := ns.StartClient(t, churn.Config{Target: dst, Count: 30, Close: churn.CloseFin})
	res := cl.Wait(t)
	time.Sleep(200 * time.Millisecond)
	wantTW := ns.TimeWait(t, dst)
	if err := rec.Wait(); err != nil {
		t.Fatalf("record: %v\n%s", err, log)
	}
	r := runReport(t, file)
	sp := spaceToward(t, liveOf(r), ns.Inode, dst)
	if res.Failures[testnet.EADDRNOTAVAIL] != 18 || wantTW != 20 {
		t.Fatalf("setup: client %+v, ss %d", res, wantTW)
	}
	if got := failures(sp, "EADDRNOTAVAIL"); got != 18 || sp.TotalConns != 30 || sp.TotalTWIn != 12 {
		t.Errorf("report: %d EADDRNOTAVAIL, %d attempts, %d TIME_WAIT entries; the client saw 18 of 30, 12 connected", got, sp.TotalConns, sp.TotalTWIn)
	}
	if sp.TimeWait != wantTW || sp.Usable != 20 {
		t.Errorf("report: TIME_WAIT %d of %d usable, ss says %d", sp.TimeWait, sp.Usable, wantTW)
	}
	if len(sp.Processes) != 1 || sp.Processes[0].PID != uint32(cl.Cmd.Process.Pid) {
		t.Errorf("processes %+v, want the client %d", sp.Processes, cl.Cmd.Process.Pid)
	}
	// Other tests may churn in their own namespaces meanwhile: the
	// capture's total is at least this namespace's.
	if r.Trailer == nil || !strings.Contains(r.Trailer.Reason, "--duration") || r.Damage != "" || r.Failures < 18 {
		t.Errorf("trailer %+v, damage %q, failures %d", r.Trailer, r.Damage, r.Failures)
	}
	want := os.Getenv("PORTTRACE_BACKEND")
	if want == "" {
		want = "tracepoint" // what this project's machines attach
	}
	if r.Header.Backend != want {
		t.Errorf("captured with the %s backend, want %s", r.Header.Backend, want)
	}
	text, err := exec.Command(binary, "report", file).Output()
	if err != nil || !strings.Contains(string(text), "127.0.0.1 -> 127.0.0.1:8080") || !strings.Contains(string(text), "18 EADDRNOTAVAIL") {
		t.Errorf("text report (%v):\n%s", err, text)
	}
	md, err := exec.Command(binary, "report", "--markdown", file).Output()
	if err != nil || !strings.Contains(string(md), "| PORT SPACE |") {
		t.Errorf("markdown report (%v):\n%s", err, md)
	}
}

// TestRecordKilled: SIGKILL leaves no trailer, and the report has every
// event flushed before it.
func TestRecordKilled(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 0)
	file := filepath.Join(t.TempDir(), "killed.ptcap")
	rec, _ := startRecord(t, "-o", file, "--duration", "1m")
	res := ns.StartClient(t, churn.Config{Target: dst, Count: 15, Close: churn.CloseFin}).Wait(t)
	time.Sleep(2500 * time.Millisecond) // past a flush
	rec.Process.Signal(syscall.SIGKILL)
	rec.Wait()
	r, stderr := runReportExit(t, file, 2)
	oneClearLine(t, stderr, "was cut off (no end record: the recorder was killed, or the disk filled)")
	got := failures(spaceToward(t, liveOf(r), ns.Inode, dst), "EADDRNOTAVAIL")
	if r.Trailer != nil || got != uint64(res.Failures[testnet.EADDRNOTAVAIL]) || got != 5 {
		t.Errorf("after SIGKILL: trailer %+v, %d failures; the client saw %+v", r.Trailer, got, res.Failures)
	}
}

func liveOf(r *report.Report) frame.Frame { return frame.Frame{Summary: r.Final} }

func TestCaptureBadInput(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	exec.Command("sh", "-c", "head -c 5000 /dev/urandom > "+garbage).Run()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"record"}, "-o FILE is required"},
		{[]string{"record", "-o", filepath.Join(dir, "x"), "--max-size", "lots"}, "--max-size"},
		{[]string{"report"}, "accepts 1 arg"},
		{[]string{"report", filepath.Join(dir, "missing")}, "no such file"},
		{[]string{"report", garbage}, "not a porttrace capture"},
		{[]string{"report", "--json", "--markdown", garbage}, "exclude each other"},
		{[]string{"top", "--replay", garbage, "--json"}, "use porttrace report"},
	} {
		out, err := exec.Command(binary, tc.args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("porttrace %s: %v, %q; want an error saying %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
}

// TestRecordDiskFullAndSIGINT records onto a tiny tmpfs until it fills,
// then, on a roomy one, stops with SIGINT: each time a clear message and a
// readable capture.
func TestRecordDiskFullAndSIGINT(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 0)
	mount := func(size string) string {
		dir := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", dir).Run() })
		return dir
	}

	full := filepath.Join(mount("12k"), "full.ptcap")
	rec, log := startRecord(t, "-o", full, "--duration", "30s")
	// Enough churn to fill 12 KiB: a failing connect() is ~4 events.
	ns.StartClient(t, churn.Config{Target: dst, Count: 3000, Close: churn.CloseFin}).Wait(t)
	err := rec.Wait()
	time.Sleep(100 * time.Millisecond)
	if err == nil || !strings.Contains(log.String(), "no space left on device") || !strings.Contains(log.String(), "readable up to its last complete block") {
		t.Errorf("disk full: %v\n%s", err, log)
	}
	out, err := exec.Command(binary, "report", full).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "without a trailer") || !strings.Contains(string(out), "was cut off") {
		t.Errorf("report of a capture cut by a full disk (%v):\n%s", err, out)
	}
	if r, _ := runReportExit(t, full, 2); r.Events != recorded(t, log.String()) {
		t.Errorf("after a full disk, record said %d events, report read %d", recorded(t, log.String()), r.Events)
	}

	file := filepath.Join(t.TempDir(), "int.ptcap")
	rec, log = startRecord(t, "-o", file, "--duration", "1m")
	res := ns.StartClient(t, churn.Config{Target: dst, Count: 15, Close: churn.CloseFin}).Wait(t)
	time.Sleep(200 * time.Millisecond)
	rec.Process.Signal(syscall.SIGINT)
	if err := rec.Wait(); err != nil {
		t.Fatalf("SIGINT: %v\n%s", err, log)
	}
	r := runReport(t, file)
	if r.Events != recorded(t, log.String()) {
		t.Errorf("after SIGINT, record said %d events, report read %d", recorded(t, log.String()), r.Events)
	}
	got := failures(spaceToward(t, liveOf(r), ns.Inode, dst), "EADDRNOTAVAIL")
	if r.Trailer == nil || r.Trailer.Reason != "interrupted" || got != uint64(res.Failures[testnet.EADDRNOTAVAIL]) {
		t.Errorf("after SIGINT: trailer %+v, %d failures, client %+v", r.Trailer, got, res.Failures)
	}
}

// TestReportStates: report says what a capture still being written and a
// damaged one are; the first exits 0, the damaged one 2 after printing
// what it could read.
func TestReportStates(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40009)
	dst := ns.Listen(t, "127.0.0.1:8080", 0)
	file := filepath.Join(t.TempDir(), "growing.ptcap")
	rec, log := startRecord(t, "-o", file, "--duration", "1m")
	ns.StartClient(t, churn.Config{Target: dst, Count: 15, Close: churn.CloseFin}).Wait(t)
	time.Sleep(2500 * time.Millisecond) // past a flush
	r, stderr := runReportExit(t, file, 0)
	oneClearLine(t, stderr, "is still being recorded: reported up to its last complete block")
	if r.Events == 0 {
		t.Errorf("nothing read from the capture being written")
	}
	rec.Process.Signal(syscall.SIGINT)
	if err := rec.Wait(); err != nil {
		t.Fatalf("record: %v\n%s", err, log)
	}
	whole := runReport(t, file)

	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) * 2 / 3; i < len(b)*2/3+64; i++ {
		b[i] ^= 0xff
	}
	damaged := filepath.Join(t.TempDir(), "damaged.ptcap")
	os.WriteFile(damaged, b, 0o644)
	cmd := exec.Command(binary, "report", damaged)
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("report of a damaged capture: %v", err)
	}
	oneClearLine(t, errb.String(), "damaged.ptcap is damaged: reading stopped at")
	if !strings.Contains(string(out), "DIAGNOSIS") && !strings.Contains(string(out), "damage") {
		t.Errorf("report of a damaged capture printed nothing it read:\n%s", out)
	}
	if r, _ := runReportExit(t, damaged, 2); r.Events >= whole.Events || r.Damage == "" {
		t.Errorf("damaged: %d events of %d, damage %q", r.Events, whole.Events, r.Damage)
	}
}

// TestReportGoneNamespace: a namespace whose client exhausts its ports is
// deleted while recording, as a job's pod ends; the report still shows
// its space, with the client's failures, as gone, and the diagnosis is
// about it.
func TestReportGoneNamespace(t *testing.T) {
	testnet.RequireRoot(t)
	file := filepath.Join(t.TempDir(), "gone.ptcap")
	rec, log := startRecord(t, "-o", file, "--duration", "8s")
	ns := testnet.New(t, 40000, 40009)
	ino := ns.Inode
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	res := ns.StartClient(t, churn.Config{Target: dst, Count: 25, Close: churn.CloseFin}).Wait(t)
	time.Sleep(200 * time.Millisecond) // the last FIN exchanges
	if tw := ns.TimeWait(t, dst); res.Failures[testnet.EADDRNOTAVAIL] != 15 || tw != 10 {
		t.Fatalf("setup: %+v, ss TIME_WAIT %d", res, tw)
	}
	// record reads a namespace new to it within a second (not at its
	// next 5 s round): then it may go.
	time.Sleep(1300 * time.Millisecond)
	ns.Close(t)
	if err := rec.Wait(); err != nil { // a round of tables after the namespace went
		t.Fatalf("record: %v\n%s", err, log)
	}
	r := runReport(t, file)
	for name, s := range map[string]*summary.Summary{"final": r.Final, "peak": r.Peak} {
		if s == nil {
			t.Fatalf("no %s summary", name)
		}
		sp := spaceToward(t, frame.Frame{Summary: s}, ino, dst)
		if got := failures(sp, "EADDRNOTAVAIL"); got != 15 || sp.TotalConns != 25 || sp.Usable != 10 {
			t.Errorf("%s: %d EADDRNOTAVAIL of %d attempts, %d usable; the client saw 15 of 25, of 10 ports", name, got, sp.TotalConns, sp.Usable)
		}
		if name == "final" && (!sp.Gone || sp.Used != 0) {
			t.Errorf("final: gone %v, used %d; the namespace is gone: want true, 0", sp.Gone, sp.Used)
		}
		// Its 10 ports were all in TIME_WAIT while it lived (ss: 10).
		if pk := r.PeakUsed[sp.Where()]; pk != 100 {
			t.Errorf("peak used %v%%, want 100%%", pk)
		}
	}
	if len(findingsIn(frame.Frame{Summary: r.Peak, Findings: r.Findings}, ino)) == 0 {
		t.Errorf("no finding about the gone namespace's space: %+v", r.Findings)
	}
}

// TestRecordOutputChecked: record refuses an output it must not write in
// one line, before any probe attaches (issue 21: a FIFO failed only after
// attaching, with "sync capture: invalid argument"; a planted symlink was
// written through).
func TestRecordOutputChecked(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep"), 0o600)
	link := filepath.Join(dir, "link.ptcap")
	os.Symlink(target, link)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"record", "-o", fifo}, "is not a regular file (a FIFO)"},
		{[]string{"record", "-o", link, "--overwrite"}, "is a symbolic link: porttrace never writes through a link"},
		{[]string{"record", "-o", target}, "exists: porttrace writes only a file it creates"},
	} {
		start := time.Now()
		code, stderr := run(t, nil, c.args...)
		if code != 1 {
			t.Errorf("%v: exit %d", c.args, code)
		}
		oneClearLine(t, stderr, c.want)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%v took %s: refused after attaching?", c.args, d)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("target written: %q", b)
	}
}

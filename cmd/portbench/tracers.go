package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// condition is a tracer to run during churn, or none.
type condition struct {
	name  string
	argv  []string
	env   []string
	ready string // a line of its output that says its probes are attached
	// porttrace prints its figures as JSON on stdout when it stops
	porttrace bool
	// jsonStats: it prints events and lost_events as JSON when it stops,
	// as porttrace does (the floor programs)
	jsonStats bool
}

// bpftraceProg prints every event of the tracepoint tcpstates uses.
const bpftraceProg = `tracepoint:sock:inet_sock_set_state { printf("%d %s %d %d %d\n", pid, comm, args->sport, args->oldstate, args->newstate); }`

// conditions are no tracer, porttrace with each backend that attaches, and
// the peers that are installed; notes say what was left out and why.
func conditions(o options) ([]condition, []string) {
	conds := append([]condition{{name: "no tracer"}}, floorConditions()...)
	var notes []string
	for _, b := range []string{"fentry", "kprobe", "tracepoint"} {
		c := condition{name: "porttrace (" + b + ")", porttrace: true, ready: "tracing with",
			argv: []string{o.porttrace, "top", "--json", "--interval", "1h", "--backend", b}}
		if err := attaches(c); err != nil {
			notes = append(notes, fmt.Sprintf("porttrace %s backend: not measured, it does not attach here: %v", b, err))
			continue
		}
		conds = append(conds, c)
	}
	if p, err := exec.LookPath("tcpstates-bpfcc"); err == nil {
		var env []string
		if o.bccSource != "" {
			env = []string{"BCC_KERNEL_SOURCE=" + o.bccSource}
		}
		conds = append(conds, condition{name: "BCC tcpstates", argv: []string{p}, env: env, ready: "SKADDR"})
	} else {
		notes = append(notes, "BCC tcpstates: not installed (.ci/bench-deps installs bpfcc-tools)")
	}
	if p, err := exec.LookPath("bpftrace"); err == nil {
		conds = append(conds, condition{name: "bpftrace printf", argv: []string{p, "-e", bpftraceProg}, ready: "Attaching"})
	} else {
		notes = append(notes, "bpftrace: not installed (.ci/bench-deps installs it)")
	}
	if len(notes) > 0 {
		notes = append(notes, "")
	}
	return conds, notes
}

func attaches(c condition) error {
	t, err := start(c)
	if err != nil {
		return err
	}
	_, err = t.stop()
	return err
}

// tracer is a running condition.
type tracer struct {
	c      condition
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  int
	lost   int
	stdout strings.Builder // porttrace's JSON
	tail   []string        // its last lines of stderr, for errors
	done   sync.WaitGroup
}

// Stats are what a tracer counted while it ran.
type Stats struct {
	Events, Lost uint64
	CPU          time.Duration // user + system
	PeakRSS      int           // KiB
}

var lostLine = regexp.MustCompile(`(?i)(?:possibly )?lost (\d+) (?:samples|events)`)

// start runs c and returns once its probes are attached.
func start(c condition) (*tracer, error) {
	t := &tracer{c: c, cmd: exec.Command(c.argv[0], c.argv[1:]...)}
	t.cmd.Env = append(os.Environ(), c.env...)
	stdout, _ := t.cmd.StdoutPipe()
	stderr, _ := t.cmd.StderrPipe()
	if err := t.cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	var once sync.Once
	t.done.Add(2)
	for _, r := range []io.Reader{stdout, stderr} {
		go t.read(r, r == io.Reader(stdout), func() { once.Do(func() { close(ready) }) })
	}
	exited := make(chan struct{})
	go func() { t.done.Wait(); close(exited) }()
	select {
	case <-ready:
		time.Sleep(500 * time.Millisecond) // porttrace's first socket table dump
		return t, nil
	case <-exited:
		t.cmd.Wait()
		return nil, fmt.Errorf("%s exited before attaching: %s", c.name, strings.Join(t.tail, " | "))
	case <-time.After(2 * time.Minute): // BCC compiles at start
		t.cmd.Process.Kill()
		t.cmd.Wait()
		return nil, fmt.Errorf("%s did not attach within 2 minutes", c.name)
	}
}

// read consumes one of the tracer's outputs as a user's pipe would,
// counting lines and lost events.
func (t *tracer) read(r io.Reader, isStdout bool, ready func()) {
	defer t.done.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, t.c.ready) {
			ready()
		}
		t.mu.Lock()
		if m := lostLine.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			t.lost += n
		} else if isStdout {
			t.lines++
		}
		if isStdout && (t.c.porttrace || t.c.jsonStats) {
			t.stdout.WriteString(line + "\n")
		}
		if !isStdout {
			t.tail = append(t.tail[max(0, len(t.tail)-4):], line)
		}
		t.mu.Unlock()
	}
}

// peakRSS is the tracer's VmHWM in KiB.
func (t *tracer) peakRSS() int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", t.cmd.Process.Pid))
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// stop ends the tracer with SIGINT, as a user would, and reads its counts.
func (t *tracer) stop() (Stats, error) {
	rss := t.peakRSS()
	t.cmd.Process.Signal(syscall.SIGINT)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		<-ctx.Done()
		t.cmd.Process.Kill()
	}()
	t.done.Wait()
	err := t.cmd.Wait()
	st := Stats{PeakRSS: rss}
	if ps := t.cmd.ProcessState; ps != nil {
		st.CPU = ps.UserTime() + ps.SystemTime()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	st.Events, st.Lost = uint64(t.lines), uint64(t.lost)
	if t.c.porttrace || t.c.jsonStats {
		var r struct {
			Events uint64 `json:"events"`
			Lost   uint64 `json:"lost_events"`
		}
		if jerr := json.Unmarshal([]byte(t.stdout.String()), &r); jerr != nil {
			return st, fmt.Errorf("%s output: %v (%v: %s)", t.c.name, jerr, err, strings.Join(t.tail, " | "))
		}
		st.Events, st.Lost = r.Events, r.Lost
		return st, nil
	}
	// A peer still printing its backlog after 30 s was killed: its counts
	// are what it had printed.
	return st, nil
}

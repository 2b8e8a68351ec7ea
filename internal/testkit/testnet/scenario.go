package testnet

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porttrace/porttrace/internal/testkit/churn"
)

// Scenarios are client programs beyond churn's loop, each run as its own
// process in a namespace (StartScenario) so that its pid is ground truth.
// Each gets its argument as JSON and prints its result as JSON.
var scenarios = map[string]func(arg []byte) (any, error){
	"async": takes(asyncFailures),
	"hold":  takes(holdConnections),
	"bind":  takes(bindNamed),
	"block": takes(blockingConnect),
}

// takes gives a scenario its argument, decoded from JSON.
func takes[A any](fn func(A) (any, error)) func([]byte) (any, error) {
	return func(arg []byte) (any, error) {
		var a A
		if err := json.Unmarshal(arg, &a); err != nil {
			return nil, err
		}
		return fn(a)
	}
}

const scenarioArgEnv = "PORTTRACE_SCENARIO_ARG"

// Scenario is a scenario process.
type Scenario struct {
	Cmd   *exec.Cmd
	out   strings.Builder
	lines chan string // its stderr, closed at its end
}

// StartScenario runs scenario name with arg inside the namespace.
func (n *Netns) StartScenario(t testing.TB, name string, arg any) *Scenario {
	t.Helper()
	b, _ := json.Marshal(arg)
	s := &Scenario{Cmd: n.helper(t, "scenario:"+name, scenarioArgEnv+"="+string(b))}
	s.Cmd.Stdout = &s.out
	stderr, _ := s.Cmd.StderrPipe()
	s.lines = make(chan string, 1024)
	if err := s.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(os.Stderr, sc.Text())
			s.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { s.Cmd.Process.Kill(); s.Cmd.Wait() })
	return s
}

// WaitLine waits until the scenario prints a line containing want on
// stderr: it has reached that point.
func (s *Scenario) WaitLine(t testing.TB, want string) {
	t.Helper()
	for line := range s.lines {
		if strings.Contains(line, want) {
			return
		}
	}
	t.Fatalf("scenario ended before printing %q", want)
}

// Pid is the scenario's process: `ip netns exec` execs it in place.
func (s *Scenario) Pid() uint32 { return uint32(s.Cmd.Process.Pid) }

// Wait decodes the scenario's result into v.
func (s *Scenario) Wait(t testing.TB, v any) {
	t.Helper()
	for range s.lines {
	}
	if err := s.Cmd.Wait(); err != nil {
		t.Fatalf("scenario: %v\n%s", err, s.out.String())
	}
	if err := json.Unmarshal([]byte(s.out.String()), v); err != nil {
		t.Fatalf("scenario output %q: %v", s.out.String(), err)
	}
}

func runScenario(name string) {
	fn := scenarios[name]
	if fn == nil {
		fmt.Fprintln(os.Stderr, "no scenario", name)
		os.Exit(2)
	}
	res, err := fn([]byte(os.Getenv(scenarioArgEnv)))
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(2)
	}
	json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
}

// AsyncArgs: non-blocking connects whose outcome comes later.
type AsyncArgs struct {
	Refused netip.AddrPort // nothing listens: each connect is refused
	Count   int            // connects toward Refused
	Stalled netip.AddrPort // a listener whose accept queue is full: SYNs are dropped
	GiveUp  time.Duration  // how long to wait on Stalled before closing
}

// AsyncResult is what each call came to, by errno name as SO_ERROR gave it,
// "EINPROGRESS" for connect()'s own return, and "given up" for Stalled.
type AsyncResult struct {
	Returned []string `json:"returned"`
	Outcomes []string `json:"outcomes"`
}

func asyncFailures(a AsyncArgs) (any, error) {
	var res AsyncResult
	for range a.Count {
		ret, out, err := nonBlocking(a.Refused, 5*time.Second)
		if err != nil {
			return nil, err
		}
		res.Returned, res.Outcomes = append(res.Returned, ret), append(res.Outcomes, out)
	}
	ret, out, err := nonBlocking(a.Stalled, a.GiveUp)
	if err != nil {
		return nil, err
	}
	res.Returned, res.Outcomes = append(res.Returned, ret), append(res.Outcomes, out)
	return res, nil
}

// nonBlocking connects without waiting, then polls for the outcome for at
// most wait; it closes the socket either way.
func nonBlocking(dst netip.AddrPort, wait time.Duration) (ret, outcome string, err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", "", err
	}
	defer unix.Close(fd)
	ret = "0"
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}); err != nil {
		ret = churn.ErrName(err)
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(fds, int(wait.Milliseconds()))
	if err != nil {
		return "", "", err
	}
	if n == 0 {
		return ret, "given up", nil
	}
	soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return "", "", err
	}
	if soErr == 0 {
		return ret, "connected", nil
	}
	return ret, churn.ErrName(unix.Errno(soErr)), nil
}

// HoldArgs: open Count connections to Target and keep them for Hold.
type HoldArgs struct {
	Target netip.AddrPort
	Count  int
	Hold   time.Duration
}

// HoldResult lists the source ports held.
type HoldResult struct {
	Ports []int `json:"ports"`
}

func holdConnections(a HoldArgs) (any, error) {
	var res HoldResult
	for range a.Count {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(a.Target.Port()), Addr: a.Target.Addr().As4()}); err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		sa, _ := unix.Getsockname(fd)
		res.Ports = append(res.Ports, sa.(*unix.SockaddrInet4).Port)
	}
	// Ready: the test waits for this line, then starts porttrace.
	fmt.Fprintln(os.Stderr, "holding", len(res.Ports))
	time.Sleep(a.Hold)
	return res, nil
}

// BindArgs: bind() to a named address, as a service starting up does.
type BindArgs struct {
	Addr netip.AddrPort
}

// BindResult is bind()'s errno name, "" for success.
type BindResult struct {
	Errno string `json:"errno"`
}

func bindNamed(a BindArgs) (any, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var res BindResult
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(a.Addr.Port()), Addr: a.Addr.Addr().As4()}); err != nil {
		res.Errno = churn.ErrName(err)
	}
	return res, nil
}

// blockingConnect connects and blocks (Target drops its SYNs) until killed.
func blockingConnect(a HoldArgs) (any, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(os.Stderr, "connecting")
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(a.Target.Port()), Addr: a.Target.Addr().As4()})
	return BindResult{Errno: churn.ErrName(err)}, nil
}

// StalledListener listens at addr with an accept queue of one that it
// fills and never accepts from: every later SYN is dropped, and a connect
// toward it stays in SYN_SENT.
func (n *Netns) StalledListener(t testing.TB, addr netip.AddrPort) {
	t.Helper()
	var lfd, cfd int
	var err error
	n.Do(t, func() {
		sa := &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
		if lfd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return
		}
		if err = unix.Bind(lfd, sa); err != nil {
			return
		}
		if err = unix.Listen(lfd, 0); err != nil {
			return
		}
		if cfd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return
		}
		err = unix.Connect(cfd, sa)
	})
	if err != nil {
		t.Fatalf("stalled listener: %v", err)
	}
	t.Cleanup(func() { unix.Close(cfd); unix.Close(lfd) })
}

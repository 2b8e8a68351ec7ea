// Package testnet gives kernel tests a private network namespace with a tiny
// port range, a listener and client processes inside it, and the ground
// truth they are checked against (ss, the client's own errno counts). All
// traffic stays on the namespace's loopback.
package testnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/testkit/churn"
)

// RequireRoot skips a test that needs root and BPF, with a message, unless
// PORTTRACE_REQUIRE_BPF=1 (CI), where a skip would hide a broken setup.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("PORTTRACE_REQUIRE_BPF") == "1" {
		t.Fatal("kernel test needs root, and PORTTRACE_REQUIRE_BPF=1 forbids skipping it")
	}
	t.Skip("kernel test needs root: run `sudo go test ./...` (skipped)")
}

// RequireTool returns the path of a program a test drives (nginx, wrk,
// tmux). .ci/deps installs them, so in CI their absence is a failure.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("PORTTRACE_REQUIRE_BPF") == "1" {
		t.Fatalf("%s is missing (sh .ci/deps installs it): %v", name, err)
	}
	t.Skipf("%s is missing: run sh .ci/deps (skipped)", name)
	return ""
}

// Netns is a network namespace made for one test and removed after it.
type Netns struct {
	Name      string
	Inode     uint32
	closed    bool
	listeners []net.Listener
}

// New makes a namespace with loopback up, ip_local_port_range lo..hi and
// tcp_tw_reuse=0 (so that loopback behaves like a remote upstream: TIME_WAIT
// ports are not reused after 1 s).
func New(t testing.TB, lo, hi int) *Netns {
	t.Helper()
	share(t)
	sweep.Do(removeStale)
	n := &Netns{Name: fmt.Sprintf("%s%d-%d", namePrefix, os.Getpid(), rand.IntN(1<<30))}
	run(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() { n.Close(t) })
	run(t, "ip", "-n", n.Name, "link", "set", "lo", "up")
	var st unix.Stat_t
	if err := unix.Stat("/run/netns/"+n.Name, &st); err != nil {
		t.Fatalf("stat netns: %v", err)
	}
	n.Inode = uint32(st.Ino)
	n.Sysctl(t, "net/ipv4/ip_local_port_range", fmt.Sprintf("%d %d", lo, hi))
	n.Sysctl(t, "net/ipv4/tcp_tw_reuse", "0")
	return n
}

// namePrefix begins the name of every namespace New makes; the test
// process's PID follows.
const namePrefix = "porttrace-test-"

var sweep sync.Once

// removeStale removes the namespaces of test processes that are gone: a
// test binary killed (a go test timeout, SIGKILL) runs no cleanup, and its
// namespaces would stay, and be traced and dumped by every porttrace that
// runs after. A PID reused since is left alone.
func removeStale() {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		rest, ours := strings.CutPrefix(e.Name(), namePrefix)
		pid, _, _ := strings.Cut(rest, "-")
		if _, err := strconv.Atoi(pid); !ours || err != nil {
			continue // not a name New made
		}
		if _, err := os.Stat("/proc/" + pid); errors.Is(err, os.ErrNotExist) {
			exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
}

// lockPath serialises, through flock, the tests of one go test run that
// need the machine quiet against those that make traffic: go test runs
// packages as processes side by side.
const lockPath = "/run/porttrace-tests.lock"

// quiet: this process holds the lock exclusively (Quiet).
var quiet bool

// Quiet waits until no test of another package has a namespace, and keeps
// them from making one until t ends: for a test whose ground truth is the
// whole machine's, such as an agent's count of every failure it saw.
func Quiet(t testing.TB) {
	t.Helper()
	lock(t, unix.LOCK_EX)
	quiet = true
	t.Cleanup(func() { quiet = false })
}

// share holds the lock shared for t: namespaces of any number of tests
// may exist together, but not beside a Quiet one.
func share(t testing.TB) {
	if !quiet {
		lock(t, unix.LOCK_SH)
	}
}

func lock(t testing.TB, how int) {
	t.Helper()
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		t.Fatalf("lock %s: %v", lockPath, err)
	}
	t.Cleanup(func() { f.Close() }) // after the namespace is gone: cleanups run last first
}

// Close closes the namespace's listeners and deletes it; it goes once
// nothing else holds it.
func (n *Netns) Close(t testing.TB) {
	for _, ln := range n.listeners {
		ln.Close()
	}
	if !n.closed {
		exec.Command("ip", "netns", "del", n.Name).Run()
		n.closed = true
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Do runs fn on an OS thread that has entered the namespace. Sockets created
// there stay in it; /proc/sys/net shows its settings.
func (n *Netns) Do(t testing.TB, fn func()) {
	t.Helper()
	if err := netns.Within("/run/netns/"+n.Name, fn); err != nil {
		t.Fatal(err)
	}
}

// Sysctl writes a /proc/sys value inside the namespace.
func (n *Netns) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	var err error
	n.Do(t, func() { err = os.WriteFile("/proc/sys/"+key, []byte(value), 0) })
	if err != nil {
		t.Fatalf("sysctl %s=%s: %v", key, value, err)
	}
}

// Listen starts a server at addr inside the namespace. It reads each
// connection to its end and closes it after closeDelay, so that the client
// is the active closer and its ports go to TIME_WAIT.
func (n *Netns) Listen(t testing.TB, addr string, closeDelay time.Duration) netip.AddrPort {
	t.Helper()
	return n.Serve(t, addr, func(c net.Conn) {
		io.Copy(io.Discard, c)
		time.Sleep(closeDelay)
	})
}

// Serve accepts connections at addr inside the namespace and runs handle on
// each, closing the connection when it returns.
func (n *Netns) Serve(t testing.TB, addr string, handle func(net.Conn)) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	var err error
	n.Do(t, func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	n.listeners = append(n.listeners, ln)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// TimeWait counts the sockets ss shows in TIME_WAIT toward dst.
func (n *Netns) TimeWait(t testing.TB, dst netip.AddrPort) int {
	t.Helper()
	out := run(t, "ip", "netns", "exec", n.Name, "ss", "-Htan", "state", "time-wait")
	count := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && addrPortEqual(f[len(f)-1], dst) {
			count++
		}
	}
	return count
}

func addrPortEqual(ssField string, want netip.AddrPort) bool {
	ap, err := netip.ParseAddrPort(ssField)
	if err != nil {
		// ss prints IPv6 as [::1]:port and v4-mapped as [::ffff:a.b.c.d]:port.
		return false
	}
	return ap.Addr().Unmap() == want.Addr().Unmap() && ap.Port() == want.Port()
}

// helperEnv is how a test binary asks a copy of itself to act as a client.
const helperEnv = "PORTTRACE_TEST_HELPER"

// Client is a churn client process running inside the namespace.
type Client struct {
	Cmd    *exec.Cmd
	out    strings.Builder
	result churn.Result
}

// StartClient runs the test binary itself as a churn client inside the
// namespace; TestMain must call RunHelper. Its pid is the one porttrace must
// name.
func (n *Netns) StartClient(t testing.TB, c churn.Config) *Client {
	t.Helper()
	cfg, _ := json.Marshal(c)
	cl := &Client{Cmd: n.helper(t, "churn", "PORTTRACE_CHURN="+string(cfg))}
	cl.Cmd.Stdout = &cl.out
	cl.Cmd.Stderr = os.Stderr
	if err := cl.Cmd.Start(); err != nil {
		t.Fatalf("start client: %v", err)
	}
	return cl
}

// Wait returns what the client saw.
func (c *Client) Wait(t testing.TB) churn.Result {
	t.Helper()
	if err := c.Cmd.Wait(); err != nil {
		t.Fatalf("client: %v\n%s", err, c.out.String())
	}
	if err := json.Unmarshal([]byte(c.out.String()), &c.result); err != nil {
		t.Fatalf("client output %q: %v", c.out.String(), err)
	}
	return c.result
}

// StartBystander runs a process that burns CPU without any networking, so
// that softirqs often interrupt it: porttrace must never name it.
func StartBystander(t testing.TB) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), helperEnv+"=spin")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// helper is the test binary run inside the namespace as the helper role
// (RunHelper), with env added to its environment.
func (n *Netns) helper(t testing.TB, role string, env ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", n.Name, self)
	cmd.Env = append(append(os.Environ(), helperEnv+"="+role), env...)
	return cmd
}

// RunHelper turns the process into a helper if a test started it as one.
// Call it first in TestMain.
func RunHelper() {
	if name, ok := strings.CutPrefix(os.Getenv(helperEnv), "scenario:"); ok {
		runScenario(name)
	}
	switch os.Getenv(helperEnv) {
	case "churn":
		var c churn.Config
		if err := json.Unmarshal([]byte(os.Getenv("PORTTRACE_CHURN")), &c); err != nil {
			fmt.Fprintln(os.Stderr, "churn config:", err)
			os.Exit(2)
		}
		res, err := churn.Run(c)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		json.NewEncoder(os.Stdout).Encode(res)
		os.Exit(0)
	case "spin":
		// Bounded: a leaked bystander stops by itself.
		for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); {
		}
		os.Exit(0)
	}
}

// Comm is the kernel's name for a process started from path.
func Comm(path string) string {
	base := path[strings.LastIndexByte(path, '/')+1:]
	if len(base) > 15 {
		base = base[:15]
	}
	return base
}

// Errno names used in client results.
var EADDRNOTAVAIL = churn.ErrName(syscall.EADDRNOTAVAIL)

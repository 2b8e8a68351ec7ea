// Command churn is porttrace's load generator: it opens and actively
// closes TCP connections from several threads as fast as it can, against a
// listener of its own, inside a private network namespace that it makes
// and that vanishes with it. It prints connects/s, connect() latency and
// failures by errno.
//
//	churn --mode reset --duration 8s            # CPU-bound churn, no TIME_WAIT
//	churn --mode fin --threads 2                # every client port to TIME_WAIT
//	churn --mode exhaust --ports 40000-40999    # tcp_tw_reuse=0: EADDRNOTAVAIL
//	churn --mode spaces --spaces 100000         # one attempt per port space
//	churn --mode reset --bind                   # bind() before each connect()
package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/porttrace/porttrace/internal/testkit/churn"
)

// inNetns marks the re-executed child that runs inside the new namespace.
const inNetns = "CHURN_IN_NETNS"

var modes = []string{"reset", "fin", "exhaust", "spaces"}

type options struct {
	mode     string
	threads  int
	duration time.Duration
	count    int
	ports    string
	spaces   int
	bind     bool
	asJSON   bool
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "reset", "reset: abort with RST (no TIME_WAIT); fin: close first (TIME_WAIT); exhaust: fin with tcp_tw_reuse=0 in --ports; spaces: one attempt per destination, --spaces of them, nothing listening")
	flag.IntVar(&o.threads, "threads", 1, "client threads")
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "how long to run (at most 10m)")
	flag.IntVar(&o.count, "count", 0, "attempts per thread at most; 0 for no limit")
	flag.StringVar(&o.ports, "ports", "", "the namespace's ip_local_port_range, LOW-HIGH (default: the kernel's, 32768-60999; with --mode exhaust, 40000-40999)")
	flag.IntVar(&o.spaces, "spaces", 100_000, "with --mode spaces, how many destinations")
	flag.BoolVar(&o.bind, "bind", false, "bind() each socket to port 0 of the listener's address before connect(), as nginx proxy_bind does")
	flag.BoolVar(&o.asJSON, "json", false, "print the result as JSON")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "churn:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if err := o.check(); err != nil {
		return err
	}
	if os.Getenv(inNetns) == "" {
		return reexec()
	}
	target, err := setup(o)
	if err != nil {
		return err
	}
	c := churn.Config{Target: target, Count: o.count, Duration: o.duration, Threads: o.threads, Close: churn.CloseFin, BindFirst: o.bind}
	switch o.mode {
	case "reset":
		c.Close = churn.CloseReset
	case "spaces":
		c.Spaces, c.Count = o.spaces, (o.spaces+o.threads-1)/o.threads
	}
	res, err := churn.Run(c)
	if err != nil {
		return err
	}
	return print(os.Stdout, o, res)
}

func (o options) check() error {
	switch {
	case !slices.Contains(modes, o.mode):
		return fmt.Errorf("--mode %q: use %s", o.mode, strings.Join(modes, ", "))
	case o.threads < 1 || o.threads > 256:
		return errors.New("--threads must be 1 to 256")
	case o.duration <= 0 || o.duration > 10*time.Minute:
		return errors.New("--duration must be more than 0 and at most 10m")
	case o.count < 0 || o.spaces < 1:
		return errors.New("--count and --spaces must be positive")
	}
	var lo, hi int
	if n, _ := fmt.Sscanf(o.ports, "%d-%d", &lo, &hi); o.ports != "" && (n != 2 || lo < 1024 || hi > 65535 || lo > hi) {
		return fmt.Errorf("--ports %q: want LOW-HIGH within 1024-65535", o.ports)
	}
	return nil
}

// reexec runs this program again in a new network namespace.
func reexec() error {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	cmd.Env = append(os.Environ(), inNetns+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	if errors.Is(err, syscall.EPERM) {
		return errors.New("making a private network namespace needs root (CAP_SYS_ADMIN)")
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		os.Exit(exit.ExitCode()) // the child said why
	}
	return err
}

// setup brings up loopback, sets the port range (and, to exhaust it,
// tcp_tw_reuse=0: loopback would otherwise reuse TIME_WAIT ports after 1 s),
// and starts the listener. It returns the target.
func setup(o options) (netip.AddrPort, error) {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bring up loopback: %w", err)
	}
	sysctl := map[string]string{}
	if o.mode == "exhaust" {
		sysctl["ipv4/tcp_tw_reuse"] = "0"
		o.ports = cmp.Or(o.ports, "40000-40999")
	}
	if o.ports != "" {
		sysctl["ipv4/ip_local_port_range"] = strings.Replace(o.ports, "-", " ", 1)
	}
	for k, v := range sysctl {
		if err := os.WriteFile("/proc/sys/net/"+k, []byte(v), 0o644); err != nil {
			return netip.AddrPort{}, err
		}
	}
	if o.mode == "spaces" {
		return netip.MustParseAddrPort("127.1.0.1:10000"), nil // nothing listens there
	}
	target := netip.MustParseAddrPort("127.0.0.1:8080")
	fd, err := listen(target)
	if err != nil {
		return netip.AddrPort{}, err
	}
	for range o.threads {
		go serve(fd)
	}
	return target, nil
}

func listen(addr netip.AddrPort) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}); err != nil {
		return -1, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return fd, unix.Listen(fd, 4096)
}

// serve reads each connection to its end before closing it, so that the
// client closes first and its port, not the server's, goes to TIME_WAIT.
// The client closes right after connect(), so the read rarely waits: one
// blocking thread per client thread keeps up, with plain system calls, so
// that the server costs the machine as little as it can and the client's
// rate is what a tracer changes.
func serve(l int) {
	runtime.LockOSThread()
	buf := make([]byte, 512)
	for {
		fd, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC)
		if err != nil {
			continue
		}
		for {
			if n, err := unix.Read(fd, buf); n <= 0 || err != nil {
				break
			}
		}
		unix.Close(fd)
	}
}

func print(w io.Writer, o options, r churn.Result) error {
	r.Ports = nil
	if o.asJSON {
		return json.NewEncoder(w).Encode(struct {
			Mode    string  `json:"mode"`
			Threads int     `json:"threads"`
			Rate    float64 `json:"connects_per_second"`
			churn.Result
		}{o.mode, o.threads, r.Rate(), r})
	}
	fails := "none"
	if len(r.Failures) > 0 {
		var parts []string
		for errno, n := range r.Failures {
			parts = append(parts, fmt.Sprintf("%s %s", errno, humanize.Comma(int64(n))))
		}
		slices.Sort(parts)
		fails = strings.Join(parts, ", ")
	}
	_, err := fmt.Fprintf(w, "%s, %d thread(s), %s: %s connects/s (%s attempts, %s connected), connect() p50 %s p99 %s; failures: %s\n",
		o.mode, o.threads, r.Elapsed.Round(time.Millisecond), humanize.Comma(int64(r.Rate())),
		humanize.Comma(int64(r.Attempts)), humanize.Comma(int64(r.Connected)), r.P50, r.P99, fails)
	return err
}

// Package churn opens and closes TCP connections as fast as it can, the way a
// proxy without upstream keepalive does, and counts what connect() returned.
// Tests use it as ground truth; benchmarks use it as load.
package churn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/porttrace/porttrace/internal/event"
)

// CloseMode says how the client ends each connection.
type CloseMode string

const (
	// CloseFin closes normally: the client closes first and its port
	// stays in TIME_WAIT, as with a proxy closing upstream connections.
	CloseFin CloseMode = "fin"
	// CloseReset aborts with SO_LINGER 0: no TIME_WAIT, the cheapest churn.
	CloseReset CloseMode = "reset"
)

// Config bounds a run by count and time: it always stops by itself.
type Config struct {
	Target   netip.AddrPort
	Count    int           // connect() calls at most; 0: no limit
	Duration time.Duration // at most; 0: no limit (Count must be set)
	Close    CloseMode
	// StopAfterFailures ends the run after this many failed calls.
	StopAfterFailures int
	// BindFirst binds each socket to port 0 of the target's loopback
	// before connecting, as proxies with a source address do (nginx
	// proxy_bind, Envoy upstream bind): the port is taken by bind().
	BindFirst bool
	// Threads run the loop in parallel, each on its own OS thread; the
	// bounds apply to each. 0 is 1.
	Threads int
	// Spaces, if more than 1, spreads the attempts over that many
	// destinations, so as many port spaces: ports Target.Port to
	// Target.Port+999 of Target's IPv4 address, then of the next ones.
	Spaces int
	// Targets, if set, replaces Target: the attempts go to each in turn.
	Targets []netip.AddrPort `json:",omitempty"`
	// BindAddr is the address BindFirst binds to; Target's by default.
	BindAddr netip.Addr `json:",omitempty"`
	// Interval paces the attempts of each thread: one per Interval.
	Interval time.Duration `json:",omitempty"`
	// ThreadName names each connecting thread ThreadName-N (prctl
	// PR_SET_NAME), unlike the process.
	ThreadName string `json:",omitempty"`
	// PortRange, if set, is each socket's own IP_LOCAL_PORT_RANGE
	// (Linux 6.3+): [low, high], set before bind() and connect().
	PortRange [2]uint16 `json:",omitempty"`
	// FastOpenConnect sets TCP_FASTOPEN_CONNECT before connect(). Where
	// the client has a Fast Open cookie or needs none (the namespace's
	// net.ipv4.tcp_fastopen has bit 0x4), connect() takes a port and
	// returns 0 without sending a SYN, which waits for a first write: the
	// client never writes, so each socket closes with no segment sent.
	FastOpenConnect bool `json:",omitempty"`
}

// Result is what the client saw. Failures count both bind() and connect()
// errors by errno; with BindFirst, EADDRINUSE comes from bind().
type Result struct {
	Attempts  int            `json:"attempts"`
	Connected int            `json:"connected"`
	Failures  map[string]int `json:"failures"` // by errno name, e.g. EADDRNOTAVAIL
	Elapsed   time.Duration  `json:"elapsed_ns"`
	Ports     []int          `json:"ports,omitempty"` // source ports of the first connections
	// Latency of connect() calls, from a sample of at most 1M per thread.
	P50 time.Duration `json:"connect_p50_ns"`
	P99 time.Duration `json:"connect_p99_ns"`
}

// Rate is attempts per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Attempts) / r.Elapsed.Seconds()
}

// Failed is the total of failed connect() calls.
func (r Result) Failed() int {
	n := 0
	for _, v := range r.Failures {
		n += v
	}
	return n
}

// Run churns until a bound is reached.
func Run(c Config) (Result, error) {
	if c.Count == 0 && c.Duration == 0 {
		return Result{}, fmt.Errorf("churn needs a count or a duration")
	}
	if c.Spaces > 1 && !c.Target.Addr().Is4() {
		return Result{}, fmt.Errorf("churn spreads over port spaces on IPv4 only")
	}
	threads := max(c.Threads, 1)
	results := make([]Result, threads)
	samples := make([][]uint32, threads)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range threads {
		wg.Go(func() {
			runtime.LockOSThread()
			// The main thread's name is the process's (ps shows it):
			// only the others get a name of their own.
			if c.ThreadName != "" && unix.Gettid() != os.Getpid() {
				name := []byte(fmt.Sprintf("%s-%d\x00", c.ThreadName, i))
				unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0)
			}
			results[i], samples[i] = loop(c, i)
		})
	}
	wg.Wait()
	res := Result{Failures: map[string]int{}, Elapsed: time.Since(start)}
	for _, r := range results {
		res.Attempts += r.Attempts
		res.Connected += r.Connected
		for k, v := range r.Failures {
			res.Failures[k] += v
		}
		res.Ports = append(res.Ports, r.Ports[:min(len(r.Ports), 1024-len(res.Ports))]...)
	}
	res.P50, res.P99 = percentiles(slices.Concat(samples...))
	return res, nil
}

// sampleCap bounds the latency sample of one thread (4 MiB).
const sampleCap = 1 << 20

// loop is one thread's run; the sample holds connect() latencies in ns.
func loop(c Config, thread int) (Result, []uint32) {
	res := Result{Failures: map[string]int{}}
	sample := make([]uint32, 0, sampleCap)
	start := time.Now()
	for c.Count == 0 || res.Attempts < c.Count {
		if c.Duration > 0 && res.Attempts%64 == 0 && time.Since(start) > c.Duration {
			break
		}
		target := c.Target
		if c.Spaces > 1 {
			target = spread(c.Target, (thread*c.Count+res.Attempts)%c.Spaces)
		}
		if len(c.Targets) > 0 {
			target = c.Targets[res.Attempts%len(c.Targets)]
		}
		if c.Interval > 0 && res.Attempts > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(res.Attempts) * c.Interval)))
		}
		bindAddr := c.BindAddr
		if !bindAddr.IsValid() {
			bindAddr = target.Addr()
		}
		res.Attempts++
		t := time.Now()
		port, err := once(target, c, bindAddr)
		if len(sample) < sampleCap {
			sample = append(sample, uint32(min(time.Since(t), math.MaxUint32)))
		}
		if err != nil {
			res.Failures[ErrName(err)]++
			if c.StopAfterFailures > 0 && res.Failed() >= c.StopAfterFailures {
				break
			}
			continue
		}
		res.Connected++
		if len(res.Ports) < 1024 {
			res.Ports = append(res.Ports, port)
		}
	}
	res.Elapsed = time.Since(start)
	return res, sample
}

// spread is the k-th destination: 1000 ports per address, then the next
// address.
func spread(base netip.AddrPort, k int) netip.AddrPort {
	a := base.Addr().As4()
	n := binary.BigEndian.Uint32(a[:]) + uint32(k/1000)
	binary.BigEndian.PutUint32(a[:], n)
	return netip.AddrPortFrom(netip.AddrFrom4(a), base.Port()+uint16(k%1000))
}

func percentiles(ns []uint32) (p50, p99 time.Duration) {
	if len(ns) == 0 {
		return 0, 0
	}
	slices.Sort(ns)
	at := func(q float64) time.Duration { return time.Duration(ns[int(q*float64(len(ns)-1))]) }
	return at(0.50), at(0.99)
}

// once connects and closes one socket; the error is bind()'s or connect()'s
// errno.
func once(target netip.AddrPort, c Config, bindAddr netip.Addr) (int, error) {
	mode, bindFirst := c.Close, c.BindFirst
	family := unix.AF_INET
	if target.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if r := c.PortRange; r != ([2]uint16{}) {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_LOCAL_PORT_RANGE, int(r[0])|int(r[1])<<16); err != nil {
			return 0, fmt.Errorf("setsockopt IP_LOCAL_PORT_RANGE: %w", err)
		}
	}
	if c.FastOpenConnect {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1); err != nil {
			return 0, fmt.Errorf("setsockopt TCP_FASTOPEN_CONNECT: %w", err)
		}
	}
	if bindFirst {
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(bindAddr, 0))); err != nil {
			return 0, err
		}
	}
	if err := unix.Connect(fd, sockaddr(target)); err != nil {
		return 0, err
	}
	if mode == CloseReset {
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, nil
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port, nil
	case *unix.SockaddrInet6:
		return a.Port, nil
	}
	return 0, nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// ErrName names err as porttrace names a call's result: its errno's name
// (event.ErrnoName), so that ground truth and porttrace compare as strings;
// the error's text when it is not an errno.
func ErrName(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		return event.ErrnoName(e)
	}
	return err.Error()
}

// SyscallCost is the CPU time one getppid() takes on a thread of its own,
// measured over d: the price of a syscall that has nothing to do with the
// network, which a tracer that taxes every syscall raises.
func SyscallCost(d time.Duration) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var ts unix.Timespec
	cpu := func() time.Duration {
		unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
		return time.Duration(ts.Nano())
	}
	start, end, n := cpu(), time.Now().Add(d), 0
	for time.Now().Before(end) {
		for range 10000 {
			unix.Getppid()
		}
		n += 10000
	}
	return (cpu() - start) / time.Duration(n)
}

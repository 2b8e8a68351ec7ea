// Package churn opens and closes TCP connections as fast as it can, the way a
// proxy without upstream keepalive does, and counts what connect() returned.
// Tests use it as ground truth; benchmarks use it as load.
package churn

import (
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
}

// Result is what the client saw. Failures count both bind() and connect()
// errors by errno; with BindFirst, EADDRINUSE comes from bind().
type Result struct {
	Attempts  int            `json:"attempts"`
	Connected int            `json:"connected"`
	Failures  map[string]int `json:"failures"` // by errno name, e.g. EADDRNOTAVAIL
	Elapsed   time.Duration  `json:"elapsed_ns"`
	Ports     []int          `json:"ports,omitempty"` // source ports of the first connections
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
	res := Result{Failures: map[string]int{}}
	start := time.Now()
	for c.Count == 0 || res.Attempts < c.Count {
		if c.Duration > 0 && res.Attempts%64 == 0 && time.Since(start) > c.Duration {
			break
		}
		res.Attempts++
		port, err := once(c.Target, c.Close, c.BindFirst)
		if err != nil {
			res.Failures[ErrnoName(err)]++
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
	return res, nil
}

// once connects and closes one socket; the error is bind()'s or connect()'s
// errno.
func once(target netip.AddrPort, mode CloseMode, bindFirst bool) (int, error) {
	family := unix.AF_INET
	if target.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if bindFirst {
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(target.Addr(), 0))); err != nil {
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

// ErrnoName names an errno the way C headers do (EADDRNOTAVAIL).
func ErrnoName(err error) string {
	if e, ok := err.(syscall.Errno); ok {
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
		return fmt.Sprintf("errno%d", int(e))
	}
	return err.Error()
}

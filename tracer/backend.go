package tracer

import "fmt"

// Backend is a set of probes that can watch the port search. They are tried
// best first: fentry times the search exactly at the lowest cost, kprobe does
// the same on kernels without BPF trampolines, tracepoint works on kernels
// with neither (locked-down or minimal builds) at the price of approximate
// latency.
type Backend string

const (
	Fentry     Backend = "fentry"
	Kprobe     Backend = "kprobe"
	Tracepoint Backend = "tracepoint"
)

// Backends lists every backend, best first.
var Backends = []Backend{Fentry, Kprobe, Tracepoint}

// ParseBackend accepts a backend name, or "" / "auto" for automatic choice.
func ParseBackend(s string) (Backend, error) {
	switch s {
	case "", "auto":
		return "", nil
	case string(Fentry), string(Kprobe), string(Tracepoint):
		return Backend(s), nil
	}
	return "", fmt.Errorf("unknown backend %q: use fentry, kprobe, tracepoint or auto", s)
}

// ExactLatency tells whether the backend times the port search itself.
func (b Backend) ExactLatency() bool { return b != Tracepoint }

// SeesEarlyFailures tells whether the backend reports, without syscall
// tracepoints, a connect() that fails before the socket reaches SYN_SENT
// (no route, no source address) and every bind()'s result: fentry and
// kprobe hook tcp_v{4,6}_connect, inet_csk_get_port and inet{,6}_bind; the
// tracepoint backend needs Options.Syscalls for connect(), and sees bind()
// while Tracer.WatchBind has its tracepoints attached.
func (b Backend) SeesEarlyFailures() bool { return b != Tracepoint }

// HookStatus says whether one probe attached, and if not, why.
type HookStatus struct {
	Name     string
	Err      error
	Optional string // what is lost when this optional hook is missing
}

// Attempt records one backend tried at start.
type Attempt struct {
	Backend Backend
	Err     error        // nil if the backend runs
	Hooks   []HookStatus // hooks tried, in order
}

package tracer

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

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
// (no route, no source address) and bind()'s result: fentry and kprobe
// hook tcp_v{4,6}_connect and inet_csk_get_port; the tracepoint backend
// needs Options.Syscalls for them.
func (b Backend) SeesEarlyFailures() bool { return b != Tracepoint }

func (b Backend) kind() bpfBackendKind {
	switch b {
	case Fentry:
		return bpfBackendKindBACKEND_FENTRY
	case Kprobe:
		return bpfBackendKindBACKEND_KPROBE
	}
	return bpfBackendKindBACKEND_TRACEPOINT
}

// hook is one program and where it attaches.
type hook struct {
	prog     string // its name in the object: a bpfProg constant bpf2go generates
	attach   func(p *ebpf.Program) (link.Link, error)
	optional string // if set, a failure costs only this, and the backend still runs
}

func (h hook) name() string { return strings.TrimPrefix(h.prog, "pt_") }

func tracing(prog string) hook {
	return hook{prog: prog, attach: func(p *ebpf.Program) (link.Link, error) {
		return link.AttachTracing(link.TracingOptions{Program: p})
	}}
}

func tracepoint(prog, group, name string) hook {
	return hook{prog: prog, attach: func(p *ebpf.Program) (link.Link, error) {
		return link.Tracepoint(group, name, p, nil)
	}}
}

func kprobe(prog, symbol string, ret bool) hook {
	return hook{prog: prog, attach: func(p *ebpf.Program) (link.Link, error) {
		if ret {
			// A missed return (maxactive exceeded) leaves an entry in
			// an LRU map: no event for that search, and no leak.
			return link.Kretprobe(symbol, p, nil)
		}
		return link.Kprobe(symbol, p, nil)
	}}
}

// hooks returns what a backend attaches, in attach order. syscalls adds the
// syscall tracepoints to the tracepoint backend.
func hooks(b Backend, syscalls bool) []hook {
	common := []hook{tracing(bpfProgPtState), tracing(bpfProgPtSendReset)}
	switch b {
	case Fentry:
		return append(common,
			tracing(bpfProgPtFentryHashConnect), tracing(bpfProgPtFexitHashConnect),
			tracing(bpfProgPtFentryHash6Connect), tracing(bpfProgPtFexitHash6Connect),
			tracing(bpfProgPtFexitV4Connect), tracing(bpfProgPtFexitV6Connect),
			tracing(bpfProgPtFentryGetPort), tracing(bpfProgPtFexitGetPort))
	case Kprobe:
		return append(common,
			kprobe(bpfProgPtKprobeV4Connect, "tcp_v4_connect", false),
			kprobe(bpfProgPtKretprobeV4Connect, "tcp_v4_connect", true),
			kprobe(bpfProgPtKprobeV6Connect, "tcp_v6_connect", false),
			kprobe(bpfProgPtKretprobeV6Connect, "tcp_v6_connect", true),
			kprobe(bpfProgPtKprobeHashConnect, "inet_hash_connect", false),
			kprobe(bpfProgPtKretprobeHashConnect, "inet_hash_connect", true),
			kprobe(bpfProgPtKprobeHash6Connect, "inet6_hash_connect", false),
			kprobe(bpfProgPtKretprobeHash6Connect, "inet6_hash_connect", true),
			kprobe(bpfProgPtKprobeGetPort, "inet_csk_get_port", false),
			kprobe(bpfProgPtKretprobeGetPort, "inet_csk_get_port", true))
	}
	sockops := hook{prog: bpfProgPtSockops, attach: attachSockops,
		optional: "no latency for successful port searches"}
	out := append(common, sockops)
	if syscalls {
		out = append(out,
			tracepoint(bpfProgPtEnterConnect, "syscalls", "sys_enter_connect"),
			tracepoint(bpfProgPtExitConnect, "syscalls", "sys_exit_connect"),
			tracepoint(bpfProgPtEnterBind, "syscalls", "sys_enter_bind"),
			tracepoint(bpfProgPtExitBind, "syscalls", "sys_exit_bind"))
	}
	return out
}

// The sock_ops program goes on the root of the cgroup2 hierarchy, which
// covers every socket; ALLOW_MULTI (the link default) leaves other programs
// there alone.
func attachSockops(p *ebpf.Program) (link.Link, error) {
	root, err := cgroup2Root()
	if err != nil {
		return nil, err
	}
	return link.AttachCgroup(link.CgroupOptions{Path: root, Attach: ebpf.AttachCGroupSockOps, Program: p})
}

func cgroup2Root() (string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		// ... mount-point ... - fstype source options
		pre, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		if ok && len(f) >= 5 && strings.HasPrefix(post, "cgroup2 ") && f[3] == "/" {
			return f[4], nil
		}
	}
	return "", errors.New("no cgroup2 hierarchy is mounted")
}

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

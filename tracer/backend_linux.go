package tracer

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// kind is the backend as the probes know it (bpf/porttrace.h).
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
	nat      bool   // on a function of the nf_nat or nf_conntrack module (natHooks)
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
	common := []hook{tracing(bpfProgPtState), tracing(bpfProgPtStateNested), tracing(bpfProgPtSendReset)}
	switch b {
	case Fentry:
		return append(common,
			tracing(bpfProgPtFentryHashConnect), tracing(bpfProgPtFexitHashConnect),
			tracing(bpfProgPtFentryHash6Connect), tracing(bpfProgPtFexitHash6Connect),
			tracing(bpfProgPtFexitV4Connect), tracing(bpfProgPtFexitV6Connect),
			tracing(bpfProgPtFentryGetPort), tracing(bpfProgPtFexitGetPort),
			tracing(bpfProgPtFexitBind), tracing(bpfProgPtFexitBind6),
			natHook(tracing(bpfProgPtFentryNatSetup)), natHook(tracing(bpfProgPtFexitNatSetup)),
			natHook(tracing(bpfProgPtFexitNatConfirm)))
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
			kprobe(bpfProgPtKretprobeGetPort, "inet_csk_get_port", true),
			kprobe(bpfProgPtKprobeBind, "inet_bind", false),
			kprobe(bpfProgPtKretprobeBind, "inet_bind", true),
			kprobe(bpfProgPtKprobeBind6, "inet6_bind", false),
			kprobe(bpfProgPtKretprobeBind6, "inet6_bind", true),
			natHook(kprobe(bpfProgPtKprobeNatSetup, "nf_nat_setup_info", false)),
			natHook(kprobe(bpfProgPtKretprobeNatSetup, "nf_nat_setup_info", true)),
			natHook(kprobe(bpfProgPtKprobeNatConfirm, "__nf_conntrack_confirm", false)),
			natHook(kprobe(bpfProgPtKretprobeNatConfirm, "__nf_conntrack_confirm", true)))
	}
	sockops := hook{prog: bpfProgPtSockops, attach: attachSockops,
		optional: "no latency for successful port searches"}
	out := append(common, sockops)
	if syscalls {
		out = append(out,
			tracepoint(bpfProgPtEnterConnect, "syscalls", "sys_enter_connect"),
			tracepoint(bpfProgPtExitConnect, "syscalls", "sys_exit_connect"))
		out = append(out, bindHooks()...)
	}
	return out
}

// NATLoss is what a backend misses without its source NAT hooks
// (bpf/nat.h): the tables and conntrack's counters still show NAT
// exhaustion.
const NATLoss = "no per-flow NAT failures or NAT port search latency"

// natHook marks h as one of source NAT's hooks: on a module's function,
// attached only where nf_nat and nf_conntrack are loaded (natMissing),
// and optional.
func natHook(h hook) hook {
	h.nat, h.optional = true, NATLoss
	return h
}

// natModules are the modules whose functions natHooks probe, and one
// function of each.
var natModules = [][2]string{{"nf_conntrack", "__nf_conntrack_confirm"}, {"nf_nat", "nf_nat_setup_info"}}

// natMissing says which module the NAT hooks need is not loaded (nil
// when both are): a module appears under /sys/module when loaded; one
// built into the kernel has its functions in the kernel's BTF.
func natMissing() error {
	for _, m := range natModules {
		if _, err := os.Stat("/sys/module/" + m[0]); err == nil {
			continue
		}
		if spec, err := btf.LoadKernelSpec(); err == nil {
			var fn *btf.Func
			if spec.TypeByName(m[1], &fn) == nil {
				continue
			}
		}
		return fmt.Errorf("%w: %s is not loaded", ErrNATModule, m[0])
	}
	return nil
}

// ErrNATModule marks source NAT's hooks left out because a netfilter
// module is not loaded: nothing to trace, as no namespace translates.
var ErrNATModule = errors.New("no source NAT here")

// bindHooks are the tracepoint backend's bind() syscall tracepoints:
// attached for good with --syscalls, otherwise by WatchBind. The entry
// first, so that no exit goes without its entry's arguments.
func bindHooks() []hook {
	return []hook{
		tracepoint(bpfProgPtEnterBind, "syscalls", "sys_enter_bind"),
		tracepoint(bpfProgPtExitBind, "syscalls", "sys_exit_bind"),
	}
}

// loaded is what a backend loads: its hooks' programs, and the tracepoint
// backend's bind() tracepoints even when they are not attached yet.
func loaded(b Backend, syscalls bool) []hook {
	out := hooks(b, syscalls)
	if b == Tracepoint && !syscalls {
		out = append(out, bindHooks()...)
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

package tracer

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// probes is what a Tracer loads, attaches and reads.
type probes struct {
	coll   *ebpf.Collection
	links  []link.Link
	reader *ringbuf.Reader
	poll   time.Duration
	clock  clock

	mu sync.Mutex
	// bindLinks are the bind() tracepoints WatchBind attached, nil while
	// they are off; onDemand tells that WatchBind may attach them.
	bindLinks []link.Link
	onDemand  bool
}

// Open checks privileges and kernel support, then attaches the requested
// backend or, if none was requested, the best one that works. Attempts()
// tells which were refused and why.
func Open(opts Options) (*Tracer, error) {
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	if _, err := btf.LoadKernelSpec(); err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNoBTF, err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise the locked memory limit: %w", err)
	}
	if err := ensureTracefs(); err != nil {
		return nil, err
	}
	if opts.RingSize == 0 {
		opts.RingSize = DefaultRingSize
	}
	opts.RingSize = RingSize(opts.RingSize)
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	order := Backends
	if opts.Backend != "" {
		order = []Backend{opts.Backend}
	}
	var attempts []Attempt
	for _, b := range order {
		t, a := openBackend(b, opts)
		attempts = append(attempts, a)
		if a.Err == nil {
			t.attempts = attempts
			return t, nil
		}
	}
	return nil, &NoBackendError{Attempts: attempts}
}

func openBackend(b Backend, opts Options) (*Tracer, Attempt) {
	a := Attempt{Backend: b}
	natErr := natMissing()
	coll, err := load(b, opts, natErr == nil)
	if err != nil && natErr == nil && b != Tracepoint {
		// The NAT programs alone may be what the kernel refuses (a
		// module without BTF): the backend runs without them.
		natErr = fmt.Errorf("load: %w", err)
		coll, err = load(b, opts, false)
	}
	if err != nil {
		a.Err = explain(b, err)
		return nil, a
	}
	t := &Tracer{backend: b, probes: probes{coll: coll, poll: opts.Poll, clock: newClock(),
		onDemand: b == Tracepoint && !opts.Syscalls}}
	for _, h := range hooks(b, opts.Syscalls) {
		if h.nat && natErr != nil {
			a.Hooks = append(a.Hooks, HookStatus{Name: h.name(), Err: natErr, Optional: h.optional})
			continue
		}
		l, err := h.attach(coll.Programs[h.prog])
		a.Hooks = append(a.Hooks, HookStatus{Name: h.name(), Err: err, Optional: h.optional})
		if err != nil && h.optional == "" {
			a.Err = explain(b, fmt.Errorf("attach %s: %w", h.name(), err))
			t.Close()
			return nil, a
		}
		if err == nil {
			t.links = append(t.links, l)
		}
		if err == nil && h.prog == bpfProgPtSockops {
			// SYN_SENT records may now wait for connect_cb's (bpf/state.h).
			// If this fails they are sent at once, as without sock_ops.
			_ = coll.Variables[bpfVarSockopsOn].Set(uint32(1))
		}
	}
	t.reader, err = ringbuf.NewReader(coll.Maps[bpfMapEvents])
	if err != nil {
		a.Err = fmt.Errorf("open ring buffer: %w", err)
		t.Close()
		return nil, a
	}
	return t, a
}

// explain puts the kernel's refusal in the words of the backend that met it.
func explain(b Backend, err error) error {
	switch {
	case b == Fentry && errors.Is(err, unix.EPERM):
		// cilium/ebpf's hint about MEMLOCK does not apply: the limit is
		// lifted in Open.
		return fmt.Errorf("the kernel refuses to load fentry/fexit programs (BPF trampolines disabled or locked down): %w", unix.EPERM)
	case b == Kprobe && !kprobesAvailable():
		return fmt.Errorf("the kernel has no kprobes (CONFIG_KPROBES off): %w", err)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("a probed kernel function or tracepoint does not exist here: %w", err)
	}
	return err
}

func kprobesAvailable() bool {
	for _, p := range []string{"/sys/bus/event_source/devices/kprobe", "/sys/kernel/tracing/kprobe_events", "/sys/kernel/debug/tracing/kprobe_events"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// load prepares the object for one backend: its programs only (the kernel
// may refuse to even load another backend's), its constants, the ring size;
// source NAT's programs only with nat.
func load(b Backend, opts Options, nat bool) (*ebpf.Collection, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("read BPF object: %w", err)
	}
	keep := map[string]bool{}
	for _, h := range loaded(b, opts.Syscalls) {
		keep[h.prog] = nat || !h.nat
	}
	for name := range spec.Programs {
		if !keep[name] {
			delete(spec.Programs, name)
		}
	}
	var objs struct {
		bpfMapSpecs
		bpfVariableSpecs
	}
	if err := spec.Assign(&objs); err != nil {
		return nil, fmt.Errorf("read BPF object: %w", err)
	}
	objs.Events.MaxEntries = uint32(opts.RingSize)
	for _, v := range []struct {
		spec  *ebpf.VariableSpec
		value any
	}{
		{objs.Backend, b.kind()},
		{objs.SelfPid, uint32(os.Getpid())},
		{objs.Syscalls, opts.Syscalls && b == Tracepoint},
	} {
		if err := v.spec.Set(v.value); err != nil {
			return nil, fmt.Errorf("set %s: %w", v.spec.Name, err)
		}
	}
	coll, err := ebpf.NewCollection(spec)
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		return nil, fmt.Errorf("the kernel's verifier refused a program: %+v", verr)
	}
	if err != nil {
		return nil, fmt.Errorf("load programs: %w", err)
	}
	return coll, nil
}

// Lost is how many events porttrace may have missed since Open: those the
// probes could not put in the ring buffer because it was full, and the
// sockets they could not follow for want of room in the owners map (one
// each, though each had several: the lost map), plus the probe runs the
// kernel skipped (Missed) that no other program did instead. A skipped
// run may have been one that sends nothing, so this is an upper bound.
func (t *Tracer) Lost() (uint64, error) {
	var perCPU []uint64
	var slots [3]uint64 // the lost map's LOST_RING, LOST_REDONE, LOST_UNFOLLOWED
	for i := range slots {
		if err := t.coll.Maps[bpfMapLost].Lookup(uint32(i), &perCPU); err != nil {
			return 0, fmt.Errorf("read lost events: %w", err)
		}
		for _, v := range perCPU {
			slots[i] += v
		}
	}
	missed := t.Missed()
	return slots[0] + slots[2] + missed - min(missed, slots[1]), nil
}

// Missed is how many times since Open the kernel did not run one of
// porttrace's programs: a tracing program (tp_btf, fentry) entered again on
// the CPU where it runs, or a kprobe program while another BPF program ran
// there, counts in the program's recursion_misses (Linux 5.12+); a kprobe
// that found no free kretprobe instance counts in its link's missed count
// (Linux 6.7+). Where the kernel has neither, it adds nothing.
// pt_state_nested's own misses are left out: it has work only while
// pt_state runs on the CPU, and it is not running itself then.
func (t *Tracer) Missed() uint64 {
	var n uint64
	for name, p := range t.coll.Programs {
		if st, err := p.Stats(); err == nil && name != bpfProgPtStateNested {
			n += st.RecursionMisses
		}
	}
	for _, l := range t.links {
		if info, err := l.Info(); err == nil && info.PerfEvent() != nil {
			if k := info.PerfEvent().Kprobe(); k != nil {
				n += k.Missed
			}
		}
	}
	return n
}

// BindOnDemand tells whether bind()'s result is seen only while WatchBind
// has it watched: the tracepoint backend without Options.Syscalls. The
// other backends see it always, from hooks on the bind path itself.
func (t *Tracer) BindOnDemand() bool { return t.onDemand }

// WatchBind attaches (on) or detaches the bind() syscall tracepoints where
// BindOnDemand, and reports whether that changed anything. While attached,
// every syscall of every task pays the tracing slow path (about 30-45 ns,
// docs/performance.md), which is why they are off while nothing needs
// them. Elsewhere it does nothing.
func (t *Tracer) WatchBind(on bool) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.onDemand || on == (t.bindLinks != nil) {
		return false, nil
	}
	if !on {
		for _, l := range t.bindLinks {
			l.Close()
		}
		t.bindLinks = nil
		return true, nil
	}
	var ls []link.Link
	for _, h := range bindHooks() {
		l, err := h.attach(t.coll.Programs[h.prog])
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return false, fmt.Errorf("attach %s: %w", h.name(), err)
		}
		ls = append(ls, l)
	}
	t.bindLinks = ls
	return true, nil
}

// Close detaches every probe and frees the maps.
func (t *Tracer) Close() error {
	t.WatchBind(false)
	for _, l := range t.links {
		l.Close()
	}
	t.links = nil
	if t.reader != nil {
		t.reader.Close()
	}
	t.coll.Close()
	return nil
}

// ensureTracefs mounts tracefs where the syscall tracepoints are looked up,
// if nothing is mounted there yet; minimal systems often leave it out.
func ensureTracefs() error {
	for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(dir + "/events"); err == nil {
			return nil
		}
	}
	if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: %w", err)
	}
	return nil
}

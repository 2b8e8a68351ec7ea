package tracer

import (
	"testing"

	"github.com/porttrace/porttrace/internal/event"
)

// TestEnumsMirrorC: event.Kind and event.Flags are the C enums of
// bpf/porttrace.h, value for value.
func TestEnumsMirrorC(t *testing.T) {
	for _, p := range []struct {
		name    string
		goV, cV uint64
	}{
		{"Connect", uint64(event.Connect), uint64(bpfEventKindEV_CONNECT)},
		{"Alloc", uint64(event.Alloc), uint64(bpfEventKindEV_ALLOC)},
		{"Bind", uint64(event.Bind), uint64(bpfEventKindEV_BIND)},
		{"State", uint64(event.State), uint64(bpfEventKindEV_STATE)},
		{"TimeWait", uint64(event.TimeWait), uint64(bpfEventKindEV_TIME_WAIT)},
		{"NAT", uint64(event.NAT), uint64(bpfEventKindEV_NAT)},
		{"InsertFailed", uint64(event.InsertFailed), uint64(bpfEventFlagFLAG_INSERT_FAILED)},
		{"LatencyApprox", uint64(event.LatencyApprox), uint64(bpfEventFlagFLAG_LATENCY_APPROX)},
		{"OwnerFromSocket", uint64(event.OwnerFromSocket), uint64(bpfEventFlagFLAG_OWNER_FROM_SOCKET)},
		{"Searched", uint64(event.Searched), uint64(bpfEventFlagFLAG_SEARCHED)},
		{"Bound", uint64(event.Bound), uint64(bpfEventFlagFLAG_BOUND)},
		{"FixedPort", uint64(event.FixedPort), uint64(bpfEventFlagFLAG_FIXED_PORT)},
		{"AfterSearch", uint64(event.AfterSearch), uint64(bpfEventFlagFLAG_AFTER_SEARCH)},
	} {
		if p.goV != p.cV {
			t.Errorf("%s is %d in Go, %d in bpf/porttrace.h", p.name, p.goV, p.cV)
		}
	}
}

// TestEveryProgramHasAHook: each program in the object is attached by some
// backend (with or without --syscalls), and each hook names a program.
func TestEveryProgramHasAHook(t *testing.T) {
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, b := range Backends {
		for _, syscalls := range []bool{false, true} {
			for _, h := range hooks(b, syscalls) {
				used[h.prog] = true
				if spec.Programs[h.prog] == nil {
					t.Errorf("backend %s hooks %s, which the object lacks", b, h.prog)
				}
			}
		}
	}
	for name := range spec.Programs {
		if !used[name] {
			t.Errorf("program %s belongs to no backend", name)
		}
	}
}

package aggregate

import (
	"github.com/porttrace/porttrace/internal/event"
)

// ProcKey names a process: pid, task name and cgroup, so that a reused pid
// or an exec is a new process.
type ProcKey struct {
	PID      uint32
	Comm     event.Comm
	CgroupID uint64
}

func procOf(e *event.Event) ProcKey {
	return ProcKey{PID: e.PID, Comm: e.Comm, CgroupID: e.CgroupID}
}

// Package tracer loads porttrace's BPF programs, picks the best backend that
// the kernel accepts, and turns the ring buffer into plain events. It is the
// only package that knows about BPF.
package tracer

import (
	"fmt"
	"math/bits"
	"os"
	"strings"
	"time"
)

// Options configure Open.
type Options struct {
	// Backend to use; empty picks the best one that attaches.
	Backend Backend
	// RingSize is the ring buffer size in bytes, rounded up to a power of
	// two of at least one page. Zero means DefaultRingSize.
	RingSize int
	// Poll is how often the reader empties the ring buffer. Probes never
	// wake it (a wakeup per event would cost the traced machine most of its
	// connect rate); a ring still a quarter full after a drain is drained
	// again at once.
	Poll time.Duration
	// Syscalls attaches the connect() and bind() syscall tracepoints on the
	// tracepoint backend, for what only they show there: a connect() that
	// fails before any TCP state change, and bind()'s result. It costs every
	// syscall of every task on the machine (the kernel sends them all
	// through the tracing slow path once any syscall tracepoint is on); the
	// other backends ignore it.
	Syscalls bool
}

const (
	DefaultRingSize = 8 << 20
	DefaultPoll     = 10 * time.Millisecond
)

// Tracer is a loaded, attached set of probes.
type Tracer struct {
	backend  Backend
	attempts []Attempt
	probes   // what is loaded and attached, and the reader: Linux only
}

// RingSize rounds n up to a size the kernel accepts for a ring buffer.
func RingSize(n int) int {
	page := os.Getpagesize()
	if n <= page {
		return page
	}
	return 1 << bits.Len(uint(n-1))
}

// NoBackendError is returned when no backend could attach.
type NoBackendError struct{ Attempts []Attempt }

func (e *NoBackendError) Error() string {
	parts := make([]string, len(e.Attempts))
	for i, a := range e.Attempts {
		parts[i] = fmt.Sprintf("%s: %v", a.Backend, a.Err)
	}
	return "no backend could attach: " + strings.Join(parts, "; ")
}

// Backend is the backend that runs.
func (t *Tracer) Backend() Backend { return t.backend }

// Attempts lists the backends tried at Open, the running one last.
func (t *Tracer) Attempts() []Attempt { return t.attempts }

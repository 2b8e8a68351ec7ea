package tracer_test

import (
	"errors"
	"testing"

	"github.com/porttrace/porttrace/internal/testkit/testnet"
	"github.com/porttrace/porttrace/tracer"
)

// TestKernelBackendFallback tries each backend explicitly, then lets Open
// choose: it must fall past exactly the backends that failed alone, give each
// one's reason, and run the first that works. On the host kernel here that is
// fentry (EPERM) -> kprobe (no kprobes) -> tracepoint; under the Debian 6.1
// VM it is fentry at once.
func TestKernelBackendFallback(t *testing.T) {
	testnet.RequireRoot(t)
	var works []tracer.Backend
	for _, b := range tracer.Backends {
		tr, err := tracer.Open(tracer.Options{Backend: b})
		if err == nil {
			works = append(works, b)
			if tr.Backend() != b || len(tr.Attempts()) != 1 {
				t.Errorf("explicit %s: runs %s after %d attempts", b, tr.Backend(), len(tr.Attempts()))
			}
			tr.Close()
			continue
		}
		var nb *tracer.NoBackendError
		if !errors.As(err, &nb) || len(nb.Attempts) != 1 || nb.Attempts[0].Backend != b || nb.Attempts[0].Err == nil {
			t.Errorf("explicit %s failed without a clear reason: %v", b, err)
		}
		t.Logf("%s refused: %v", b, err)
	}
	if len(works) == 0 {
		t.Fatal("no backend attaches")
	}
	tr, err := tracer.Open(tracer.Options{})
	if err != nil {
		t.Fatalf("auto: %v", err)
	}
	defer tr.Close()
	if tr.Backend() != works[0] {
		t.Errorf("auto chose %s, the best that works alone is %s", tr.Backend(), works[0])
	}
	attempts := tr.Attempts()
	for i, a := range attempts {
		last := i == len(attempts)-1
		if last != (a.Err == nil) {
			t.Errorf("attempt %d (%s): err %v", i, a.Backend, a.Err)
		}
		if a.Backend != tracer.Backends[i] {
			t.Errorf("attempt %d is %s, want %s", i, a.Backend, tracer.Backends[i])
		}
	}
}

func TestRingSize(t *testing.T) {
	for _, c := range []struct{ in, want int }{{1, 4096}, {4096, 4096}, {4097, 8192}, {5 << 20, 8 << 20}, {8 << 20, 8 << 20}} {
		if got := tracer.RingSize(c.in); got != c.want {
			t.Errorf("RingSize(%d) = %d, want %d", c.in, got, c.want)
		}
	}
}

package event

import (
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestErrnoNames pins the Linux numbers and names that captures carry to
// this system's, which is Linux.
func TestErrnoNames(t *testing.T) {
	for e, name := range errnoNames {
		if got := unix.ErrnoName(e); got != name {
			t.Errorf("errno %d: named %s here, %s in the table", int(e), got, name)
		}
	}
	for _, c := range []struct {
		ours, sys syscall.Errno
	}{{EADDRINUSE, syscall.EADDRINUSE}, {EADDRNOTAVAIL, syscall.EADDRNOTAVAIL}, {EINPROGRESS, syscall.EINPROGRESS}, {ECANCELED, syscall.ECANCELED}} {
		if c.ours != c.sys || ErrnoName(c.ours) != unix.ErrnoName(c.sys) {
			t.Errorf("%s: %d here, %d in event", unix.ErrnoName(c.sys), int(c.sys), int(c.ours))
		}
	}
	if got := ErrnoName(syscall.ENOSPC); got != "ENOSPC" { // not in the table
		t.Errorf("ENOSPC named %q on Linux", got)
	}
	if got := ErrnoName(4095); got != "errno 4095" {
		t.Errorf("errno 4095 named %q", got)
	}
}

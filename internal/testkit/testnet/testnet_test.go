package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// TestRemoveStale: a namespace left by a test process that is gone is
// removed; one of a live process, and one whose name has no PID, are kept.
func TestRemoveStale(t *testing.T) {
	RequireRoot(t)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("%s%d-1", namePrefix, gone.Process.Pid)
	live := fmt.Sprintf("%s%d-2", namePrefix, os.Getpid())
	other := namePrefix + "nopid-3"
	for _, name := range []string{stale, live, other} {
		run(t, "ip", "netns", "add", name)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	}
	removeStale()
	if _, err := os.Stat("/run/netns/" + stale); !os.IsNotExist(err) {
		t.Errorf("%s (its process is gone) is still there: %v", stale, err)
	}
	if _, err := os.Stat("/run/netns/" + live); err != nil {
		t.Errorf("%s (its process is this test) was removed: %v", live, err)
	}
	if _, err := os.Stat("/run/netns/" + other); err != nil {
		t.Errorf("%s (no PID in its name) was removed: %v", other, err)
	}
}

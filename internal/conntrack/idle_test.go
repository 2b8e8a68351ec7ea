package conntrack

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// TestReaderIdleNamespaces: 200 real idle namespaces are entered once on
// sight, then not at the next resync; the time of each read is logged
// (docs/nat.md quotes it). Not a benchmark: the counts are the test.
func TestReaderIdleNamespaces(t *testing.T) {
	testnet.RequireRoot(t)
	const n = 200
	var add, del strings.Builder
	var all []netns.Settings
	for i := range n {
		name := fmt.Sprintf("ptidle%d-%d", os.Getpid(), i)
		fmt.Fprintf(&add, "netns add %s\n", name)
		fmt.Fprintf(&del, "netns del %s\n", name)
		all = append(all, netns.Settings{Path: "/run/netns/" + name})
	}
	batch := func(cmds string) error {
		c := exec.Command("ip", "-force", "-batch", "-")
		c.Stdin = strings.NewReader(cmds)
		out, err := c.CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip -batch: %v: %s", err, out)
		}
		return nil
	}
	t.Cleanup(func() { batch(del.String()) })
	if err := batch(add.String()); err != nil {
		t.Fatal(err)
	}
	for i := range all {
		var st syscall.Stat_t
		if err := syscall.Stat(all[i].Path, &st); err != nil {
			t.Fatal(err)
		}
		all[i].Inode = uint32(st.Ino)
	}
	r := NewReader()
	entered := 0
	r.read = func(path string, ino uint32) (nat.Table, error) {
		entered++
		return readNetns(path, ino)
	}
	for i, label := range []string{"on sight", "next resync", "after pressure"} {
		if i == 2 {
			r.Pressure()
		}
		entered = 0
		start := time.Now()
		tables, err := r.Read(all)
		took := time.Since(start)
		t.Logf("%d idle namespaces, %s: %d entered, %v (%v each)", n, label, entered, took.Round(time.Microsecond), (took / n).Round(time.Microsecond))
		if err != nil || len(tables) != n {
			t.Fatalf("%d tables, %v", len(tables), err)
		}
		if want := map[int]int{0: n, 1: 0, 2: n}[i]; entered != want {
			t.Errorf("%s: entered %d namespaces, want %d", label, entered, want)
		}
	}
}

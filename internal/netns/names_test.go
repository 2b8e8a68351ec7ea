package netns_test

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// TestKernelNames: a namespace only a process holds is named after it
// (comm[pid]), one with a /run/netns name only by that name even with
// processes in it, and no namespace by a kernel thread's pid.
func TestKernelNames(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40009)
	inNamed := exec.Command("ip", "netns", "exec", ns.Name, "sleep", "30")
	holder := exec.Command("unshare", "-n", "sleep", "30")
	for _, c := range []*exec.Cmd{inNamed, holder} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { c.Process.Kill(); c.Wait() }()
	}
	var st unix.Stat_t
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", holder.Process.Pid))
		if strings.TrimSpace(string(comm)) == "sleep" && unix.Stat(fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid), &st) == nil {
			break
		}
	}
	all, err := netns.All()
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32][]string{ns.Inode: {"/run/netns/" + ns.Name}, uint32(st.Ino): {fmt.Sprintf("sleep[%d]", holder.Process.Pid)}}
	for _, a := range all {
		if w, ok := want[a.Inode]; ok {
			if !slices.Equal(a.Names, w) {
				t.Errorf("namespace %d named %q, want %q", a.Inode, a.Names, w)
			}
			delete(want, a.Inode)
		}
		for _, n := range a.Names {
			pid, isPid := strings.CutPrefix(n, "pid ")
			if isPid {
				t.Errorf("namespace %d named by a bare pid %s", a.Inode, pid)
			}
			if strings.HasPrefix(n, "kworker") || strings.HasPrefix(n, "ksoftirqd") || strings.HasPrefix(n, "kthreadd") {
				t.Errorf("namespace %d named by a kernel thread: %q", a.Inode, n)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("All() misses %v", want)
	}
}

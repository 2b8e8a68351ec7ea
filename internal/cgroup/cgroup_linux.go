//go:build linux

package cgroup

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// byID finds a cgroup v2 by its id through the cgroup2 mount: the id is
// the kernfs file handle (open_by_handle_at needs CAP_DAC_READ_SEARCH).
// Ids are never reused, so what is found is kept, up to MaxKnown ids.
func byID(id uint64) Workload {
	if id == 0 {
		return Workload{}
	}
	ids.Lock()
	defer ids.Unlock()
	if w, ok := ids.m[id]; ok {
		return w
	}
	ids.once.Do(func() { ids.mount, ids.root = mountFD() })
	if ids.mount < 0 {
		return Workload{}
	}
	h := make([]byte, 8)
	binary.NativeEndian.PutUint64(h, id)
	const fileidKernfs = 0xfe
	fd, err := unix.OpenByHandleAt(ids.mount, unix.NewFileHandle(fileidKernfs, h), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return Workload{} // gone already, or no privilege: /proc may still tell
	}
	path, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	unix.Close(fd)
	if err != nil {
		return Workload{}
	}
	// The path as /proc/PID/cgroup gives it: from the hierarchy's root.
	w := Parse("0::/" + strings.TrimLeft(strings.TrimPrefix(path, ids.root), "/") + "\n")
	if len(ids.m) >= MaxKnown {
		clear(ids.m)
	}
	ids.m[id] = w
	return w
}

var ids = struct {
	sync.Mutex
	once  sync.Once
	mount int
	root  string // where the cgroup2 hierarchy is mounted
	m     map[uint64]Workload
}{m: map[uint64]Workload{}}

// mountFD opens the cgroup2 mount (/sys/fs/cgroup, or
// /sys/fs/cgroup/unified on hybrid hosts) and says where it is; -1 if
// there is none.
func mountFD() (int, string) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return -1, ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 2 && fields[2] == "cgroup2" {
			fd, err := unix.Open(fields[1], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err == nil {
				return fd, fields[1]
			}
		}
	}
	return -1, ""
}

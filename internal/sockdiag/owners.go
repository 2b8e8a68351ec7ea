package sockdiag

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Owner is a process holding a socket open.
type Owner struct {
	PID  uint32
	Comm string
}

// Owners finds, as `ss -p` does, the process behind each socket inode in
// want: a process with a file descriptor for it (the first found), from
// /proc/PID/fd. Processes that exit meanwhile or cannot be read are skipped.
// It reads every process's descriptor table: call it once per round of
// socket tables, not per socket.
// Without /proc (off Linux) it finds no owner.
func Owners(want map[uint32]bool) map[uint32]Owner {
	out := map[uint32]Owner{}
	if len(want) == 0 {
		return out
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		pid, err := strconv.ParseUint(filepath.Base(dir), 10, 32)
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(dir + "/fd")
		if err != nil {
			continue
		}
		comm := ""
		for _, fd := range fds {
			link, err := os.Readlink(dir + "/fd/" + fd.Name())
			ino, ok := socketInode(link)
			if err != nil || !ok || !want[ino] {
				continue
			}
			if _, seen := out[ino]; seen {
				continue
			}
			if comm == "" {
				b, _ := os.ReadFile(dir + "/comm")
				comm = strings.TrimSpace(string(b))
			}
			out[ino] = Owner{PID: uint32(pid), Comm: comm}
		}
		if len(out) == len(want) {
			break
		}
	}
	return out
}

// socketInode reads "socket:[12345]".
func socketInode(link string) (uint32, bool) {
	s, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 32)
	return uint32(n), err == nil
}

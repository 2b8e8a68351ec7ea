//go:build linux

package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Read returns the settings of the namespace at path (a /proc/PID/ns/net or
// /run/netns/NAME), read from a thread that enters it.
func Read(path string) (Settings, error) {
	var s Settings
	var readErr error
	err := Within(path, func() {
		s, readErr = parse(func(key string) (string, error) {
			b, err := os.ReadFile("/proc/sys/" + key)
			return strings.TrimSpace(string(b)), err
		})
		s.Cookie = cookie()
	})
	if err == nil {
		err = readErr
	}
	var st unix.Stat_t
	if e := unix.Stat(path, &st); e == nil {
		s.Inode = uint32(st.Ino)
	}
	return s, err
}

// cookie is the SO_NETNS_COOKIE of the calling thread's namespace, 0 where
// the kernel has none.
func cookie() uint64 {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0
	}
	return v
}

// Within runs fn on the calling goroutine's OS thread after moving that
// thread into the network namespace at path, then moves it back. Sockets fn
// creates stay in the namespace. If the thread cannot return it stays locked,
// so that it exits with the goroutine instead of serving others (or, as the
// main thread, becoming the template of new threads) in the wrong namespace.
func Within(path string, fn func()) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open(path)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("return from network namespace %s: %w", path, err)
	}
	runtime.UnlockOSThread()
	return nil
}

// All returns the settings of every network namespace in use: the host's (or
// porttrace's own), those named under /run/netns or by a container runtime,
// and those only processes hold. Names say how an operator finds each one:
// "host", a /run/netns path, a runtime's netns path, a container's id, or
// the process (comm[pid]) holding it; kernel threads, whose pids say
// nothing, never name one, and a namespace with a lasting name is not also
// named by the processes in it.
func All() ([]Settings, error) {
	return AllReading(func(path string, _ uint32) (Settings, error) { return Read(path) })
}

// AllReading is All, with read giving each namespace's settings from a path
// that opens it and its inode: a caller that keeps settings it read before
// gives those back instead of entering the namespace again.
func AllReading(read func(path string, inode uint32) (Settings, error)) ([]Settings, error) {
	paths := map[uint32][]string{}
	first := map[uint32]string{}
	lasting := map[uint32]bool{}
	// name is called only where a name is still wanted: most processes
	// run in a namespace that already has a lasting name (the host's),
	// and naming one reads two of its files.
	add := func(path string, name func() string, lasts bool) {
		var st unix.Stat_t
		if unix.Stat(path, &st) != nil {
			return
		}
		ino := uint32(st.Ino)
		_, known := first[ino]
		if lasting[ino] && !lasts || known && !lasts && len(paths[ino]) >= 4 {
			return
		}
		n := name()
		if n == "" {
			return // a kernel thread, or a process gone meanwhile
		}
		if !known {
			first[ino] = path
		}
		if slices.Contains(paths[ino], n) {
			return
		}
		if lasts && !lasting[ino] {
			paths[ino], lasting[ino] = nil, true // names that last replace processes
		}
		if len(paths[ino]) < 4 {
			paths[ino] = append(paths[ino], n)
		}
	}
	named := func(n string) func() string { return func() string { return n } }
	add("/proc/1/ns/net", named("host"), true)
	add("/proc/self/ns/net", named("current"), true) // where /proc/1 is hidden (containers)
	for _, glob := range runtimeNetns {
		found, _ := filepath.Glob(glob)
		for _, p := range found {
			add(p, named(p), true)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, p := range procs {
		pid := strings.Split(p, "/")[2]
		add(p, func() string { return processName(pid) }, false)
	}
	var out []Settings
	for ino, path := range first {
		s, err := read(path, ino)
		if errors.Is(err, fs.ErrNotExist) || err != nil && !IsNamespace(path) {
			continue // gone since it was listed: a pod that ended
		}
		if err != nil {
			return nil, err
		}
		s.Inode, s.Names, s.Path = ino, paths[ino], path
		out = append(out, s)
	}
	var st unix.Stat_t
	unix.Stat("/proc/self/ns/net", &st)
	self := uint32(st.Ino)
	// The namespace porttrace runs in first, then by inode.
	sort.Slice(out, func(i, j int) bool {
		return out[i].Inode == self || (out[j].Inode != self && out[i].Inode < out[j].Inode)
	})
	return out, nil
}

// IsNamespace reports whether path still opens a namespace: `ip netns del`
// unmounts the namespace before it removes the file, and a process's
// ns/net link vanishes with the process.
func IsNamespace(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// runtimeNetns are where ip netns and container runtimes keep namespaces:
// iproute2 and CNI plugins (containerd, CRI-O, podman as root: cni-*),
// Docker, and rootless podman.
var runtimeNetns = []string{"/run/netns/*", "/run/docker/netns/*", "/run/user/*/netns/*"}

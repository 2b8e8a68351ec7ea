// Package netns reads the per-namespace settings that decide how many
// ephemeral ports a port space has and how fast TIME_WAIT gives them back.
package netns

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Settings are one namespace's sysctls that matter for port exhaustion.
type Settings struct {
	Inode      uint32   `json:"netns"`
	Names      []string `json:"names"` // how to find it: "host", /run/netns/NAME, pid N
	Path       string   `json:"-"`     // a path that opens it, for setns
	PortLow    int      `json:"port_low"`
	PortHigh   int      `json:"port_high"`
	Reserved   string   `json:"reserved_ports"` // as written in ip_local_reserved_ports
	TWReuse    int      `json:"tcp_tw_reuse"`
	Timestamps int      `json:"tcp_timestamps"` // tcp_tw_reuse needs them
	// Cookie is the namespace's SO_NETNS_COOKIE: unlike the inode, never
	// reused by a later namespace (0 where the kernel has none, before 5.14).
	Cookie uint64 `json:"cookie,omitempty"`
	// FinTimeout is how long, in seconds, an orphaned socket stays in
	// FIN_WAIT2 (a time-wait socket in that substate) when the peer never
	// closes: tcp_fin_timeout.
	FinTimeout   int `json:"tcp_fin_timeout"`
	MaxTWBuckets int `json:"tcp_max_tw_buckets"`
	// TWReuseDelay is how old, in milliseconds, a time-wait socket must be
	// before tcp_tw_reuse lets connect() take it over
	// (tcp_tw_reuse_delay, Linux 6.13+; 1000 where the kernel has none).
	TWReuseDelay int `json:"tcp_tw_reuse_delay_ms"`
	// AutobindReuse (ip_autobind_reuse=1) lets bind(addr, 0) with
	// SO_REUSEADDR hand out a port that time-wait sockets hold.
	AutobindReuse int `json:"ip_autobind_reuse"`
}

// DefaultTWReuseDelay is tcp_tw_reuse_delay's default, and the fixed
// second of kernels before it existed, in milliseconds.
const DefaultTWReuseDelay = 1000

// Usable is the number of ports connect() may pick: the range minus
// reserved ports inside it.
func (s Settings) Usable() int {
	n := s.PortHigh - s.PortLow + 1
	for _, r := range ParseRanges(s.Reserved) {
		lo, hi := max(r[0], s.PortLow), min(r[1], s.PortHigh)
		if hi >= lo {
			n -= hi - lo + 1
		}
	}
	return max(n, 0)
}

// ParseRanges reads a port list as ip_local_reserved_ports writes it
// ("8080,9000-9010") into inclusive [low, high] pairs; what does not parse
// is skipped.
func ParseRanges(s string) [][2]int {
	var out [][2]int
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		a, b, isRange := strings.Cut(part, "-")
		lo, err1 := strconv.Atoi(a)
		hi, err2 := strconv.Atoi(b)
		if !isRange {
			hi, err2 = lo, err1
		}
		if err1 == nil && err2 == nil {
			out = append(out, [2]int{lo, hi})
		}
	}
	return out
}

// parse reads the sysctls from a /proc/sys as seen from one namespace.
func parse(read func(string) (string, error)) (Settings, error) {
	var s Settings
	r, err := read("net/ipv4/ip_local_port_range")
	if err != nil {
		return s, err
	}
	if _, err := fmt.Sscan(r, &s.PortLow, &s.PortHigh); err != nil {
		return s, fmt.Errorf("ip_local_port_range %q: %w", r, err)
	}
	s.Reserved, _ = read("net/ipv4/ip_local_reserved_ports")
	s.Timestamps, s.TWReuseDelay = 1, DefaultTWReuseDelay
	for key, dst := range map[string]*int{"tcp_tw_reuse": &s.TWReuse, "tcp_timestamps": &s.Timestamps, "tcp_fin_timeout": &s.FinTimeout,
		"tcp_max_tw_buckets": &s.MaxTWBuckets, "tcp_tw_reuse_delay": &s.TWReuseDelay, "ip_autobind_reuse": &s.AutobindReuse} {
		if v, err := read("net/ipv4/" + key); err == nil {
			*dst, _ = strconv.Atoi(v)
		}
	}
	return s, nil
}

// processName names a namespace after a process in it: the container it
// runs in if its cgroup says so, else comm[pid]; "" for a kernel thread or
// a process gone meanwhile.
func processName(pid string) string {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return ""
	}
	// Fields after the comm, which may hold spaces and parentheses.
	i := strings.LastIndexByte(string(stat), ')')
	comm := string(stat[strings.IndexByte(string(stat), '(')+1 : i])
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 7 {
		return ""
	}
	if flags, _ := strconv.ParseUint(f[6], 10, 64); flags&pfKthread != 0 {
		return ""
	}
	if id := containerID(pid); id != "" {
		return "container " + id
	}
	return comm + "[" + pid + "]"
}

// pfKthread is PF_KTHREAD (include/linux/sched.h) in /proc/PID/stat's flags.
const pfKthread = 0x00200000

// containerID is the short id of the container a process runs in, from the
// cgroup path its runtime gives it (docker-ID.scope, cri-containerd-ID,
// crio-ID, libpod-ID, or /docker/ID); "" when it runs in none.
func containerID(pid string) string {
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		return ""
	}
	for _, part := range strings.FieldsFunc(string(b), func(r rune) bool { return r == '/' || r == '\n' || r == ':' }) {
		part = strings.TrimSuffix(part, ".scope")
		for _, prefix := range []string{"docker-", "cri-containerd-", "crio-", "libpod-", ""} {
			id, ok := strings.CutPrefix(part, prefix)
			if ok && len(id) == 64 && strings.Trim(id, "0123456789abcdef") == "" {
				return id[:12]
			}
		}
	}
	return ""
}

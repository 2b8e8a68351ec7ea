// Package conntrack reads, per network namespace, what decides source NAT
// port exhaustion: conntrack's translated entries, its per-CPU statistics,
// its size and limit (ctnetlink, as conntrack -L/-S read them), the NAT
// rules (nftables, which also holds iptables-nft's rules) and the
// namespace's addresses. It returns nat.Table values; the model in
// internal/nat knows no kernel.
package conntrack

import (
	"errors"
	"fmt"
)

// ErrNotLinux is returned off Linux, where there is no conntrack to read.
var ErrNotLinux = errors.New("conntrack and nftables can only be read on Linux")

// MaxDump is the largest table dumped: a bigger one is counted, not
// listed, so that one reading's memory stays bounded (a ctnetlink dump is
// held whole while it is decoded).
const MaxDump = 262144

// KernelAtLeast says whether a kernel release ("6.1.0-57-cloud-amd64")
// is major.minor or later; an unparsable one is taken to be.
func KernelAtLeast(release string, major, minor int) bool {
	var a, b int
	if n, _ := fmt.Sscanf(release, "%d.%d", &a, &b); n != 2 {
		return true
	}
	return a > major || a == major && b >= minor
}

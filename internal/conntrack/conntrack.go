// Package conntrack reads, per network namespace, what decides source NAT
// port exhaustion: conntrack's translated entries, its per-CPU statistics,
// its size and limit (ctnetlink, as conntrack -L/-S read them), the NAT
// rules (nftables, which also holds iptables-nft's rules) and the
// namespace's addresses. It returns nat.Table values; the model in
// internal/nat knows no kernel.
package conntrack

import "errors"

// ErrNotLinux is returned off Linux, where there is no conntrack to read.
var ErrNotLinux = errors.New("conntrack and nftables can only be read on Linux")

// MaxDump is the largest table dumped: a bigger one is counted, not
// listed, so that one reading's memory stays bounded (a ctnetlink dump is
// held whole while it is decoded).
const MaxDump = 262144

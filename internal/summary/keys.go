package summary

import (
	"fmt"
	"net/netip"

	"github.com/porttrace/porttrace/internal/event"
)

// SpaceKey names a port space: the set of source ports from which the
// kernel must pick one unique to (netns, src ip, dst ip, dst port). A bind()
// pool, drawn on by bind() before connect(), has no destination: one pool per
// source address, shared by every destination.
type SpaceKey struct {
	Netns uint32
	Src   netip.Addr
	Dst   netip.AddrPort // zero for a bind() pool
}

// IsBindPool reports whether the key is a bind() pool.
func (k SpaceKey) IsBindPool() bool { return !k.Dst.IsValid() }

func (k SpaceKey) String() string {
	src := "*"
	if k.Src.IsValid() && !k.Src.IsUnspecified() {
		src = k.Src.String()
	}
	if k.IsBindPool() {
		return fmt.Sprintf("%s -> bind() pool", src)
	}
	return fmt.Sprintf("%s -> %s", src, k.Dst)
}

// SpaceOf is the port space an event draws on.
func SpaceOf(e *event.Event) SpaceKey {
	k := SpaceKey{Netns: e.Netns, Src: e.Src.Addr()}
	if e.Kind != event.Bind {
		k.Dst = e.Dst
	}
	if !k.Src.IsValid() {
		k.Src = unspecified(e.Family)
	}
	return k
}

func unspecified(family uint16) netip.Addr {
	if family == 10 { // AF_INET6
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}

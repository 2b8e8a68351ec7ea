package tracer

// OwnersIn is the number of entries in the probes' owners map for
// sockets of network namespace netns (its inode): the client sockets
// between SYN_SENT and CLOSE they follow, and any left by a socket whose
// CLOSE went unseen.
func OwnersIn(t *Tracer, netns uint32) (int, error) {
	var key uint64
	var o bpfOwner
	n := 0
	it := t.coll.Maps[bpfMapOwners].Iterate()
	for it.Next(&key, &o) {
		if o.Netns == netns {
			n++
		}
	}
	return n, it.Err()
}

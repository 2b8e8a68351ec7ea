// Package sockdiag counts the TCP sockets that hold ephemeral ports, from the
// kernel's own socket tables (netlink sock_diag, what `ss` reads). It seeds
// the aggregator when porttrace starts in the middle of an incident, and
// corrects it periodically for whatever events cannot show: sockets older
// than porttrace, and TIME_WAIT sockets reused or killed early.
package sockdiag

import "errors"

var (
	// ErrGone is a namespace that vanished before it could be read: its
	// last process exited, which is no trouble.
	ErrGone = errors.New("network namespace gone")
	// ErrNotLinux is Dump's answer on any other system.
	ErrNotLinux = errors.New("porttrace reads socket tables over netlink sock_diag, which only Linux has: report and top --replay read the tables a capture holds on any system")
)

package event

import (
	"fmt"
	"syscall"
)

// The errnos the event logic tests for, with Linux's numbers. An event's
// Errno is the number the Linux kernel gave, also where a capture is read
// on another system, whose syscall constants differ (macOS has
// EADDRNOTAVAIL = 49): compare with these, never with syscall's.
const (
	EADDRINUSE    syscall.Errno = 98
	EADDRNOTAVAIL syscall.Errno = 99
	EINPROGRESS   syscall.Errno = 115
	ECANCELED     syscall.Errno = 125
)

// errnoNames are Linux's names (include/uapi/asm-generic/errno*.h) of the
// errnos connect() and bind() return, and of the socket errors that end a
// connection attempt (icmp_err_convert's among them); TestErrnoNames pins
// each against x/sys/unix on Linux.
var errnoNames = map[syscall.Errno]string{
	1:   "EPERM",
	4:   "EINTR",
	9:   "EBADF",
	11:  "EAGAIN",
	12:  "ENOMEM",
	13:  "EACCES",
	14:  "EFAULT",
	22:  "EINVAL",
	32:  "EPIPE",
	64:  "ENONET",
	71:  "EPROTO",
	88:  "ENOTSOCK",
	89:  "EDESTADDRREQ",
	90:  "EMSGSIZE",
	91:  "EPROTOTYPE",
	92:  "ENOPROTOOPT",
	93:  "EPROTONOSUPPORT",
	95:  "ENOTSUP", // also EOPNOTSUPP
	97:  "EAFNOSUPPORT",
	98:  "EADDRINUSE",
	99:  "EADDRNOTAVAIL",
	100: "ENETDOWN",
	101: "ENETUNREACH",
	102: "ENETRESET",
	103: "ECONNABORTED",
	104: "ECONNRESET",
	105: "ENOBUFS",
	106: "EISCONN",
	107: "ENOTCONN",
	110: "ETIMEDOUT",
	111: "ECONNREFUSED",
	112: "EHOSTDOWN",
	113: "EHOSTUNREACH",
	114: "EALREADY",
	115: "EINPROGRESS",
	125: "ECANCELED",
}

// ErrnoName names a Linux errno as C does ("EADDRNOTAVAIL"), on any
// system: from errnoNames, else (on Linux) from x/sys/unix; "" for
// success, "errno N" for one neither names.
func ErrnoName(e syscall.Errno) string {
	if e == 0 {
		return ""
	}
	if n, ok := errnoNames[e]; ok {
		return n
	}
	if n := linuxName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}

package event

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// linuxName is this system's name for e: Linux's, here.
func linuxName(e syscall.Errno) string { return unix.ErrnoName(e) }

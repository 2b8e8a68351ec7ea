//go:build !linux

package event

import "syscall"

// linuxName is "": this system's errno names are not Linux's.
func linuxName(syscall.Errno) string { return "" }

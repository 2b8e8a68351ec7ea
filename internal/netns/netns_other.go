//go:build !linux

package netns

import "errors"

// errNotLinux: network namespaces and their sysctls are Linux's.
var errNotLinux = errors.New("network namespaces are read on Linux only")

// Read fails off Linux.
func Read(string) (Settings, error) { return Settings{}, errNotLinux }

// Within fails off Linux, without calling fn.
func Within(string, func()) error { return errNotLinux }

// All fails off Linux.
func All() ([]Settings, error) { return nil, errNotLinux }

// AllReading fails off Linux, without calling read.
func AllReading(func(string, uint32) (Settings, error)) ([]Settings, error) { return nil, errNotLinux }

// IsNamespace is false off Linux.
func IsNamespace(string) bool { return false }

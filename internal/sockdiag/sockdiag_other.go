//go:build !linux

package sockdiag

import "github.com/porttrace/porttrace/internal/event"

// Dump returns ErrNotLinux.
func Dump(path string) ([]event.Socket, error) { return nil, ErrNotLinux }

//go:build !linux

package conntrack

import (
	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/netns"
)

// Read returns ErrNotLinux.
func Read(path string, inode uint32) (nat.Table, error) { return nat.Table{}, ErrNotLinux }

// ReadAll returns ErrNotLinux.
func ReadAll(all []netns.Settings) ([]nat.Table, error) { return nil, ErrNotLinux }

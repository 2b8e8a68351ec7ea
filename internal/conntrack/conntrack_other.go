//go:build !linux

package conntrack

import (
	"net/netip"

	"github.com/porttrace/porttrace/internal/nat"
)

// Read returns ErrNotLinux.
func Read(path string, inode uint32) (nat.Table, error) { return nat.Table{}, ErrNotLinux }

func readNetns(string, uint32) (nat.Table, error) { return nat.Table{}, ErrNotLinux }

func readAddrs(string) ([]netip.Prefix, error) { return nil, ErrNotLinux }

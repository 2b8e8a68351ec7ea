package netns_test

import (
	"io/fs"
	"testing"

	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// TestKernelRead reads a namespace set up with known sysctls, and finds it
// among All() under its name.
func TestKernelRead(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40009)
	ns.Sysctl(t, "net/ipv4/ip_local_reserved_ports", "40003,40005-40006")
	s, err := netns.Read("/run/netns/" + ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	if s.Inode != ns.Inode || s.PortLow != 40000 || s.PortHigh != 40009 || s.TWReuse != 0 || s.Usable() != 7 {
		t.Errorf("read %+v (usable %d), want 40000-40009, tw_reuse 0, 7 usable", s, s.Usable())
	}
	all, err := netns.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		if a.Inode == ns.Inode {
			if a.Names[0] != "/run/netns/"+ns.Name || a.Usable() != 7 {
				t.Errorf("All() lists it as %+v", a)
			}
			return
		}
	}
	t.Errorf("All() misses namespace %d", ns.Inode)
}

// TestKernelAllSkipsGone: a namespace that goes between being listed and
// being read (a pod that ended) is left out, and the others are listed.
func TestKernelAllSkipsGone(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t, 40000, 40019)
	gone := "/run/netns/" + ns.Name
	all, err := netns.AllReading(func(path string, ino uint32) (netns.Settings, error) {
		if path == gone {
			return netns.Settings{}, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
		}
		return netns.Read(path)
	})
	if err != nil || len(all) == 0 {
		t.Fatalf("AllReading: %d namespaces, %v; want the others, no error", len(all), err)
	}
	for _, s := range all {
		if s.Path == gone {
			t.Errorf("%s is listed, though it was gone when read", gone)
		}
	}
}

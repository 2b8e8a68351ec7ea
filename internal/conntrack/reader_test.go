package conntrack

import (
	"net/netip"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/netns"
)

// counting is a Reader over fake namespaces: inode node translates; it
// counts the namespaces entered for conntrack and for addresses.
func counting(node uint32) (*Reader, *time.Time, map[string]int) {
	now := time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC)
	n := map[string]int{}
	r := NewReader()
	r.now = func() time.Time { return now }
	r.read = func(path string, ino uint32) (nat.Table, error) {
		n["conntrack"]++
		t := nat.Table{Netns: ino, Time: now}
		if ino == node {
			t.Rules = []nat.Rule{{Kind: "masquerade", PortMin: 41000, PortMax: 41019}}
		}
		return t, nil
	}
	r.addrs = func(string) ([]netip.Prefix, error) {
		n["addrs"]++
		return []netip.Prefix{netip.MustParsePrefix("10.77.1.2/24")}, nil
	}
	return r, &now, n
}

func namespaces(n int) []netns.Settings {
	var all []netns.Settings
	for i := range n {
		all = append(all, netns.Settings{Inode: uint32(i + 1)})
	}
	return all
}

// TestReaderIdle: idle namespaces are entered on sight, then once a
// minute or after pressure; the one that translates at every read, and
// addresses only while something translates.
func TestReaderIdle(t *testing.T) {
	for _, c := range []struct {
		name string
		node uint32 // 0: nothing translates
		// namespaces entered for conntrack and addresses: first read,
		// 5 s later, after Pressure, 61 s later
		want [4][2]int
	}{
		{"200 idle", 0, [4][2]int{{200, 0}, {0, 0}, {200, 0}, {200, 0}}},
		{"200 idle and a node", 201, [4][2]int{{201, 201}, {1, 0}, {201, 201}, {201, 201}}},
	} {
		r, now, n := counting(c.node)
		all := namespaces(200)
		if c.node != 0 {
			all = append(all, netns.Settings{Inode: c.node})
		}
		for i, step := range []func(){func() {}, func() { *now = now.Add(5 * time.Second) }, r.Pressure, func() { *now = now.Add(CheckEvery + time.Second) }} {
			step()
			clear(n)
			tables, err := r.Read(all)
			if err != nil || len(tables) != len(all) {
				t.Fatalf("%s: %d tables, %v", c.name, len(tables), err)
			}
			if got := [2]int{n["conntrack"], n["addrs"]}; got != c.want[i] {
				t.Errorf("%s, read %d: entered %d namespaces for conntrack, %d for addresses; want %v", c.name, i, got[0], got[1], c.want[i])
			}
			for _, tb := range tables {
				if c.node != 0 && len(tb.Addrs) == 0 {
					t.Errorf("%s, read %d: netns %d without its addresses", c.name, i, tb.Netns)
				}
			}
		}
		if _, err := r.Read(all[:10]); err != nil || len(r.ns) != 10 {
			t.Errorf("%s: %d namespaces remembered after 10 remain", c.name, len(r.ns))
		}
	}
}

func TestKernelAtLeast(t *testing.T) {
	for release, want := range map[string]bool{"6.1.0-57-cloud-amd64": false, "6.4.16": false, "6.5.0": true,
		"6.12.118+deb12-cloud-amd64": true, "6.18.44-fc-v1272": true, "5.15.0-91-generic": false, "7.0": true, "weird": true} {
		if got := KernelAtLeast(release, 6, 5); got != want {
			t.Errorf("%s: %v, want %v", release, got, want)
		}
	}
}

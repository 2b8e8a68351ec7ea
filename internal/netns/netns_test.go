package netns

import (
	"errors"
	"testing"
)

func TestUsable(t *testing.T) {
	for _, c := range []struct {
		lo, hi   int
		reserved string
		want     int
	}{
		{32768, 60999, "", 28232},
		{40000, 40009, "40000-40001,40005,50000-50010", 7},
		{40000, 40009, "30000-49999", 0},
		{40000, 40009, "garbage", 10},
	} {
		s := Settings{PortLow: c.lo, PortHigh: c.hi, Reserved: c.reserved}
		if got := s.Usable(); got != c.want {
			t.Errorf("%d-%d reserved %q: %d usable, want %d", c.lo, c.hi, c.reserved, got, c.want)
		}
	}
}

func TestParse(t *testing.T) {
	vals := map[string]string{
		"net/ipv4/ip_local_port_range":     "40000\t40099",
		"net/ipv4/ip_local_reserved_ports": "40000",
		"net/ipv4/tcp_tw_reuse":            "2",
		"net/ipv4/tcp_fin_timeout":         "60",
		"net/ipv4/tcp_max_tw_buckets":      "262144",
		"net/ipv4/tcp_tw_reuse_delay":      "2500",
		"net/ipv4/ip_autobind_reuse":       "1",
	}
	s, err := parse(func(k string) (string, error) { return vals[k], nil })
	if err != nil {
		t.Fatal(err)
	}
	if s.PortLow != 40000 || s.PortHigh != 40099 || s.Usable() != 99 || s.TWReuse != 2 || s.FinTimeout != 60 || s.MaxTWBuckets != 262144 ||
		s.TWReuseDelay != 2500 || s.AutobindReuse != 1 {
		t.Errorf("parsed %+v", s)
	}
}

// TestParseOldKernel: a kernel without tcp_tw_reuse_delay waits its fixed
// second.
func TestParseOldKernel(t *testing.T) {
	s, err := parse(func(k string) (string, error) {
		if k == "net/ipv4/ip_local_port_range" {
			return "32768 60999", nil
		}
		return "", errNotThere
	})
	if err != nil || s.TWReuseDelay != DefaultTWReuseDelay || s.Timestamps != 1 {
		t.Errorf("parsed %+v, %v: want the 1000 ms delay and timestamps on", s, err)
	}
}

var errNotThere = errors.New("no such file")

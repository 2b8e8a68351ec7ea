package event

import (
	"encoding/json"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

func sample() Event {
	return Event{
		Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Kind: Connect, Errno: syscall.EADDRNOTAVAIL,
		Latency: 2700 * time.Microsecond, PID: 812, TID: 813, Comm: MakeComm("nginx"), Netns: 4026531840,
		Src: netip.MustParseAddrPort("127.0.0.1:0"), Dst: netip.MustParseAddrPort("127.0.0.1:8080"),
	}
}

func TestJSON(t *testing.T) {
	e := sample()
	b, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	var j JSON
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	if j.Event != "connect" || j.Errno != "EADDRNOTAVAIL" || j.PID != 812 || j.TID != 813 || j.Comm != "nginx" ||
		j.Dst != "127.0.0.1:8080" || j.LatencyNS != 2700000 || j.OldState != "" {
		t.Errorf("json %s", b)
	}
}

func TestText(t *testing.T) {
	e := sample()
	line := e.Text()
	for _, want := range []string{"connect", "812", "nginx", "127.0.0.1:8080", "EADDRNOTAVAIL", "2.7ms"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
	e.Kind, e.Errno, e.OldState, e.NewState = State, 0, FinWait2, Close
	if line := e.Text(); !strings.HasSuffix(line, "FIN_WAIT2 -> CLOSE") {
		t.Errorf("state line %q", line)
	}
}

// A NAT event prints its translated source and whether conntrack refused
// it, with the search time; it is no client's failure or attempt.
func TestNATEvent(t *testing.T) {
	e := Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Kind: NAT, Flags: InsertFailed, Latency: 31 * time.Microsecond, Proto: 6,
		Src: netip.MustParseAddrPort("10.77.1.2:50000"), Dst: netip.MustParseAddrPort("10.78.0.2:8080"), NATSrc: netip.MustParseAddrPort("10.78.0.1:41007")}
	if line := e.Text(); !strings.HasSuffix(line, "insert_failed 10.78.0.1:41007 31µs") {
		t.Errorf("NAT line %q", line)
	}
	b, _ := json.Marshal(&e)
	var j JSON
	if err := json.Unmarshal(b, &j); err != nil || j.Event != "nat" || j.NATSrc != "10.78.0.1:41007" || !j.InsertFailed || j.LatencyNS != 31000 {
		t.Errorf("json %s (%v)", b, err)
	}
	if e.Failed() || e.Attempt() || e.Exhaustion() {
		t.Error("a NAT event counted as a client's call")
	}
	e.Flags = 0
	if line := e.Text(); !strings.HasSuffix(line, "as 10.78.0.1:41007 31µs") {
		t.Errorf("NAT line %q", line)
	}
}

// A connect() failure is an attempt of its own only where SYN_SENT did
// not count one: not in the port search (Searched) nor after it found a
// port (AfterSearch). Only the search's own EADDRNOTAVAIL is exhaustion.
func TestConnectAttempt(t *testing.T) {
	for _, c := range []struct {
		errno               syscall.Errno
		flags               Flags
		attempt, exhaustion bool
	}{
		{syscall.ENETUNREACH, 0, true, false},
		{EADDRNOTAVAIL, 0, true, false},
		{EADDRNOTAVAIL, Searched, false, true},
		{EADDRNOTAVAIL, Searched | Bound, false, false},
		{syscall.ENETUNREACH, AfterSearch, false, false},
		{0, 0, false, false},
	} {
		e := sample()
		e.Errno, e.Flags = c.errno, c.flags
		if e.Attempt() != c.attempt || e.Exhaustion() != c.exhaustion {
			t.Errorf("%v flags %d: attempt %v exhaustion %v, want %v %v", c.errno, c.flags, e.Attempt(), e.Exhaustion(), c.attempt, c.exhaustion)
		}
	}
}

func TestFilter(t *testing.T) {
	e := sample()
	for _, c := range []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{PID: 812}, true},
		{Filter{PID: 813}, false},
		{Filter{Comm: "nginx"}, true},
		{Filter{Comm: "ngin"}, false},
		{Filter{DPort: 8080}, true},
		{Filter{DPort: 80}, false},
		{Filter{FailuresOnly: true}, true},
	} {
		if got := c.f.Match(&e); got != c.want {
			t.Errorf("%+v: %v", c.f, got)
		}
	}
	e.Errno = syscall.EINPROGRESS
	if (Filter{FailuresOnly: true}).Match(&e) {
		t.Error("EINPROGRESS is not a failure")
	}
}

func TestComm(t *testing.T) {
	if c := MakeComm("a-very-long-process-name"); c.String() != "a-very-long-pro" {
		t.Errorf("%q", c.String())
	}
}

func TestCommIsSafeToPrint(t *testing.T) {
	for in, want := range map[string]string{
		"nginx":              "nginx",
		"\x1b]0;pwned\x07":   "?]0;pwned?",
		"a\xffb":             "a?b",
		"caf\u00e9":          "caf\u00e9",
		"\u009b31m":          "?31m",
		"exactly15chars!!!!": "exactly15chars!",
	} {
		if got := MakeComm(in).String(); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

package report

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/capture"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
)

// TestHostileText: issue 21 found escape sequences in a capture's header
// (host, command) clearing the screen in report, --markdown and the
// replay title, process names printed uncut (a 1 MB line) and a
// right-to-left override passed through. Whatever a capture says, what
// porttrace prints has no control or bidi character, no credential, and
// no name longer than the kernel's 15 bytes.
func TestHostileText(t *testing.T) {
	const esc = "\x1b[2J\x1b[H\x1b]0;pwned\x07"
	long := esc + strings.Repeat("\u202eA", 1<<16)
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.Header{Host: esc + "host\u202e", Kernel: esc, Backend: esc, Start: t0,
		Command: "porttrace record --otlp-endpoint http://user:password@collector:4318 " + esc,
		Netns:   []netns.Settings{{Inode: 7, PortLow: 40000, PortHigh: 40009, Names: []string{esc}}}})
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddrPort("127.0.0.1:8080")
	w.SyncBegin()
	w.Round(capture.Round{Time: t0, Netns: []netns.Settings{{Inode: 7, PortLow: 40000, PortHigh: 40009}},
		Tables: []event.SocketTable{{Netns: 7, Time: t0, Sockets: []event.Socket{
			{Src: netip.MustParseAddrPort("0.0.0.0:40001"), State: 10, PID: 9, Comm: long},
			{Src: netip.MustParseAddrPort("127.0.0.1:40002"), Dst: dst, PID: 9, Comm: long, Cookie: 5},
		}}}})
	for i := range 30 {
		e := event.Event{Time: t0.Add(time.Duration(i) * 100 * time.Millisecond), Kind: event.Connect, Errno: syscall.EADDRNOTAVAIL,
			Netns: 7, PID: 42, Comm: event.MakeComm("\x1b[2J\u202e"), Family: syscall.AF_INET,
			Src: netip.MustParseAddrPort("127.0.0.1:0"), Dst: dst}
		w.Event(&e)
	}
	w.Close(capture.Trailer{End: t0.Add(5 * time.Second), Reason: "duration"})
	r, err := Build(bytes.NewReader(buf.Bytes()))
	if err != nil || r.Damage != "" {
		t.Fatal(err, r.Damage)
	}
	p, err := NewPlayer(bytes.NewReader(buf.Bytes()), 1, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	h := p.Header()
	for what, out := range map[string]string{"text": r.Text(), "markdown": r.Markdown(),
		"replay title": h.Host + h.Kernel + h.Backend + h.Command} {
		if i := strings.IndexFunc(out, func(r rune) bool { return r == 0x1b || r == 0x07 || r == '\u202e' }); i >= 0 {
			t.Errorf("%s: a control or bidi character at %d: %q", what, i, out[max(i-40, 0):min(i+40, len(out))])
		}
		if strings.Contains(out, "password") {
			t.Errorf("%s: the collector's password", what)
		}
		for _, line := range strings.Split(out, "\n") {
			if len(line) > 8<<10 {
				t.Errorf("%s: a line of %d bytes", what, len(line))
			}
		}
	}
	js, _ := json.Marshal(r)
	if len(js) > 64<<10 {
		t.Errorf("the report's JSON is %d bytes: a process name was kept whole", len(js))
	}
}

package sanitize

import (
	"strings"
	"testing"
)

func TestText(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"nginx", 15, "nginx"},
		{"\x1b[2J\x1b[Hgotcha", 64, `\x1b[2J\x1b[Hgotcha`},
		{"evil\u202egnp.exe", 64, `evil\u202egnp.exe`},
		{"a\u2066b\u200fc", 64, `a\u2066b\u200fc`},
		{"bad\xffbyte", 64, `bad\xffbyte`},
		{"tab\there\nnl\r", 64, `tab\x09here\x0anl\x0d`},
		{"\u009bc1", 64, `\u009bc1`},
		{"héllo wörld", 64, "héllo wörld"},
		{strings.Repeat("x", 1<<20), 15, strings.Repeat("x", 12) + "…"},
		{"ééééééé", 9, "ééé…"},
		{"\x1b\x1b\x1b\x1b", 9, `\x1b\x…`},
	} {
		got := Text(c.in, c.max)
		if got != c.want || len(got) > c.max {
			t.Errorf("Text(%.40q, %d) = %q (%d bytes), want %q", c.in, c.max, got, len(got), c.want)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"porttrace record -o x --otlp-endpoint http://user:password@collector:4318": "porttrace record -o x --otlp-endpoint http://user:xxxxx@collector:4318",
		"--otlp-endpoint=https://TOKEN@c:4317/path?q=1":                             "--otlp-endpoint=https://xxxxx@c:4317/path?q=1",
		"http://collector:4318 and grpc://a:b@h":                                    "http://collector:4318 and grpc://a:xxxxx@h",
		"mail me at root@example.org":                                               "mail me at root@example.org",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// Package sanitize makes text from outside porttrace safe to print on an
// operator's terminal and to store: a capture's header, process names,
// cgroup paths and pod names can hold escape sequences (a process names
// itself with prctl, a capture is a file anyone can forge), and command
// lines and endpoints can hold credentials.
package sanitize

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on text kept from a capture or the kernel, in bytes.
const (
	Comm = 15   // a task name: the kernel's TASK_COMM_LEN less its NUL
	Name = 253  // a host, a pod or namespace name (a DNS name at most)
	Line = 4096 // a command line, a cgroup path
)

// Text is s with every control character, bidi formatting character
// (a right-to-left override) and invalid byte escaped as Go writes it
// (\x1b, \u202e), cut to at most max bytes, "…" marking a cut.
func Text(s string, max int) string {
	if len(s) <= max && !strings.ContainsFunc(s, unsafe) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		piece := s[i : i+size]
		switch {
		case r == utf8.RuneError && size <= 1, r < utf8.RuneSelf && unsafe(r):
			piece = fmt.Sprintf(`\x%02x`, s[i])
		case unsafe(r):
			piece = fmt.Sprintf(`\u%04x`, r)
		}
		if b.Len()+len(piece) > max {
			return cut(b.String(), max)
		}
		b.WriteString(piece)
		i += size
	}
	return b.String()
}

// cut shortens s, which is cut short already, to end in "…" within max
// bytes, on a rune boundary.
func cut(s string, max int) string {
	n := min(max-len("…"), len(s))
	if n < 0 {
		return ""
	}
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// unsafe is a rune that must not reach a terminal as it is.
func unsafe(r rune) bool {
	return r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) ||
		r == '\u2028' || r == '\u2029'
}

// userinfo matches the user:password@ of a URL anywhere in a string.
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@\s]*)@`)

// Redact hides the credentials of every URL in s (a command line, an
// endpoint): http://user:secret@host becomes http://user:xxxxx@host, as
// url.URL.Redacted writes one URL, and a lone token before @ (a bearer
// token as user name) becomes xxxxx.
func Redact(s string) string {
	return userinfo.ReplaceAllStringFunc(s, func(m string) string {
		sub := userinfo.FindStringSubmatch(m)
		user, _, hasPass := strings.Cut(sub[2], ":")
		if !hasPass {
			return sub[1] + "xxxxx@"
		}
		return sub[1] + user + ":xxxxx@"
	})
}

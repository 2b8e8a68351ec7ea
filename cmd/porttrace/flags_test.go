package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/porttrace/porttrace/tracer"
)

// TestParseSize checks the spellings operators type, with go-humanize's
// meaning: k, M, MB decimal; KiB, MiB binary; a bare number is bytes.
func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"512k": 512_000, "512K": 512_000, "512KiB": 512 << 10, "8M": 8_000_000, "8MB": 8_000_000,
		"8MiB": 8 << 20, "8 MiB": 8 << 20, "1G": 1_000_000_000, "1GiB": 1 << 30, "4096": 4096, "1.5M": 1_500_000,
	} {
		if got, err := parseSize("--ring-size", in, minRingSize, maxRingSize); err != nil || got != want {
			t.Errorf("%s: %d %v, want %d", in, got, err, want)
		}
	}
	if got, err := parseSize("--max-size", "100MB", minCaptureSize, maxCaptureSize); err != nil || got != 100_000_000 {
		t.Errorf("--max-size 100MB: %d %v", got, err)
	}
	for _, bad := range []string{"", "0", "-1M", "2G", "M", "lots", "1e3", "100", "4KB"} {
		_, err := parseSize("--ring-size", bad, minRingSize, maxRingSize)
		if err == nil {
			t.Errorf("%q accepted", bad)
		} else if !strings.Contains(err.Error(), "4.0 KiB") || !strings.Contains(err.Error(), "1.0 GiB") {
			t.Errorf("%q: %v does not state the limits", bad, err)
		}
	}
}

// TestBackendLineRefused: with the better backends refused and an optional
// hook missing, what the backend is, what it cannot see and every reason
// stay one line (issue 23: it was three). TestBackendOneLine runs the
// command on the machine's kernel, which may refuse none.
func TestBackendLineRefused(t *testing.T) {
	attempts := []tracer.Attempt{
		{Backend: tracer.Fentry, Err: errors.New("BPF trampolines unsupported")},
		{Backend: tracer.Kprobe, Err: errors.New("kprobes disabled")},
		{Backend: tracer.Tracepoint, Hooks: []tracer.HookStatus{{Name: "sock_ops", Optional: "SYN_SENT timing", Err: errors.New("no cgroup2")}}},
	}
	line := backendLine(tracer.Tracepoint, attempts, false)
	if strings.Contains(line, "\n") {
		t.Fatalf("more than one line:\n%s", line)
	}
	for _, want := range []string{"tracing with the tracepoint backend", "approximate", "--syscalls",
		"fentry refused: BPF trampolines unsupported", "kprobe refused: kprobes disabled", "optional hook sock_ops missing (SYN_SENT timing): no cgroup2"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
}

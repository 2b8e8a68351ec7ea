package e2e

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestCompletion: the shell completion offers --backend's and
// --otlp-protocol's values.
func TestCompletion(t *testing.T) {
	for args, want := range map[string][]string{
		"trace --backend ":       {"auto", "fentry", "kprobe", "tracepoint"},
		"agent --otlp-protocol ": {"grpc", "http/protobuf"},
	} {
		out, err := exec.Command(binary, append([]string{"__complete"}, append(strings.Fields(args), "")...)...).Output()
		if err != nil {
			t.Fatalf("%s: %v", args, err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if !slices.Equal(lines[:len(lines)-1], want) {
			t.Errorf("completion of %q: %q", args, lines)
		}
	}
}

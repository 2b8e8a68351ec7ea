package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// TestGeneratedUpToDate: the committed bpf2go output is what `make
// generate` makes from the sources today, for both targets (issue 23:
// amd64 and arm64). Each package's go:generate line runs again into a
// temporary directory, with Debian 12's clang as .ci/deps installs it
// (its output is byte for byte the same from run to run); a change to
// bpf/ regenerated for one target only, or not at all, fails here.
func TestGeneratedUpToDate(t *testing.T) {
	testnet.RequireTool(t, "clang")
	for _, dir := range []string{"../tracer", "../cmd/portbench/floor"} {
		src, err := os.ReadFile(filepath.Join(dir, "gen.go"))
		if err != nil {
			t.Fatal(err)
		}
		var pkg string
		var args []string
		for _, line := range strings.Split(string(src), "\n") {
			if p, ok := strings.CutPrefix(line, "package "); ok {
				pkg = strings.TrimSpace(p)
			}
			if gen, ok := strings.CutPrefix(line, "//go:generate go tool bpf2go "); ok {
				args = strings.Fields(gen)
			}
		}
		if args == nil || !strings.Contains(strings.Join(args, " "), "-target amd64,arm64") {
			t.Fatalf("%s/gen.go: no go:generate line running bpf2go for amd64 and arm64", dir)
		}
		out := t.TempDir()
		cmd := exec.Command("go", append([]string{"tool", "bpf2go", "-output-dir", out}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOPACKAGE="+pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: bpf2go: %v\n%s", dir, err, b)
		}
		made, _ := os.ReadDir(out)
		arches := map[string]bool{}
		for _, f := range made {
			fresh, _ := os.ReadFile(filepath.Join(out, f.Name()))
			committed, err := os.ReadFile(filepath.Join(dir, f.Name()))
			if err != nil || !bytes.Equal(fresh, committed) {
				t.Errorf("%s/%s differs from what make generate makes now (%v): run make generate", dir, f.Name(), err)
			}
			for _, arch := range []string{"x86", "arm64"} {
				arches[arch] = arches[arch] || strings.Contains(f.Name(), "_"+arch+"_")
			}
		}
		if !arches["x86"] || !arches["arm64"] {
			t.Errorf("%s: bpf2go made %d files, not both targets' (%v)", dir, len(made), arches)
		}
	}
}

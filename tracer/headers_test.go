package tracer_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// TestBPFHeadersCompileAlone: each header in bpf/ includes what it uses, so
// a file that includes only that header compiles, with the flags bpf2go
// compiles porttrace.c with (gen.go's, and those bpf2go adds for each of
// its targets).
func TestBPFHeadersCompileAlone(t *testing.T) {
	clang := testnet.RequireTool(t, "clang")
	targets := generateFlags(t)
	headers, err := filepath.Glob("../bpf/*.h")
	if err != nil || len(headers) == 0 {
		t.Fatalf("no headers in ../bpf: %v", err)
	}
	for _, target := range targets {
		for _, h := range headers {
			name := filepath.Base(h)
			t.Run(target.name+"/"+name, func(t *testing.T) {
				args := append([]string{"-fsyntax-only", "-x", "c", "-"}, target.flags...)
				cmd := exec.Command(clang, args...)
				cmd.Stdin = strings.NewReader("#include \"" + name + "\"\n")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("%s does not compile alone for %s (%v):\n%s", name, target.name, err, out)
				}
			})
		}
	}
}

// bpfTarget is one of bpf2go's targets and the C flags it compiles with.
type bpfTarget struct {
	name  string
	flags []string
}

// generateFlags reads the C flags from gen.go's go:generate line, and adds
// what bpf2go adds for each of its -target's (comma-separated) targets.
func generateFlags(t *testing.T) []bpfTarget {
	t.Helper()
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(src), "\n") {
		gen, ok := strings.CutPrefix(line, "//go:generate ")
		if !ok {
			continue
		}
		bpf2go, cflags, ok := strings.Cut(gen, " -- ")
		if !ok {
			t.Fatalf("gen.go's go:generate line passes no C flags: %s", line)
		}
		// bpf2go's targets (cmd/bpf2go/gen/target.go): clang's target and
		// the architecture bpf_tracing.h reads.
		known := map[string][]string{
			"amd64": {"-target", "bpfel", "-D__TARGET_ARCH_x86"},
			"arm64": {"-target", "bpfel", "-D__TARGET_ARCH_arm64"},
		}
		f := strings.Fields(bpf2go)
		for i := range f[:len(f)-1] {
			if f[i] != "-target" {
				continue
			}
			var out []bpfTarget
			for _, name := range strings.Split(f[i+1], ",") {
				add, ok := known[name]
				if !ok {
					t.Fatalf("gen.go: bpf2go -target %s is not known to this test", name)
				}
				flags := append([]string{"-O2", "-mcpu=v1"}, append(strings.Fields(cflags), add...)...)
				out = append(out, bpfTarget{name: name, flags: flags})
			}
			return out
		}
		t.Fatalf("gen.go's go:generate line names no -target: %s", line)
	}
	t.Fatal("gen.go has no go:generate line")
	return nil
}

// TestGeneratedUpToDate: the committed bpf2go output is what `make
// generate` makes from the sources today, for both targets (issue 23:
// amd64 and arm64). Each package's go:generate line runs again into a
// temporary directory, with Debian 12's clang as .ci/deps installs it
// (its output is byte for byte the same from run to run); a change to
// bpf/ regenerated for one target only, or not at all, fails here.
func TestGeneratedUpToDate(t *testing.T) {
	testnet.RequireTool(t, "clang")
	for _, dir := range []string{".", "../cmd/portbench/floor"} {
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

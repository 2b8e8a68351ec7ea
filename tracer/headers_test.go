package tracer_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// TestBPFHeadersCompileAlone: each header in bpf/ includes what it uses, so
// a file that includes only that header compiles, with the flags bpf2go
// compiles porttrace.c with (gen.go's, and those bpf2go adds for its target).
func TestBPFHeadersCompileAlone(t *testing.T) {
	clang := testnet.RequireTool(t, "clang")
	flags := generateFlags(t)
	headers, err := filepath.Glob("../bpf/*.h")
	if err != nil || len(headers) == 0 {
		t.Fatalf("no headers in ../bpf: %v", err)
	}
	for _, h := range headers {
		name := filepath.Base(h)
		t.Run(name, func(t *testing.T) {
			args := append([]string{"-fsyntax-only", "-x", "c", "-"}, flags...)
			cmd := exec.Command(clang, args...)
			cmd.Stdin = strings.NewReader("#include \"" + name + "\"\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s does not compile alone (%v):\n%s", name, err, out)
			}
		})
	}
}

// generateFlags reads the C flags from gen.go's go:generate line, and adds
// what bpf2go adds for its -target.
func generateFlags(t *testing.T) []string {
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
		target := map[string][]string{
			"amd64": {"-target", "bpfel", "-D__TARGET_ARCH_x86"},
		}
		f := strings.Fields(bpf2go)
		for i := range f[:len(f)-1] {
			if f[i] == "-target" {
				add, ok := target[f[i+1]]
				if !ok {
					t.Fatalf("gen.go: bpf2go -target %s is not known to this test", f[i+1])
				}
				return append([]string{"-O2", "-mcpu=v1"}, append(strings.Fields(cflags), add...)...)
			}
		}
		t.Fatalf("gen.go's go:generate line names no -target: %s", line)
	}
	t.Fatal("gen.go has no go:generate line")
	return nil
}

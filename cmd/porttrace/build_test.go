package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// kernelSide are the packages that may link netlink and BPF: the tracer,
// the socket table reader, the conntrack and nftables reader, and test tools. netns and cgroup are kernel
// readers too, but their Linux-only parts are in _linux.go files: their
// plain types (netns.Settings, cgroup.Workload) and parsers are the
// core's. live is given its socket tables (sockdiag.ReadAll) by the
// command.
var kernelSide = []string{"tracer", "internal/sockdiag", "internal/conntrack", "internal/testkit/churn", "internal/testkit/testnet", "internal/vmtest"}

// TestCoreKnowsNoKernel: every other package builds without netlink and
// BPF, so that captures can be read anywhere and the core tested alone.
func TestCoreKnowsNoKernel(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", "github.com/porttrace/porttrace/internal/...").Output()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, deps, _ := strings.Cut(line, " ")
		rel := strings.TrimPrefix(pkg, "github.com/porttrace/porttrace/")
		if kernel(rel) {
			continue
		}
		checked++
		for _, d := range strings.Fields(deps) {
			if strings.HasPrefix(d, "github.com/vishvananda/netlink") || strings.HasPrefix(d, "github.com/mdlayher/netlink") || strings.HasPrefix(d, "github.com/cilium/ebpf") || kernel(strings.TrimPrefix(d, "github.com/porttrace/porttrace/")) {
				t.Errorf("%s depends on %s", rel, d)
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d core packages checked: is the list right?", checked)
	}
}

func kernel(rel string) bool {
	for _, k := range kernelSide {
		if rel == k {
			return true
		}
	}
	return false
}

// TestNeedLinux: off Linux, a command that reads the kernel refuses in a
// line that names the commands that work there.
func TestNeedLinux(t *testing.T) {
	if err := needLinux("linux", "top"); err != nil {
		t.Errorf("on Linux: %v", err)
	}
	for _, c := range []string{"trace", "top", "record", "agent", "doctor"} {
		err := needLinux("darwin", c)
		if err == nil || !strings.Contains(err.Error(), "porttrace "+c+" reads the kernel") || !strings.Contains(err.Error(), "porttrace top --replay FILE") {
			t.Errorf("%s on darwin: %v", c, err)
		}
	}
}

// TestBuildsForMacOS cross-compiles porttrace for macOS, where people read
// captures (report, top --replay); commands that read the kernel refuse
// there with needLinux.
func TestBuildsForMacOS(t *testing.T) {
	for _, arch := range []string{"arm64", "amd64"} {
		bin := filepath.Join(t.TempDir(), "porttrace")
		cmd := exec.Command("go", "build", "-o", bin, ".")
		cmd.Env = append(os.Environ(), "GOOS=darwin", "GOARCH="+arch, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("GOOS=darwin GOARCH=%s go build: %v\n%s", arch, err, out)
		}
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte{0xcf, 0xfa, 0xed, 0xfe}) { // MH_MAGIC_64, little-endian
			t.Errorf("darwin/%s: not a 64-bit Mach-O executable", arch)
		}
	}
}

// runsTheModel are the packages that run the aggregator: live feeds it
// from the kernel, report from a capture. Every other package reads what
// leaves the model (internal/summary), never the aggregator itself.
var runsTheModel = []string{"internal/aggregate", "internal/live", "internal/report"}

// TestSummaryReadersKnowNoAggregator: the packages that only read
// summaries (the capture format, export, the views, diagnosis...) do not
// depend on internal/aggregate, so that the model's inside can change
// without them.
func TestSummaryReadersKnowNoAggregator(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", "github.com/porttrace/porttrace/internal/...").Output()
	if err != nil {
		t.Fatal(err)
	}
	readers := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, deps, _ := strings.Cut(line, " ")
		rel := strings.TrimPrefix(pkg, "github.com/porttrace/porttrace/")
		if slices.Contains(runsTheModel, rel) {
			continue
		}
		readers[rel] = true
		if slices.Contains(strings.Fields(deps), "github.com/porttrace/porttrace/internal/aggregate") {
			t.Errorf("%s depends on internal/aggregate: it should need internal/summary only", rel)
		}
	}
	for _, want := range []string{"internal/capture", "internal/diagnose", "internal/export", "internal/frame", "internal/view", "internal/recorder"} {
		if !readers[want] {
			t.Errorf("%s was not checked: is the list right?", want)
		}
	}
}

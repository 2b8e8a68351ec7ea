// Package packaging holds the Debian package's definition (nfpm.yaml), the
// systemd unit and the default environment file; its test builds the
// package with `make deb` and installs and removes it with dpkg.
package packaging

import (
	"debug/elf"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/porttrace/porttrace/internal/testnet"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDeb: make deb, dpkg -i: the static binary, the unit (which
// systemd-analyze verify accepts), the default environment file, a man
// page per command and the completions are in place; dpkg -r removes all
// but the configuration file, dpkg --purge that too.
func TestDeb(t *testing.T) {
	testnet.RequireRoot(t)
	for _, tool := range []string{"make", "nfpm", "dpkg", "systemd-analyze"} {
		testnet.RequireTool(t, tool)
	}
	if exec.Command("dpkg-query", "-W", "porttrace").Run() == nil {
		t.Fatal("a porttrace package is installed already; this test would remove it")
	}
	run(t, "make", "-C", "..", "deb", "DEB_VERSION=0.0.1~test")
	deb := "../bin/porttrace_0.0.1~test_amd64.deb"
	t.Cleanup(func() { exec.Command("dpkg", "--purge", "porttrace").Run() })
	run(t, "dpkg", "-i", deb)

	files := strings.Fields(run(t, "dpkg-query", "-L", "porttrace"))
	want := []string{"/usr/bin/porttrace", "/lib/systemd/system/porttrace-agent.service", "/etc/default/porttrace",
		"/usr/share/bash-completion/completions/porttrace", "/usr/share/zsh/vendor-completions/_porttrace",
		"/usr/share/fish/vendor_completions.d/porttrace.fish", "/usr/share/man/man1/porttrace.1.gz"}
	for _, c := range []string{"agent", "top", "record", "report", "trace", "doctor"} {
		want = append(want, "/usr/share/man/man1/porttrace-"+c+".1.gz")
	}
	for _, f := range want {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	bin, err := elf.Open("/usr/bin/porttrace")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range bin.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("/usr/bin/porttrace is dynamically linked")
		}
	}
	bin.Close()
	if out := run(t, "/usr/bin/porttrace", "agent", "--help"); !strings.Contains(out, "--metrics-addr") {
		t.Errorf("porttrace agent --help:\n%s", out)
	}
	if out := run(t, "systemd-analyze", "verify", "/lib/systemd/system/porttrace-agent.service"); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify:\n%s", out)
	}
	unit, _ := os.ReadFile("/lib/systemd/system/porttrace-agent.service")
	for _, d := range []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=CAP_BPF ", "AmbientCapabilities=", "EnvironmentFile=-/etc/default/porttrace"} {
		if !strings.Contains(string(unit), "\n"+d) {
			t.Errorf("unit lacks %s", d)
		}
	}
	if env, _ := os.ReadFile("/etc/default/porttrace"); !strings.Contains(string(env), "\nPORTTRACE_ARGS=") {
		t.Errorf("/etc/default/porttrace sets no PORTTRACE_ARGS:\n%s", env)
	}

	run(t, "dpkg", "-r", "porttrace")
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && !st.IsDir() && f != "/etc/default/porttrace" {
			t.Errorf("%s left after dpkg -r", f)
		}
	}
	run(t, "dpkg", "--purge", "porttrace")
	if _, err := os.Stat("/etc/default/porttrace"); err == nil {
		t.Error("/etc/default/porttrace left after dpkg --purge")
	}
}

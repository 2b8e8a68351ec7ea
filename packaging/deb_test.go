// Package packaging holds the Debian package's definition (nfpm.yaml), the
// systemd unit and the default environment file; its test builds the
// package with `make deb` and installs and removes it with dpkg.
package packaging

import (
	"debug/elf"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/porttrace/porttrace/internal/testkit/testnet"
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
	checkLintian(t, deb)
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
	checkExposure(t, "/lib/systemd/system/porttrace-agent.service")
	for _, f := range []string{"/usr/share/doc/porttrace/copyright", "/usr/share/doc/porttrace/changelog.gz"} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
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

// checkLintian: Debian's lintian finds no error in the package.
func checkLintian(t *testing.T, deb string) {
	t.Helper()
	lintian := testnet.RequireTool(t, "lintian")
	out, _ := exec.Command(lintian, "--tag-display-limit", "0", deb).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "E: ") {
			t.Errorf("lintian: %s", line)
		}
	}
	t.Logf("lintian %s:\n%s", deb, out)
}

// maxExposure is the worst `systemd-analyze security` score the unit may
// have (0 is best, 10 worst): "3.0 or better", as the fleet issue asks.
const maxExposure = 3.0

var exposure = regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`)

// checkExposure: systemd's own assessment of the unit's sandbox.
func checkExposure(t *testing.T, unit string) {
	t.Helper()
	out, _ := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", unit).CombinedOutput()
	m := exposure.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("systemd-analyze security %s:\n%s", unit, out)
	}
	if v, _ := strconv.ParseFloat(m[1], 64); v > maxExposure {
		t.Errorf("systemd-analyze security: exposure %v, want %v or better:\n%s", v, maxExposure, out)
	}
	t.Logf("systemd-analyze security %s: %s", unit, m[1])
}

// TestUnitExposure: the unit in the repository, without installing it.
func TestUnitExposure(t *testing.T) {
	testnet.RequireTool(t, "systemd-analyze")
	checkExposure(t, "porttrace-agent.service")
}

// TestMaintainerScripts: with systemd running (a /run/systemd/system of
// a private mount namespace), prerm stops the agent on remove and not on
// upgrade; postinst restarts it on upgrade and not on a first install;
// postrm disables it on remove and forgets it on purge. A fake
// deb-systemd-invoke, deb-systemd-helper and systemctl log their calls.
func TestMaintainerScripts(t *testing.T) {
	testnet.RequireRoot(t)
	testnet.RequireTool(t, "unshare")
	fake := t.TempDir()
	log := fake + "/calls"
	for _, name := range []string{"deb-systemd-invoke", "deb-systemd-helper", "systemctl"} {
		script := "#!/bin/sh\necho " + name + " \"$@\" >> " + log + "\n"
		if err := os.WriteFile(fake+"/"+name, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		script string
		args   []string
		want   string
	}{
		{"prerm.sh", []string{"remove"}, "deb-systemd-invoke stop porttrace-agent.service"},
		{"prerm.sh", []string{"upgrade", "0.2.0"}, ""},
		{"postinst.sh", []string{"configure", ""}, "systemctl daemon-reload"},
		{"postinst.sh", []string{"configure", "0.1.0"}, "systemctl daemon-reload\ndeb-systemd-invoke try-restart porttrace-agent.service"},
		{"postrm.sh", []string{"upgrade", "0.2.0"}, "systemctl --system daemon-reload"},
		{"postrm.sh", []string{"remove"}, "systemctl --system daemon-reload\ndeb-systemd-helper disable porttrace-agent.service"},
		{"postrm.sh", []string{"purge"}, "systemctl --system daemon-reload\ndeb-systemd-helper purge porttrace-agent.service"},
	} {
		os.Remove(log)
		sh := "mount -t tmpfs porttrace-test /run && mkdir -p /run/systemd/system && exec sh " + c.script + ` "$@"`
		cmd := exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", sh, "sh"}, c.args...)...)
		cmd.Env = append(os.Environ(), "PATH="+fake+":"+os.Getenv("PATH"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", c.script, c.args, err, out)
		}
		got, _ := os.ReadFile(log)
		if strings.TrimSpace(string(got)) != c.want {
			t.Errorf("%s %q called:\n%s\nwant:\n%s", c.script, c.args, got, c.want)
		}
	}
}

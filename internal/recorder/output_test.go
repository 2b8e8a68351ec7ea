package recorder

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestOutputRefused: what issue 21 found (root's record -o wrote through a
// symlink an unprivileged user planted, and into a file another user made
// beforehand, which stayed theirs) is refused, both by the check before
// probes attach and by Create itself, which the check may race.
func TestOutputRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "shadow")
	if err := os.WriteFile(target, []byte("root only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.ptcap")
	os.Symlink(target, link)
	dangling := filepath.Join(dir, "dangling.ptcap")
	os.Symlink(filepath.Join(dir, "nowhere"), dangling)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, "mine.ptcap")
	os.WriteFile(mine, []byte("old"), 0o644)
	hard := filepath.Join(dir, "hard.ptcap")
	os.Link(mine, hard)
	cases := []struct {
		path      string
		overwrite bool
		want      string
	}{
		{link, false, "is a symbolic link"},
		{link, true, "is a symbolic link"},
		{dangling, true, "is a symbolic link"},
		{fifo, true, "not a regular file (a FIFO)"},
		{"/dev/null", true, "not a regular file (a device)"},
		{dir, true, "is a directory"},
		{mine, false, "exists: porttrace writes only a file it creates"},
		{hard, true, "has 2 hard links"},
	}
	if os.Geteuid() == 0 {
		theirs := filepath.Join(dir, "theirs.ptcap")
		os.WriteFile(theirs, nil, 0o666)
		os.Chown(theirs, 65534, 65534)
		cases = append(cases, struct {
			path      string
			overwrite bool
			want      string
		}{theirs, true, "belongs to uid 65534, not to you"})
	}
	for _, c := range cases {
		if err := CheckOutput(c.path, c.overwrite); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckOutput(%s, %v) = %v, want %q", filepath.Base(c.path), c.overwrite, err, c.want)
		}
		if c.path == dir || c.path == "/dev/null" {
			continue
		}
		if f, err := Create(c.path, c.overwrite); err == nil {
			f.Close()
			t.Errorf("Create(%s, %v) wrote it", filepath.Base(c.path), c.overwrite)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "root only\n" {
		t.Errorf("the link's target was written: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(dir, "nowhere")); err == nil {
		t.Errorf("a dangling link's target was created")
	}
}

// TestOutputCreated: a new capture is 0600 whatever the umask; --overwrite
// replaces one's own regular file and makes it 0600 too.
func TestOutputCreated(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	for _, overwrite := range []bool{false, true} {
		path := filepath.Join(dir, "new.ptcap")
		os.Remove(path)
		if err := CheckOutput(path, overwrite); err != nil {
			t.Fatal(err)
		}
		f, err := Create(path, overwrite)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
			t.Errorf("new capture is %v, want 0600", st.Mode().Perm())
		}
	}
	mine := filepath.Join(dir, "mine.ptcap")
	os.WriteFile(mine, []byte("an old capture"), 0o644)
	if err := CheckOutput(mine, true); err != nil {
		t.Fatal(err)
	}
	f, err := Create(mine, true)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st, _ := os.Stat(mine); st.Mode().Perm() != 0o600 || st.Size() != 0 {
		t.Errorf("overwritten capture: %v, %d bytes; want 0600, truncated", st.Mode().Perm(), st.Size())
	}
}

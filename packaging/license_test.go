package packaging

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLicenses: the repository's LICENSE is the Apache License 2.0 (the Go
// code), bpf/LICENSE the GPL version 2 (the eBPF programs, which declare
// it to the kernel: SEC("license") and each file's SPDX line), and the
// package's copyright file says both.
func TestLicenses(t *testing.T) {
	for file, want := range map[string]string{
		"../LICENSE":     "Apache License\n                           Version 2.0",
		"../bpf/LICENSE": "GNU GENERAL PUBLIC LICENSE\n                       Version 2, June 1991",
	} {
		b, err := os.ReadFile(file)
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s: %v, want the text with %q", file, err, want)
		}
	}
	files, _ := filepath.Glob("../bpf/*.[ch]")
	if len(files) == 0 {
		t.Fatal("no BPF sources")
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		first, _, _ := strings.Cut(string(b), "\n")
		if !strings.Contains(first, "SPDX-License-Identifier: GPL-2.0") {
			t.Errorf("%s: first line %q, want its SPDX identifier GPL-2.0", f, first)
		}
	}
	if b, _ := os.ReadFile("../bpf/porttrace.c"); !strings.Contains(string(b), `SEC("license") = "GPL"`) {
		t.Error(`bpf/porttrace.c declares no SEC("license") = "GPL"`)
	}
	c, _ := os.ReadFile("copyright")
	for _, want := range []string{"Files: *\n", "License: Apache-2.0\n", "Files: bpf/*\n", "License: GPL-2.0-only\n",
		"/usr/share/common-licenses/Apache-2.0", "/usr/share/common-licenses/GPL-2"} {
		if !strings.Contains(string(c), want) {
			t.Errorf("packaging/copyright lacks %q", want)
		}
	}
}

// TestNoBinaryTracked: git tracks no executable or shared object (a built
// binary belongs in bin/, which .gitignore covers). The BPF objects that
// bpf2go generates are relocatable objects for the kernel, committed on
// purpose.
func TestNoBinaryTracked(t *testing.T) {
	out, err := exec.Command("git", "-C", "..", "ls-files", "-z").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		path := filepath.Join("..", f)
		head := make([]byte, 4)
		fh, err := os.Open(path)
		if err != nil {
			continue // deleted in the work tree
		}
		fh.Read(head)
		fh.Close()
		if !bytes.Equal(head, []byte(elf.ELFMAG)) {
			continue
		}
		e, err := elf.Open(path)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if e.Type == elf.ET_EXEC || e.Type == elf.ET_DYN {
			t.Errorf("%s is a compiled binary (%v): build it into bin/, do not commit it", f, e.Type)
		}
		e.Close()
	}
	for _, f := range []string{"portbench", "churn", "porttrace", "bin/porttrace"} {
		if err := exec.Command("git", "-C", "..", "check-ignore", "-q", f).Run(); err != nil {
			t.Errorf("%s (what go build or make build writes) is not in .gitignore: %v", f, err)
		}
	}
}

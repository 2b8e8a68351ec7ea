package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set by `make build` with -ldflags "-X main.stamp...": what the build info
// lacks when the binary is built from a work tree rather than installed as
// a module at a tag.
var (
	stampVersion string
	stampCommit  string
	stampDate    string
)

// buildInfo is what `porttrace version` prints.
type buildInfo struct {
	Version, Commit, Date, Go, Ebpf string
	Modified                        bool
}

// readBuildInfo reads the version from the module's build info (a tag when
// installed with go install ...@vX), the commit and its time from the VCS
// stamp Go writes when building in a git work tree, the Go and cilium/ebpf
// versions from the build info too; make build's -ldflags win over all.
func readBuildInfo() buildInfo {
	b := buildInfo{Version: "(devel)", Commit: "unknown", Date: "unknown", Go: runtime.Version(), Ebpf: "unknown"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.time":
				b.Date = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/cilium/ebpf" {
				b.Ebpf = d.Version
			}
		}
	}
	for dst, v := range map[*string]string{&b.Version: stampVersion, &b.Commit: stampCommit, &b.Date: stampDate} {
		if v != "" {
			*dst = v
		}
	}
	return b
}

// version is the version alone, as OTLP's service.version.
func version() string { return readBuildInfo().Version }

func (b buildInfo) String() string {
	commit := b.Commit
	if b.Modified {
		commit += " (modified)"
	}
	return fmt.Sprintf("porttrace %s\n  commit      %s\n  built       %s\n  go          %s\n  cilium/ebpf %s\n",
		b.Version, commit, b.Date, b.Go, b.Ebpf)
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date, and the Go and cilium/ebpf versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := io.WriteString(cmd.OutOrStdout(), readBuildInfo().String())
			return err
		},
	}
}

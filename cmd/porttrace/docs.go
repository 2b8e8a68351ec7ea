package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newDocs writes the man pages and shell completions that packages ship;
// hidden, as only `make deb` needs it.
func newDocs() *cobra.Command {
	var man, completions string
	cmd := &cobra.Command{
		Use:    "gen-docs",
		Short:  "Write man pages (section 1) and bash, zsh and fish completions",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root := cmd.Root()
			root.DisableAutoGenTag = true // reproducible pages
			if man != "" {
				if err := os.MkdirAll(man, 0o755); err != nil {
					return err
				}
				hdr := &doc.GenManHeader{Title: "PORTTRACE", Section: "1", Source: "porttrace " + version(), Manual: "porttrace manual"}
				if err := doc.GenManTree(root, hdr, man); err != nil {
					return fmt.Errorf("man pages: %w", err)
				}
			}
			if completions == "" {
				return nil
			}
			if err := os.MkdirAll(completions, 0o755); err != nil {
				return err
			}
			for file, gen := range map[string]func(string) error{
				"porttrace.bash": func(f string) error { return root.GenBashCompletionFileV2(f, true) },
				"_porttrace":     root.GenZshCompletionFile,
				"porttrace.fish": func(f string) error { return root.GenFishCompletionFile(f, true) },
			} {
				if err := gen(filepath.Join(completions, file)); err != nil {
					return fmt.Errorf("completion %s: %w", file, err)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&man, "man", "", "directory for the man pages")
	cmd.Flags().StringVar(&completions, "completions", "", "directory for the completion scripts")
	return cmd
}

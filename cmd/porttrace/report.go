package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/porttrace/porttrace/internal/report"
)

func newReport() *cobra.Command {
	var asJSON, markdown bool
	cmd := &cobra.Command{
		Use:   "report FILE",
		Short: "Summarise a capture: port spaces, processes, timeline and diagnosis",
		Long: `Replay a capture made by 'porttrace record' through the same aggregation
and diagnosis as 'porttrace top'. Needs no privileges. A capture that was
cut off is reported up to its last complete block, and says so.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON && markdown {
				return errors.New("--json and --markdown exclude each other")
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			r, err := report.Build(f)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			return writeReport(cmd.OutOrStdout(), r, asJSON, markdown)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "everything, as one JSON object")
	cmd.Flags().BoolVar(&markdown, "markdown", false, "Markdown, for a ticket")
	return cmd
}

func writeReport(w io.Writer, r *report.Report, asJSON, markdown bool) error {
	switch {
	case asJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case markdown:
		_, err := io.WriteString(w, r.Markdown())
		return err
	}
	_, err := io.WriteString(w, r.Text())
	return err
}

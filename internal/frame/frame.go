// Package frame holds what a view shows at one moment: the aggregator's
// summary with its diagnosis. The live monitor and a capture's replay both
// make frames; the text and terminal views and the JSON render them.
package frame

import (
	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/summary"
)

// Frame is a summary, its findings, and the trouble of the moment (a socket
// table that could not be read, the end of a replay).
type Frame struct {
	*summary.Summary
	Findings []diagnose.Finding `json:"diagnosis"`
	Warning  string             `json:"warning,omitempty"`
	// Status says which probes come and go with the load and whether they
	// are on: the tracepoint backend's bind() tracepoints (live.BindHold).
	Status string `json:"status,omitempty"`
	// NAT is the source NAT port spaces and conntrack tables (nil when
	// they are not read).
	NAT *nat.Summary `json:"nat,omitempty"`
}

// NATNames names a namespace as the views do: by its pod where r labels
// one, else by names (a netns's names by inode; nil is fine).
func NATNames(r *summary.Summary, names map[uint32][]string) func(uint32) []string {
	pods := map[uint32]string{}
	if r != nil {
		for _, ns := range r.Netns {
			if ns.Pod != "" {
				pods[ns.Inode] = ns.Pod
			}
		}
	}
	return func(ino uint32) []string {
		if p, ok := pods[ino]; ok {
			return []string{"pod " + p}
		}
		return names[ino]
	}
}

package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/porttrace/porttrace/internal/conntrack"
	"github.com/porttrace/porttrace/internal/netns"
)

// doctorNAT prints which namespaces translate source addresses, by which
// rules, their conntrack tables, and what porttrace could not read there.
func doctorNAT(w io.Writer) {
	all, err := netns.All()
	if err != nil {
		fmt.Fprintf(w, "source NAT: %v\n", err)
		return
	}
	fmt.Fprintln(w, "source NAT (conntrack over ctnetlink, rules over nftables: iptables-nft's too)")
	quiet := 0
	var errs []error
	for _, s := range all {
		t, err := conntrack.Read(s.Path, s.Inode)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if !t.Translates() && t.Err == "" {
			quiet++
			continue
		}
		fmt.Fprintf(w, "  netns %d: conntrack %d of %d entries, insert_failed %d, drop %d, early_drop %d, %d translated\n",
			t.Netns, t.Count, t.Max, t.Stats.InsertFailed, t.Stats.Drop, t.Stats.EarlyDrop, len(t.Entries))
		for _, r := range t.Rules {
			fmt.Fprintf(w, "    rule %s\n", r)
		}
		if t.Err != "" {
			fmt.Fprintf(w, "    could not read: %s\n", t.Err)
		}
	}
	fmt.Fprintf(w, "  %d other namespaces translate nothing\n", quiet)
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(w, "  not read: %v\n", err)
	}
}

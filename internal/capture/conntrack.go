package capture

import (
	"cmp"
	"encoding/json"
	"fmt"
	"time"

	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/sanitize"
)

// ConntrackRound is one reading of the namespaces' conntrack tables (the
// translated entries, statistics, NAT rules and addresses), written right
// after the round of socket tables it was read with. Captures of format
// version 2 have none.
type ConntrackRound struct {
	Time   time.Time   `json:"time"` // when the reading began
	Tables []nat.Table `json:"tables"`
}

// ctChunk is one block of a conntrack round. A table whose entries do not
// fit one chunk goes on in the next: a table of the same namespace that
// follows it directly continues it (its entries are appended).
type ctChunk struct {
	Time   time.Time   `json:"time"`
	Tables []nat.Table `json:"tables"`
	Last   bool        `json:"last"`
}

// Bounds of a conntrack round. A chunk weighs at most chunkWeight: a table
// weighs one, an entry or an address one each (~170 bytes of JSON at
// most), a rule four, so that a chunk stays well under maxBlock. A round
// has at most maxCTChunks chunks and maxCTTables tables; a table keeps at
// most maxCTRules rules and maxCTAddrs addresses, each rule maxOther
// matches of maxOtherLen bytes; more is cut when written and refused as
// corrupt when read.
const (
	chunkWeight = 8192
	maxCTChunks = 256
	maxCTTables = 4096
	maxCTRules  = 256
	maxCTAddrs  = 256
	maxOther    = 8
	maxOtherLen = 64
	ruleWeight  = 4
)

// DefaultRoundEntries is the translated entries a conntrack round keeps by
// default (~40 MiB decoded); the rest are dropped and counted, in the
// table's Dropped and the reader's DroppedEntries.
const DefaultRoundEntries = 1 << 18

// boundTable cuts a table to what a capture holds: rules, addresses and
// the text of rules. It reports whether anything was cut.
func boundTable(t *nat.Table) bool {
	cut := len(t.Rules) > maxCTRules || len(t.Addrs) > maxCTAddrs
	t.Rules = t.Rules[:min(len(t.Rules), maxCTRules)]
	t.Addrs = t.Addrs[:min(len(t.Addrs), maxCTAddrs)]
	for i := range t.Rules {
		r := &t.Rules[i]
		if len(r.Other) > maxOther {
			r.Other, cut = r.Other[:maxOther], true
		}
		for j, o := range r.Other {
			r.Other[j] = sanitize.Text(o, maxOtherLen)
		}
		r.Family, r.Table, r.Chain = sanitize.Text(r.Family, sanitize.Name), sanitize.Text(r.Table, sanitize.Name), sanitize.Text(r.Chain, sanitize.Name)
		r.Kind, r.Via, r.Oif = sanitize.Text(r.Kind, sanitize.Name), sanitize.Text(r.Via, sanitize.Name), sanitize.Text(r.Oif, sanitize.Name)
	}
	t.Err = sanitize.Text(t.Err, sanitize.Line)
	return cut
}

// cleanEntries makes the entries' states safe to print.
func cleanEntries(t *nat.Table) {
	for i := range t.Entries {
		t.Entries[i].State = sanitize.Text(t.Entries[i].State, sanitize.Name)
	}
}

func weight(t *nat.Table) int { return 1 + len(t.Addrs) + ruleWeight*len(t.Rules) }

// ctChunks cuts a conntrack round into chunks of at most chunkWeight, at
// most maxCTTables tables of it; the tables must be bounded (boundTable).
func ctChunks(r *ConntrackRound) []ctChunk {
	out := []ctChunk{{Time: r.Time}}
	w := 0
	for i, t := range r.Tables {
		if i == maxCTTables {
			break
		}
		entries := t.Entries
		t.Entries = nil
		for first := true; first || len(entries) > 0; first = false {
			if w+weight(&t) > chunkWeight {
				out, w = append(out, ctChunk{Time: r.Time}), 0
			}
			piece := t
			if !first {
				piece = nat.Table{Netns: t.Netns, Time: t.Time}
			}
			w += weight(&piece)
			take := min(len(entries), chunkWeight-w)
			piece.Entries, entries = entries[:take:take], entries[take:]
			w += take
			last := &out[len(out)-1]
			last.Tables = append(last.Tables, piece)
		}
	}
	out[len(out)-1].Last = true
	return out
}

// conntrack writes a conntrack round in chunks, its first
// DefaultRoundEntries entries: the rest are counted in their table's
// Dropped.
func (c *Writer) conntrack(r ConntrackRound) error {
	r.Tables = append([]nat.Table(nil), r.Tables...)
	left := DefaultRoundEntries
	for i := range r.Tables {
		t := &r.Tables[i]
		t.Rules = cloneRules(t.Rules)
		boundTable(t)
		keep := min(len(t.Entries), left)
		t.Dropped += len(t.Entries) - keep
		t.Entries, left = t.Entries[:keep], left-keep
	}
	for _, ch := range ctChunks(&r) {
		b, _ := json.Marshal(ch)
		if err := c.block(kindConntrack, b); err != nil {
			return err
		}
	}
	return nil
}

// cloneRules copies rules and their matches, which boundTable rewrites.
func cloneRules(rules []nat.Rule) []nat.Rule {
	out := append([]nat.Rule(nil), rules...)
	for i := range out {
		out[i].Other = append([]string(nil), out[i].Other...)
	}
	return out
}

// ctChunk adds a conntrack round's chunk, and returns the round once
// complete.
func (c *Reader) ctChunk(b []byte) (*ConntrackRound, error) {
	var ch ctChunk
	if err := json.Unmarshal(b, &ch); err != nil {
		return nil, c.errHere(fmt.Errorf("%w: conntrack tables: %v", ErrCorrupt, err))
	}
	if c.ct == nil {
		c.ct, c.ctChunks, c.ctEntries = &ConntrackRound{Time: ch.Time, Tables: []nat.Table{}}, 0, 0
	}
	w := 0
	for i := range ch.Tables {
		t := &ch.Tables[i]
		cleanEntries(t)
		if boundTable(t) {
			return nil, c.errHere(fmt.Errorf("%w: a conntrack table over %d rules or %d addresses", ErrCorrupt, maxCTRules, maxCTAddrs))
		}
		w += weight(t) + len(t.Entries)
	}
	if c.ctChunks++; w > chunkWeight || c.ctChunks > maxCTChunks {
		return nil, c.errHere(fmt.Errorf("%w: a round of conntrack tables over %d chunks of %d", ErrCorrupt, maxCTChunks, chunkWeight))
	}
	limit := cmp.Or(c.MaxRoundEntries, DefaultRoundEntries)
	for _, t := range ch.Tables {
		keep := min(len(t.Entries), max(limit-c.ctEntries, 0))
		drop := len(t.Entries) - keep
		c.DroppedEntries += uint64(drop)
		c.ctEntries += keep
		t.Entries = t.Entries[:keep:keep]
		r := c.ct
		if n := len(r.Tables); n > 0 && r.Tables[n-1].Netns == t.Netns {
			prev := &r.Tables[n-1]
			prev.Entries = append(prev.Entries, t.Entries...)
			prev.Dropped += t.Dropped + drop
			continue
		}
		if len(r.Tables) == maxCTTables {
			return nil, c.errHere(fmt.Errorf("%w: a round of conntrack tables over %d namespaces", ErrCorrupt, maxCTTables))
		}
		t.Dropped += drop
		r.Tables = append(r.Tables, t)
	}
	if !ch.Last {
		return nil, nil
	}
	r := c.ct
	c.ct = nil
	return r, nil
}

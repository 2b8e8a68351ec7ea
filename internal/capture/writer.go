package capture

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"

	"github.com/porttrace/porttrace/internal/event"
)

// blockTarget is when buffered events are written as a block without
// waiting for the next Flush: well under maxBlock.
const blockTarget = 1 << 20

// Writer writes a capture. Events are buffered until Flush (the recorder
// calls it every second) or until a block's worth has gathered; each block
// is written whole, and Flush syncs the file, so what was flushed survives a
// crash.
type Writer struct {
	w       io.Writer
	sync    func() error // fsync, when w is a file
	enc     compressor
	buf     []byte // encoded events not yet written
	scratch []byte
	written int64 // bytes in the file
	events  uint64
	stored  uint64 // events in blocks written whole
	err     error  // the first write error: the file ends before it
	evLen   int    // an event's encoded size in the version written
}

// NewWriter writes the magic and the header block to w.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	return newWriter(w, h, Version)
}

// newWriter writes a capture of an older version too, for the tests that
// read one.
func newWriter(w io.Writer, h Header, version byte) (*Writer, error) {
	enc, err := newCompressor(version)
	if err != nil {
		return nil, err
	}
	cw := &Writer{w: w, enc: enc, sync: func() error { return nil }, evLen: eventLenOf(version)}
	if f, ok := w.(*os.File); ok {
		cw.sync = f.Sync
	}
	// The magic and the header in one write: a file cut before it is
	// empty, not a capture without a header.
	hb, _ := json.Marshal(h)
	if err := cw.blockAfter([]byte(magic+string(rune(version))), kindHeader, hb); err != nil {
		return nil, err
	}
	return cw, cw.syncNow()
}

// Size is the bytes written so far, buffered events excluded.
func (c *Writer) Size() int64 { return c.written }

// Buffered is the bytes of events not yet written.
func (c *Writer) Buffered() int { return len(c.buf) }

// Events is the number of events taken so far.
func (c *Writer) Events() uint64 { return c.events }

// Stored is the number of events in blocks written whole to the file: what
// a reader finds, even if a later write failed (a full disk).
func (c *Writer) Stored() uint64 { return c.stored }

// Event buffers one event.
func (c *Writer) Event(e *event.Event) error {
	if c.err != nil {
		return c.err
	}
	n := len(c.buf)
	c.buf = slices.Grow(c.buf, c.evLen)[:n+c.evLen]
	putEvent(c.buf[n:], e)
	c.events++
	if len(c.buf) >= blockTarget {
		return c.flushEvents()
	}
	return nil
}

// SyncBegin marks that a round's dump begins: events after it may or may
// not be in the round.
func (c *Writer) SyncBegin() error {
	if err := c.flushEvents(); err != nil {
		return err
	}
	return c.block(kindSyncBegin, nil)
}

// Round writes a round of socket tables, after the events buffered before
// it, in chunks of at most chunkSockets sockets, then its conntrack tables
// if it has them.
func (c *Writer) Round(r Round) error {
	if err := c.flushEvents(); err != nil {
		return err
	}
	for _, ch := range chunks(r) {
		b, _ := json.Marshal(ch)
		if err := c.block(kindRound, b); err != nil {
			return err
		}
	}
	if r.Conntrack != nil {
		return c.conntrack(*r.Conntrack)
	}
	return nil
}

func chunks(r Round) []chunk {
	out := []chunk{{Time: r.Time, Netns: r.Netns, Cgroups: r.Cgroups}}
	n := 0 // sockets in the last chunk
	for _, t := range r.Tables {
		socks := t.Sockets
		for {
			if n == chunkSockets {
				out = append(out, chunk{Time: r.Time})
				n = 0
			}
			take := min(len(socks), chunkSockets-n)
			last := &out[len(out)-1]
			// A table with no sockets is kept: its namespace was read.
			last.Tables = append(last.Tables, event.SocketTable{Netns: t.Netns, Time: t.Time, Sockets: socks[:take]})
			socks, n = socks[take:], n+take
			if len(socks) == 0 {
				break
			}
		}
	}
	out[len(out)-1].Last = true
	return out
}

// Flush writes the buffered events as a block and syncs the file.
func (c *Writer) Flush() error {
	if err := c.flushEvents(); err != nil {
		return err
	}
	return c.syncNow()
}

// Close flushes, writes the trailer and syncs. It does not close w.
func (c *Writer) Close(t Trailer) error {
	if err := c.flushEvents(); err != nil {
		return err
	}
	t.Events = c.events
	b, _ := json.Marshal(t)
	if err := c.block(kindTrailer, b); err != nil {
		return err
	}
	return c.syncNow()
}

func (c *Writer) flushEvents() error {
	if len(c.buf) == 0 || c.err != nil {
		return c.err
	}
	err := c.block(kindEvents, c.buf)
	if err == nil {
		c.stored += uint64(len(c.buf) / c.evLen)
	}
	c.buf = c.buf[:0]
	return err
}

func (c *Writer) syncNow() error {
	if c.err == nil {
		if err := c.sync(); err != nil {
			c.err = fmt.Errorf("sync capture: %w", err)
		}
	}
	return c.err
}

func (c *Writer) block(kind byte, raw []byte) error {
	return c.blockAfter(nil, kind, raw)
}

// blockAfter writes prefix and a block in one write.
func (c *Writer) blockAfter(prefix []byte, kind byte, raw []byte) error {
	if c.err != nil {
		return c.err
	}
	if len(raw) > maxBlock {
		c.err = fmt.Errorf("capture block of %d bytes is over the %d a reader accepts", len(raw), maxBlock)
		return c.err
	}
	c.scratch = c.enc(c.scratch, raw)
	var h [blockHeaderLen]byte
	h[0] = kind
	binary.LittleEndian.PutUint32(h[1:], uint32(len(raw)))
	binary.LittleEndian.PutUint32(h[5:], uint32(len(c.scratch)))
	binary.LittleEndian.PutUint32(h[9:], crc32.Checksum(c.scratch, crcTable))
	// One write per block: a failed write (a full disk) leaves at most
	// this block partial, and the reader stops before it.
	return c.raw(append(append(prefix, h[:]...), c.scratch...))
}

func (c *Writer) raw(b []byte) error {
	n, err := c.w.Write(b)
	c.written += int64(n)
	if err != nil {
		c.err = fmt.Errorf("write capture: %w", err)
	}
	return c.err
}

package capture

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
	"github.com/porttrace/porttrace/internal/sanitize"
)

// Reader reads a capture block by block.
type Reader struct {
	r          *bufio.Reader
	dec        decompressor
	Header     Header
	Trailer    *Trailer // set once the trailer is read; nil if recording did not end cleanly
	index      int
	offset     int64
	raw        []byte
	stored     []byte
	events     []byte // undecoded events of the current block
	eventLen   int    // an event's size in this capture's version
	lastOffset int64
	round      *Round // a round whose chunks are still coming
	chunks     int
	sockets    int // in the round so far
	// MaxRoundSockets bounds the sockets a round keeps (DefaultRoundSockets
	// unless set); the rest of its tables' sockets are dropped, and
	// counted in DroppedSockets.
	MaxRoundSockets int
	DroppedSockets  uint64
	ct              *ConntrackRound // a conntrack round whose chunks are still coming
	ctChunks        int
	ctEntries       int // in the conntrack round so far
	// MaxRoundEntries bounds the translated entries a conntrack round
	// keeps (DefaultRoundEntries unless set); the rest are dropped, and
	// counted in DroppedEntries and their table's Dropped.
	MaxRoundEntries int
	DroppedEntries  uint64
}

// DefaultRoundSockets is the sockets a round keeps by default: ~30 MiB
// decoded. A real round has one socket per connection of the node.
const DefaultRoundSockets = 1 << 18

// NewReader checks the magic and version and reads the header.
func NewReader(r io.Reader) (*Reader, error) {
	cr := &Reader{r: bufio.NewReaderSize(r, 1<<20)}
	head := make([]byte, len(magic)+1)
	n, err := io.ReadFull(cr.r, head)
	if n == 0 && err != nil {
		return nil, errors.New("empty file: not a porttrace capture")
	}
	if err != nil || string(head[:len(magic)]) != magic {
		return nil, errors.New("not a porttrace capture (no capture header)")
	}
	v := head[len(magic)]
	if v < MinVersion || v > Version {
		return nil, fmt.Errorf("capture format version %d, this porttrace reads versions %d to %d", v, MinVersion, Version)
	}
	cr.eventLen = eventLenOf(v)
	if cr.dec, err = newDecompressor(v); err != nil {
		return nil, err
	}
	cr.offset = int64(len(head))
	kind, b, err := cr.block()
	if err == io.EOF {
		err = &BlockError{0, cr.offset, fmt.Errorf("%w: no header block", ErrTruncated)}
	}
	if err != nil {
		return nil, err
	}
	if kind != kindHeader {
		return nil, &BlockError{0, int64(len(head)), fmt.Errorf("%w: first block is not the header", ErrCorrupt)}
	}
	if err := json.Unmarshal(b, &cr.Header); err != nil {
		return nil, &BlockError{0, int64(len(head)), fmt.Errorf("%w: header: %v", ErrCorrupt, err)}
	}
	h := &cr.Header
	h.Host, h.Kernel, h.Backend = sanitize.Text(h.Host, sanitize.Name), sanitize.Text(h.Kernel, sanitize.Name), sanitize.Text(h.Backend, sanitize.Name)
	h.Command = sanitize.Text(sanitize.Redact(h.Command), sanitize.Line)
	cleanNetns(h.Netns)
	return cr, nil
}

// cleanNetns and cleanChunk make the text a capture carries safe to print
// and bounded, whatever the file says: process names cut to the kernel's
// 15 bytes, names and paths capped, control characters escaped
// (sanitize.Text). Nothing read from a capture reaches a terminal raw.
func cleanNetns(all []netns.Settings) {
	for i := range all {
		s := &all[i]
		s.Names = s.Names[:min(len(s.Names), maxNames)]
		for j, n := range s.Names {
			s.Names[j] = sanitize.Text(n, sanitize.Name)
		}
		s.Reserved = sanitize.Text(s.Reserved, maxReserved)
	}
}

func cleanChunk(ch *chunk) {
	cleanNetns(ch.Netns)
	for id, c := range ch.Cgroups {
		ch.Cgroups[id] = cgroup.Process{Path: sanitize.Text(c.Path, sanitize.Line),
			Container: sanitize.Text(c.Container, sanitize.Name), PodUID: sanitize.Text(c.PodUID, sanitize.Name)}
	}
	for i := range ch.Tables {
		for j := range ch.Tables[i].Sockets {
			so := &ch.Tables[i].Sockets[j]
			if so.Comm != "" {
				so.Comm = event.MakeComm(so.Comm).String()
			}
		}
	}
}

// Bounds on a namespace's text: the names it is known by, and
// ip_local_reserved_ports as written (every other port of 65,536 reserved
// takes ~200 KB).
const (
	maxNames    = 16
	maxReserved = 256 << 10
)

// Record is one item of a capture: an event, the start of a round's dump,
// a round of socket tables, or a round of conntrack tables.
type Record struct {
	Event     *event.Event // valid until the next call to Next
	SyncBegin bool
	Round     *Round
	Conntrack *ConntrackRound
}

// Next returns the next record, io.EOF after the trailer or at a clean end
// of file, or a *BlockError for a truncated or damaged block (every record
// before it has been returned).
func (c *Reader) Next(ev *event.Event) (Record, error) {
	for len(c.events) == 0 {
		kind, b, err := c.block()
		if err == io.EOF && (c.round != nil || c.ct != nil) {
			err = c.errHere(fmt.Errorf("%w: inside a round of socket or conntrack tables", ErrTruncated))
		}
		if err != nil {
			return Record{}, err
		}
		if c.round != nil && kind != kindRound {
			return Record{}, c.errHere(fmt.Errorf("%w: a round of socket tables is cut short", ErrCorrupt))
		}
		if c.ct != nil && kind != kindConntrack {
			return Record{}, c.errHere(fmt.Errorf("%w: a round of conntrack tables is cut short", ErrCorrupt))
		}
		switch kind {
		case kindEvents:
			if len(b)%c.eventLen != 0 {
				return Record{}, c.errHere(fmt.Errorf("%w: events block of %d bytes", ErrCorrupt, len(b)))
			}
			c.events = b
		case kindSyncBegin:
			return Record{SyncBegin: true}, nil
		case kindRound:
			r, err := c.chunk(b)
			if err != nil || r != nil {
				return Record{Round: r}, err
			}
		case kindConntrack:
			r, err := c.ctChunk(b)
			if err != nil || r != nil {
				return Record{Conntrack: r}, err
			}
		case kindTrailer:
			var t Trailer
			if err := json.Unmarshal(b, &t); err != nil {
				return Record{}, c.errHere(fmt.Errorf("%w: trailer: %v", ErrCorrupt, err))
			}
			c.Trailer = &t
			if _, err := c.r.Peek(1); err == nil {
				return Record{}, &BlockError{Index: c.index, Offset: c.offset,
					Err: fmt.Errorf("%w: data after the trailer (two captures concatenated?), not read", ErrCorrupt)}
			}
			return Record{}, io.EOF
		default:
			return Record{}, c.errHere(fmt.Errorf("%w: block kind %d", ErrCorrupt, kind))
		}
	}
	if err := getEvent(c.events[:c.eventLen], ev); err != nil {
		return Record{}, c.errHere(err)
	}
	c.events = c.events[c.eventLen:]
	return Record{Event: ev}, nil
}

// chunk adds a round's chunk, and returns the round once complete.
func (c *Reader) chunk(b []byte) (*Round, error) {
	var ch chunk
	if err := json.Unmarshal(b, &ch); err != nil {
		return nil, c.errHere(fmt.Errorf("%w: socket tables: %v", ErrCorrupt, err))
	}
	cleanChunk(&ch)
	n := 0
	for _, t := range ch.Tables {
		n += len(t.Sockets)
	}
	if c.round == nil {
		c.round, c.chunks, c.sockets = &Round{Time: ch.Time, Netns: ch.Netns, Cgroups: ch.Cgroups}, 0, 0
	}
	if c.chunks++; n > chunkSockets || c.chunks > maxRoundChunks {
		return nil, c.errHere(fmt.Errorf("%w: a round of socket tables over %d chunks of %d sockets", ErrCorrupt, maxRoundChunks, chunkSockets))
	}
	limit := cmp.Or(c.MaxRoundSockets, DefaultRoundSockets)
	for _, t := range ch.Tables {
		keep := min(len(t.Sockets), max(limit-c.sockets, 0))
		c.DroppedSockets += uint64(len(t.Sockets) - keep)
		c.sockets += keep
		t.Sockets = t.Sockets[:keep:keep]
		c.round.Tables = append(c.round.Tables, t)
	}
	if !ch.Last {
		return nil, nil
	}
	r := c.round
	c.round = nil
	return r, nil
}

// errHere blames the block last read.
func (c *Reader) errHere(err error) error {
	return &BlockError{Index: c.index - 1, Offset: c.lastOffset, Err: err}
}

// block reads, checks and decompresses the next block. A clean end of
// file is io.EOF.
func (c *Reader) block() (byte, []byte, error) {
	start := c.offset
	c.lastOffset = start
	fail := func(err error) (byte, []byte, error) {
		return 0, nil, &BlockError{Index: c.index, Offset: start, Err: err}
	}
	var h [blockHeaderLen]byte
	n, err := io.ReadFull(c.r, h[:])
	if err == io.EOF {
		return 0, nil, io.EOF
	}
	if err != nil {
		return fail(shortRead(err, fmt.Sprintf("%d of %d bytes of a block header", n, blockHeaderLen)))
	}
	rawLen, storedLen := binary.LittleEndian.Uint32(h[1:]), binary.LittleEndian.Uint32(h[5:])
	if rawLen > maxBlock || storedLen > maxBlock {
		return fail(fmt.Errorf("%w: block lengths %d/%d", ErrCorrupt, rawLen, storedLen))
	}
	c.stored = grow(c.stored, int(storedLen))
	if n, err := io.ReadFull(c.r, c.stored); err != nil {
		return fail(shortRead(err, fmt.Sprintf("%d of %d bytes of a block", n, storedLen)))
	}
	if crc32.Checksum(c.stored, crcTable) != binary.LittleEndian.Uint32(h[9:]) {
		return fail(fmt.Errorf("%w: checksum mismatch", ErrCorrupt))
	}
	raw, err := c.dec(c.raw, c.stored, int(rawLen))
	if err != nil {
		return fail(fmt.Errorf("%w: block does not decompress to its length (%v)", ErrCorrupt, err))
	}
	c.raw = raw
	c.offset += int64(blockHeaderLen) + int64(storedLen)
	c.index++
	return h[0], raw, nil
}

// shortRead is a truncation when the file ends, else the read error.
func shortRead(err error, what string) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s", ErrTruncated, what)
	}
	return fmt.Errorf("read capture: %w", err)
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

package capture

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/porttrace/porttrace/internal/event"
)

// Reader reads a capture block by block.
type Reader struct {
	r          *bufio.Reader
	dec        *zstd.Decoder
	Header     Header
	Trailer    *Trailer // set once the trailer is read; nil if recording did not end cleanly
	index      int
	offset     int64
	raw        []byte
	stored     []byte
	events     []byte // undecoded events of the current block
	lastOffset int64
}

// NewReader checks the magic and version and reads the header.
func NewReader(r io.Reader) (*Reader, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxBlock))
	if err != nil {
		return nil, err
	}
	cr := &Reader{r: bufio.NewReaderSize(r, 1<<20), dec: dec}
	head := make([]byte, len(magic)+1)
	if _, err := io.ReadFull(cr.r, head); err != nil || string(head[:len(magic)]) != magic {
		return nil, errors.New("not a porttrace capture (no capture header)")
	}
	if v := head[len(magic)]; v != Version {
		return nil, fmt.Errorf("capture format version %d, this porttrace reads version %d", v, Version)
	}
	cr.offset = int64(len(head))
	kind, b, err := cr.block()
	if err != nil {
		return nil, err
	}
	if kind != kindHeader {
		return nil, &BlockError{0, int64(len(head)), fmt.Errorf("%w: first block is not the header", ErrCorrupt)}
	}
	if err := json.Unmarshal(b, &cr.Header); err != nil {
		return nil, &BlockError{0, int64(len(head)), fmt.Errorf("%w: header: %v", ErrCorrupt, err)}
	}
	return cr, nil
}

// Record is one item of a capture: an event or a snapshot.
type Record struct {
	Event    *event.Event // valid until the next call to Next
	Snapshot *Snapshot
}

// Next returns the next record, io.EOF after the trailer or at a clean end
// of file, or a *BlockError for a truncated or damaged block (every record
// before it has been returned).
func (c *Reader) Next(ev *event.Event) (Record, error) {
	for len(c.events) == 0 {
		kind, b, err := c.block()
		if err != nil {
			return Record{}, err
		}
		switch kind {
		case kindEvents:
			if len(b)%eventLen != 0 {
				return Record{}, c.errHere(fmt.Errorf("%w: events block of %d bytes", ErrCorrupt, len(b)))
			}
			c.events = b
		case kindSnapshot:
			var s Snapshot
			if err := json.Unmarshal(b, &s); err != nil {
				return Record{}, c.errHere(fmt.Errorf("%w: snapshot: %v", ErrCorrupt, err))
			}
			return Record{Snapshot: &s}, nil
		case kindTrailer:
			var t Trailer
			if err := json.Unmarshal(b, &t); err != nil {
				return Record{}, c.errHere(fmt.Errorf("%w: trailer: %v", ErrCorrupt, err))
			}
			c.Trailer = &t
			return Record{}, io.EOF
		default:
			return Record{}, c.errHere(fmt.Errorf("%w: block kind %d", ErrCorrupt, kind))
		}
	}
	if err := getEvent(c.events[:eventLen], ev); err != nil {
		return Record{}, c.errHere(err)
	}
	c.events = c.events[eventLen:]
	return Record{Event: ev}, nil
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
		return fail(fmt.Errorf("%w: %d of %d bytes of a block header", ErrTruncated, n, blockHeaderLen))
	}
	rawLen, storedLen := binary.LittleEndian.Uint32(h[1:]), binary.LittleEndian.Uint32(h[5:])
	if rawLen > maxBlock || storedLen > maxBlock {
		return fail(fmt.Errorf("%w: block lengths %d/%d", ErrCorrupt, rawLen, storedLen))
	}
	c.stored = grow(c.stored, int(storedLen))
	if n, err := io.ReadFull(c.r, c.stored); err != nil {
		return fail(fmt.Errorf("%w: %d of %d bytes of a block", ErrTruncated, n, storedLen))
	}
	if crc32.Checksum(c.stored, crcTable) != binary.LittleEndian.Uint32(h[9:]) {
		return fail(fmt.Errorf("%w: checksum mismatch", ErrCorrupt))
	}
	raw, err := c.dec.DecodeAll(c.stored, c.raw[:0])
	if err != nil || len(raw) != int(rawLen) {
		return fail(fmt.Errorf("%w: block does not decompress to its length (%v)", ErrCorrupt, err))
	}
	c.raw = raw
	c.offset += int64(blockHeaderLen) + int64(storedLen)
	c.index++
	return h[0], raw, nil
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

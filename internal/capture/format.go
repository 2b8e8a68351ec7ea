// Package capture is porttrace's file format for incidents: a versioned
// header, then the event stream and socket tables in independently
// compressed, checksummed blocks, then a trailer of counters. A block is
// complete on disk before the next begins, so a capture cut off by SIGKILL,
// a full disk or a power loss reads up to its last complete block, and a
// damaged block is reported where it is, never read past silently.
//
// Layout:
//
//	magic "porttrace-capture\n", version (1 byte)
//	block*: kind (1 byte), raw length (u32), stored length (u32),
//	        CRC-32C of the stored bytes (u32), stored bytes (an S2 block;
//	        a zstd frame before version 6: codec.go)
//
// The first block is the header (JSON). Then, in the order they happened:
// events, and rounds of socket tables, the first right after the header.
// A round is a sync-begin marker written when its dump starts (events that
// race the dump come between), then its tables in one or more blocks. If
// recording ended cleanly, a trailer (JSON) comes last. Since version 3, a
// round of socket tables may be followed by a round of conntrack tables
// read with it (kindConntrack blocks: conntrack.go); version 2 captures,
// which have none, are read as before. Since version 4, an event carries
// its socket's IP_LOCAL_PORT_RANGE (4 bytes more); since version 5, a NAT
// event's translated source and protocol (19 bytes more); since version 6,
// blocks are S2, not zstd.
package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"syscall"
	"time"

	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/netns"
)

const (
	magic = "porttrace-capture\n"
	// 2: netns cookie and thread name in events; 3: conntrack rounds;
	// 4: a socket's IP_LOCAL_PORT_RANGE in events; 5: NAT events; 6: S2
	// blocks.
	Version = 6
	// MinVersion is the oldest format this porttrace reads.
	MinVersion = 2
)

// Block kinds.
const (
	kindHeader    = 1
	kindEvents    = 2
	kindRound     = 3 // a chunk of a round of socket tables (JSON)
	kindTrailer   = 4
	kindSyncBegin = 5 // a round's dump begins
	kindConntrack = 6 // a chunk of a round of conntrack tables (JSON)
)

const blockHeaderLen = 1 + 4 + 4 + 4

// maxBlock bounds a block's raw size, so that a damaged length cannot make
// the reader allocate without end. Event blocks are flushed at 1 MiB; round
// chunks hold at most chunkSockets sockets (~2 MiB of JSON), and a round at
// most maxRoundChunks chunks, so that a crafted file cannot make the reader
// decode more than a few hundred MiB of sockets either.
const (
	maxBlock       = 4 << 20
	chunkSockets   = 16384
	maxRoundChunks = 128
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Header describes where and how a capture was made.
type Header struct {
	Host    string           `json:"host"`
	Kernel  string           `json:"kernel"`
	Backend string           `json:"backend"`
	Start   time.Time        `json:"start"`
	Netns   []netns.Settings `json:"netns"`
	Command string           `json:"command"`
}

// Round is every namespace's settings and socket table, read together: the
// first shows what was there before the first event, the later ones correct
// what events cannot show.
type Round struct {
	Time   time.Time           `json:"time"` // when the dump began
	Netns  []netns.Settings    `json:"netns"`
	Tables []event.SocketTable `json:"tables"`
	// Cgroups are the cgroups that events since the last round came from,
	// by cgroup id: where their processes ran (path, container, pod).
	Cgroups map[uint64]cgroup.Process `json:"cgroups,omitempty"`
	// Conntrack, if not nil, is the conntrack tables read with the
	// socket tables, written after them in blocks of their own.
	Conntrack *ConntrackRound `json:"-"`
}

// chunk is one block of a round.
type chunk struct {
	Time    time.Time                 `json:"time"`
	Netns   []netns.Settings          `json:"netns,omitempty"`   // in the first chunk
	Cgroups map[uint64]cgroup.Process `json:"cgroups,omitempty"` // in the first chunk
	Tables  []event.SocketTable       `json:"tables"`
	Last    bool                      `json:"last"`
}

// Trailer is written when recording ends cleanly.
type Trailer struct {
	End     time.Time `json:"end"`
	Events  uint64    `json:"events"`
	Lost    uint64    `json:"lost_events"` // the ring buffer could not take them
	Dropped uint64    `json:"dropped"`     // pre-trigger events that aged out unwritten
	Reason  string    `json:"reason"`      // why recording stopped
}

// ErrCorrupt marks data that is not what porttrace wrote: a bad checksum,
// length or encoding.
var ErrCorrupt = errors.New("corrupt capture")

// ErrTruncated marks a capture that ends inside a block: everything before
// that block was read.
var ErrTruncated = errors.New("truncated capture")

// BlockError says which block of a capture is bad, and where.
type BlockError struct {
	Index  int   // 0 is the header
	Offset int64 // of the block's start in the file
	Err    error
}

func (e *BlockError) Error() string {
	return fmt.Sprintf("block %d at byte %d: %v", e.Index, e.Offset, e.Err)
}

func (e *BlockError) Unwrap() error { return e.Err }

// eventLen is an event's encoded size; before version 5, eventLen4 (no
// NAT source); before version 4, eventLen3 (no port range).
const (
	eventLen  = eventLen4 + 16 + 2 + 1
	eventLen4 = eventLen3 + 4
	eventLen3 = 8 + 1 + 1 + 1 + 1 + 2 + 2 + 8 + 8 + 8 + 4 + 4 + 4 + 16 + 1 + 16 + 2 + 16 + 2 + 8 + 16
)

// eventLenOf is an event's encoded size in a format version.
func eventLenOf(version byte) int {
	switch {
	case version < 4:
		return eventLen3
	case version < 5:
		return eventLen4
	}
	return eventLen
}

// Address flags in an encoded event.
const (
	srcValid = 1 << iota
	src4
	dstValid
	dst4
	natValid
	nat4
)

func putEvent(b []byte, e *event.Event) {
	le := binary.LittleEndian
	le.PutUint64(b[0:], uint64(e.Time.UnixNano()))
	b[8], b[9], b[10], b[11] = byte(e.Kind), byte(e.Flags), byte(e.OldState), byte(e.NewState)
	le.PutUint16(b[12:], uint16(e.Errno))
	le.PutUint16(b[14:], e.Family)
	le.PutUint64(b[16:], uint64(e.Latency))
	le.PutUint64(b[24:], e.Cookie)
	le.PutUint64(b[32:], e.CgroupID)
	le.PutUint32(b[40:], e.Netns)
	le.PutUint32(b[44:], e.TID)
	le.PutUint32(b[48:], e.PID)
	copy(b[52:68], e.Comm[:])
	var flags byte
	if e.Src.Addr().IsValid() {
		flags |= srcValid
		if e.Src.Addr().Is4() {
			flags |= src4
		}
	}
	if e.Dst.Addr().IsValid() {
		flags |= dstValid
		if e.Dst.Addr().Is4() {
			flags |= dst4
		}
	}
	if e.NATSrc.Addr().IsValid() {
		flags |= natValid
		if e.NATSrc.Addr().Is4() {
			flags |= nat4
		}
	}
	b[68] = flags
	a := e.Src.Addr().As16()
	copy(b[69:85], a[:])
	le.PutUint16(b[85:], e.Src.Port())
	a = e.Dst.Addr().As16()
	copy(b[87:103], a[:])
	le.PutUint16(b[103:], e.Dst.Port())
	le.PutUint64(b[105:], e.NetnsCookie)
	copy(b[113:129], e.ThreadComm[:])
	if len(b) >= eventLen4 {
		le.PutUint16(b[129:], e.PortRange[0])
		le.PutUint16(b[131:], e.PortRange[1])
	}
	if len(b) >= eventLen {
		a = e.NATSrc.Addr().As16()
		copy(b[133:149], a[:])
		le.PutUint16(b[149:], e.NATSrc.Port())
		b[151] = e.Proto
	}
}

func getEvent(b []byte, e *event.Event) error {
	le := binary.LittleEndian
	*e = event.Event{
		Time: time.Unix(0, int64(le.Uint64(b[0:]))).UTC(),
		Kind: event.Kind(b[8]), Flags: event.Flags(b[9]),
		OldState: event.TCPState(b[10]), NewState: event.TCPState(b[11]),
		Errno: syscall.Errno(le.Uint16(b[12:])), Family: le.Uint16(b[14:]),
		Latency: time.Duration(le.Uint64(b[16:])), Cookie: le.Uint64(b[24:]), CgroupID: le.Uint64(b[32:]),
		Netns: le.Uint32(b[40:]), TID: le.Uint32(b[44:]), PID: le.Uint32(b[48:]),
	}
	if e.Kind < event.Connect || e.Kind > event.NAT {
		return fmt.Errorf("%w: event kind %d", ErrCorrupt, b[8])
	}
	copy(e.Comm[:], b[52:68])
	e.Src = addrPort(b[68]&srcValid != 0, b[68]&src4 != 0, b[69:85], le.Uint16(b[85:]))
	e.Dst = addrPort(b[68]&dstValid != 0, b[68]&dst4 != 0, b[87:103], le.Uint16(b[103:]))
	e.NetnsCookie = le.Uint64(b[105:])
	copy(e.ThreadComm[:], b[113:129])
	if len(b) >= eventLen4 {
		e.PortRange = [2]uint16{le.Uint16(b[129:]), le.Uint16(b[131:])}
	}
	if len(b) >= eventLen {
		e.NATSrc = addrPort(b[68]&natValid != 0, b[68]&nat4 != 0, b[133:149], le.Uint16(b[149:]))
		e.Proto = b[151]
	}
	return nil
}

func addrPort(valid, is4 bool, b []byte, port uint16) netip.AddrPort {
	if !valid {
		return netip.AddrPort{}
	}
	a := netip.AddrFrom16([16]byte(b))
	if is4 {
		a = a.Unmap()
	}
	return netip.AddrPortFrom(a, port)
}

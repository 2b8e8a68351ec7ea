package capture

import (
	"fmt"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// s2Since is the first format version whose blocks are S2 rather than zstd.
// Compressing events was most of what `record` cost under churn (41% of its
// CPU in a profile). On one core, a 1 MiB block of a real reset-churn
// capture took zstd's fastest level 2.4 ms (430 MB/s) and S2 0.36 ms (2.9
// GB/s), for a ratio of 17.7 against 9.9: captures are about 1.8 times
// larger. BenchmarkCompress measures both on a synthetic block.
const s2Since = 6

// compressor appends src, compressed, to dst[:0].
type compressor func(dst, src []byte) []byte

// decompressor decodes src into dst's storage, or fails unless src decodes
// to exactly rawLen bytes. rawLen is bounded by the caller (maxBlock), and
// neither codec allocates beyond it: S2 states its length first, and zstd's
// window is capped at maxBlock.
type decompressor func(dst, src []byte, rawLen int) ([]byte, error)

func newCompressor(version byte) (compressor, error) {
	if version >= s2Since {
		return func(dst, src []byte) []byte { return s2.Encode(dst[:cap(dst)], src) }, nil
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	return func(dst, src []byte) []byte { return enc.EncodeAll(src, dst[:0]) }, nil
}

func newDecompressor(version byte) (decompressor, error) {
	if version >= s2Since {
		return func(dst, src []byte, rawLen int) ([]byte, error) {
			n, err := s2.DecodedLen(src)
			if err != nil {
				return nil, err
			}
			if n != rawLen {
				return nil, fmt.Errorf("S2 block of %d bytes, header says %d", n, rawLen)
			}
			return s2.Decode(dst[:cap(dst)], src)
		}, nil
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxBlock))
	if err != nil {
		return nil, err
	}
	return func(dst, src []byte, rawLen int) ([]byte, error) {
		raw, err := dec.DecodeAll(src, dst[:0])
		if err == nil && len(raw) != rawLen {
			err = fmt.Errorf("zstd block of %d bytes, header says %d", len(raw), rawLen)
		}
		return raw, err
	}, nil
}

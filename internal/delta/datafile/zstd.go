package datafile

import (
	"io"
	"sync"

	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/klauspost/compress/zstd"
)

// Parquet pages are compressed one at a time (EncodeAll of at most about
// one page, 1 MiB by default here). arrow-go's zstd codec pools encoders
// with zstd's default 8 MiB window, for which each encoder keeps a 16 MiB
// history buffer: with columns compressed in parallel and Bronze, Silver
// and OPTIMIZE writing at once that was ~50 MiB of a large transaction's
// peak heap (issue #4). pageZstd is the same codec with a 1 MiB window:
// the history is 2 MiB, and for pages up to 1 MiB the window covers the
// whole input, so matches and ratios are those of the default. Decoding,
// streams and the level mapping are arrow-go's.

const pageZstdWindow = 1 << 20

type pageZstd struct {
	compress.Codec // arrow-go's zstd: decoding and CompressBound
}

var pageZstdPools sync.Map // zstd.EncoderLevel -> *encoderPool

// encoderPool keeps page encoders of one level. Up to encoderKeep of them
// are kept in a free list that the garbage collector does not empty (a new
// encoder allocates and clears its history and tables: under a snapshot's
// allocation rate, a sync.Pool was emptied several times a second); more
// go to a sync.Pool.
type encoderPool struct {
	free  freeList[*zstd.Encoder]
	extra sync.Pool
}

// encoderKeep is how many encoders of a level stay allocated (about
// 2.3 MiB each with the 1 MiB window): as many as columns compressed at
// once by a few writers.
const encoderKeep = 8

func (p *encoderPool) Get() *zstd.Encoder {
	if e, ok := p.free.get(); ok {
		return e
	}
	return p.extra.Get().(*zstd.Encoder)
}

func (p *encoderPool) Put(e *zstd.Encoder) {
	if !p.free.put(e) {
		p.extra.Put(e)
	}
}

// freeList keeps up to its capacity of values out of the garbage
// collector's reach (a sync.Pool is emptied by every collection).
type freeList[T any] struct{ free chan T }

func newFreeList[T any](n int) freeList[T] { return freeList[T]{free: make(chan T, n)} }

// get returns a kept value, if there is one.
func (l freeList[T]) get() (v T, ok bool) {
	select {
	case v = <-l.free:
		return v, true
	default:
		return v, false
	}
}

// put keeps v unless the list is full (false).
func (l freeList[T]) put(v T) bool {
	select {
	case l.free <- v:
		return true
	default:
		return false
	}
}

func pageEncoder(level zstd.EncoderLevel) (*zstd.Encoder, *encoderPool) {
	p, ok := pageZstdPools.Load(level)
	if !ok {
		p, _ = pageZstdPools.LoadOrStore(level, &encoderPool{free: newFreeList[*zstd.Encoder](encoderKeep), extra: sync.Pool{New: func() any {
			enc, err := zstd.NewWriter(nil, zstd.WithZeroFrames(true), zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1),
				zstd.WithAllLitEntropyCompression(true), zstd.WithWindowSize(pageZstdWindow),
				zstd.WithEncoderCRC(false)) // no frame checksum, as parquet-mr and arrow-rs write pages (readers take both)
			if err != nil {
				panic(err) // constant options
			}
			return enc
		}}})
	}
	pool := p.(*encoderPool)
	return pool.Get(), pool
}

func (z pageZstd) Encode(dst, src []byte) []byte {
	return z.EncodeLevel(dst, src, compress.DefaultCompressionLevel)
}

func (z pageZstd) EncodeLevel(dst, src []byte, level int) []byte {
	lvl := zstd.EncoderLevelFromZstd(level)
	if level == compress.DefaultCompressionLevel {
		lvl = zstd.SpeedDefault
	}
	enc, pool := pageEncoder(lvl)
	defer pool.Put(enc)
	return enc.EncodeAll(src, dst[:0])
}

func (z pageZstd) DecodeWithError(dst, src []byte) ([]byte, error) {
	return compress.Decode(z.Codec, dst, src)
}

type streamCodec interface {
	NewReader(io.Reader) io.ReadCloser
	NewWriter(io.Writer) io.WriteCloser
	NewWriterLevel(io.Writer, int) (io.WriteCloser, error)
}

func (z pageZstd) NewReader(r io.Reader) io.ReadCloser  { return z.Codec.(streamCodec).NewReader(r) }
func (z pageZstd) NewWriter(w io.Writer) io.WriteCloser { return z.Codec.(streamCodec).NewWriter(w) }
func (z pageZstd) NewWriterLevel(w io.Writer, level int) (io.WriteCloser, error) {
	return z.Codec.(streamCodec).NewWriterLevel(w, level)
}

func init() {
	if c, err := compress.GetCodec(compress.Codecs.Zstd); err == nil {
		if _, ok := c.(streamCodec); ok {
			compress.RegisterCodec(compress.Codecs.Zstd, pageZstd{c})
		}
	}
}

package locallog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Frame layout; see the package doc for the drawing.
const (
	frameHeaderLen = 8 // u32 length + u32 CRC-32C
	frameVersion   = 1
	// frameVersion2 frames carry their logical offset (u64 after the
	// version byte); they are written by the physical shards a reshard
	// creates (reshard.go), where a logical shard's records are spread
	// over several files.
	frameVersion2 = 2
	loffLen       = 8
	// minFrameBody is the version byte plus the u16 key length.
	minFrameBody = 3
	// maxFrameBody is the format's hard limit on the bytes after the CRC. It
	// is fixed, not taken from Options, so that lowering MaxRecordBytes can
	// never make recovery cut records that were valid when written.
	maxFrameBody = 1 << 28
	// maxKeyLen is what the u16 key length can express.
	maxKeyLen = 1<<16 - 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt marks data that fails its length, version or CRC-32C check.
// Test for it with errors.Is.
var ErrCorrupt = errors.New("locallog: corrupt record")

// errTorn reports bytes at the end of a segment that are too few to be a
// whole frame: a write cut short by a crash.
var errTorn = fmt.Errorf("torn frame: %w", io.ErrUnexpectedEOF)

// frameLen is the size of the frame holding key and data.
func frameLen(key, data []byte) int { return frameHeaderLen + minFrameBody + len(key) + len(data) }

// appendFrame appends the frame for (key, data) to dst. The caller checks
// len(key) <= maxKeyLen and the total size against maxFrameBody.
func appendFrame(dst, key, data []byte) []byte {
	body := minFrameBody + len(key) + len(data)
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(body))
	dst = binary.LittleEndian.AppendUint32(dst, 0) // CRC, filled below
	dst = append(dst, frameVersion)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(key)))
	dst = append(dst, key...)
	dst = append(dst, data...)
	crc := crc32.Checksum(dst[start+frameHeaderLen:], castagnoli)
	binary.LittleEndian.PutUint32(dst[start+4:], crc)
	return dst
}

// appendFrame2 appends a version 2 frame, which carries the record's
// logical offset loff.
func appendFrame2(dst []byte, loff int64, key, data []byte) []byte {
	body := minFrameBody + loffLen + len(key) + len(data)
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(body))
	dst = binary.LittleEndian.AppendUint32(dst, 0) // CRC, filled below
	dst = append(dst, frameVersion2)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(loff))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(key)))
	dst = append(dst, key...)
	dst = append(dst, data...)
	crc := crc32.Checksum(dst[start+frameHeaderLen:], castagnoli)
	binary.LittleEndian.PutUint32(dst[start+4:], crc)
	return dst
}

// frameLen2 is the size of the version 2 frame holding key and data.
func frameLen2(key, data []byte) int { return frameLen(key, data) + loffLen }

// frameLoff returns the logical offset of a frame decodeFrame accepted, or
// -1 for a version 1 frame (whose logical offset is its physical one).
func frameLoff(b []byte) int64 {
	if b[frameHeaderLen] != frameVersion2 {
		return -1
	}
	return int64(binary.LittleEndian.Uint64(b[frameHeaderLen+1:]))
}

// decodeFrame decodes the frame at the start of b. key and data alias b. n
// is the size of the frame. An error wrapping io.ErrUnexpectedEOF means b
// holds only the start of a frame; one wrapping ErrCorrupt means the bytes
// cannot be a frame. decodeFrame never reads outside b and allocates
// nothing.
func decodeFrame(b []byte) (key, data []byte, n int, err error) {
	if len(b) < frameHeaderLen {
		return nil, nil, 0, errTorn
	}
	body := binary.LittleEndian.Uint32(b)
	if body < minFrameBody || body > maxFrameBody {
		return nil, nil, 0, fmt.Errorf("%w: frame length %d outside [%d, %d]", ErrCorrupt, body, minFrameBody, maxFrameBody)
	}
	n = frameHeaderLen + int(body)
	if len(b) < n {
		return nil, nil, 0, errTorn
	}
	want := binary.LittleEndian.Uint32(b[4:])
	if got := crc32.Checksum(b[frameHeaderLen:n], castagnoli); got != want {
		return nil, nil, 0, fmt.Errorf("%w: CRC-32C %08x, frame says %08x", ErrCorrupt, got, want)
	}
	hdr := minFrameBody // version and key length, plus the logical offset in version 2
	switch v := b[frameHeaderLen]; v {
	case frameVersion:
	case frameVersion2:
		hdr += loffLen
		if int(body) < hdr {
			return nil, nil, 0, fmt.Errorf("%w: version 2 frame length %d below %d", ErrCorrupt, body, hdr)
		}
	default:
		return nil, nil, 0, fmt.Errorf("%w: unknown frame version %d", ErrCorrupt, v)
	}
	klen := int(binary.LittleEndian.Uint16(b[frameHeaderLen+hdr-2:]))
	if hdr+klen > int(body) {
		return nil, nil, 0, fmt.Errorf("%w: key length %d exceeds frame length %d", ErrCorrupt, klen, body)
	}
	k := b[frameHeaderLen+hdr:]
	dlen := int(body) - hdr
	return k[:klen:klen], k[klen:dlen:dlen], n, nil
}

// segmentReader reads the frames of one segment in order through a
// bounded buffer. It is used by recovery, by index building and by the fuzz
// target; Log.Read decodes from its own buffer instead.
type segmentReader struct {
	r      io.ReaderAt
	size   int64 // bytes of the segment to consider
	pos    int64 // file position of the next frame
	buf    []byte
	bufPos int64 // file position of buf[0]
	loff   int64 // logical offset of the frame next returned last (-1: version 1)
}

// readChunk is how much a segmentReader reads at once when frames are small.
const readChunk = 256 << 10

func newSegmentReader(r io.ReaderAt, size int64) *segmentReader {
	return &segmentReader{r: r, size: size}
}

// next returns the next record of the segment and its file position. key
// and data alias the reader's buffer and are valid until the next call. At
// a clean end next returns io.EOF. Otherwise an error wrapping
// io.ErrUnexpectedEOF (a torn tail) or ErrCorrupt ends the valid prefix,
// which is then exactly pos bytes long; the reader stays on that frame.
func (sr *segmentReader) next() (key, data []byte, pos int64, err error) {
	left := sr.size - sr.pos
	if left == 0 {
		return nil, nil, sr.pos, io.EOF
	}
	if left < frameHeaderLen {
		return nil, nil, sr.pos, errTorn
	}
	hdr, err := sr.fill(frameHeaderLen)
	if err != nil {
		return nil, nil, sr.pos, err
	}
	body := int64(binary.LittleEndian.Uint32(hdr))
	if body < minFrameBody || body > maxFrameBody {
		return nil, nil, sr.pos, fmt.Errorf("%w: frame length %d outside [%d, %d]", ErrCorrupt, body, minFrameBody, maxFrameBody)
	}
	// Check the length against the bytes that exist before reading or
	// allocating that much.
	if frameHeaderLen+body > left {
		return nil, nil, sr.pos, errTorn
	}
	b, err := sr.fill(int(frameHeaderLen + body))
	if err != nil {
		return nil, nil, sr.pos, err
	}
	key, data, n, err := decodeFrame(b)
	if err != nil {
		return nil, nil, sr.pos, err
	}
	sr.loff = frameLoff(b)
	pos = sr.pos
	sr.pos += int64(n)
	return key, data, pos, nil
}

// fill returns the n bytes at sr.pos, reading from r when the buffer does
// not hold them. The caller has checked that n bytes exist.
func (sr *segmentReader) fill(n int) ([]byte, error) {
	off := sr.pos - sr.bufPos
	if off >= 0 && off+int64(n) <= int64(len(sr.buf)) {
		return sr.buf[off : off+int64(n)], nil
	}
	want := max(n, readChunk)
	if left := sr.size - sr.pos; int64(want) > left {
		want = int(left)
	}
	if cap(sr.buf) < want || cap(sr.buf) > 4*max(want, readChunk) {
		sr.buf = make([]byte, want)
	}
	sr.buf = sr.buf[:want]
	sr.bufPos = sr.pos
	got, err := sr.r.ReadAt(sr.buf, sr.pos)
	if got < want {
		sr.buf = sr.buf[:got]
		if err == nil || errors.Is(err, io.EOF) {
			// The file is shorter than the size we were told: treat the
			// missing bytes like a torn write.
			return nil, errTorn
		}
		return nil, fmt.Errorf("read at %d: %w", sr.pos, err)
	}
	return sr.buf[:n], nil
}

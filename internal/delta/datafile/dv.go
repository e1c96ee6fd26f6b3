package datafile

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/url"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/delta"
)

// ErrCorruptDV is wrapped by errors about malformed deletion vectors.
var ErrCorruptDV = errors.New("corrupt deletion vector")

// Deletion vector formats (protocol "Deletion Vector Format"):
//
// Serialized bitmap ("RoaringBitmapArray", portable), little-endian:
//
//	magic    uint32  1681511377
//	count    uint64  number of 32-bit bitmaps
//	count × { key uint32 (high 32 bits of the row index); portable 32-bit roaring bitmap }
//
// Portable 32-bit roaring bitmap, little-endian:
//
//	cookie uint32: 12346 -> no run containers, followed by n uint32;
//	               low 16 bits 12347 -> run containers present, n = (cookie>>16)+1,
//	               followed by a run-flag bitset of (n+7)/8 bytes
//	n × { key uint16; cardinality-1 uint16 }
//	n × offset uint32   (absent when runs are present and n < 4)
//	n × container: run (nruns uint16; nruns × {start, length-1 uint16}),
//	               array (cardinality × uint16, when cardinality <= 4096),
//	               bitmap (1024 × uint64)
//
// DV file ("deletion_vector_<uuid>.bin"): version byte 1, then per DV at its
// offset: size uint32 big-endian, the serialized bitmap (size bytes), CRC-32
// (IEEE) of the bitmap, uint32 big-endian.
//
// storageType "i": pathOrInlineDv is the Z85 text of the serialized bitmap.
// storageType "u": pathOrInlineDv is <random prefix><20 chars Z85 of the
// UUID>; the file is <prefix>/deletion_vector_<uuid>.bin under the table.
// storageType "p": pathOrInlineDv is an absolute URI of the file.

const (
	dvMagic          = 1681511377
	roaringNoRuns    = 12346
	roaringWithRuns  = 12347
	roaringNoOffsets = 4
)

// z85 alphabet (ZeroMQ RFC 32).
const z85Chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

var z85Dec = func() [256]int16 {
	var t [256]int16
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(z85Chars); i++ {
		t[z85Chars[i]] = int16(i)
	}
	return t
}()

// z85Decode decodes Z85 text (length a multiple of 5) to bytes.
func z85Decode(s string) ([]byte, error) {
	if len(s)%5 != 0 {
		return nil, fmt.Errorf("%w: Z85 length %d is not a multiple of 5", ErrCorruptDV, len(s))
	}
	out := make([]byte, 0, len(s)/5*4)
	for i := 0; i < len(s); i += 5 {
		var v uint64
		for j := 0; j < 5; j++ {
			d := z85Dec[s[i+j]]
			if d < 0 {
				return nil, fmt.Errorf("%w: invalid Z85 character %q", ErrCorruptDV, s[i+j])
			}
			v = v*85 + uint64(d)
		}
		if v > 0xFFFFFFFF {
			return nil, fmt.Errorf("%w: Z85 group out of range", ErrCorruptDV)
		}
		out = binary.BigEndian.AppendUint32(out, uint32(v))
	}
	return out, nil
}

// z85Encode encodes b (padded with zeros to a multiple of 4).
func z85Encode(b []byte) string {
	pad := (4 - len(b)%4) % 4
	if pad > 0 {
		b = append(append([]byte(nil), b...), make([]byte, pad)...)
	}
	var sb strings.Builder
	for i := 0; i < len(b); i += 4 {
		v := binary.BigEndian.Uint32(b[i:])
		var g [5]byte
		for j := 4; j >= 0; j-- {
			g[j] = z85Chars[v%85]
			v /= 85
		}
		sb.Write(g[:])
	}
	return sb.String()
}

// decodeBitmapArray parses a serialized RoaringBitmapArray and returns the
// set row indexes in ascending order. It never allocates more than the
// input can describe.
func decodeBitmapArray(b []byte) ([]uint64, error) {
	if len(b) < 12 {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrCorruptDV, len(b))
	}
	if m := binary.LittleEndian.Uint32(b); m != dvMagic {
		return nil, fmt.Errorf("%w: bad magic %d", ErrCorruptDV, m)
	}
	n := binary.LittleEndian.Uint64(b[4:])
	b = b[12:]
	if n > uint64(len(b))/4 {
		return nil, fmt.Errorf("%w: %d bitmaps in %d bytes", ErrCorruptDV, n, len(b))
	}
	var out []uint64
	prevKey := int64(-1)
	for i := uint64(0); i < n; i++ {
		if len(b) < 4 {
			return nil, fmt.Errorf("%w: truncated bitmap key", ErrCorruptDV)
		}
		key := binary.LittleEndian.Uint32(b)
		if int64(key) <= prevKey {
			return nil, fmt.Errorf("%w: bitmap keys not ascending", ErrCorruptDV)
		}
		prevKey = int64(key)
		var used int
		var err error
		out, used, err = decodeRoaring32(b[4:], uint64(key)<<32, out)
		if err != nil {
			return nil, err
		}
		b = b[4+used:]
	}
	return out, nil
}

// decodeRoaring32 appends the values of one portable 32-bit roaring bitmap
// (each ORed with high) to out and returns the bytes consumed.
func decodeRoaring32(b []byte, high uint64, out []uint64) ([]uint64, int, error) {
	short := func(what string) error { return fmt.Errorf("%w: truncated roaring %s", ErrCorruptDV, what) }
	if len(b) < 4 {
		return nil, 0, short("cookie")
	}
	cookie := binary.LittleEndian.Uint32(b)
	pos := 4
	var n int
	var runFlags []byte
	hasRuns := false
	switch {
	case cookie == roaringNoRuns:
		if len(b) < 8 {
			return nil, 0, short("container count")
		}
		n = int(binary.LittleEndian.Uint32(b[4:]))
		pos = 8
	case cookie&0xFFFF == roaringWithRuns:
		hasRuns = true
		n = int(cookie>>16) + 1
		fl := (n + 7) / 8
		if len(b) < pos+fl {
			return nil, 0, short("run flags")
		}
		runFlags = b[pos : pos+fl]
		pos += fl
	default:
		return nil, 0, fmt.Errorf("%w: bad roaring cookie %d", ErrCorruptDV, cookie)
	}
	if n > 1<<16 || n*4 > len(b)-pos {
		return nil, 0, fmt.Errorf("%w: %d roaring containers in %d bytes", ErrCorruptDV, n, len(b)-pos)
	}
	keys := make([]uint16, n)
	cards := make([]int, n)
	for i := 0; i < n; i++ {
		keys[i] = binary.LittleEndian.Uint16(b[pos:])
		cards[i] = int(binary.LittleEndian.Uint16(b[pos+2:])) + 1
		pos += 4
	}
	if !hasRuns || n >= roaringNoOffsets {
		if len(b) < pos+4*n {
			return nil, 0, short("offsets")
		}
		pos += 4 * n // offsets are redundant when reading sequentially
	}
	for i := 0; i < n; i++ {
		if i > 0 && keys[i] <= keys[i-1] {
			return nil, 0, fmt.Errorf("%w: roaring keys not ascending", ErrCorruptDV)
		}
		base := high | uint64(keys[i])<<16
		isRun := hasRuns && runFlags[i/8]&(1<<(uint(i)%8)) != 0
		switch {
		case isRun:
			if len(b) < pos+2 {
				return nil, 0, short("run count")
			}
			nr := int(binary.LittleEndian.Uint16(b[pos:]))
			pos += 2
			if len(b) < pos+4*nr {
				return nil, 0, short("runs")
			}
			next := -1
			for r := 0; r < nr; r++ {
				start := int(binary.LittleEndian.Uint16(b[pos:]))
				length := int(binary.LittleEndian.Uint16(b[pos+2:]))
				pos += 4
				if start <= next || start+length > 0xFFFF {
					return nil, 0, fmt.Errorf("%w: bad roaring run", ErrCorruptDV)
				}
				for v := start; v <= start+length; v++ {
					out = append(out, base|uint64(v))
				}
				next = start + length
			}
		case cards[i] <= 4096:
			if len(b) < pos+2*cards[i] {
				return nil, 0, short("array container")
			}
			prev := -1
			for j := 0; j < cards[i]; j++ {
				v := int(binary.LittleEndian.Uint16(b[pos:]))
				pos += 2
				if v <= prev {
					return nil, 0, fmt.Errorf("%w: roaring array not ascending", ErrCorruptDV)
				}
				prev = v
				out = append(out, base|uint64(v))
			}
		default:
			if len(b) < pos+8192 {
				return nil, 0, short("bitmap container")
			}
			for w := 0; w < 1024; w++ {
				word := binary.LittleEndian.Uint64(b[pos+8*w:])
				for word != 0 {
					bit := uint64(trailingZeros64(word))
					out = append(out, base|uint64(w*64)|bit)
					word &= word - 1
				}
			}
			pos += 8192
		}
	}
	return out, pos, nil
}

func trailingZeros64(x uint64) int {
	n := 0
	for x&1 == 0 {
		x >>= 1
		n++
	}
	return n
}

// deletedRows loads the DV of add (nil when it has none) as sorted row
// indexes.
func deletedRows(ctx context.Context, store blob.Store, ti TableInfo, dv *delta.DeletionVector) ([]uint64, error) {
	if dv == nil {
		return nil, nil
	}
	var raw []byte
	switch dv.StorageType {
	case "i":
		b, err := z85Decode(dv.PathOrInlineDv)
		if err != nil {
			return nil, err
		}
		if dv.SizeInBytes < 0 || int(dv.SizeInBytes) > len(b) {
			return nil, fmt.Errorf("%w: inline size %d exceeds %d decoded bytes", ErrCorruptDV, dv.SizeInBytes, len(b))
		}
		raw = b[:dv.SizeInBytes]
	case "u", "p":
		key, err := dvKey(store, ti, dv)
		if err != nil {
			return nil, err
		}
		raw, err = readDVFile(ctx, store, key, dv)
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: unknown storageType %q", ErrCorruptDV, dv.StorageType)
	}
	rows, err := decodeBitmapArray(raw)
	if err != nil {
		return nil, err
	}
	if int64(len(rows)) != dv.Cardinality {
		return nil, fmt.Errorf("%w: %d rows, descriptor says %d", ErrCorruptDV, len(rows), dv.Cardinality)
	}
	return rows, nil
}

func dvKey(store blob.Store, ti TableInfo, dv *delta.DeletionVector) (string, error) {
	if dv.StorageType == "p" {
		return absoluteKey(store, dv.PathOrInlineDv)
	}
	s := dv.PathOrInlineDv
	if len(s) < 20 {
		return "", fmt.Errorf("%w: relative path %q shorter than a Z85 UUID", ErrCorruptDV, s)
	}
	prefix, enc := s[:len(s)-20], s[len(s)-20:]
	b, err := z85Decode(enc)
	if err != nil {
		return "", err
	}
	id, err := uuid.FromBytes(b)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrCorruptDV, err)
	}
	return blob.Join(ti.Root, prefix, "deletion_vector_"+id.String()+".bin"), nil
}

// rootedStore is implemented by stores backed by a local directory
// (blob/local.Store); it lets absolute file: URIs inside the store be read.
type rootedStore interface{ Root() string }

// absoluteKey maps an absolute URI to a key of store, when the store is a
// local directory that contains it.
func absoluteKey(store blob.Store, uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("absolute path %q: %w", uri, err)
	}
	if u.Scheme != "" && u.Scheme != "file" {
		return "", fmt.Errorf("absolute path %q: scheme %q is not supported", uri, u.Scheme)
	}
	rs, ok := store.(rootedStore)
	if !ok || !path.IsAbs(u.Path) {
		return "", fmt.Errorf("absolute path %q cannot be resolved in this store", uri)
	}
	rel, err := filepath.Rel(rs.Root(), filepath.FromSlash(u.Path))
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("absolute path %q is outside the store", uri)
	}
	return filepath.ToSlash(rel), nil
}

func readDVFile(ctx context.Context, store blob.Store, key string, dv *delta.DeletionVector) ([]byte, error) {
	r, err := store.Open(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("deletion vector %s: %w", key, err)
	}
	defer r.Close()
	off := int64(1)
	if dv.Offset != nil {
		off = int64(*dv.Offset)
	}
	var ver [1]byte
	if _, err := r.ReadAt(ver[:], 0); err != nil {
		return nil, fmt.Errorf("deletion vector %s: %w", key, err)
	}
	if ver[0] != 1 {
		return nil, fmt.Errorf("deletion vector %s: %w: version %d", key, ErrCorruptDV, ver[0])
	}
	size := int64(dv.SizeInBytes)
	if off < 1 || size < 0 || off+8+size > r.Size() {
		return nil, fmt.Errorf("deletion vector %s: %w: offset %d size %d beyond file size %d", key, ErrCorruptDV, off, size, r.Size())
	}
	buf := make([]byte, 4+size+4)
	if _, err := r.ReadAt(buf, off); err != nil {
		return nil, fmt.Errorf("deletion vector %s: %w", key, err)
	}
	if got := int64(binary.BigEndian.Uint32(buf)); got != size {
		return nil, fmt.Errorf("deletion vector %s: %w: stored size %d, descriptor says %d", key, ErrCorruptDV, got, size)
	}
	data := buf[4 : 4+size]
	if crc := binary.BigEndian.Uint32(buf[4+size:]); crc != crc32.ChecksumIEEE(data) {
		return nil, fmt.Errorf("deletion vector %s: %w: checksum mismatch", key, ErrCorruptDV)
	}
	return data, nil
}

// encodeBitmapArray serialises sorted row indexes as a RoaringBitmapArray
// using array and bitmap containers only (test helper and future writer).
func encodeBitmapArray(rows []uint64) []byte {
	rows = append([]uint64(nil), rows...)
	sort.Slice(rows, func(i, j int) bool { return rows[i] < rows[j] })
	var groups [][]uint64
	for i, r := range rows {
		if i > 0 && r == rows[i-1] {
			continue
		}
		if len(groups) == 0 || groups[len(groups)-1][0]>>32 != r>>32 {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], r)
	}
	out := binary.LittleEndian.AppendUint32(nil, dvMagic)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(groups)))
	for _, g := range groups {
		out = binary.LittleEndian.AppendUint32(out, uint32(g[0]>>32))
		var conts [][]uint16
		for i, r := range g {
			if i == 0 || uint16(r>>16) != uint16(g[i-1]>>16) {
				conts = append(conts, nil)
			}
			conts[len(conts)-1] = append(conts[len(conts)-1], uint16(r>>16), uint16(r))
		}
		start := len(out)
		out = binary.LittleEndian.AppendUint32(out, roaringNoRuns)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(conts)))
		for _, c := range conts {
			out = binary.LittleEndian.AppendUint16(out, c[0])
			out = binary.LittleEndian.AppendUint16(out, uint16(len(c)/2-1))
		}
		// Container offsets, relative to the cookie.
		off := len(out) - start + 4*len(conts)
		for _, c := range conts {
			out = binary.LittleEndian.AppendUint32(out, uint32(off))
			if card := len(c) / 2; card <= 4096 {
				off += 2 * card
			} else {
				off += 8192
			}
		}
		for _, c := range conts {
			card := len(c) / 2
			if card <= 4096 {
				for j := 1; j < len(c); j += 2 {
					out = binary.LittleEndian.AppendUint16(out, c[j])
				}
				continue
			}
			var words [1024]uint64
			for j := 1; j < len(c); j += 2 {
				words[c[j]/64] |= 1 << (c[j] % 64)
			}
			for _, w := range words {
				out = binary.LittleEndian.AppendUint64(out, w)
			}
		}
	}
	return out
}

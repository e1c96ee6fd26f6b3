package kinesis

import (
	"crypto/md5"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// maxPartitionKeyChars is Kinesis's limit on a partition key.
const maxPartitionKeyChars = 256

// encodeKey builds the Kinesis partition key of a record: the logical
// offset, the writer epoch and the user's partition key with every byte
// outside printable ASCII (and '%') written as %XX:
//
//	<offset>:<epoch>:<escaped key>     e.g. 1042:3:public.readings%0042
//
// Kinesis never routes by it: ExplicitHashKey carries the MD5 of the user's
// key, so the shard is the one stream.ShardFor picks.
func encodeKey(dst []byte, off int64, epoch uint32, key []byte) []byte {
	dst = strconv.AppendInt(dst, off, 10)
	dst = append(dst, ':')
	dst = strconv.AppendUint(dst, uint64(epoch), 10)
	dst = append(dst, ':')
	const hexdig = "0123456789ABCDEF"
	for _, b := range key {
		if b >= 0x20 && b < 0x7f && b != '%' {
			dst = append(dst, b)
			continue
		}
		dst = append(dst, '%', hexdig[b>>4], hexdig[b&15])
	}
	return dst
}

var errBadKey = errors.New("kinesis: record partition key is not silt's offset:epoch:key form")

// decodeKey parses a partition key written by encodeKey. The returned key
// is a new slice.
func decodeKey(s string) (off int64, epoch uint32, key []byte, err error) {
	a, rest, ok1 := strings.Cut(s, ":")
	b, esc, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 {
		return 0, 0, nil, fmt.Errorf("%w: %.40q", errBadKey, s)
	}
	off, err1 := strconv.ParseInt(a, 10, 64)
	e, err2 := strconv.ParseUint(b, 10, 32)
	if err1 != nil || err2 != nil || off < 0 {
		return 0, 0, nil, fmt.Errorf("%w: %.40q", errBadKey, s)
	}
	key = make([]byte, 0, len(esc))
	for i := 0; i < len(esc); i++ {
		c := esc[i]
		if c != '%' {
			key = append(key, c)
			continue
		}
		if i+2 >= len(esc) {
			return 0, 0, nil, fmt.Errorf("%w: truncated escape in %.40q", errBadKey, s)
		}
		v, err := strconv.ParseUint(esc[i+1:i+3], 16, 8)
		if err != nil {
			return 0, 0, nil, fmt.Errorf("%w: bad escape in %.40q", errBadKey, s)
		}
		key = append(key, byte(v))
		i += 2
	}
	return off, uint32(e), key, nil
}

var two128 = new(big.Int).Lsh(big.NewInt(1), 128)

// hashRange is an inclusive range of 128-bit hash keys.
type hashRange struct{ lo, hi *big.Int }

func (r hashRange) overlaps(o hashRange) bool { return r.lo.Cmp(o.hi) <= 0 && o.lo.Cmp(r.hi) <= 0 }

// layout maps the hash key space to logical shards the way stream.ShardFor
// does (shard = floor(hash*n/2^128)), and keeps each logical shard inside
// one Kinesis shard of a stream created with n shards. Kinesis splits the
// space at multiples of floor(2^128/n), a few hash values below ShardFor's
// boundaries; a key whose hash falls in such a sliver is sent with its
// ExplicitHashKey moved down into its logical shard's Kinesis shard.
type layout struct {
	n    int
	used []hashRange // per logical shard: the hash keys the writer sends
}

func newLayout(n int) *layout {
	l := &layout{n: n}
	step := new(big.Int).Div(two128, big.NewInt(int64(n))) // Kinesis's split
	for i := range n {
		lo := ceilDiv(new(big.Int).Mul(two128, big.NewInt(int64(i))), n)
		hiEx := ceilDiv(new(big.Int).Mul(two128, big.NewInt(int64(i+1))), n)
		if i < n-1 {
			kEnd := new(big.Int).Mul(step, big.NewInt(int64(i+1)))
			if kEnd.Cmp(hiEx) < 0 {
				hiEx = kEnd
			}
		}
		l.used = append(l.used, hashRange{lo: lo, hi: hiEx.Sub(hiEx, big.NewInt(1))})
	}
	return l
}

func ceilDiv(x *big.Int, n int) *big.Int {
	d := big.NewInt(int64(n))
	q, m := new(big.Int).DivMod(x, d, new(big.Int))
	if m.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	return q
}

// explicitHashKey returns the decimal ExplicitHashKey for a user key of
// logical shard i: the MD5 of the key, clamped into the shard's used range.
func (l *layout) explicitHashKey(i int, key []byte) string {
	sum := md5.Sum(key)
	h := new(big.Int).SetBytes(sum[:])
	if r := l.used[i]; h.Cmp(r.hi) > 0 {
		h = r.hi
	}
	return h.String()
}

// parseRange reads a Kinesis HashKeyRange.
func parseRange(lo, hi *string) (hashRange, error) {
	if lo == nil || hi == nil {
		return hashRange{}, errors.New("shard without hash key range")
	}
	a, ok1 := new(big.Int).SetString(*lo, 10)
	b, ok2 := new(big.Int).SetString(*hi, 10)
	if !ok1 || !ok2 {
		return hashRange{}, fmt.Errorf("bad hash key range %s..%s", *lo, *hi)
	}
	return hashRange{lo: a, hi: b}, nil
}

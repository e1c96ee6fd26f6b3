package stream

import (
	"crypto/md5"
	"encoding/binary"
	"math/bits"
)

// ShardsFor sets out[i] = ShardFor(entries[i].PartitionKey, n) for every
// entry (out must be as long as entries). It is ShardFor for a batch: on
// amd64 with AVX2 it hashes eight keys of at most 55 bytes (one MD5 block
// each) at once, several times faster per key than crypto/md5 one at a
// time; other keys and machines take ShardFor. The results are the same
// (TestShardsForMatchesShardFor).
func ShardsFor(entries []Entry, n int, out []int) {
	out = out[:len(entries)]
	if n <= 1 {
		clear(out)
		return
	}
	i := 0
	if haveMD5x8 {
		var m [16][8]uint32
		var dig [4][8]uint32
	groups:
		for ; i+8 <= len(entries); i += 8 {
			for lane := range 8 {
				if len(entries[i+lane].PartitionKey) > maxOneBlock {
					for k := range 8 {
						out[i+k] = ShardFor(entries[i+k].PartitionKey, n)
					}
					continue groups
				}
			}
			for lane := range 8 {
				padBlock(&m, lane, entries[i+lane].PartitionKey)
			}
			md5x8(&dig, &m)
			for lane := range 8 {
				var sum [md5.Size]byte
				binary.LittleEndian.PutUint32(sum[0:], dig[0][lane])
				binary.LittleEndian.PutUint32(sum[4:], dig[1][lane])
				binary.LittleEndian.PutUint32(sum[8:], dig[2][lane])
				binary.LittleEndian.PutUint32(sum[12:], dig[3][lane])
				out[i+lane] = shardOfSum(&sum, n)
			}
		}
	}
	for ; i < len(entries); i++ {
		out[i] = ShardFor(entries[i].PartitionKey, n)
	}
}

// maxOneBlock is the longest message MD5 pads into one 64-byte block.
const maxOneBlock = 55

// padBlock writes key's padded MD5 block (key, 0x80, zeros, bit length)
// as little-endian words into lane of m.
func padBlock(m *[16][8]uint32, lane int, key []byte) {
	var b [64]byte
	copy(b[:], key)
	b[len(key)] = 0x80
	binary.LittleEndian.PutUint64(b[56:], uint64(len(key))<<3)
	for w := range 16 {
		m[w][lane] = binary.LittleEndian.Uint32(b[4*w:])
	}
}

// shardOfSum is ShardFor's mapping of a digest to one of n shards.
func shardOfSum(sum *[md5.Size]byte, n int) int {
	hi := binary.BigEndian.Uint64(sum[:8])
	lo := binary.BigEndian.Uint64(sum[8:])
	// (hi*2^64 + lo) * n = hHi*2^128 + (hLo + lHi)*2^64 + lLo; we want the 2^128 digit.
	hHi, hLo := bits.Mul64(hi, uint64(n))
	lHi, _ := bits.Mul64(lo, uint64(n))
	_, carry := bits.Add64(hLo, lHi, 0)
	return int(hHi + carry)
}

package stream

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestShardsForMatchesShardFor checks ShardsFor against ShardFor for keys
// of every length from 0 to two MD5 blocks (so both the eight-lane path
// and its fallbacks), random bytes, batch sizes around multiples of 8 and
// several shard counts.
func TestShardsForMatchesShardFor(t *testing.T) {
	t.Logf("eight-lane MD5: %v", haveMD5x8)
	rng := rand.New(rand.NewPCG(1, 2))
	key := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for _, n := range []int{1, 2, 3, 7, 64, 1024} {
		for _, count := range []int{0, 1, 7, 8, 9, 16, 100, 1000} {
			for _, maxLen := range []int{maxOneBlock + 1, 130} {
				entries := make([]Entry, count)
				for i := range entries {
					entries[i].PartitionKey = key(rng.IntN(maxLen))
				}
				out := make([]int, count)
				for i := range out {
					out[i] = -1
				}
				ShardsFor(entries, n, out)
				for i, e := range entries {
					if want := ShardFor(e.PartitionKey, n); out[i] != want {
						t.Fatalf("n=%d count=%d: key %d (%d bytes %x): shard %d, ShardFor says %d", n, count, i, len(e.PartitionKey), e.PartitionKey, out[i], want)
					}
				}
			}
		}
	}
}

func BenchmarkShardsFor(b *testing.B) {
	entries := make([]Entry, 1024)
	for i := range entries {
		entries[i].PartitionKey = fmt.Appendf(nil, "public.orders\x00%d", i*7919)
	}
	out := make([]int, len(entries))
	b.Run("ShardFor", func(b *testing.B) {
		for range b.N {
			for i, e := range entries {
				out[i] = ShardFor(e.PartitionKey, 4)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(entries)), "ns/key")
	})
	b.Run("ShardsFor", func(b *testing.B) {
		for range b.N {
			ShardsFor(entries, 4, out)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(entries)), "ns/key")
	})
}

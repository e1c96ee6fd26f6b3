package stream

import (
	"crypto/md5"
	"fmt"
	"math/big"
	"testing"
)

func TestShardForSpread(t *testing.T) {
	const n = 4
	counts := make([]int, n)
	for i := 0; i < 40000; i++ {
		s := ShardFor([]byte(fmt.Sprintf("key-%d", i)), n)
		if s < 0 || s >= n {
			t.Fatalf("shard %d out of range", s)
		}
		counts[s]++
	}
	for s, c := range counts {
		if c < 9000 || c > 11000 {
			t.Errorf("shard %d got %d of 40000 keys; MD5 should spread evenly", s, c)
		}
	}
	if ShardFor([]byte("x"), 1) != 0 {
		t.Fatal("one shard must be shard 0")
	}
}

func TestShardForMatchesKinesisRanges(t *testing.T) {
	// MD5("a") = 0cc175b9c0f1b6a831c399e269772661: top byte 0x0c is in the first quarter.
	if got := ShardFor([]byte("a"), 4); got != 0 {
		t.Fatalf("ShardFor(a,4) = %d, want 0", got)
	}
	// MD5("b") = 92eb5ffee6ae2fec3ad71c777531578f: 0x92 is in the third quarter.
	if got := ShardFor([]byte("b"), 4); got != 2 {
		t.Fatalf("ShardFor(b,4) = %d, want 2", got)
	}
}

func TestShardForMatchesBigIntRule(t *testing.T) {
	space := new(big.Int).Lsh(big.NewInt(1), 128)
	for _, n := range []int{2, 3, 7, 64, 1000, 1024} {
		for i := 0; i < 2000; i++ {
			key := []byte(fmt.Sprintf("k%d", i))
			sum := md5.Sum(key)
			h := new(big.Int).SetBytes(sum[:])
			want := int(h.Mul(h, big.NewInt(int64(n))).Div(h, space).Int64())
			if got := ShardFor(key, n); got != want {
				t.Fatalf("ShardFor(%q, %d) = %d, want %d", key, n, got, want)
			}
		}
	}
	if a := testing.AllocsPerRun(100, func() { ShardFor([]byte("key"), 8) }); a != 0 {
		t.Fatalf("ShardFor allocates %v times", a)
	}
}

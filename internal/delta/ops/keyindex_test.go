package ops

import (
	"math/rand/v2"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// TestKeyIndexFilter: the int filter in front of the key map never hides
// a changed key (no false negatives) and turns most other values away.
func TestKeyIndexFilter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 100, 100_000} {
		b := array.NewInt64Builder(memory.DefaultAllocator)
		keys := map[int64]int{}
		for len(keys) < n {
			v := rng.Int64N(50_000_000) - 1_000_000
			if _, dup := keys[v]; !dup {
				keys[v] = len(keys)
				b.Append(v)
			}
		}
		col := b.NewArray()
		b.Release()
		x, err := newKeyIndex([]arrow.Array{col})
		col.Release()
		if err != nil {
			t.Fatal(err)
		}
		for v, k := range keys {
			if got := x.intKey(v); got != k {
				t.Fatalf("n=%d: key %d: index %d, want %d", n, v, got, k)
			}
		}
		passed, misses := 0, 0
		for v := int64(-1_000_000); v < 49_000_000; v += 97 {
			if _, ok := keys[v]; ok {
				continue
			}
			misses++
			if x.mayHave(v) {
				passed++
			}
			if x.intKey(v) != -1 {
				t.Fatalf("n=%d: %d is not a key but found", n, v)
			}
		}
		if passed*8 > misses { // about 1/16 expected
			t.Fatalf("n=%d: filter passed %d of %d non-keys", n, passed, misses)
		}
	}
}

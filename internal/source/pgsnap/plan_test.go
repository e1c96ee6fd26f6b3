package pgsnap

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestPlanRanges(t *testing.T) {
	for _, tc := range []struct {
		pages       uint32
		rowsPerPage float64
		chunkRows   int64
		max         int
		want        []Range
	}{
		{0, 100, 1000, 0, []Range{{0, 0, true}}},
		{1, 100, 1000, 0, []Range{{0, 1, true}}},
		{30, 100, 1000, 0, []Range{{0, 10, false}, {10, 20, false}, {20, 30, true}}},
		{31, 100, 1000, 0, []Range{{0, 10, false}, {10, 20, false}, {20, 30, false}, {30, 31, true}}},
		{10, 1000, 10, 0, []Range{{0, 1, false}, {1, 2, false}, {2, 3, false}, {3, 4, false}, {4, 5, false}, {5, 6, false}, {6, 7, false}, {7, 8, false}, {8, 9, false}, {9, 10, true}}},
		{100, 100, 1000, 4, []Range{{0, 25, false}, {25, 50, false}, {50, 75, false}, {75, 100, true}}},
		{10, 0, 0, 0, nil}, // degenerate estimates: one block per chunk
	} {
		got := PlanRanges(tc.pages, tc.rowsPerPage, tc.chunkRows, tc.max)
		if tc.want == nil {
			if len(got) != int(tc.pages) {
				t.Errorf("PlanRanges(%d, %v, %d): %d ranges, want %d", tc.pages, tc.rowsPerPage, tc.chunkRows, len(got), tc.pages)
			}
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("PlanRanges(%d, %v, %d, %d) = %v, want %v", tc.pages, tc.rowsPerPage, tc.chunkRows, tc.max, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("PlanRanges(%d, %v, %d, %d) = %v, want %v", tc.pages, tc.rowsPerPage, tc.chunkRows, tc.max, got, tc.want)
				break
			}
		}
	}
}

// TestPlanRangesCover checks, for random inputs, that every block belongs to
// exactly one range, that only the last range is open, and that the chunk
// count respects the limit.
func TestPlanRangesCover(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 2))
	for range 2000 {
		pages := uint32(r.IntN(5000))
		rpp := r.Float64() * 300
		chunkRows := int64(r.IntN(100000))
		max := r.IntN(64)
		rs := PlanRanges(pages, rpp, chunkRows, max)
		if len(rs) == 0 || !rs[len(rs)-1].Open {
			t.Fatalf("pages %d: last range not open: %v", pages, rs)
		}
		if max > 0 && len(rs) > max {
			t.Fatalf("pages %d max %d: %d ranges", pages, max, len(rs))
		}
		for i, rg := range rs[:len(rs)-1] {
			if rg.Open || rg.Hi != rs[i+1].Lo || rg.Lo >= rg.Hi {
				t.Fatalf("pages %d: ranges %v", pages, rs)
			}
		}
		if rs[0].Lo != 0 {
			t.Fatalf("pages %d: first range %v", pages, rs[0])
		}
		for _, b := range []uint32{0, pages / 2, pages, pages + 100} {
			n := 0
			for _, rg := range rs {
				if rg.Contains(b) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("pages %d: block %d in %d ranges: %v", pages, b, n, rs)
			}
		}
	}
}

func TestChunkRowsFor(t *testing.T) {
	for _, c := range []struct {
		est       float64
		chunkRows int64
		workers   int
		want      int64
	}{
		{5_000_000, 100_000, 4, 100_000}, // big table: the setting
		{500_000, 100_000, 4, 31_250},    // four chunks per worker
		{50_000, 100_000, 4, 10_000},     // not below 10000
		{50_000, 1000, 4, 1000},          // a smaller setting stays
		{0, 100_000, 4, 10_000},
	} {
		if got := chunkRowsFor(c.est, c.chunkRows, c.workers); got != c.want {
			t.Errorf("chunkRowsFor(%v, %d, %d) = %d, want %d", c.est, c.chunkRows, c.workers, got, c.want)
		}
	}
}

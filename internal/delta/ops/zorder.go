package ops

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Z-ordering. Each Z-order column's values are mapped to an order-preserving
// unsigned 64-bit code (integers with the sign bit flipped, IEEE floats
// with the usual bit trick, strings and binary by their first 8 bytes,
// decimals as doubles), the codes are replaced by their dense rank
// scaled to 32 bits (so skewed columns spread over the whole range and
// every column weighs the same), and the 32-bit ranks of all columns are
// interleaved bit by bit, most significant first. Sorting rows by that
// value clusters rows that are close on every column, so each output file
// covers a narrow range of each column and min/max pruning works on each.

// zcode returns the order-preserving code of row i, and false for null.
func zcode(a arrow.Array, i int) (uint64, bool) {
	if a.IsNull(i) {
		return 0, false
	}
	if v, ok := intValue(a, i); ok {
		return uint64(v) ^ (1 << 63), true
	}
	switch x := a.(type) {
	case *array.Uint64:
		return x.Value(i), true
	case *array.Float32, *array.Float64:
		f, _ := floatValue(a, i)
		b := math.Float64bits(normZero(f))
		if b>>63 == 1 {
			return ^b, true
		}
		return b | 1<<63, true
	case *array.String:
		return prefix8(x.Value(i)), true
	case *array.Binary:
		return prefix8(string(x.Value(i))), true
	case *array.Boolean:
		return uint64(b2i(x.Value(i))), true
	case *array.Decimal128:
		f := x.Value(i).ToFloat64(x.DataType().(*arrow.Decimal128Type).Scale)
		b := math.Float64bits(normZero(f))
		if b>>63 == 1 {
			return ^b, true
		}
		return b | 1<<63, true
	}
	return prefix8(a.ValueStr(i)), true
}

func prefix8(s string) uint64 {
	var b [8]byte
	copy(b[:], s)
	return binary.BigEndian.Uint64(b[:])
}

// zranks returns, per row, the dense rank of the row's code scaled to
// [0, 2^32); nulls rank lowest.
func zranks(a arrow.Array) []uint32 {
	n := a.Len()
	type cv struct {
		code uint64
		row  int32
		null bool
	}
	vs := make([]cv, n)
	for i := range vs {
		c, ok := zcode(a, i)
		vs[i] = cv{code: c, row: int32(i), null: !ok}
	}
	slices.SortFunc(vs, func(x, y cv) int {
		if x.null != y.null {
			if x.null {
				return -1
			}
			return 1
		}
		if x.code < y.code {
			return -1
		}
		if x.code > y.code {
			return 1
		}
		return 0
	})
	ranks := make([]uint64, n)
	distinct := uint64(0)
	for i := range vs {
		if i > 0 && (vs[i].null != vs[i-1].null || vs[i].code != vs[i-1].code) {
			distinct++
		}
		ranks[vs[i].row] = distinct
	}
	distinct++
	out := make([]uint32, n)
	for i, r := range ranks {
		out[i] = uint32((r << 32) / distinct)
	}
	return out
}

// zorderPermutation returns the row order that sorts rows by the
// interleaved ranks of cols.
func zorderPermutation(cols []arrow.Array) []int64 {
	n := cols[0].Len()
	k := len(cols)
	ranks := make([][]uint32, k)
	for c, a := range cols {
		ranks[c] = zranks(a)
	}
	width := 4 * k // bytes per z-value: 32 bits per column
	z := make([]byte, n*width)
	for row := 0; row < n; row++ {
		dst := z[row*width : (row+1)*width]
		bit := 0
		for b := 31; b >= 0; b-- {
			for c := 0; c < k; c++ {
				if ranks[c][row]>>uint(b)&1 == 1 {
					dst[bit>>3] |= 0x80 >> uint(bit&7)
				}
				bit++
			}
		}
	}
	perm := make([]int64, n)
	for i := range perm {
		perm[i] = int64(i)
	}
	sort.SliceStable(perm, func(i, j int) bool {
		a, b := perm[i], perm[j]
		return bytes.Compare(z[a*int64(width):(a+1)*int64(width)], z[b*int64(width):(b+1)*int64(width)]) < 0
	})
	return perm
}

// takeRecord returns rec's rows in the order of perm.
func takeRecord(ctx context.Context, mem memory.Allocator, rec arrow.RecordBatch, perm []int64) (arrow.RecordBatch, error) {
	ib := array.NewInt64Builder(mem)
	defer ib.Release()
	ib.AppendValues(perm, nil)
	idx := ib.NewInt64Array()
	defer idx.Release()
	ctx = compute.WithAllocator(ctx, mem)
	cols := make([]arrow.Array, rec.NumCols())
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	for i := range cols {
		c, err := compute.TakeArray(ctx, rec.Column(i), idx)
		if err != nil {
			return nil, fmt.Errorf("z-order: take column %s: %w", rec.Schema().Field(i).Name, err)
		}
		cols[i] = c
	}
	return array.NewRecordBatch(rec.Schema(), cols, int64(len(perm))), nil
}

package datafile

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/delta"
)

// newArrowBuilder is a record builder of s's rows.
func newArrowBuilder(t *testing.T, s *delta.StructType) *array.RecordBuilder {
	t.Helper()
	as, err := ArrowSchema(s)
	if err != nil {
		t.Fatal(err)
	}
	return array.NewRecordBuilder(memory.NewGoAllocator(), as)
}

// flatLikeArrow writes rec with Write and batches (the same rows) with
// WriteFlat, and checks that each wrote one file and that the Delta stats
// are equal; with full also the rows read back and the Parquet stats (of
// a one-row-group file). target is the file size (0: the default; the
// flat page size is a sixteenth of it). It returns the flat file.
func flatLikeArrow(t *testing.T, s *delta.StructType, rec arrow.Record, batches []*FlatBatch, full bool, target int64) (TableInfo, blob.Store, []*delta.Add) {
	t.Helper()
	mem := memory.NewGoAllocator()
	ti := TableInfo{Schema: s, Allocator: mem}
	opts := WriteOptions{DataChange: true, CompressionLevel: 1, SnapshotEncodings: true, Allocator: mem, TargetFileSize: target}
	stA, addsA, stF, addsF := writeArrowAndFlat(t, ti, opts, rec, batches, nil)
	if len(addsA) != 1 || len(addsF) != 1 {
		t.Fatalf("%d and %d files", len(addsA), len(addsF))
	}
	if addsF[0].Stats != addsA[0].Stats {
		t.Errorf("stats\n%s\nwant\n%s", addsF[0].Stats, addsA[0].Stats)
	}
	if full {
		sameRows(t, readAll(t, stF, ti, addsF), readAll(t, stA, ti, addsA))
		compareParquetStats(t, stA, addsA[0], stF, addsF[0])
	}
	return ti, stF, addsF
}

// TestFlatDecimalWidths checks decimals of every FIXED_LEN_BYTE_ARRAY
// width (1..16 bytes) with negative values and extremes, an all-null
// column and empty strings: the flat file reads back as the Arrow path's
// and has the same Delta and Parquet stats.
func TestFlatDecimalWidths(t *testing.T) {
	precs := []int{1, 2, 4, 6, 9, 11, 13, 16, 18, 20, 23, 25, 28, 30, 33, 35, 38}
	var fields []string
	for _, p := range precs {
		fields = append(fields, fld(fmt.Sprintf("d%d", p), fmt.Sprintf("decimal(%d,%d)", p, p/3), true))
	}
	fields = append(fields, fld("nul", "long", true), fld("s", "string", true))
	s := mustSchema(t, fields...)
	rb := newArrowBuilder(t, s)
	defer rb.Release()
	const n = 3000
	b := &FlatBatch{Rows: n, Cols: make([]FlatColumn, len(s.Fields))}
	for i := range b.Cols {
		b.Cols[i].Null = make([]bool, n)
	}
	b.Cols[len(precs)+1].Offsets = []int32{0}
	for r := 0; r < n; r++ {
		for ci, p := range precs {
			c := &b.Cols[ci]
			mx := decimal128.GetMaxValue(int32(p))
			var v decimal128.Num
			switch r % 6 {
			case 0:
				v = mx
			case 1:
				v = mx.Negate()
			case 2:
				v = decimal128.FromI64(-1)
			case 3:
				v = decimal128.FromI64(int64(r % 10)).Negate()
			case 4:
				c.Null[r] = true
				rb.Field(ci).AppendNull()
				c.Dec = append(c.Dec, decimal128.Num{})
				continue
			default:
				v = decimal128.FromI64(int64(r % 10))
			}
			c.Dec = append(c.Dec, v)
			rb.Field(ci).(*array.Decimal128Builder).Append(v)
		}
		nul := &b.Cols[len(precs)]
		nul.Null[r] = true
		nul.Int = append(nul.Int, 0)
		rb.Field(len(precs)).AppendNull()
		sc := &b.Cols[len(precs)+1]
		if r%5 == 1 {
			sc.Null[r] = true
			rb.Field(len(precs) + 1).AppendNull()
		} else {
			str := ""
			if r%5 == 2 {
				str = fmt.Sprint(r)
			}
			sc.Bytes = append(sc.Bytes, str...)
			rb.Field(len(precs) + 1).(*array.StringBuilder).Append(str)
		}
		sc.Offsets = append(sc.Offsets, int32(len(sc.Bytes)))
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	flatLikeArrow(t, s, rec, []*FlatBatch{b}, true, 0)
}

// TestFlatRowGroups checks a flat file of more rows than a row group holds
// (small integer columns compress far below the target file size): every
// row group reads back, and the Delta stats are the Arrow path's.
func TestFlatRowGroups(t *testing.T) {
	s := mustSchema(t, fld("id", "long", false), fld("v", "integer", true))
	const n = 1<<20 + 300_000
	rb := newArrowBuilder(t, s)
	defer rb.Release()
	var batches []*FlatBatch
	for lo := 0; lo < n; lo += 8192 {
		hi := min(lo+8192, n)
		b := &FlatBatch{Rows: hi - lo, Cols: make([]FlatColumn, 2)}
		b.Cols[1].Null = make([]bool, hi-lo)
		for r := lo; r < hi; r++ {
			b.Cols[0].Int = append(b.Cols[0].Int, int64(r)*2-7)
			rb.Field(0).(*array.Int64Builder).Append(int64(r)*2 - 7)
			v := int64(int32(r * 7919))
			b.Cols[1].Int = append(b.Cols[1].Int, v)
			if r%1000 == 999 {
				b.Cols[1].Null[r-lo] = true
				rb.Field(1).AppendNull()
			} else {
				rb.Field(1).(*array.Int32Builder).Append(int32(v))
			}
		}
		batches = append(batches, b)
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	ti, stF, addsF := flatLikeArrow(t, s, rec, batches, false, 0)
	pf := openStored(t, stF, addsF[0].Path)
	rgs := pf.NumRowGroups()
	pf.Close()
	if rgs != 2 {
		t.Errorf("%d row groups", rgs)
	}
	got, err := ReadConcat(ctx, stF, ti, addsF)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	if got.NumRows() != n {
		t.Fatalf("%d rows", got.NumRows())
	}
	for c := 0; c < 2; c++ {
		if !array.Equal(got.Column(c), rec.Column(c)) {
			t.Errorf("column %d differs", c)
		}
	}
}

// TestFlatInt64Wrap checks DELTA_BINARY_PACKED long columns whose deltas
// wrap int64 (non-descending from MinInt64 to MaxInt64) read back.
func TestFlatInt64Wrap(t *testing.T) {
	s := mustSchema(t, fld("a", "long", false), fld("b", "long", true))
	const n = 5000
	rb := newArrowBuilder(t, s)
	defer rb.Release()
	b := &FlatBatch{Rows: n, Cols: make([]FlatColumn, 2)}
	for r := 0; r < n; r++ {
		v := int64(math.MinInt64) + int64(r)
		switch {
		case r >= n-3:
			v = math.MaxInt64 - int64(n-1-r)
		case r > n/2:
			v = int64(r)
		}
		for c := 0; c < 2; c++ {
			b.Cols[c].Int = append(b.Cols[c].Int, v)
			rb.Field(c).(*array.Int64Builder).Append(v)
		}
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	ti, stF, addsF := flatLikeArrow(t, s, rec, []*FlatBatch{b}, false, 0)
	pf := openStored(t, stF, addsF[0].Path)
	cc, _ := pf.MetaData().RowGroup(0).ColumnChunk(0)
	if encs := cc.Encodings(); !slices.Contains(encs, parquet.Encodings.DeltaBinaryPacked) {
		t.Errorf("a: encodings %v", encs)
	}
	pf.Close()
	got, err := ReadConcat(ctx, stF, ti, addsF)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	for c := 0; c < 2; c++ {
		if !array.Equal(got.Column(c), rec.Column(c)) {
			t.Errorf("column %d differs", c)
		}
	}
}

// TestFlatStringPagesOneRowBatches checks that a string column written one
// row per WriteFlat still ends its pages at the page size.
func TestFlatStringPagesOneRowBatches(t *testing.T) {
	s := mustSchema(t, fld("s", "string", true))
	st := newStore(t)
	ti := TableInfo{Schema: s, Allocator: memory.NewGoAllocator()}
	w, err := NewWriter(ctx, st, ti, WriteOptions{DataChange: true, CompressionLevel: 1, TargetFileSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	const n, size = 20_000, 100
	for r := 0; r < n; r++ {
		v := fmt.Sprintf("%0*d", size, r)
		b := &FlatBatch{Rows: 1, Cols: []FlatColumn{{Bytes: []byte(v), Offsets: []int32{0, int32(len(v))}}}}
		if err := w.WriteFlat(b, nil); err != nil {
			t.Fatal(err)
		}
	}
	adds, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	pf := openStored(t, st, adds[0].Path)
	defer pf.Close()
	pr, err := pf.RowGroup(0).GetColumnPageReader(0)
	if err != nil {
		t.Fatal(err)
	}
	pages, most := 0, int32(0)
	for pr.Next() {
		if p, ok := pr.Page().(*file.DataPageV1); ok {
			pages++
			most = max(most, p.NumValues())
		}
	}
	// 2 MB of values in pages of 64 MiB / 16, at most 1 MiB: 2 pages and more.
	if rows := int32(1<<20/(4+size) + 1); pages < 2 || most > rows {
		t.Errorf("%d pages, the largest of %d rows (want at most %d)", pages, most, rows)
	}
}

// TestFlatLongStringStats checks the stats of string and binary columns
// whose min or max is longer than Parquet statistics keep, against the
// Arrow path's.
func TestFlatLongStringStats(t *testing.T) {
	s := mustSchema(t, fld("s", "string", true), fld("b", "binary", true))
	rb := newArrowBuilder(t, s)
	defer rb.Release()
	const n = 2000
	b := &FlatBatch{Rows: n, Cols: []FlatColumn{{Offsets: []int32{0}}, {Offsets: []int32{0}}}}
	for r := 0; r < n; r++ {
		v := fmt.Sprintf("m%05d", r)
		switch r {
		case 7:
			v = "z" + strings.Repeat("é", 3000) // the max, beyond 4096 bytes
		case 900:
			v = "a" + strings.Repeat("x", 5000) // the min
		}
		for c := range b.Cols {
			b.Cols[c].Bytes = append(b.Cols[c].Bytes, v...)
			b.Cols[c].Offsets = append(b.Cols[c].Offsets, int32(len(b.Cols[c].Bytes)))
		}
		rb.Field(0).(*array.StringBuilder).Append(v)
		rb.Field(1).(*array.BinaryBuilder).Append([]byte(v))
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	flatLikeArrow(t, s, rec, []*FlatBatch{b}, true, 0)
}

// TestFlatDeltaNulls checks DELTA_BINARY_PACKED nullable columns (chosen
// from a first batch without nulls) whose later batches have nulls, runs
// of them across pages and all-null batches.
func TestFlatDeltaNulls(t *testing.T) {
	s := mustSchema(t, fld("l", "long", true), fld("i", "integer", true), fld("ts", "timestamp", true))
	rb := newArrowBuilder(t, s)
	defer rb.Release()
	var batches []*FlatBatch
	r := 0
	for bi, rows := range []int{2000, 3000, 700, 40_000, 1} {
		b := &FlatBatch{Rows: rows, Cols: make([]FlatColumn, 3)}
		for k := 0; k < rows; k++ {
			null := bi > 0 && (bi == 2 || r%5 == 0 || r%20_000 < 3000)
			for c := range b.Cols {
				if null && b.Cols[c].Null == nil {
					b.Cols[c].Null = make([]bool, k, rows)
				}
				if b.Cols[c].Null != nil {
					b.Cols[c].Null = append(b.Cols[c].Null, null)
				}
				v := int64(r) * 3
				b.Cols[c].Int = append(b.Cols[c].Int, v)
				switch {
				case null:
					rb.Field(c).AppendNull()
				case c == 1:
					rb.Field(c).(*array.Int32Builder).Append(int32(v))
				case c == 0:
					rb.Field(c).(*array.Int64Builder).Append(v)
				default:
					rb.Field(c).(*array.TimestampBuilder).Append(arrow.Timestamp(v))
				}
			}
			r++
		}
		batches = append(batches, b)
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	ti, stF, addsF := flatLikeArrow(t, s, rec, batches, true, 256<<10)
	pf := openStored(t, stF, addsF[0].Path)
	for c := 0; c < 3; c++ {
		cc, _ := pf.MetaData().RowGroup(0).ColumnChunk(c)
		if encs := cc.Encodings(); !slices.Contains(encs, parquet.Encodings.DeltaBinaryPacked) {
			t.Errorf("column %d: encodings %v", c, encs)
		}
	}
	pf.Close()
	got, err := ReadConcat(ctx, stF, ti, addsF)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	for c := 0; c < 3; c++ {
		if !array.Equal(got.Column(c), rec.Column(c)) {
			t.Errorf("column %d differs", c)
		}
	}
}

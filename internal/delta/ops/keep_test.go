package ops

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// TestKeepRowsMatchesConcatenate: keepRows (run copies for flat columns)
// gives the same rows as concatenating slices of the kept runs, for
// fixed-width, string, binary, boolean (fallback) and list (fallback)
// columns, with and without nulls, on sliced input, and frees everything.
func TestKeepRowsMatchesConcatenate(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 3000
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "i64", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "i32", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "f64", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "b", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "dec", Type: &arrow.Decimal128Type{Precision: 20, Scale: 2}, Nullable: true},
		{Name: "bool", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "list", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32), Nullable: true},
	}, nil)
	for _, nulls := range []bool{false, true} {
		b := array.NewRecordBuilder(mem, schema)
		for i := 0; i < n; i++ {
			if nulls && i%7 == 3 {
				for _, f := range b.Fields() {
					f.AppendNull()
				}
				continue
			}
			b.Field(0).(*array.Int64Builder).Append(int64(i) * 3)
			b.Field(1).(*array.Int32Builder).Append(int32(i))
			b.Field(2).(*array.Float64Builder).Append(float64(i) / 4)
			b.Field(3).(*array.StringBuilder).Append(fmt.Sprintf("s%d", i%13) + string(make([]byte, i%5)))
			b.Field(4).(*array.BinaryBuilder).Append([]byte{byte(i), byte(i >> 8)}[:i%3])
			b.Field(5).(*array.TimestampBuilder).Append(arrow.Timestamp(i * 1000))
			b.Field(6).(*array.Decimal128Builder).Append(decimal128.FromI64(int64(i) - 500))
			b.Field(7).(*array.BooleanBuilder).Append(i%3 == 0)
			lb := b.Field(8).(*array.ListBuilder)
			lb.Append(true)
			lb.ValueBuilder().(*array.Int32Builder).AppendValues([]int32{int32(i), 1}[:i%3%2+1], nil)
		}
		full := b.NewRecordBatch()
		b.Release()
		rec := full.NewSlice(5, n-11) // offsets into the buffers
		full.Release()
		for _, dropAll := range []bool{false, true} {
			var drops []int
			for i := 0; i < int(rec.NumRows()); i++ {
				if dropAll || i == 0 || rng.IntN(40) == 0 {
					drops = append(drops, i)
				}
			}
			got, err := keepRows(mem, rec, drops)
			if err != nil {
				t.Fatal(err)
			}
			if dropAll {
				if got != nil {
					t.Fatalf("every row dropped: got %d rows", got.NumRows())
				}
				continue
			}
			// Expected: the same rows through slices and Concatenate.
			isDrop := map[int]bool{}
			for _, d := range drops {
				isDrop[d] = true
			}
			var parts []arrow.RecordBatch
			for i := 0; i < int(rec.NumRows()); i++ {
				if !isDrop[i] {
					parts = append(parts, rec.NewSlice(int64(i), int64(i+1)))
				}
			}
			for c := 0; c < int(rec.NumCols()); c++ {
				var cs []arrow.Array
				for _, p := range parts {
					cs = append(cs, p.Column(c))
				}
				want, err := array.Concatenate(cs, mem)
				if err != nil {
					t.Fatal(err)
				}
				if !array.Equal(got.Column(c), want) {
					t.Fatalf("nulls=%v column %s: got %v, want %v", nulls, schema.Field(c).Name, got.Column(c), want)
				}
				if got.Column(c).NullN() != want.NullN() {
					t.Fatalf("column %s: %d nulls, want %d", schema.Field(c).Name, got.Column(c).NullN(), want.NullN())
				}
				want.Release()
			}
			for _, p := range parts {
				p.Release()
			}
			got.Release()
		}
		rec.Release()
	}
}

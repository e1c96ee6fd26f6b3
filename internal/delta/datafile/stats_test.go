package datafile

import (
	"math"
	"math/rand"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/delta"
)

// TestStatsFastPathMatchesRowPath checks that the typed min/max loops give
// the stats the per-row path gives, over batches with nulls, NaN, ±Inf,
// negative zero and invalid UTF-8.
func TestStatsFastPathMatchesRowPath(t *testing.T) {
	fields := []*delta.StructField{
		{Name: "i8", Type: delta.Byte, Nullable: true},
		{Name: "i16", Type: delta.Short, Nullable: true},
		{Name: "i32", Type: delta.Integer, Nullable: true},
		{Name: "i64", Type: delta.Long, Nullable: true},
		{Name: "f32", Type: delta.Float, Nullable: true},
		{Name: "f64", Type: delta.Double, Nullable: true},
		{Name: "s", Type: delta.String, Nullable: true},
		{Name: "d", Type: delta.Date, Nullable: true},
		{Name: "ts", Type: delta.Timestamp, Nullable: true},
		{Name: "dec", Type: &delta.DecimalType{Precision: 30, Scale: 2}, Nullable: true},
	}
	as, err := ArrowSchema(&delta.StructType{Fields: fields})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	specials := []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), 0}
	strs := []string{"", "a", "zz", "é", "\xff\xfe", "abc", "b"}
	for trial := 0; trial < 200; trial++ {
		nbatch := 1 + rng.Intn(3)
		var batches [][]arrow.Array
		for b := 0; b < nbatch; b++ {
			rb := array.NewRecordBuilder(memory.DefaultAllocator, as)
			n := rng.Intn(6)
			for i := 0; i < n; i++ {
				null := rng.Intn(4) == 0
				for c, fb := range rb.Fields() {
					if null && rng.Intn(2) == 0 {
						fb.AppendNull()
						continue
					}
					v := rng.Int63n(200) - 100
					switch c {
					case 0:
						fb.(*array.Int8Builder).Append(int8(v))
					case 1:
						fb.(*array.Int16Builder).Append(int16(v))
					case 2:
						fb.(*array.Int32Builder).Append(int32(v))
					case 3:
						fb.(*array.Int64Builder).Append(v)
					case 4, 5:
						f := float64(v) / 3
						if rng.Intn(8) == 0 {
							f = specials[rng.Intn(len(specials))]
						}
						if c == 4 {
							fb.(*array.Float32Builder).Append(float32(f))
						} else {
							fb.(*array.Float64Builder).Append(f)
						}
					case 6:
						s := strs[rng.Intn(len(strs))]
						if s == "\xff\xfe" && rng.Intn(3) != 0 {
							s = "q"
						}
						fb.(*array.StringBuilder).Append(s)
					case 7:
						fb.(*array.Date32Builder).Append(arrow.Date32(v))
					case 8:
						fb.(*array.TimestampBuilder).Append(arrow.Timestamp(v * 1000))
					case 9:
						d := decimal128.FromI64(v)
						if rng.Intn(4) == 0 { // beyond 64 bits
							d = d.Mul(decimal128.FromI64(math.MaxInt64))
						}
						fb.(*array.Decimal128Builder).Append(d)
					}
				}
			}
			rec := rb.NewRecordBatch()
			rb.Release()
			batches = append(batches, rec.Columns())
			defer rec.Release()
		}
		fast := newStatsAcc(fields, mapNone, nil)
		slow := newStatsAcc(fields, mapNone, nil)
		for _, cols := range batches {
			fast.update(cols)
			slow.rows += int64(cols[0].Len())
			for i, n := range slow.nodes {
				n.update(cols[i], make([]bool, cols[i].Len())) // a non-nil mask takes the row path
			}
		}
		if f, s := fast.JSON(), slow.JSON(); f != s {
			t.Fatalf("trial %d: fast path %s, row path %s", trial, f, s)
		}
	}
}

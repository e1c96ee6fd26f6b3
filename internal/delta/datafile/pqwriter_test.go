package datafile

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/silt-dev/silt/internal/delta"
)

// TestColumnsWriterMatchesPqarrow: the parallel column encoder writes the
// same file as pqarrow.FileWriter for the same records (nulls, required
// columns, several row groups, dictionary fallback; writes above and below
// parallelMinRows).
func TestColumnsWriterMatchesPqarrow(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "g", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "v", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "b", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "d", Type: &arrow.Decimal128Type{Precision: 10, Scale: 2}, Nullable: true},
	}, nil)
	var recs []arrow.RecordBatch
	for r := 0; r < 4; r++ {
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		for i := 0; i < 6000; i++ {
			id := int64(r*6000 + i)
			b.Field(0).(*array.Int64Builder).Append(id)
			if id%7 == 0 {
				for c := 1; c < len(b.Fields()); c++ {
					b.Field(c).AppendNull()
				}
				continue
			}
			b.Field(1).(*array.Int32Builder).Append(int32(id % 13))
			b.Field(2).(*array.Float64Builder).Append(float64(id) / 3)
			b.Field(3).(*array.StringBuilder).Append(fmt.Sprintf("s-%d", id%(int64(r)*400+5)))
			b.Field(4).(*array.BooleanBuilder).Append(id%3 == 0)
			b.Field(5).(*array.TimestampBuilder).Append(arrow.Timestamp(id * 1000))
			b.Field(6).(*array.Decimal128Builder).AppendValueFromString(fmt.Sprintf("%d.%02d", id, id%100))
		}
		recs = append(recs, b.NewRecordBatch())
		b.Release()
	}
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd),
		parquet.WithDataPageSize(4096), parquet.WithDictionaryPageSizeLimit(4096),
		parquet.WithMaxRowGroupLength(10000), parquet.WithStats(true), parquet.WithCreatedBy("silt"),
		parquet.WithDictionaryFor("v", false))
	aprops := pqarrow.NewArrowWriterProperties()
	encode := func(fw pqFile, buf *bytes.Buffer) []byte {
		t.Helper()
		for _, r := range recs {
			if err := fw.WriteBuffered(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := fw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	var b1, b2 bytes.Buffer
	fw1, err := pqarrow.NewFileWriter(schema, &b1, props, aprops)
	if err != nil {
		t.Fatal(err)
	}
	fw2, err := newColumnsWriter(schema, &b2, props, aprops, 3)
	if err != nil {
		t.Fatal(err)
	}
	want, got := encode(fw1, &b1), encode(fw2, &b2)
	// pqarrow's own output is not byte-stable (the footer's page encoding
	// stats come from a map), so compare what the footer says per column
	// chunk and the rows.
	if len(want) != len(got) {
		t.Fatalf("parallel encoder wrote %d bytes, pqarrow %d", len(got), len(want))
	}
	describe := func(b []byte) string {
		t.Helper()
		pf, err := file.NewParquetReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer pf.Close()
		var out strings.Builder
		md := pf.MetaData()
		fmt.Fprintf(&out, "rows %d groups %d\n", md.NumRows, md.NumRowGroups())
		for g := 0; g < md.NumRowGroups(); g++ {
			rg := md.RowGroup(g)
			for c := 0; c < rg.NumColumns(); c++ {
				cc, err := rg.ColumnChunk(c)
				if err != nil {
					t.Fatal(err)
				}
				encs := fmt.Sprint(cc.Encodings())
				st, _ := cc.Statistics()
				stats := ""
				if st != nil {
					stats = fmt.Sprintf("%d %x %x", st.NullCount(), st.EncodeMin(), st.EncodeMax())
				}
				fmt.Fprintf(&out, "%d/%d: off %d dict %d size %d/%d n %d %s %s\n", g, c, cc.DataPageOffset(), cc.DictionaryPageOffset(),
					cc.TotalCompressedSize(), cc.TotalUncompressedSize(), cc.NumValues(), encs, stats)
			}
		}
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := fr.ReadTable(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer tbl.Release()
		for c := 0; c < int(tbl.NumCols()); c++ {
			for _, ch := range tbl.Column(c).Data().Chunks() {
				fmt.Fprintf(&out, "%s\n", ch)
			}
		}
		return out.String()
	}
	if w, g := describe(want), describe(got); w != g {
		t.Fatalf("parallel encoder's file differs from pqarrow's:\n%s\nvs\n%s", g[:min(len(g), 3000)], w[:min(len(w), 3000)])
	}
}

// TestMostlyDistinctColumnsSkipDictionary: a column whose first rows are
// mostly distinct is written plain from the start; a repetitive one keeps
// its dictionary.
func TestMostlyDistinctColumnsSkipDictionary(t *testing.T) {
	st := newStore(t)
	schema := &delta.StructType{Fields: []*delta.StructField{
		{Name: "id", Type: delta.Long, Nullable: true},
		{Name: "note", Type: delta.String, Nullable: true},
	}}
	as, _ := ArrowSchema(schema)
	b := array.NewRecordBuilder(memory.DefaultAllocator, as)
	defer b.Release()
	for i := 0; i < 20_000; i++ {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		b.Field(1).(*array.StringBuilder).Append(fmt.Sprintf("note-%d", i%100))
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	adds, err := Write(ctx, st, TableInfo{Schema: schema}, rec, WriteOptions{DataChange: true})
	if err != nil || len(adds) != 1 {
		t.Fatal(adds, err)
	}
	data, err := st.Get(ctx, adds[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	rg := pf.MetaData().RowGroup(0)
	for c, wantDict := range []bool{false, true} {
		cc, err := rg.ColumnChunk(c)
		if err != nil {
			t.Fatal(err)
		}
		if cc.HasDictionaryPage() != wantDict {
			t.Errorf("column %d: dictionary page %v, want %v (encodings %v)", c, cc.HasDictionaryPage(), wantDict, cc.Encodings())
		}
	}
}

// TestReadWholeOrRanged: a file reads the same through one Get (small
// files) and through ranged reads.
func TestReadWholeOrRanged(t *testing.T) {
	st := newStore(t)
	schema := &delta.StructType{Fields: []*delta.StructField{
		{Name: "id", Type: delta.Long, Nullable: true},
		{Name: "s", Type: delta.String, Nullable: true},
	}}
	as, _ := ArrowSchema(schema)
	b := array.NewRecordBuilder(memory.DefaultAllocator, as)
	defer b.Release()
	for i := 0; i < 5000; i++ {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		b.Field(1).(*array.StringBuilder).Append(fmt.Sprint("x", i%7))
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	ti := TableInfo{Schema: schema}
	adds, err := Write(ctx, st, ti, rec, WriteOptions{DataChange: true})
	if err != nil || len(adds) != 1 {
		t.Fatal(adds, err)
	}
	read := func(limit int64) string {
		t.Helper()
		defer func(old int64) { wholeReadBytes = old }(wholeReadBytes)
		wholeReadBytes = limit
		recs, err := Read(ctx, st, ti, adds[0])
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		for _, r := range recs {
			fmt.Fprint(&out, r)
			r.Release()
		}
		return out.String()
	}
	whole, ranged := read(1<<30), read(0)
	if whole != ranged || !strings.Contains(whole, "x6") {
		t.Fatalf("whole read %d chars, ranged %d; they differ", len(whole), len(ranged))
	}
}

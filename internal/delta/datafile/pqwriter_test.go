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

// columnsTestRecords are records for the columns writer tests (nulls,
// required columns, strings with few and with many distinct values).
func columnsTestRecords() (*arrow.Schema, []arrow.RecordBatch) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "g", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "v", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "b", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "d", Type: &arrow.Decimal128Type{Precision: 10, Scale: 2}, Nullable: true},
		{Name: "bin", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "req", Type: arrow.BinaryTypes.String},
	}, nil)
	var recs []arrow.RecordBatch
	for r := 0; r < 4; r++ {
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		for i := 0; i < 6000; i++ {
			id := int64(r*6000 + i)
			b.Field(0).(*array.Int64Builder).Append(id)
			b.Field(8).(*array.StringBuilder).Append(fmt.Sprintf("r-%d", id%(int64(r)*3+2)))
			if id%7 == 0 {
				for c := 1; c < 8; c++ {
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
			b.Field(7).(*array.BinaryBuilder).Append([]byte{byte(id % 11), 0, byte(id % 3)})
		}
		recs = append(recs, b.NewRecordBatch())
		b.Release()
	}
	return schema, recs
}

// describeParquet renders a file's rows and, per column chunk, encodings,
// value count and statistics; with layout also offsets and sizes.
func describeParquet(t *testing.T, b []byte, layout bool) string {
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
			if layout {
				fmt.Fprintf(&out, "%d/%d: off %d dict %d size %d/%d ", g, c, cc.DataPageOffset(), cc.DictionaryPageOffset(),
					cc.TotalCompressedSize(), cc.TotalUncompressedSize())
			}
			fmt.Fprintf(&out, "%d/%d: dict page %v n %d %s %s\n", g, c, cc.HasDictionaryPage(), cc.NumValues(), encs, stats)
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

func columnsTestProps() *parquet.WriterProperties {
	return parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd),
		parquet.WithDataPageSize(4096), parquet.WithDictionaryPageSizeLimit(4096),
		parquet.WithMaxRowGroupLength(10000), parquet.WithStats(true), parquet.WithCreatedBy("silt"),
		parquet.WithDictionaryFor("v", false))
}

func encodeColumnsTest(t *testing.T, fw pqFile, buf *bytes.Buffer, recs []arrow.RecordBatch) []byte {
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

// TestColumnsWriterMatchesPqarrow: the parallel column encoder, with
// pqarrow's dictionary encoding for every column, writes the same file as
// pqarrow.FileWriter for the same records (nulls, required columns,
// several row groups, dictionary fallback; writes above and below
// parallelMinRows).
func TestColumnsWriterMatchesPqarrow(t *testing.T) {
	schema, recs := columnsTestRecords()
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	props, aprops := columnsTestProps(), pqarrow.NewArrowWriterProperties()
	var b1, b2 bytes.Buffer
	fw1, err := pqarrow.NewFileWriter(schema, &b1, props, aprops)
	if err != nil {
		t.Fatal(err)
	}
	fw2, err := newColumnsWriter(schema, &b2, props, aprops, 3)
	if err != nil {
		t.Fatal(err)
	}
	clear(fw2.dicts) // pqarrow's encoder for every column
	want, got := encodeColumnsTest(t, fw1, &b1, recs), encodeColumnsTest(t, fw2, &b2, recs)
	// pqarrow's own output is not byte-stable (the footer's page encoding
	// stats come from a map), so compare what the footer says per column
	// chunk and the rows.
	if len(want) != len(got) {
		t.Fatalf("parallel encoder wrote %d bytes, pqarrow %d", len(got), len(want))
	}
	if w, g := describeParquet(t, want, true), describeParquet(t, got, true); w != g {
		t.Fatalf("parallel encoder's file differs from pqarrow's:\n%s\nvs\n%s", g[:min(len(g), 3000)], w[:min(len(w), 3000)])
	}
}

// TestColumnsWriterDictionaryColumns: with silt's own dictionary encoding
// of string and binary columns (dictColumn), the file has the rows, the
// encodings, the dictionary pages and the column chunk statistics of
// pqarrow's (including a column whose dictionary outgrows the page limit
// and falls back to plain), and data pages of about pqarrow's size.
func TestColumnsWriterDictionaryColumns(t *testing.T) {
	schema, recs := columnsTestRecords()
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	props, aprops := columnsTestProps(), pqarrow.NewArrowWriterProperties()
	var b1, b2 bytes.Buffer
	fw1, err := pqarrow.NewFileWriter(schema, &b1, props, aprops)
	if err != nil {
		t.Fatal(err)
	}
	fw2, err := newColumnsWriter(schema, &b2, props, aprops, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []int{3, 7, 8} {
		if fw2.dicts[c] == nil {
			t.Fatalf("column %d is not dictionary-encoded by silt", c)
		}
	}
	want, got := encodeColumnsTest(t, fw1, &b1, recs), encodeColumnsTest(t, fw2, &b2, recs)
	w, g := describeParquet(t, want, false), describeParquet(t, got, false)
	if w != g {
		t.Fatalf("file differs from pqarrow's:\n%s\nvs\n%s", g[:min(len(g), 4000)], w[:min(len(w), 4000)])
	}
	if !strings.Contains(g, "2/3: dict page true") || !strings.Contains(g, "PLAIN") {
		t.Fatalf("expected a dictionary and a plain fallback in column s:\n%s", g[:min(len(g), 3000)])
	}
	pages := func(b []byte, col int) []int {
		pf, err := file.NewParquetReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer pf.Close()
		var n []int
		for rg := 0; rg < pf.NumRowGroups(); rg++ {
			pr, err := pf.RowGroup(rg).GetColumnPageReader(col)
			if err != nil {
				t.Fatal(err)
			}
			for pr.Next() {
				n = append(n, int(pr.Page().NumValues()))
			}
		}
		return n
	}
	for _, c := range []int{3, 7, 8} {
		pw, pg := pages(want, c), pages(got, c)
		if len(pg) < len(pw)*3/4 || len(pg) > len(pw)*4/3+1 {
			t.Errorf("column %d: %d pages %v, pqarrow %d %v", c, len(pg), pg, len(pw), pw)
		}
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
	pf := openStored(t, st, adds[0].Path)
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

// TestColumnsWriterDictPendingBound: when the dictionary columns' pending
// indices pass dictPendingMax, the row group closes early; the rows are
// all there.
func TestColumnsWriterDictPendingBound(t *testing.T) {
	schema, recs := columnsTestRecords()
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	defer func(old int) { dictPendingMax = old }(dictPendingMax)
	dictPendingMax = 3 * 4 * 5000 // 5000 rows of the three dictionary columns
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd), parquet.WithStats(true))
	var buf bytes.Buffer
	fw, err := newColumnsWriter(schema, &buf, props, pqarrow.NewArrowWriterProperties(), 3)
	if err != nil {
		t.Fatal(err)
	}
	got := describeParquet(t, encodeColumnsTest(t, fw, &buf, recs), false)
	if !strings.HasPrefix(got, "rows 24000 groups 4\n") {
		t.Fatalf("want 24000 rows in 4 row groups (one a record of 6000 rows):\n%s", got[:min(len(got), 2000)])
	}
	var b2 bytes.Buffer
	fw2, err := pqarrow.NewFileWriter(schema, &b2, props, pqarrow.NewArrowWriterProperties())
	if err != nil {
		t.Fatal(err)
	}
	want := describeParquet(t, encodeColumnsTest(t, fw2, &b2, recs), false)
	if i := strings.Index(got, "[0 1 2"); i < 0 || got[i:] != want[strings.Index(want, "[0 1 2"):] {
		t.Fatal("rows differ from pqarrow's")
	}
}

// TestSortedRunsDeltaBinaryPacked: rows concatenated from files each
// sorted by id (runs of 1000) get a DELTA_BINARY_PACKED id column with
// SortedRuns, and a plain one without; a column that descends every 100
// rows stays dictionary-encoded; the rows read back the same.
func TestSortedRunsDeltaBinaryPacked(t *testing.T) {
	st := newStore(t)
	schema := &delta.StructType{Fields: []*delta.StructField{
		{Name: "id", Type: delta.Long, Nullable: true},
		{Name: "grp", Type: delta.Integer, Nullable: true},
		{Name: "ts", Type: delta.TimestampNTZ, Nullable: true},
	}}
	as, _ := ArrowSchema(schema)
	b := array.NewRecordBuilder(memory.DefaultAllocator, as)
	defer b.Release()
	for f := 0; f < 20; f++ {
		base := int64((f*7919)%20) * 1000 // runs in shuffled order
		for i := int64(0); i < 1000; i++ {
			b.Field(0).(*array.Int64Builder).Append(base + i)
			b.Field(1).(*array.Int32Builder).Append(int32(i % 100))
			b.Field(2).(*array.TimestampBuilder).Append(arrow.Timestamp((base + i) * 1e6))
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	ti := TableInfo{Schema: schema}
	encodings := func(opts WriteOptions) ([]string, string) {
		t.Helper()
		opts.DataChange = true
		adds, err := Write(ctx, st, ti, rec, opts)
		if err != nil || len(adds) != 1 {
			t.Fatal(adds, err)
		}
		pf := openStored(t, st, adds[0].Path)
		defer pf.Close()
		var encs []string
		for c := 0; c < 3; c++ {
			cc, err := pf.MetaData().RowGroup(0).ColumnChunk(c)
			if err != nil {
				t.Fatal(err)
			}
			encs = append(encs, fmt.Sprint(cc.Encodings()))
		}
		recs, err := Read(ctx, st, ti, adds[0])
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		for _, r := range recs {
			fmt.Fprint(&out, r)
			r.Release()
		}
		return encs, out.String()
	}
	runs, rowsRuns := encodings(WriteOptions{SnapshotEncodings: true, SortedRuns: true})
	plain, rowsPlain := encodings(WriteOptions{SnapshotEncodings: true})
	t.Logf("SortedRuns: %v; without: %v", runs, plain)
	if !strings.Contains(runs[0], "DELTA_BINARY_PACKED") || !strings.Contains(runs[2], "DELTA_BINARY_PACKED") {
		t.Errorf("id and ts are sorted runs of 1000 but are written %v", runs)
	}
	if strings.Contains(runs[1], "DELTA_BINARY_PACKED") || !strings.Contains(runs[1], "DICTIONARY") {
		t.Errorf("grp descends every 100 rows but is written %s", runs[1])
	}
	if strings.Contains(plain[0], "DELTA_BINARY_PACKED") {
		t.Errorf("without SortedRuns id is written %s", plain[0])
	}
	if rowsRuns != rowsPlain || !strings.Contains(rowsRuns, "19999") {
		t.Fatal("rows differ between the encodings")
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

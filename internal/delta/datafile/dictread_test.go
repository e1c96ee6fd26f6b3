package datafile

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/delta"
)

// TestReadDictionaryStrings: string and binary columns stored with
// dictionary pages are read as dictionaries and unpacked (dictReadProps,
// unpackDictionary), across row groups with different dictionaries inside
// one read batch, with nulls, with a column whose dictionary overflows and
// falls back to plain pages mid-chunk, and on a sliced read; the values
// are the written ones and no buffer leaks.
func TestReadDictionaryStrings(t *testing.T) {
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const n = 2500
	as := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "b", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "big", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	sVal := func(i int) *string {
		if i%5 == 2 {
			return nil
		}
		v := fmt.Sprintf("s-%d", (i*7)%31) // row groups see the values in different orders
		return &v
	}
	bVal := func(i int) []byte {
		if i%3 == 0 {
			return nil
		}
		return []byte{byte(i % 4), 0, byte(i % 9)}[:i%3+1]
	}
	bigVal := func(i int) string { return fmt.Sprintf("distinct-value-%08d", i) }
	rb := array.NewRecordBuilder(memory.DefaultAllocator, as)
	for i := 0; i < n; i++ {
		rb.Field(0).(*array.Int64Builder).Append(int64(i))
		if v := sVal(i); v != nil {
			rb.Field(1).(*array.StringBuilder).Append(*v)
		} else {
			rb.Field(1).AppendNull()
		}
		if v := bVal(i); v != nil {
			rb.Field(2).(*array.BinaryBuilder).Append(v)
		} else {
			rb.Field(2).AppendNull()
		}
		rb.Field(3).(*array.StringBuilder).Append(bigVal(i))
	}
	rec := rb.NewRecordBatch()
	rb.Release()
	defer rec.Release()
	var buf bytes.Buffer
	props := parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(700), parquet.WithDictionaryDefault(true),
		parquet.WithDictionaryPageSizeLimit(2048), parquet.WithDataPageSize(1024))
	fw, err := pqarrow.NewFileWriter(as, &buf, props, pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "t/f.parquet", buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	// The file is what the test means: several row groups, s and b read
	// as dictionaries, big's dictionary overflowing into plain pages.
	pf, err := file.NewParquetReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	rp := dictReadProps(pf, 64<<10)
	if pf.NumRowGroups() < 3 || !rp.ReadDict(1) || !rp.ReadDict(2) || rp.ReadDict(0) {
		t.Fatalf("%d row groups, read as dictionaries: s %v b %v id %v", pf.NumRowGroups(), rp.ReadDict(1), rp.ReadDict(2), rp.ReadDict(0))
	}
	cc, _ := pf.MetaData().RowGroup(0).ColumnChunk(3)
	plain := false
	for _, e := range cc.Encodings() {
		plain = plain || e == parquet.Encodings.Plain
	}
	if !plain || !rp.ReadDict(3) {
		t.Fatalf("big: encodings %v (want a plain fallback), read as dictionary %v", cc.Encodings(), rp.ReadDict(3))
	}
	pf.Close()

	schema := &delta.StructType{Fields: []*delta.StructField{
		{Name: "id", Type: delta.Long, Nullable: false},
		{Name: "s", Type: delta.String, Nullable: true},
		{Name: "b", Type: delta.Binary, Nullable: true},
		{Name: "big", Type: delta.String, Nullable: true},
	}}
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	ti := TableInfo{Root: "t", Schema: schema, Allocator: mem}
	add := &delta.Add{Path: "f.parquet", Size: int64(buf.Len()), PartitionValues: map[string]*string{}}
	recs, err := Read(ctx, st, ti, add)
	if err != nil {
		t.Fatal(err)
	}
	row := 0
	for _, r := range recs {
		ids := r.Column(0).(*array.Int64)
		ss := r.Column(1).(*array.String)
		bs := r.Column(2).(*array.Binary)
		bigs := r.Column(3).(*array.String)
		for k := 0; k < int(r.NumRows()); k++ {
			i := int(ids.Value(k))
			if i != row {
				t.Fatalf("row %d has id %d", row, i)
			}
			if v := sVal(i); (v == nil) != ss.IsNull(k) || (v != nil && ss.Value(k) != *v) {
				t.Fatalf("row %d: s %q (null %v), want %v", i, ss.Value(k), ss.IsNull(k), v)
			}
			if v := bVal(i); (v == nil) != bs.IsNull(k) || (v != nil && !bytes.Equal(bs.Value(k), v)) {
				t.Fatalf("row %d: b %v (null %v), want %v", i, bs.Value(k), bs.IsNull(k), v)
			}
			if bigs.IsNull(k) || bigs.Value(k) != bigVal(i) {
				t.Fatalf("row %d: big %q, want %q", i, bigs.Value(k), bigVal(i))
			}
			row++
		}
		r.Release()
	}
	if row != n {
		t.Fatalf("read %d rows, want %d", row, n)
	}
}

// TestUnpackDictionarySliced: unpackDictionary honours the array's offset
// (a slice of a dictionary array) for indices and validity.
func TestUnpackDictionarySliced(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	dt := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
	b := array.NewDictionaryBuilder(mem, dt).(*array.BinaryDictionaryBuilder)
	want := []string{"x", "", "yy", "-", "x", "zzz", "-", "yy", "x", "-", "w"}
	for _, v := range want {
		if v == "-" {
			b.AppendNull()
		} else if err := b.AppendString(v); err != nil {
			t.Fatal(err)
		}
	}
	full := b.NewArray()
	b.Release()
	defer full.Release()
	for _, r := range [][2]int{{0, 11}, {3, 10}, {5, 6}, {4, 4}} {
		sl := array.NewSlice(full, int64(r[0]), int64(r[1]))
		d, err := unpackDictionary(mem, sl.Data())
		if err != nil {
			t.Fatal(err)
		}
		got := array.MakeFromData(d).(*array.String)
		d.Release()
		if got.Len() != r[1]-r[0] {
			t.Fatalf("slice %v: %d values", r, got.Len())
		}
		for k := 0; k < got.Len(); k++ {
			w := want[r[0]+k]
			if (w == "-") != got.IsNull(k) || (w != "-" && got.Value(k) != w) {
				t.Fatalf("slice %v, value %d: %q (null %v), want %q", r, k, got.Value(k), got.IsNull(k), w)
			}
		}
		if nulls := sl.NullN(); got.NullN() != nulls {
			t.Fatalf("slice %v: %d nulls, want %d", r, got.NullN(), nulls)
		}
		got.Release()
		sl.Release()
	}
}

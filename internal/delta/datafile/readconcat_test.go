package datafile

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/delta"
)

// concatWant is what ReadConcat must return: Read of each file, in order.
func concatWant(t *testing.T, st blob.Store, ti TableInfo, adds []*delta.Add) []string {
	t.Helper()
	var rows []string
	for _, a := range adds {
		recs, err := Read(ctx, st, ti, a)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, recJSON(t, recs...)...)
		for _, r := range recs {
			r.Release()
		}
	}
	return rows
}

func checkConcat(t *testing.T, st blob.Store, ti TableInfo, adds []*delta.Add) {
	t.Helper()
	want := concatWant(t, st, ti, adds)
	rec, err := ReadConcat(ctx, st, ti, adds)
	if err != nil {
		t.Fatal(err)
	}
	if rec == nil {
		if len(want) != 0 {
			t.Fatalf("nil record, want %d rows", len(want))
		}
		return
	}
	defer rec.Release()
	as, _ := ArrowSchema(ti.Schema)
	if !rec.Schema().Equal(as) {
		t.Fatalf("schema\n%s\nwant\n%s", rec.Schema(), as)
	}
	for i, c := range rec.Columns() {
		if v, ok := c.(interface{ ValidateFull() error }); ok {
			if err := v.ValidateFull(); err != nil {
				t.Fatalf("column %d: %v", i, err)
			}
		}
	}
	got := recJSON(t, rec)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rows differ (in order)\ngot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

var concatFields = []string{
	fld("s", "string", true), fld("l", "long", false), fld("i", "integer", true), fld("f", "float", true),
	fld("d", "double", true), fld("bo", "boolean", true), fld("bi", "binary", true), fld("dt", "date", true),
	fld("ts", "timestamp", true), fld("tn", "timestamp_ntz", true), fld("sh", "short", true), fld("by", "byte", true),
	fld("d9", "decimal(9,2)", true), fld("d18", "decimal(18,3)", true), fld("d38", "decimal(38,6)", true),
	fld("p", "string", true),
}

// concatRows returns n rows from id base (nulls every 3rd row in nullable
// columns when nulls is set).
func concatRows(base, n int, nulls bool) string {
	var b strings.Builder
	b.WriteString("[")
	for k := 0; k < n; k++ {
		id := base + k
		if k > 0 {
			b.WriteString(",")
		}
		if nulls && id%3 == 0 {
			fmt.Fprintf(&b, `{"s":null,"l":%d,"i":null,"f":null,"d":null,"bo":null,"bi":null,"dt":null,"ts":null,"tn":null,"sh":null,"by":null,"d9":null,"d18":null,"d38":null,"p":"x"}`, id)
			continue
		}
		fmt.Fprintf(&b, `{"s":"v%d","l":%d,"i":%d,"f":%d.5,"d":%d.25,"bo":%t,"bi":"AQI=","dt":"2021-09-%02d","ts":"2021-09-08T11:11:%02d.123456Z","tn":"2021-09-08T11:11:%02d.5","sh":%d,"by":%d,"d9":"%d.%02d","d18":"-%d.%03d","d38":"%d%d.%06d","p":"x"}`,
			id%7, id, -id, id, id, id%2 == 0, 1+id%28, id%60, id%60, int16(id*7), int8(id),
			id%1000000-500000, id%100, id*1000003, id%1000, id%97, id*1000000007, id%1000000)
	}
	b.WriteString("]")
	return b.String()
}

func TestReadConcat(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	s := mustSchema(t, concatFields...)
	ti := TableInfo{Root: "tbl", Schema: s, PartitionColumns: []string{"p"}, Allocator: mem}
	as, _ := ArrowSchema(s)
	if _, ok := newConcatReader(ti, as, []*delta.Add{{}}); !ok {
		t.Fatal("flat schema does not take the direct path")
	}
	var adds []*delta.Add
	write := func(rows string) {
		rec := recFromJSON(t, mem, s, rows)
		defer rec.Release()
		a, err := Write(ctx, st, ti, rec, WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, a...)
	}
	write(concatRows(0, 100, true))
	write(concatRows(100, 5000, false)) // dictionary off for l (distinct), on for others
	write(concatRows(5100, 1, true))

	// Files shaped like other writers': several row groups and pages,
	// required columns, no dictionaries, a column missing, a column
	// differing in case, millisecond timestamps (converted by Read).
	dataFields := func(drop string, rename map[string]string, nullable bool, tsUnit arrow.TimeUnit) *arrow.Schema {
		var fs []arrow.Field
		for _, f := range as.Fields() {
			if f.Name == "p" || f.Name == drop {
				continue
			}
			if r, ok := rename[f.Name]; ok {
				f.Name = r
			}
			if f.Name == "ts" && tsUnit != arrow.Microsecond {
				f.Type = &arrow.TimestampType{Unit: tsUnit, TimeZone: "UTC"}
			}
			f.Nullable = nullable || f.Name == "s"
			fs = append(fs, f)
		}
		return arrow.NewSchema(fs, nil)
	}
	raw := func(name string, fs *arrow.Schema, rows string, props ...parquet.WriterProperty) {
		rec, _, err := array.RecordFromJSON(mem, fs, strings.NewReader(rows))
		if err != nil {
			t.Fatal(err)
		}
		defer rec.Release()
		props = append(props, parquet.WithAllocator(mem))
		a := writeRaw(t, st, "tbl/"+name, rec, parquet.NewWriterProperties(props...), pqarrow.DefaultWriterProps())
		a.Path = name
		a.PartitionValues = map[string]*string{"p": adds[0].PartitionValues["p"]}
		adds = append(adds, a)
	}
	raw("groups.parquet", dataFields("", nil, true, arrow.Microsecond), concatRows(6000, 3000, true),
		parquet.WithMaxRowGroupLength(700), parquet.WithDataPageSize(512), parquet.WithDictionaryDefault(false))
	raw("required.parquet", dataFields("", nil, false, arrow.Microsecond), concatRows(9000, 50, false))
	raw("missing.parquet", dataFields("d", map[string]string{"bo": "BO"}, true, arrow.Microsecond), concatRows(9100, 20, true))
	raw("millis.parquet", dataFields("", nil, true, arrow.Millisecond), strings.ReplaceAll(concatRows(9200, 20, true), ".123456Z", ".123Z"))
	raw("empty.parquet", dataFields("", nil, true, arrow.Microsecond), "[]")
	if !strings.Contains(adds[7].Path, "empty") {
		t.Fatalf("adds[7] is %s", adds[7].Path)
	}
	// A string column stored as plain BYTE_ARRAY (no String annotation):
	// Read converts it.
	bin := dataFields("", nil, true, arrow.Microsecond)
	bf := bin.Fields()
	bf[0].Type = arrow.BinaryTypes.Binary
	raw("binary.parquet", arrow.NewSchema(bf, nil), regexp.MustCompile(`"s":"v\d"`).ReplaceAllString(concatRows(9500, 10, true), `"s":"djE="`))
	if _, ok := fileLeafOf(t, st, "tbl/binary.parquet", "s", as); ok {
		t.Fatal("an unannotated BYTE_ARRAY column is decoded as a string column")
	}
	// Decimals stored as INT32/INT64 (precision <= 18), as other writers do.
	raw("decint.parquet", dataFields("", nil, true, arrow.Microsecond), concatRows(9050, 40, true), parquet.WithStoreDecimalAsInteger(true))
	for _, c := range []string{"d9", "d18"} {
		if _, ok := fileLeafOf(t, st, "tbl/decint.parquet", c, as); !ok {
			t.Fatalf("integer-stored decimal %s does not take the direct path", c)
		}
	}
	raw("v2.parquet", dataFields("", nil, true, arrow.Microsecond), concatRows(9300, 2000, true),
		parquet.WithDataPageVersion(parquet.DataPageV2), parquet.WithDataPageSize(4096), parquet.WithDictionaryPageSizeLimit(64))
	if _, ok := fileLeafOf(t, st, "tbl/millis.parquet", "ts", as); ok {
		t.Fatal("millisecond timestamps would be read as microseconds")
	}
	for _, c := range []string{"ts", "sh", "by", "s", "bi", "dt", "d9", "d18", "d38"} {
		if _, ok := fileLeafOf(t, st, "tbl/groups.parquet", c, as); !ok {
			t.Fatalf("column %s does not take the direct path", c)
		}
	}

	// Delta encoding (not decoded directly) in the second column: the
	// first column's rows of this file are dropped and the file is read
	// again through Read. (arrow-go's delta decoder leaks 64-byte buffers
	// to its allocator, so this read is not checked for leaks.)
	raw("delta.parquet", dataFields("", nil, true, arrow.Microsecond), concatRows(9400, 300, true),
		parquet.WithDictionaryDefault(false), parquet.WithEncodingFor("l", parquet.Encodings.DeltaBinaryPacked))
	deltaEnc := adds[len(adds)-1]
	adds = adds[:len(adds)-1]
	tiGo := ti
	tiGo.Allocator = memory.NewGoAllocator()
	checkConcat(t, st, tiGo, []*delta.Add{adds[0], deltaEnc, adds[4]})

	// A file with a deletion vector (read through Read, rows dropped).
	dv := *adds[1]
	del := encodeBitmapArray([]uint64{0, 1, 2, 4999})
	dv.DeletionVector = &delta.DeletionVector{StorageType: "i", PathOrInlineDv: z85Encode(del), SizeInBytes: int32(len(del)), Cardinality: 4}
	adds = append(adds, &dv)

	checkConcat(t, st, ti, adds)
	checkConcat(t, st, ti, adds[3:4]) // one file of several row groups
	checkConcat(t, st, ti, adds[7:8]) // only an empty file: nil

	// Different partition values: Read per file, concatenated.
	other := *adds[0]
	y := "y"
	other.PartitionValues = map[string]*string{"p": &y}
	checkConcat(t, st, ti, []*delta.Add{adds[0], &other, adds[2]})

	// Lying stats do not make it allocate for them.
	huge := *adds[0]
	huge.Stats = `{"numRecords":99999999999999999999999}`
	g, _ := newConcatReader(ti, as, []*delta.Add{&huge})
	if g.hint > maxConcatHint {
		t.Fatalf("hint %d", g.hint)
	}
	checkConcat(t, st, ti, []*delta.Add{&huge, adds[2]})

	// A table with a column type the direct path does not decode.
	s2 := mustSchema(t, append([]string{fld("arr", `{"type":"array","elementType":"long","containsNull":true}`, true)}, concatFields...)...)
	ti2 := TableInfo{Root: "tbl", Schema: s2, PartitionColumns: []string{"p"}, Allocator: mem}
	as2, _ := ArrowSchema(s2)
	if _, ok := newConcatReader(ti2, as2, adds); ok {
		t.Fatal("array column takes the direct path")
	}
	checkConcat(t, st, ti2, adds)
}

func TestReadConcatColumnMapping(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	f := strings.Replace(fld("id", "long", true), `"metadata":{}`, `"metadata":{"delta.columnMapping.id":1,"delta.columnMapping.physicalName":"col-1"}`, 1)
	s := mustSchema(t, f)
	ti := TableInfo{Schema: s, Config: map[string]string{"delta.columnMapping.mode": "name"}, Allocator: mem}
	as, _ := ArrowSchema(s)
	if _, ok := newConcatReader(ti, as, []*delta.Add{{}}); ok {
		t.Fatal("column mapping takes the direct path")
	}
	var adds []*delta.Add
	for i := 0; i < 3; i++ {
		rec := recFromJSON(t, mem, s, fmt.Sprintf(`[{"id":%d},{"id":null}]`, i))
		a, err := Write(ctx, st, ti, rec, WriteOptions{})
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, a...)
	}
	checkConcat(t, st, ti, adds)
}

func fileLeafOf(t *testing.T, st blob.Store, key, col string, as *arrow.Schema) (int, bool) {
	t.Helper()
	pf := openStored(t, st, key)
	defer pf.Close()
	i := as.FieldIndices(col)[0]
	return fileLeaf(pf.MetaData().Schema, &colAcc{name: col, dt: as.Field(i).Type})
}

func TestReadConcatCorrupt(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	ti, add := dvTable(t, st, mem, 2000)
	rel, _ := DecodeForTest(add.Path)
	data, err := st.Get(ctx, rel)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"truncated.parquet": data[:len(data)/2],
		"garbage.parquet":   bytes.Repeat([]byte("PAR1"), 20),
		"empty.parquet":     nil,
	} {
		if err := st.Put(ctx, name, b); err != nil {
			t.Fatal(err)
		}
		rec, err := ReadConcat(ctx, st, ti, []*delta.Add{add, {Path: name, Size: int64(len(b))}})
		if err == nil {
			rec.Release()
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
}

func TestRecycler(t *testing.T) {
	var r recycler
	a := r.Allocate(100)
	if len(a) != 100 || cap(a) != 128 {
		t.Fatalf("len %d cap %d", len(a), cap(a))
	}
	a[0] = 7
	r.Free(a)
	b := r.Allocate(120)
	if &b[:1][0] != &a[:1][0] || b[0] != 0 {
		t.Fatal("freed buffer not reused, or not cleared")
	}
	b = r.Reallocate(128, b)
	c := r.Reallocate(1000, b)
	if len(c) != 1000 || cap(c) != 1024 {
		t.Fatalf("len %d cap %d", len(c), cap(c))
	}
	r.Free(make([]byte, 100)) // not a power of two: dropped
	if len(r.free[100]) != 0 {
		t.Fatal("kept a foreign buffer")
	}
	var _ memory.Allocator = &r
}

func openBytes(data []byte) (*file.Reader, error) {
	return file.NewParquetReader(bytes.NewReader(data))
}

// openStored opens the Parquet file stored at key; the caller closes it.
func openStored(t *testing.T, st blob.Store, key string) *file.Reader {
	t.Helper()
	data, err := st.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := openBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	return pf
}

func TestDecodeHybrid(t *testing.T) {
	// The Parquet spec's bit-packing example (0..7 at width 3), then a run
	// of five 4s, then a bit-packed group of which only 2 values are used.
	src := []byte{3, 0x88, 0xC6, 0xFA, 10, 4, 3, 0x05, 0, 0}
	out := make([]uint32, 15)
	if err := decodeHybrid(src, 3, out); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(out); got != "[0 1 2 3 4 5 6 7 4 4 4 4 4 5 0]" {
		t.Fatalf("decoded %s", got)
	}
	for _, bad := range [][]byte{{}, {3, 0x88}, {10}, {0x80}} {
		if err := decodeHybrid(bad, 3, make([]uint32, 8)); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

func TestAllDefined(t *testing.T) {
	for _, c := range []struct {
		defs []byte
		n    int
		want bool
	}{
		{[]byte{200, 1, 1}, 100, true}, // run of 100 ones
		{[]byte{200, 1, 1}, 101, false},
		{[]byte{200, 1, 0}, 100, false}, // run of 100 zeros
		{[]byte{3, 0xff}, 8, false},     // bit-packed
		{[]byte{200, 1}, 100, false},    // value missing
		{nil, 1, false},
	} {
		if got := allDefined(c.defs, c.n); got != c.want {
			t.Errorf("allDefined(%v, %d) = %v", c.defs, c.n, got)
		}
	}
}

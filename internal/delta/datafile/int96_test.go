package datafile

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/schema"

	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/delta"
)

// toInt96 encodes t as Spark does: nanoseconds of the day, Julian day.
func toInt96(t time.Time) parquet.Int96 {
	sec := t.Unix()
	days := floorDiv(sec, 86400)
	v := parquet.NewInt96([3]uint32{0, 0, uint32(days + julianUnixEpoch)})
	v.SetNanoSeconds((sec-days*86400)*1e9 + int64(t.Nanosecond()))
	return v
}

// int96Row is one row of the test file: id INT64 required, ts INT96
// optional (nil = null), tsr INT96 required, st optional group { ts INT96
// optional } (st is null when stNull, st.ts null when nested is nil).
type int96Row struct {
	id     int64
	ts     *time.Time
	tsr    time.Time
	stNull bool
	nested *time.Time
}

// writeInt96File writes rowGroups with the low-level writer (as Spark lays
// them out) and returns its add. The field ids are 1 (id), 2 (ts),
// 3 (tsr), 4 (st) and 5 (st.ts).
func writeInt96File(t *testing.T, st *local.Store, key string, rowGroups [][]int96Row) *delta.Add {
	t.Helper()
	must := func(n schema.Node, err error) schema.Node {
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	nested := must(schema.NewGroupNode("st", parquet.Repetitions.Optional,
		schema.FieldList{schema.NewInt96Node("ts", parquet.Repetitions.Optional, 5)}, 4))
	root := must(schema.NewGroupNode("spark_schema", parquet.Repetitions.Required, schema.FieldList{
		must(schema.NewPrimitiveNode("id", parquet.Repetitions.Required, parquet.Types.Int64, 1, -1)),
		schema.NewInt96Node("ts", parquet.Repetitions.Optional, 2),
		schema.NewInt96Node("tsr", parquet.Repetitions.Required, 3),
		nested,
	}, -1)).(*schema.GroupNode)
	var buf bytes.Buffer
	pw := file.NewParquetWriter(&buf, root, file.WithWriterProps(parquet.NewWriterProperties(
		parquet.WithDictionaryDefault(false), parquet.WithDataPageSize(4096))))
	for _, rows := range rowGroups {
		rg := pw.AppendRowGroup()
		var ids []int64
		var ts, tsr, nts []parquet.Int96
		var tsDef, nDef []int16
		for _, r := range rows {
			ids = append(ids, r.id)
			if r.ts != nil {
				ts = append(ts, toInt96(*r.ts))
				tsDef = append(tsDef, 1)
			} else {
				tsDef = append(tsDef, 0)
			}
			tsr = append(tsr, toInt96(r.tsr))
			switch {
			case r.stNull:
				nDef = append(nDef, 0)
			case r.nested == nil:
				nDef = append(nDef, 1)
			default:
				nDef = append(nDef, 2)
				nts = append(nts, toInt96(*r.nested))
			}
		}
		write := func(f func(cw file.ColumnChunkWriter) error) {
			cw, err := rg.NextColumn()
			if err != nil {
				t.Fatal(err)
			}
			if err := f(cw); err != nil {
				t.Fatal(err)
			}
			if err := cw.Close(); err != nil {
				t.Fatal(err)
			}
		}
		write(func(cw file.ColumnChunkWriter) error {
			_, err := cw.(*file.Int64ColumnChunkWriter).WriteBatch(ids, nil, nil)
			return err
		})
		write(func(cw file.ColumnChunkWriter) error {
			_, err := cw.(*file.Int96ColumnChunkWriter).WriteBatch(ts, tsDef, nil)
			return err
		})
		write(func(cw file.ColumnChunkWriter) error {
			_, err := cw.(*file.Int96ColumnChunkWriter).WriteBatch(tsr, nil, nil)
			return err
		})
		write(func(cw file.ColumnChunkWriter) error {
			_, err := cw.(*file.Int96ColumnChunkWriter).WriteBatch(nts, nDef, nil)
			return err
		})
		if err := rg.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, key, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	return &delta.Add{Path: key, Size: int64(buf.Len()), PartitionValues: map[string]*string{}}
}

// scanColumns reads add and returns every column as int64 values (nil for
// null): timestamps in µs, ids as they are.
func scanColumns(t *testing.T, st *local.Store, ti TableInfo, add *delta.Add) ([][]*int64, error) {
	t.Helper()
	want, err := ArrowSchema(ti.Schema)
	if err != nil {
		t.Fatal(err)
	}
	cols := make([][]*int64, len(ti.Schema.Fields))
	err = Scan(ctx, st, ti, []*delta.Add{add}, func(r arrow.Record) error {
		if !r.Schema().Equal(want) {
			t.Fatalf("schema\n%s\nwant\n%s", r.Schema(), want)
		}
		for i := range cols {
			a := r.Column(i)
			for k := 0; k < a.Len(); k++ {
				if a.IsNull(k) {
					cols[i] = append(cols[i], nil)
					continue
				}
				var v int64
				switch a := a.(type) {
				case *array.Timestamp:
					v = int64(a.Value(k))
				case *array.Int64:
					v = a.Value(k)
				default:
					t.Fatalf("column %d: unexpected %T", i, a)
				}
				cols[i] = append(cols[i], &v)
			}
		}
		return nil
	})
	return cols, err
}

var int96Extremes = []time.Time{
	time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
	time.Date(1677, 9, 20, 0, 0, 0, 0, time.UTC), // 1677-09-21 minus one day
	time.Date(2262, 4, 12, 0, 0, 0, 0, time.UTC),
	time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
	time.Date(2024, 2, 29, 0, 0, 0, 123456789, time.UTC),     // sub-µs part dropped
	time.Date(1969, 12, 31, 23, 59, 59, 999999500, time.UTC), // rounds down, not towards zero
	time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
}

func ptr[T any](v T) *T { return &v }

// extremeRows returns n rows cycling through int96Extremes, every third ts
// null; ids start at first.
func extremeRows(first, n int) []int96Row {
	rows := make([]int96Row, n)
	for i := range rows {
		id := first + i
		tv := int96Extremes[id%len(int96Extremes)]
		rows[i] = int96Row{id: int64(id), tsr: int96Extremes[(id+1)%len(int96Extremes)], nested: ptr(time.Unix(int64(id), 0).UTC())}
		if id%3 != 0 {
			rows[i].ts = &tv
		}
	}
	return rows
}

func checkExtremeRows(t *testing.T, cols [][]*int64, ids []int64) {
	t.Helper()
	if len(cols[0]) != len(ids) {
		t.Fatalf("%d rows, want %d", len(cols[0]), len(ids))
	}
	for k, id := range ids {
		if cols[0][k] == nil || *cols[0][k] != id {
			t.Fatalf("row %d: id %v, want %d", k, cols[0][k], id)
		}
		wantTS := int96Extremes[int(id)%len(int96Extremes)].UnixMicro()
		if id%3 == 0 {
			if cols[1][k] != nil {
				t.Errorf("id %d: ts = %d, want null", id, *cols[1][k])
			}
		} else if cols[1][k] == nil || *cols[1][k] != wantTS {
			t.Errorf("id %d: ts = %v, want %d", id, cols[1][k], wantTS)
		}
		wantTSR := int96Extremes[int(id+1)%len(int96Extremes)].UnixMicro()
		if cols[2][k] == nil || *cols[2][k] != wantTSR {
			t.Errorf("id %d: tsr = %v, want %d", id, cols[2][k], wantTSR)
		}
	}
}

func seq(from, to int64) []int64 {
	var out []int64
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func TestInt96Micros(t *testing.T) {
	for _, tm := range int96Extremes {
		got, ok := int96Micros(toInt96(tm))
		if !ok || got != tm.UnixMicro() {
			t.Errorf("%s: %d %v, want %d", tm, got, ok, tm.UnixMicro())
		}
	}
	// Nanoseconds beyond one day carry into the next (as in Spark).
	v := parquet.NewInt96([3]uint32{0, 0, julianUnixEpoch})
	v.SetNanoSeconds(86400e9 + 5000)
	if got, ok := int96Micros(v); !ok || got != 86400e6+5 {
		t.Errorf("overlong day: %d %v", got, ok)
	}
	// Julian days beyond int64 µs are refused, not wrapped.
	for _, jd := range []uint32{0xffffffff, 200_000_000} {
		v := parquet.NewInt96([3]uint32{0, 0, jd})
		if got, ok := int96Micros(v); ok {
			t.Errorf("Julian day %d: %d, want out of range", jd, got)
		}
	}
	if _, ok := int96Micros(parquet.NewInt96([3]uint32{0, 0, 0})); !ok {
		t.Error("Julian day 0 (4713 BC) fits in int64 µs")
	}
}

func TestReadInt96Extremes(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	// Row groups of different sizes, one empty, one larger than a read
	// batch, so batches straddle row group boundaries.
	groups := [][]int96Row{extremeRows(0, 10), extremeRows(10, 0), extremeRows(10, readBatchRows+100), extremeRows(readBatchRows+110, 7)}
	total := int64(readBatchRows + 117)
	add := writeInt96File(t, st, "int96.parquet", groups)

	pf := openParquet(t, st, "int96.parquet")
	if pf.NumRowGroups() != 4 {
		t.Fatalf("%d row groups, want 4", pf.NumRowGroups())
	}
	sc := pf.MetaData().Schema
	if got := sc.Column(sc.ColumnIndexByName("ts")).PhysicalType(); got != parquet.Types.Int96 {
		t.Fatalf("ts stored as %s", got)
	}
	pf.Close()

	s := mustSchema(t, fld("id", "long", false), fld("ts", "timestamp", true), fld("tsr", "timestamp_ntz", false))
	ti := TableInfo{Schema: s, Allocator: mem}
	cols, err := scanColumns(t, st, ti, add)
	if err != nil {
		t.Fatal(err)
	}
	checkExtremeRows(t, cols, seq(0, total))

	// Only INT96 columns (nothing left for pqarrow), plus a missing one.
	s2 := mustSchema(t, fld("tsr", "timestamp", false), fld("ts", "timestamp_ntz", true), fld("gone", "long", true))
	cols, err = scanColumns(t, st, TableInfo{Schema: s2, Allocator: mem}, add)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(cols[0])) != total {
		t.Fatalf("%d rows, want %d", len(cols[0]), total)
	}
	for k := range cols[0] {
		id := int64(k)
		if cols[2][k] != nil {
			t.Fatalf("missing column has a value")
		}
		if w := int96Extremes[(id+1)%int64(len(int96Extremes))].UnixMicro(); cols[0][k] == nil || *cols[0][k] != w {
			t.Fatalf("row %d: tsr %v, want %d", k, cols[0][k], w)
		}
		if (id%3 == 0) != (cols[1][k] == nil) {
			t.Fatalf("row %d: ts null = %v", k, cols[1][k] == nil)
		}
	}

	// The same column twice (exact and case-insensitive match).
	s3 := mustSchema(t, fld("id", "long", false), fld("ts", "timestamp", true), fld("TSR", "timestamp", false))
	cols, err = scanColumns(t, st, TableInfo{Schema: s3, Allocator: mem}, add)
	if err != nil {
		t.Fatal(err)
	}
	checkExtremeRows(t, cols, seq(0, total))
}

func TestReadInt96DeletionVector(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	n := int64(readBatchRows + 50)
	add := writeInt96File(t, st, "int96.parquet", [][]int96Row{extremeRows(0, 5), extremeRows(5, int(n-5))})
	deleted := []uint64{0, 3, 4, 7, 100, uint64(readBatchRows - 1), uint64(readBatchRows), uint64(n - 1)}
	raw := encodeBitmapArray(deleted)
	add.DeletionVector = &delta.DeletionVector{StorageType: "i", PathOrInlineDv: z85Encode(raw), SizeInBytes: int32(len(raw)), Cardinality: int64(len(deleted))}
	var keep []int64
	del := map[int64]bool{}
	for _, d := range deleted {
		del[int64(d)] = true
	}
	for i := int64(0); i < n; i++ {
		if !del[i] {
			keep = append(keep, i)
		}
	}
	for _, s := range []*delta.StructType{
		mustSchema(t, fld("id", "long", false), fld("ts", "timestamp", true), fld("tsr", "timestamp", false)),
		// Without id the batches come from the INT96 readers alone.
		mustSchema(t, fld("tsr", "timestamp", false)),
	} {
		cols, err := scanColumns(t, st, TableInfo{Schema: s, Allocator: mem}, add)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Fields) == 3 {
			checkExtremeRows(t, cols, keep)
			continue
		}
		if len(cols[0]) != len(keep) {
			t.Fatalf("%d rows, want %d", len(cols[0]), len(keep))
		}
		for k, id := range keep {
			if w := int96Extremes[(id+1)%int64(len(int96Extremes))].UnixMicro(); *cols[0][k] != w {
				t.Fatalf("row %d (id %d): tsr %d, want %d", k, id, *cols[0][k], w)
			}
		}
	}
}

func TestReadInt96ColumnMapping(t *testing.T) {
	for _, mode := range []string{"name", "id"} {
		t.Run(mode, func(t *testing.T) {
			mem := checkedAlloc(t)
			st := newStore(t)
			add := writeInt96File(t, st, "int96.parquet", [][]int96Row{extremeRows(0, 20)})
			cm := func(name, typ string, id int, phys string) string {
				return strings.Replace(fld(name, typ, true), `"metadata":{}`, `"metadata":{"delta.columnMapping.id":`+itoa(id)+`,"delta.columnMapping.physicalName":"`+phys+`"}`, 1)
			}
			// Logical names differ from the file's; in id mode the
			// physical names are wrong too, so only field ids match.
			phys := func(p string) string {
				if mode == "id" {
					return "col-" + p
				}
				return p
			}
			s := mustSchema(t, cm("ident", "long", 1, phys("id")), cm("when", "timestamp", 2, phys("ts")), cm("at", "timestamp", 3, phys("tsr")))
			cols, err := scanColumns(t, st, TableInfo{Schema: s, Config: map[string]string{"delta.columnMapping.mode": mode}, Allocator: mem}, add)
			if err != nil {
				t.Fatal(err)
			}
			checkExtremeRows(t, cols, seq(0, 20))
		})
	}
}

func TestReadInt96Nested(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	s := mustSchema(t, fld("id", "long", false), fld("st", `{"type":"struct","fields":[`+fld("ts", "timestamp", true)+`]}`, true))
	ti := TableInfo{Schema: s, Allocator: mem}

	// In range: read through pqarrow as before, nulls at both levels.
	rows := extremeRows(0, 4)
	rows[1].stNull, rows[2].nested = true, nil
	add := writeInt96File(t, st, "in.parquet", [][]int96Row{rows})
	sameRows(t, readAll(t, st, ti, []*delta.Add{add}), []string{
		`{"id":0,"st":{"ts":"1970-01-01T00:00:00Z"}}`,
		`{"id":1,"st":null}`,
		`{"id":2,"st":{"ts":null}}`,
		`{"id":3,"st":{"ts":"1970-01-01T00:00:03Z"}}`,
	})

	// Out of range inside a struct: a clear error, not a corrupt file.
	rows[3].nested = ptr(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC))
	add = writeInt96File(t, st, "out.parquet", [][]int96Row{rows})
	_, err := Read(ctx, st, ti, add)
	if err == nil || !strings.Contains(err.Error(), "only in top-level columns") || !strings.Contains(err.Error(), "out.parquet") || errors.Is(err, ErrCorruptFile) {
		t.Errorf("nested out-of-range INT96: %v", err)
	}
	// The top-level columns of that file are still readable.
	cols, err := scanColumns(t, st, TableInfo{Schema: mustSchema(t, fld("id", "long", false), fld("ts", "timestamp", true), fld("tsr", "timestamp", false)), Allocator: mem}, add)
	if err != nil {
		t.Fatal(err)
	}
	checkExtremeRows(t, cols, seq(0, 4))
}

func TestReadInt96Corrupt(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	rows := extremeRows(0, 3)
	rows[1].ts = ptr(time.Unix(12345, 6789).UTC())
	add := writeInt96File(t, st, "bad.parquet", [][]int96Row{rows})
	// Patch the Julian day of ts's second value to 0xffffffff: find the
	// encoded value in the file (it is unique) and overwrite it.
	data, err := st.Get(ctx, "bad.parquet")
	if err != nil {
		t.Fatal(err)
	}
	enc := toInt96(time.Unix(12345, 6789).UTC())
	i := bytes.Index(data, enc[:])
	if i < 0 || bytes.Count(data, enc[:]) != 1 {
		t.Fatalf("value found %d times", bytes.Count(data, enc[:]))
	}
	copy(data[i+8:], []byte{0xff, 0xff, 0xff, 0xff})
	if err := st.Put(ctx, "bad2.parquet", data); err != nil {
		t.Fatal(err)
	}
	add.Path = "bad2.parquet"
	_, err = Read(ctx, st, TableInfo{Schema: mustSchema(t, fld("ts", "timestamp", true)), Allocator: mem}, add)
	if !errors.Is(err, ErrCorruptFile) || !strings.Contains(err.Error(), "out of range") || !strings.Contains(err.Error(), "bad2.parquet") {
		t.Errorf("out-of-range Julian day: %v", err)
	}
}

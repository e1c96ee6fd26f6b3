package interop

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

// fixture is one table silt writes for other engines to read.
type fixture struct {
	name  string
	notes string
	build func(ctx context.Context, w *tableWriter) error
}

var fixtures = []fixture{
	{"appends", "plain appends over several versions, nulls in the last", buildAppends},
	{"partitioned", "string/int/date partitions with null, '' (null in Delta) and characters that need escaping", buildPartitioned},
	{"merge_cow", "MERGE-style copy-on-write: remove + add in one commit", buildMerge},
	{"schema_evolution", "nullable column added, then a struct column, then a nested struct field", buildSchemaEvolution},
	{"checkpointed", "13 commits with txn actions: checkpoint at 10 and _last_checkpoint", buildCheckpointed},
	{"all_types", "every primitive type with extremes, NaN, ±Inf, -0.0 and nulls", buildAllTypes},
	{"timestamp_ntz", "timestamp_ntz next to timestamp (protocol 3/7, feature timestampNtz)", buildTimestampNTZ},
	{"nested", "struct, array, map, array of struct", buildNested},
	{"ancient_dates", "dates and timestamps before the 1582 Gregorian switch", buildAncient},
}

// WriteFixtures writes every fixture table under dir/tables, what silt
// reads at each of their versions under dir/expected, and dir/manifest.json.
// dir must not hold tables already.
func WriteFixtures(ctx context.Context, dir string) (*Manifest, error) {
	m := &Manifest{Engine: "silt"}
	for _, f := range fixtures {
		tdir := TableDir(dir, f.name)
		if _, err := os.Stat(filepath.Join(tdir, "_delta_log")); err == nil {
			return nil, fmt.Errorf("fixture %s: %s already holds a table", f.name, tdir)
		}
		tbl, st, err := OpenTable(tdir)
		if err != nil {
			return nil, err
		}
		w := &tableWriter{tbl: tbl, st: st}
		if err := f.build(ctx, w); err != nil {
			return nil, fmt.Errorf("fixture %s: %w", f.name, err)
		}
		latest, err := tbl.LatestVersion(ctx)
		if err != nil {
			return nil, fmt.Errorf("fixture %s: %w", f.name, err)
		}
		hist, err := tbl.History(ctx, 0)
		if err != nil {
			return nil, fmt.Errorf("fixture %s: %w", f.name, err)
		}
		mt := ManifestTable{Name: f.name, Latest: latest, History: len(hist), Notes: f.notes}
		for v := int64(0); v <= latest; v++ {
			if err := DumpVersion(ctx, dir, f.name, v); err != nil {
				return nil, fmt.Errorf("fixture %s: dump v%d: %w", f.name, v, err)
			}
			mt.Versions = append(mt.Versions, v)
		}
		if _, err := os.Stat(filepath.Join(tdir, "_delta_log", "_last_checkpoint")); err == nil {
			mt.Checkpoint = true
		}
		m.Tables = append(m.Tables, mt)
	}
	if err := writeJSON(filepath.Join(dir, "manifest.json"), m); err != nil {
		return nil, err
	}
	return m, nil
}

// tableWriter commits to one table the way silt's stages do: datafile.Write
// for the files, a Txn for the commit.
type tableWriter struct {
	tbl *delta.Table
	st  blob.Store
}

func (w *tableWriter) create(ctx context.Context, schema *delta.StructType, parts []string, cfg map[string]string) error {
	_, err := delta.CreateTable(ctx, w.tbl, schema, parts, cfg, "")
	return err
}

func (w *tableWriter) snapshot(ctx context.Context) (*delta.Snapshot, error) {
	return w.tbl.Snapshot(ctx)
}

// write stores rows (in schema field order) as data files of s's table.
func (w *tableWriter) write(ctx context.Context, s *delta.Snapshot, schema *delta.StructType, rows [][]any) ([]*delta.Add, error) {
	rec, err := record(schema, rows)
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	ti := datafile.Info(w.tbl, s)
	ti.Schema = schema
	return datafile.Write(ctx, w.st, ti, rec, datafile.WriteOptions{DataChange: true})
}

// appendRows commits rows as a blind append; txns are (appId, version)
// pairs committed with them.
func (w *tableWriter) appendRows(ctx context.Context, rows [][]any, txns map[string]int64) error {
	s, err := w.snapshot(ctx)
	if err != nil {
		return err
	}
	adds, err := w.write(ctx, s, s.Schema(), rows)
	if err != nil {
		return err
	}
	tx := w.tbl.Begin(s)
	tx.Add(adds...)
	for _, id := range slices.Sorted(maps.Keys(txns)) {
		tx.SetAppTxn(id, txns[id])
	}
	_, err = tx.Commit(ctx, "WRITE", map[string]any{"mode": "Append"})
	if err != nil {
		return err
	}
	return tx.PostCommitError()
}

// evolve commits a new schema together with rows written under it.
func (w *tableWriter) evolve(ctx context.Context, schema *delta.StructType, rows [][]any) error {
	s, err := w.snapshot(ctx)
	if err != nil {
		return err
	}
	adds, err := w.write(ctx, s, schema, rows)
	if err != nil {
		return err
	}
	m := *s.Metadata
	m.SchemaString = schema.SchemaString()
	tx := w.tbl.Begin(s)
	tx.SetMetadata(&m)
	tx.Add(adds...)
	_, err = tx.Commit(ctx, "WRITE", map[string]any{"mode": "Append", "mergeSchema": "true"})
	return err
}

func buildAppends(ctx context.Context, w *tableWriter) error {
	schema := &delta.StructType{Fields: []*delta.StructField{
		field("id", delta.Long, false),
		field("name", delta.String, true),
		field("score", delta.Double, true),
	}}
	if err := w.create(ctx, schema, nil, nil); err != nil {
		return err
	}
	batches := [][][]any{
		{{int64(1), "one", 1.5}, {int64(2), "two", 2.25}, {int64(3), "three", -3.0}},
		{{int64(4), "four", 4.0}, {int64(5), "five", 1e300}},
		{{int64(6), nil, nil}, {int64(7), "seven", 0.1}, {int64(1), "one again", 1.5}},
	}
	for _, b := range batches {
		if err := w.appendRows(ctx, b, nil); err != nil {
			return err
		}
	}
	return nil
}

func buildPartitioned(ctx context.Context, w *tableWriter) error {
	schema := &delta.StructType{Fields: []*delta.StructField{
		field("id", delta.Long, false),
		field("s", delta.String, true),
		field("i", delta.Integer, true),
		field("d", delta.Date, true),
		field("val", delta.String, true),
	}}
	if err := w.create(ctx, schema, []string{"s", "i", "d"}, nil); err != nil {
		return err
	}
	strs := []any{"plain", "with space", "a/b", "100%", "k=v", "ünïcødé", "日本語", "#?&:*<>|\"'", "%20x", "", nil}
	ints := []any{int32(1), int32(-5), int32(math.MaxInt32), nil}
	dates := []any{"2024-02-29", "1970-01-01", nil}
	var rows [][]any
	id := int64(0)
	for k, s := range strs {
		id++
		rows = append(rows, []any{id, s, ints[k%len(ints)], dates[k%len(dates)], fmt.Sprintf("v%d", id)})
	}
	if err := w.appendRows(ctx, rows[:6], nil); err != nil {
		return err
	}
	// A second commit adds to existing partitions and new ones.
	more := rows[6:]
	more = append(more, []any{int64(100), "plain", int32(1), "2024-02-29", "same partition as id 1"})
	return w.appendRows(ctx, more, nil)
}

func buildMerge(ctx context.Context, w *tableWriter) error {
	schema := &delta.StructType{Fields: []*delta.StructField{
		field("id", delta.Long, false),
		field("v", delta.String, true),
		field("n", delta.Integer, true),
	}}
	if err := w.create(ctx, schema, nil, nil); err != nil {
		return err
	}
	if err := w.appendRows(ctx, [][]any{{int64(1), "a", int32(1)}, {int64(2), "b", int32(2)}, {int64(3), "c", int32(3)}, {int64(4), "d", int32(4)}}, nil); err != nil {
		return err
	}
	if err := w.appendRows(ctx, [][]any{{int64(5), "e", int32(5)}, {int64(6), "f", int32(6)}}, nil); err != nil {
		return err
	}
	// MERGE source: update 2 and 5, delete 4, insert 7. Files holding a
	// matched key are read, rewritten and replaced in one commit.
	updates := map[int64][]any{2: {int64(2), "b2", int32(20)}, 5: {int64(5), "e2", nil}}
	deletes := map[int64]bool{4: true}
	inserts := [][]any{{int64(7), "g", int32(7)}}
	s, err := w.snapshot(ctx)
	if err != nil {
		return err
	}
	tx := w.tbl.Begin(s)
	var out [][]any
	for _, add := range s.Files() {
		recs, err := datafile.Read(ctx, w.st, datafile.Info(w.tbl, s), add)
		if err != nil {
			return err
		}
		var kept [][]any
		touched := false
		for _, r := range recs {
			ids := r.Column(0).(*array.Int64)
			vs := r.Column(1).(*array.String)
			ns := r.Column(2).(*array.Int32)
			for i := 0; i < int(r.NumRows()); i++ {
				id := ids.Value(i)
				switch {
				case deletes[id]:
					touched = true
				case updates[id] != nil:
					touched = true
					kept = append(kept, updates[id])
				default:
					var n any
					if ns.IsValid(i) {
						n = ns.Value(i)
					}
					kept = append(kept, []any{id, vs.Value(i), n})
				}
			}
			r.Release()
		}
		tx.ReadFiles(add.Path)
		if touched {
			tx.Remove(removeOf(add))
			out = append(out, kept...)
		}
	}
	out = append(out, inserts...)
	adds, err := w.write(ctx, s, s.Schema(), out)
	if err != nil {
		return err
	}
	tx.Add(adds...)
	_, err = tx.Commit(ctx, "MERGE", map[string]any{"predicate": `["(t.id = s.id)"]`})
	return err
}

func removeOf(a *delta.Add) *delta.Remove {
	ext := true
	size := a.Size
	return &delta.Remove{Path: a.Path, DataChange: true, ExtendedFileMetadata: &ext, PartitionValues: a.PartitionValues, Size: &size}
}

func buildSchemaEvolution(ctx context.Context, w *tableWriter) error {
	fid := field("id", delta.Long, false)
	fa := field("a", delta.String, true)
	if err := w.create(ctx, &delta.StructType{Fields: []*delta.StructField{fid, fa}}, nil, nil); err != nil {
		return err
	}
	if err := w.appendRows(ctx, [][]any{{int64(1), "x"}, {int64(2), nil}}, nil); err != nil {
		return err
	}
	fb := field("b", delta.Integer, true)
	s2 := &delta.StructType{Fields: []*delta.StructField{fid, fa, fb}}
	if err := w.evolve(ctx, s2, [][]any{{int64(3), "y", int32(30)}, {int64(4), "z", nil}}); err != nil {
		return err
	}
	st1 := &delta.StructType{Fields: []*delta.StructField{field("x", delta.Long, true), field("y", delta.String, true)}}
	s3 := &delta.StructType{Fields: []*delta.StructField{fid, fa, fb, field("s", st1, true)}}
	if err := w.evolve(ctx, s3, [][]any{{int64(5), "w", int32(50), []any{int64(500), "five"}}, {int64(6), nil, nil, nil}}); err != nil {
		return err
	}
	st2 := &delta.StructType{Fields: []*delta.StructField{field("x", delta.Long, true), field("y", delta.String, true), field("z", delta.Double, true)}}
	s4 := &delta.StructType{Fields: []*delta.StructField{fid, fa, fb, field("s", st2, true)}}
	return w.evolve(ctx, s4, [][]any{{int64(7), "v", int32(70), []any{int64(700), "seven", 7.5}}, {int64(8), "u", nil, []any{nil, nil, nil}}})
}

func buildCheckpointed(ctx context.Context, w *tableWriter) error {
	schema := &delta.StructType{Fields: []*delta.StructField{
		field("id", delta.Long, false),
		field("batch", delta.Integer, true),
	}}
	if err := w.create(ctx, schema, nil, nil); err != nil {
		return err
	}
	for b := int64(1); b <= 12; b++ {
		txns := map[string]int64{"silt-shard-0": b * 100}
		if b%3 == 0 {
			txns["silt-shard-1"] = b
		}
		rows := [][]any{{b*10 + 1, int32(b)}, {b*10 + 2, int32(b)}}
		if err := w.appendRows(ctx, rows, txns); err != nil {
			return err
		}
	}
	return nil
}

func buildAllTypes(ctx context.Context, w *tableWriter) error {
	schema := &delta.StructType{Fields: []*delta.StructField{
		field("row", delta.Integer, false),
		field("str", delta.String, true),
		field("long", delta.Long, true),
		field("int", delta.Integer, true),
		field("short", delta.Short, true),
		field("byte", delta.Byte, true),
		field("float", delta.Float, true),
		field("double", delta.Double, true),
		field("bool", delta.Boolean, true),
		field("bin", delta.Binary, true),
		field("dec9_2", &delta.DecimalType{Precision: 9, Scale: 2}, true),
		field("dec18_6", &delta.DecimalType{Precision: 18, Scale: 6}, true),
		field("dec38_10", &delta.DecimalType{Precision: 38, Scale: 10}, true),
		field("dec38_0", &delta.DecimalType{Precision: 38, Scale: 0}, true),
		field("date", delta.Date, true),
		field("ts", delta.Timestamp, true),
	}}
	if err := w.create(ctx, schema, nil, nil); err != nil {
		return err
	}
	max38 := "99999999999999999999999999999999999999"
	rows := [][]any{
		{int32(1), "hello", int64(42), int32(-7), int16(300), int8(-3), float32(1.5), 2.75, true, []byte("abc"),
			"1234.56", "-123456789012.345678", "1234567890123456789012345678.0123456789", "12345678901234567890", "2024-02-29", int64(1709164800123456)},
		{int32(2), "", int64(math.MinInt64), int32(math.MinInt32), int16(math.MinInt16), int8(math.MinInt8), float32(math.Inf(-1)), math.Inf(-1), false, []byte{},
			"-9999999.99", "-999999999999.999999", "-9999999999999999999999999999.9999999999", "-" + max38, "1900-01-01", int64(-1)},
		{int32(3), "ünïcødé 日本語 🚀 \"quoted\" <tag> & \\ \t", int64(math.MaxInt64), int32(math.MaxInt32), int16(math.MaxInt16), int8(math.MaxInt8), float32(math.NaN()), math.NaN(), true, []byte{0, 0xff, 0x10},
			"9999999.99", "999999999999.999999", "9999999999999999999999999999.9999999999", max38, "9999-12-31", int64(253402300799999999)},
		{int32(4), "nul\x00byte", int64(0), int32(0), int16(0), int8(0), float32(math.Copysign(0, -1)), math.Copysign(0, -1), false, []byte{0},
			"0.00", "0.000001", "0.0000000001", "0", "1970-01-01", int64(0)},
		{int32(5), "inf", int64(1), int32(1), int16(1), int8(1), float32(math.Inf(1)), math.Inf(1), nil, nil,
			"-0.01", "0.5", "-0.5", "-1", "1969-12-31", int64(-62135596800000000)},
		{int32(6), "tiny", int64(-1), int32(-1), int16(-1), int8(-1), float32(math.SmallestNonzeroFloat32), math.SmallestNonzeroFloat64, true, []byte("\x7f"),
			"0.10", "1.000000", "1.0000000000", "10", "2000-01-01", int64(951782400000001)},
		{int32(7), nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil},
	}
	return w.appendRows(ctx, rows, nil)
}

func buildTimestampNTZ(ctx context.Context, w *tableWriter) error {
	schema := &delta.StructType{Fields: []*delta.StructField{
		field("id", delta.Long, false),
		field("ntz", delta.TimestampNTZ, true),
		field("ts", delta.Timestamp, true),
	}}
	if err := w.create(ctx, schema, nil, nil); err != nil {
		return err
	}
	return w.appendRows(ctx, [][]any{
		{int64(1), int64(1709164800123456), int64(1709164800123456)},
		{int64(2), int64(-1), int64(-1)},
		{int64(3), nil, nil},
	}, nil)
}

func buildNested(ctx context.Context, w *tableWriter) error {
	inner := &delta.StructType{Fields: []*delta.StructField{field("c", delta.Double, true)}}
	st := &delta.StructType{Fields: []*delta.StructField{
		field("a", delta.Integer, true), field("b", delta.String, true), field("inner", inner, true),
	}}
	kst := &delta.StructType{Fields: []*delta.StructField{field("k", delta.String, true), field("ts", delta.Timestamp, true)}}
	schema := &delta.StructType{Fields: []*delta.StructField{
		field("id", delta.Long, false),
		field("st", st, true),
		field("arr", &delta.ArrayType{ElementType: delta.Integer, ContainsNull: true}, true),
		field("m", &delta.MapType{KeyType: delta.String, ValueType: delta.Long, ValueContainsNull: true}, true),
		field("arr_st", &delta.ArrayType{ElementType: kst, ContainsNull: true}, true),
	}}
	if err := w.create(ctx, schema, nil, nil); err != nil {
		return err
	}
	return w.appendRows(ctx, [][]any{
		{int64(1), []any{int32(1), "one", []any{1.5}}, []any{int32(1), nil, int32(3)}, [][2]any{{"b", int64(2)}, {"a", nil}},
			[]any{[]any{"x", int64(1)}, nil, []any{nil, nil}}},
		{int64(2), []any{nil, nil, nil}, []any{}, [][2]any{}, []any{}},
		{int64(3), nil, nil, nil, nil},
		{int64(4), []any{int32(4), "four", nil}, []any{int32(-1)}, [][2]any{{"k", int64(math.MaxInt64)}}, []any{[]any{"y", int64(-1)}}},
	}, nil)
}

func buildAncient(ctx context.Context, w *tableWriter) error {
	schema := &delta.StructType{Fields: []*delta.StructField{
		field("id", delta.Long, false),
		field("d", delta.Date, true),
		field("ts", delta.Timestamp, true),
	}}
	if err := w.create(ctx, schema, nil, nil); err != nil {
		return err
	}
	ts := func(s string) int64 {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			panic(err)
		}
		return t.UnixMicro()
	}
	return w.appendRows(ctx, [][]any{
		{int64(1), "0001-01-01", ts("0001-01-01T00:00:00Z")},
		{int64(2), "1582-10-04", ts("1582-10-04T12:00:00Z")},
		{int64(3), "1000-06-15", ts("1000-06-15T00:00:00.000001Z")},
	}, nil)
}

func field(name string, t delta.DataType, nullable bool) *delta.StructField {
	return &delta.StructField{Name: name, Type: t, Nullable: nullable, Metadata: map[string]any{}}
}

// record builds an Arrow record of ArrowSchema(schema) from rows of Go
// values in field order: nil; string; int64/int32/int16/int8; float32,
// float64; bool; []byte; dates as "YYYY-MM-DD"; timestamps as int64
// microseconds; decimals as text; structs as []any in field order; arrays
// as []any; maps as [][2]any.
func record(schema *delta.StructType, rows [][]any) (arrow.Record, error) {
	as, err := datafile.ArrowSchema(schema)
	if err != nil {
		return nil, err
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, as)
	defer b.Release()
	for r, row := range rows {
		if len(row) != len(schema.Fields) {
			return nil, fmt.Errorf("row %d has %d values, schema %d", r, len(row), len(schema.Fields))
		}
		for i, v := range row {
			if err := appendAny(b.Field(i), v); err != nil {
				return nil, fmt.Errorf("row %d column %q: %w", r, schema.Fields[i].Name, err)
			}
		}
	}
	return b.NewRecordBatch(), nil
}

func appendAny(b array.Builder, v any) error {
	if v == nil {
		b.AppendNull()
		return nil
	}
	bad := func() error { return fmt.Errorf("cannot append %T (%v) to %s", v, v, b.Type()) }
	switch bb := b.(type) {
	case *array.StringBuilder:
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		bb.Append(s)
	case *array.BinaryBuilder:
		s, ok := v.([]byte)
		if !ok {
			return bad()
		}
		bb.Append(s)
	case *array.Int64Builder:
		x, ok := v.(int64)
		if !ok {
			return bad()
		}
		bb.Append(x)
	case *array.Int32Builder:
		x, ok := v.(int32)
		if !ok {
			return bad()
		}
		bb.Append(x)
	case *array.Int16Builder:
		x, ok := v.(int16)
		if !ok {
			return bad()
		}
		bb.Append(x)
	case *array.Int8Builder:
		x, ok := v.(int8)
		if !ok {
			return bad()
		}
		bb.Append(x)
	case *array.Float32Builder:
		x, ok := v.(float32)
		if !ok {
			return bad()
		}
		bb.Append(x)
	case *array.Float64Builder:
		x, ok := v.(float64)
		if !ok {
			return bad()
		}
		bb.Append(x)
	case *array.BooleanBuilder:
		x, ok := v.(bool)
		if !ok {
			return bad()
		}
		bb.Append(x)
	case *array.Date32Builder:
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		t, err := time.Parse("2006-01-02", s)
		if err != nil {
			return err
		}
		bb.Append(arrow.Date32(floorDiv(t.Unix(), 86400)))
	case *array.TimestampBuilder:
		x, ok := v.(int64)
		if !ok {
			return bad()
		}
		bb.Append(arrow.Timestamp(x))
	case *array.Decimal128Builder:
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		scale := b.Type().(*arrow.Decimal128Type).Scale
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			return bad()
		}
		r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)))
		if !r.IsInt() {
			return fmt.Errorf("decimal %s has more than %d fraction digits", s, scale)
		}
		bb.Append(decimal128.FromBigInt(r.Num()))
	case *array.StructBuilder:
		fs, ok := v.([]any)
		if !ok || len(fs) != bb.NumField() {
			return bad()
		}
		bb.Append(true)
		for i, f := range fs {
			if err := appendAny(bb.FieldBuilder(i), f); err != nil {
				return err
			}
		}
	case *array.MapBuilder:
		kvs, ok := v.([][2]any)
		if !ok {
			return bad()
		}
		bb.Append(true)
		for _, kv := range kvs {
			if err := appendAny(bb.KeyBuilder(), kv[0]); err != nil {
				return err
			}
			if err := appendAny(bb.ItemBuilder(), kv[1]); err != nil {
				return err
			}
		}
	case *array.ListBuilder:
		es, ok := v.([]any)
		if !ok {
			return bad()
		}
		bb.Append(true)
		for _, e := range es {
			if err := appendAny(bb.ValueBuilder(), e); err != nil {
				return err
			}
		}
	default:
		return bad()
	}
	return nil
}

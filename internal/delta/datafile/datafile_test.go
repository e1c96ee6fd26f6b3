package datafile

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/google/uuid"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/delta"
)

var ctx = context.Background()

func newStore(t *testing.T) *local.Store {
	t.Helper()
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st.NoSync = true
	return st
}

// checkedAlloc fails the test if any Arrow buffer is leaked.
func checkedAlloc(t *testing.T) *memory.CheckedAllocator {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return mem
}

func mustSchema(t *testing.T, fields ...string) *delta.StructType {
	t.Helper()
	s, err := delta.ParseSchema(`{"type":"struct","fields":[` + strings.Join(fields, ",") + `]}`)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fld(name, typ string, nullable bool) string {
	if !strings.HasPrefix(typ, "{") {
		typ = `"` + typ + `"`
	}
	n := "true"
	if !nullable {
		n = "false"
	}
	return `{"name":"` + name + `","type":` + typ + `,"nullable":` + n + `,"metadata":{}}`
}

func recFromJSON(t *testing.T, mem memory.Allocator, s *delta.StructType, rows string) arrow.Record {
	t.Helper()
	as, err := ArrowSchema(s)
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := array.RecordFromJSON(mem, as, strings.NewReader(rows))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func recJSON(t *testing.T, recs ...arrow.Record) []string {
	t.Helper()
	var out []string
	for _, r := range recs {
		var b bytes.Buffer
		if err := array.RecordToJSON(r, &b); err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
			if l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}

func readAll(t *testing.T, st blob.Store, ti TableInfo, adds []*delta.Add) []string {
	t.Helper()
	var rows []string
	for _, a := range adds {
		recs, err := Read(ctx, st, ti, a)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ArrowSchema(ti.Schema)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if !r.Schema().Equal(want) {
				t.Fatalf("schema\n%s\nwant\n%s", r.Schema(), want)
			}
		}
		rows = append(rows, recJSON(t, recs...)...)
		for _, r := range recs {
			r.Release()
		}
	}
	return rows
}

func sameRows(t *testing.T, got, want []string) {
	t.Helper()
	g := normJSON(t, got)
	w := normJSON(t, want)
	sort.Strings(g)
	sort.Strings(w)
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Fatalf("rows differ\ngot:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
	}
}

var allTypesFields = []string{
	fld("s", "string", true), fld("l", "long", false), fld("i", "integer", true), fld("sh", "short", true),
	fld("b", "byte", true), fld("f", "float", true), fld("d", "double", true), fld("bo", "boolean", true),
	fld("bi", "binary", true), fld("dt", "date", true), fld("ts", "timestamp", true), fld("tn", "timestamp_ntz", true),
	fld("dec", "decimal(10,2)", true), fld("dec38", "decimal(38,6)", true), fld("v", "void", true),
	fld("st", `{"type":"struct","fields":[`+fld("a", "integer", true)+`,`+fld("n", `{"type":"struct","fields":[`+fld("c", "string", true)+`]}`, true)+`]}`, true),
	fld("arr", `{"type":"array","elementType":"long","containsNull":true}`, true),
	fld("m", `{"type":"map","keyType":"string","valueType":"integer","valueContainsNull":true}`, true),
	fld("aos", `{"type":"array","elementType":{"type":"struct","fields":[`+fld("x", "integer", true)+`]},"containsNull":true}`, true),
}

const allTypesRows = `[
{"s":"hello","l":1,"i":2,"sh":3,"b":4,"f":1.5,"d":2.25,"bo":true,"bi":"AQI=","dt":"2021-09-08","ts":"2021-09-08T11:11:11.123456Z","tn":"2021-09-08T11:11:11.5","dec":"123.45","dec38":"-12345678901234567890.123456","v":null,"st":{"a":1,"n":{"c":"x"}},"arr":[1,null,3],"m":[{"key":"k","value":1},{"key":"z","value":null}],"aos":[{"x":1},null]},
{"s":null,"l":-9223372036854775808,"i":null,"sh":null,"b":null,"f":null,"d":null,"bo":null,"bi":null,"dt":null,"ts":null,"tn":null,"dec":null,"dec38":null,"v":null,"st":null,"arr":null,"m":null,"aos":null},
{"s":"","l":9223372036854775807,"i":-2147483648,"sh":-32768,"b":-128,"f":-0.0,"d":1e300,"bo":false,"bi":"","dt":"1969-12-31","ts":"1900-01-01T00:00:00Z","tn":"2262-01-01T00:00:00","dec":"-0.01","dec38":"0","v":null,"st":{"a":null,"n":null},"arr":[],"m":[],"aos":[]}
]`

func TestRoundTripAllTypes(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	s := mustSchema(t, allTypesFields...)
	rec := recFromJSON(t, mem, s, allTypesRows)
	defer rec.Release()
	ti := TableInfo{Root: "tbl", Schema: s, Allocator: mem}
	adds, err := Write(ctx, st, ti, rec, WriteOptions{DataChange: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(adds) != 1 || !adds[0].DataChange || len(adds[0].PartitionValues) != 0 {
		t.Fatalf("adds = %+v", adds)
	}
	if !strings.HasPrefix(adds[0].Path, "part-") || !strings.HasSuffix(adds[0].Path, ".zstd.parquet") {
		t.Errorf("path %q", adds[0].Path)
	}
	info, err := st.List(ctx, "tbl/")
	if err != nil || len(info) != 1 || info[0].Size != adds[0].Size {
		t.Fatalf("stored %v (%v), add size %d", info, err, adds[0].Size)
	}
	sameRows(t, readAll(t, st, ti, adds), recJSON(t, rec))

	// The file itself is zstd Parquet with timestamps as INT64 micros,
	// UTC-adjusted only for timestamp.
	pf := openParquet(t, st, "tbl/"+adds[0].Path)
	defer pf.Close()
	sc := pf.MetaData().Schema
	for _, c := range []struct {
		name string
		utc  bool
	}{{"ts", true}, {"tn", false}} {
		col := sc.Column(sc.ColumnIndexByName(c.name))
		lt := col.LogicalType().String()
		if col.PhysicalType() != parquet.Types.Int64 || !strings.Contains(lt, "microseconds") || strings.Contains(lt, "isAdjustedToUTC=true") != c.utc {
			t.Errorf("%s: %s %s", c.name, col.PhysicalType(), lt)
		}
	}
	if sc.ColumnIndexByName("v") >= 0 {
		t.Error("void column materialised in Parquet")
	}
	cc, err := pf.MetaData().RowGroup(0).ColumnChunk(0)
	if err != nil {
		t.Fatal(err)
	}
	if c := cc.Compression().String(); c != "ZSTD" {
		t.Errorf("compression %s", c)
	}
	// Float/double chunks carry no Parquet min/max (Spark's pushdown would
	// skip chunks holding NaN for "= NaN"); other columns do.
	for _, name := range []string{"f", "d", "b"} {
		cc, err := pf.MetaData().RowGroup(0).ColumnChunk(sc.ColumnIndexByName(name))
		if err != nil {
			t.Fatal(err)
		}
		st, err := cc.Statistics()
		if err != nil {
			t.Fatal(err)
		}
		hasMinMax := st != nil && st.HasMinMax()
		if want := name == "b"; hasMinMax != want {
			t.Errorf("column %s: Parquet min/max written %v, want %v", name, hasMinMax, want)
		}
	}
}

func openParquet(t *testing.T, st *local.Store, key string) *file.Reader {
	t.Helper()
	pf, err := file.OpenParquetFile(filepath.Join(st.Root(), filepath.FromSlash(key)), false)
	if err != nil {
		t.Fatal(err)
	}
	return pf
}

func TestWriteRejectsBadInput(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	s := mustSchema(t, fld("id", "long", false), fld("p", "string", true))
	ti := TableInfo{Schema: s, Allocator: mem}

	nullID := recFromJSON(t, mem, s, `[{"id":null,"p":"a"}]`)
	defer nullID.Release()
	if _, err := Write(ctx, st, ti, nullID, WriteOptions{}); err == nil || !strings.Contains(err.Error(), "non-nullable") {
		t.Errorf("null in non-nullable column: %v", err)
	}

	extra := mustSchema(t, fld("id", "long", false), fld("p", "string", true), fld("zzz", "long", true))
	rec := recFromJSON(t, mem, extra, `[{"id":1,"p":"a","zzz":1}]`)
	defer rec.Release()
	if _, err := Write(ctx, st, ti, rec, WriteOptions{}); err == nil || !strings.Contains(err.Error(), "zzz") {
		t.Errorf("extra column: %v", err)
	}
	if _, err := Write(ctx, st, TableInfo{Schema: s, PartitionColumns: []string{"nope"}}, rec, WriteOptions{}); err == nil {
		t.Error("unknown partition column accepted")
	}
	if _, err := Write(ctx, st, TableInfo{Schema: s, Config: map[string]string{"delta.columnMapping.mode": "weird"}}, rec, WriteOptions{}); err == nil {
		t.Error("unknown column mapping mode accepted")
	}
	// Missing nullable column: written as nulls.
	only := mustSchema(t, fld("id", "long", false))
	r2 := recFromJSON(t, mem, only, `[{"id":7}]`)
	defer r2.Release()
	adds, err := Write(ctx, st, ti, r2, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameRows(t, readAll(t, st, ti, adds), []string{`{"id":7,"p":null}`})
}

func TestPartitionsEveryType(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	fields := []string{fld("id", "integer", true),
		fld("ps", "string", true), fld("pl", "long", true), fld("pi", "integer", true), fld("psh", "short", true),
		fld("pb", "byte", true), fld("pf", "float", true), fld("pd", "double", true), fld("pbo", "boolean", true),
		fld("pdt", "date", true), fld("pts", "timestamp", true), fld("ptn", "timestamp_ntz", true),
		fld("pdec", "decimal(5,2)", true), fld("pbi", "binary", true)}
	s := mustSchema(t, fields...)
	parts := []string{"ps", "pl", "pi", "psh", "pb", "pf", "pd", "pbo", "pdt", "pts", "ptn", "pdec", "pbi"}
	rows := `[
{"id":1,"ps":"a b/c=d%e#?:é","pl":-1,"pi":2,"psh":3,"pb":4,"pf":1.5,"pd":1,"pbo":true,"pdt":"2021-01-02","pts":"2021-01-02T03:04:05.123456Z","ptn":"2021-01-02T03:04:05","pdec":"-1.50","pbi":"aGk="},
{"id":2,"ps":null,"pl":null,"pi":null,"psh":null,"pb":null,"pf":null,"pd":null,"pbo":null,"pdt":null,"pts":null,"ptn":null,"pdec":null,"pbi":null},
{"id":3,"ps":"a b/c=d%e#?:é","pl":-1,"pi":2,"psh":3,"pb":4,"pf":1.5,"pd":1,"pbo":true,"pdt":"2021-01-02","pts":"2021-01-02T03:04:05.123456Z","ptn":"2021-01-02T03:04:05","pdec":"-1.50","pbi":"aGk="},
{"id":4,"ps":"x","pl":0,"pi":0,"psh":0,"pb":0,"pf":-0.25,"pd":1e-7,"pbo":false,"pdt":"1900-03-04","pts":"1960-01-01T00:00:00Z","ptn":"1960-01-01T00:00:00.000001","pdec":"0.01","pbi":""}
]`
	rec := recFromJSON(t, mem, s, rows)
	defer rec.Release()
	ti := TableInfo{Schema: s, PartitionColumns: parts, Allocator: mem}
	adds, err := Write(ctx, st, ti, rec, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(adds) != 3 {
		t.Fatalf("%d files, want 3 partitions", len(adds))
	}
	// "" is null in partitionValues, so the empty binary value reads back null.
	want0 := recJSON(t, rec)
	want0[3] = strings.Replace(want0[3], `"pbi":""`, `"pbi":null`, 1)
	sameRows(t, readAll(t, st, ti, adds), want0)

	first := adds[0]
	want := map[string]string{"ps": "a b/c=d%e#?:é", "pl": "-1", "pi": "2", "psh": "3", "pb": "4", "pf": "1.5", "pd": "1.0",
		"pbo": "true", "pdt": "2021-01-02", "pts": "2021-01-02T03:04:05.123456Z", "ptn": "2021-01-02 03:04:05.000000", "pdec": "-1.50", "pbi": "hi"}
	for k, v := range want {
		if got := first.PartitionValues[k]; got == nil || *got != v {
			t.Errorf("partitionValues[%s] = %v, want %q", k, got, v)
		}
	}
	// Hive-style directory with %XX escapes, then URI-encoded in add.path.
	if !strings.HasPrefix(first.Path, "ps=a%2520b%252Fc%253Dd%2525e%2523%253F%253A%C3%A9/pl=-1/") {
		t.Errorf("path %s", first.Path)
	}
	nulls := adds[1]
	for _, k := range parts {
		if v, ok := nulls.PartitionValues[k]; !ok || v != nil {
			t.Errorf("null partition %s = %v (present %v)", k, v, ok)
		}
	}
	if !strings.HasPrefix(nulls.Path, "ps=__HIVE_DEFAULT_PARTITION__/pl=__HIVE_DEFAULT_PARTITION__/") {
		t.Errorf("null path %s", nulls.Path)
	}
	// Data files do not contain partition columns.
	rel, _ := DecodeForTest(first.Path)
	pf := openParquet(t, st, rel)
	defer pf.Close()
	if n := pf.MetaData().Schema.NumColumns(); n != 1 {
		t.Errorf("data file has %d columns, want 1", n)
	}
	// The JSON form of the add is what the log stores.
	b, _ := json.Marshal(nulls)
	if !strings.Contains(string(b), `"pbi":null`) {
		t.Errorf("add JSON %s", b)
	}
}

// DecodeForTest URI-decodes an add path.
func DecodeForTest(p string) (string, error) {
	k, err := dataKey(nil, TableInfo{}, p)
	return k, err
}

func TestPartitionValueParseFormat(t *testing.T) {
	cases := []struct {
		typ  delta.DataType
		in   string
		want string // formatted back; "" = null
	}{
		{delta.String, "abc", "abc"},
		{delta.String, "", ""},
		{delta.Long, "-42", "-42"},
		{delta.Integer, "7", "7"},
		{delta.Short, "-3", "-3"},
		{delta.Byte, "127", "127"},
		{delta.Float, "1.0", "1.0"},
		{delta.Double, "0.1", "0.1"},
		{delta.Double, "NaN", "NaN"},
		{delta.Double, "-Infinity", "-Infinity"},
		{delta.Boolean, "TRUE", "true"},
		{delta.Date, "1969-12-31", "1969-12-31"},
		{delta.Timestamp, "1970-01-01 00:00:00.123456", "1970-01-01T00:00:00.123456Z"},
		{delta.Timestamp, "2021-09-08T11:11:11-07:00", "2021-09-08T18:11:11.000000Z"},
		{delta.Timestamp, "1969-12-31T23:59:59.999999Z", "1969-12-31T23:59:59.999999Z"},
		{delta.TimestampNTZ, "2013-07-05 17:01:00.123456", "2013-07-05 17:01:00.123456"},
		{&delta.DecimalType{Precision: 38, Scale: 18}, "12.000000000000000000", "12.000000000000000000"},
		{&delta.DecimalType{Precision: 5, Scale: 2}, "-0.5", "-0.50"},
		{&delta.DecimalType{Precision: 5, Scale: 0}, "1E+2", "100"},
		{delta.Binary, "\u0001\u0002", "\u0001\u0002"},
	}
	for _, c := range cases {
		in := c.in
		v, err := ParsePartitionValue(c.typ, &in)
		if err != nil {
			t.Errorf("parse %s %q: %v", c.typ.TypeName(), c.in, err)
			continue
		}
		out, err := FormatPartitionValue(c.typ, v)
		if err != nil {
			t.Errorf("format %s %v: %v", c.typ.TypeName(), v, err)
			continue
		}
		got := ""
		if out != nil {
			got = *out
		}
		if got != c.want {
			t.Errorf("%s %q -> %v -> %q, want %q", c.typ.TypeName(), c.in, v, got, c.want)
		}
	}
	for _, c := range []struct {
		typ delta.DataType
		in  string
	}{
		{delta.Integer, "2147483648"}, {delta.Byte, "x"}, {delta.Boolean, "yes"}, {delta.Date, "2021-13-01"},
		{delta.Timestamp, "yesterday"}, {&delta.DecimalType{Precision: 3, Scale: 1}, "100.0"},
		{&delta.DecimalType{Precision: 5, Scale: 1}, "1.25"}, {&delta.ArrayType{ElementType: delta.Long}, "[]"},
	} {
		in := c.in
		if v, err := ParsePartitionValue(c.typ, &in); err == nil {
			t.Errorf("parse %s %q = %v, want error", c.typ.TypeName(), c.in, v)
		}
	}
	if v, err := ParsePartitionValue(delta.Long, nil); v != nil || err != nil {
		t.Errorf("nil -> %v, %v", v, err)
	}
	if _, err := FormatPartitionValue(delta.Binary, []byte{0xff}); err == nil {
		t.Error("invalid UTF-8 binary partition value accepted")
	}
	if s, err := FormatPartitionValue(delta.Timestamp, time.Date(2020, 1, 2, 3, 4, 5, 6000, time.FixedZone("x", 3600))); err != nil || *s != "2020-01-02T02:04:05.000006Z" {
		t.Errorf("time.Time -> %v, %v", s, err)
	}
}

func TestEscapePartitionPath(t *testing.T) {
	for in, want := range map[string]string{
		"plain": "plain", "a/b": "a%2Fb", "/%20%f": "%2F%2520%25f", "a b": "a%20b", "x=y": "x%3Dy", "\x01": "%01", "é": "é",
	} {
		if got := escapePartitionPath(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
	if got := encodeAddPath("letter=%2F%2520%25f/part-1.parquet"); got != "letter=%252F%252520%2525f/part-1.parquet" {
		t.Errorf("encodeAddPath = %q", got)
	}
}

func parseStats(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("stats %s: %v", s, err)
	}
	return m
}

func TestStats(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	long := strings.Repeat("z", 40)
	s := mustSchema(t, fld("i", "integer", true), fld("s", "string", true), fld("ts", "timestamp", true), fld("tn", "timestamp_ntz", true),
		fld("dt", "date", true), fld("dec", "decimal(10,3)", true), fld("f", "double", true), fld("bo", "boolean", true), fld("bi", "binary", true),
		fld("st", `{"type":"struct","fields":[`+fld("a", "long", true)+`]}`, true),
		fld("arr", `{"type":"array","elementType":"long","containsNull":true}`, true), fld("p", "string", true))
	rec := recFromJSON(t, mem, s, `[
{"i":5,"s":"`+long+`","ts":"2021-01-01T00:00:00.123999Z","tn":"2021-01-01T00:00:00","dt":"2021-01-01","dec":"1.500","f":2.5,"bo":true,"bi":"AA==","st":{"a":3},"arr":[1],"p":"x"},
{"i":-5,"s":"abc","ts":"1969-12-31T23:59:59.999999Z","tn":"2021-06-01T12:00:00.5","dt":"1999-12-31","dec":"-2.000","f":-1,"bo":false,"bi":null,"st":null,"arr":null,"p":"x"},
{"i":null,"s":null,"ts":null,"tn":null,"dt":null,"dec":null,"f":null,"bo":null,"bi":null,"st":{"a":null},"arr":[],"p":"x"}
]`)
	defer rec.Release()
	ti := TableInfo{Schema: s, PartitionColumns: []string{"p"}, Allocator: mem}
	adds, err := Write(ctx, st, ti, rec, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := parseStats(t, adds[0].Stats)
	get := func(part, key string) any {
		obj, _ := m[part].(map[string]any)
		for _, k := range strings.Split(key, ".") {
			v, ok := obj[k]
			if !ok {
				return nil
			}
			if o, ok := v.(map[string]any); ok {
				obj = o
				continue
			}
			return v
		}
		return obj
	}
	str := func(v any) string {
		if v == nil {
			return "<nil>"
		}
		if n, ok := v.(json.Number); ok {
			return n.String()
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	if str(m["numRecords"]) != "3" {
		t.Errorf("numRecords %v", m["numRecords"])
	}
	checks := []struct{ part, key, want string }{
		{"minValues", "i", "-5"}, {"maxValues", "i", "5"}, {"nullCount", "i", "1"},
		{"minValues", "s", `"abc"`}, {"maxValues", "s", `"` + strings.Repeat("z", 31) + `{"`}, {"nullCount", "s", "1"},
		{"minValues", "ts", `"1969-12-31T23:59:59.999Z"`}, {"maxValues", "ts", `"2021-01-01T00:00:00.123Z"`},
		{"minValues", "tn", `"2021-01-01T00:00:00.000"`}, {"maxValues", "tn", `"2021-06-01T12:00:00.500"`},
		{"minValues", "dt", `"1999-12-31"`}, {"maxValues", "dt", `"2021-01-01"`},
		{"minValues", "dec", "-2.000"}, {"maxValues", "dec", "1.500"},
		{"minValues", "f", "-1"}, {"maxValues", "f", "2.5"},
		{"minValues", "bo", "false"}, {"maxValues", "bo", "true"},
		{"minValues", "bi", "<nil>"}, {"nullCount", "bi", "2"},
		{"minValues", "st.a", "3"}, {"nullCount", "st.a", "2"},
		{"minValues", "arr", "<nil>"}, {"nullCount", "arr", "1"},
		{"nullCount", "p", "<nil>"},
	}
	for _, c := range checks {
		if got := str(get(c.part, c.key)); got != c.want {
			t.Errorf("%s.%s = %s, want %s (stats %s)", c.part, c.key, got, c.want, adds[0].Stats)
		}
	}
}

func TestStatsSpecialValues(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	s := mustSchema(t, fld("f", "double", true), fld("a", "long", true), fld("b", "long", true), fld("c", "long", true))
	as, _ := ArrowSchema(s)
	bld := array.NewRecordBuilder(mem, as)
	defer bld.Release()
	bld.Field(0).(*array.Float64Builder).AppendValues([]float64{1, math.NaN()}, nil)
	for i := 1; i < 4; i++ {
		bld.Field(i).(*array.Int64Builder).AppendValues([]int64{1, 2}, nil)
	}
	rec := bld.NewRecordBatch()
	defer rec.Release()
	ti := TableInfo{Schema: s, Allocator: mem, Config: map[string]string{"delta.dataSkippingNumIndexedCols": "2"}}
	adds, err := Write(ctx, st, ti, rec, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"numRecords":2,"minValues":{"a":1},"maxValues":{"a":2},"nullCount":{"f":0,"a":0}}`; adds[0].Stats != want {
		t.Errorf("stats %s\nwant  %s", adds[0].Stats, want)
	}
	ti.Config = map[string]string{"delta.dataSkippingStatsColumns": "c"}
	adds, err = Write(ctx, st, ti, rec, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"numRecords":2,"minValues":{"c":1},"maxValues":{"c":2},"nullCount":{"c":0}}`; adds[0].Stats != want {
		t.Errorf("stats %s\nwant  %s", adds[0].Stats, want)
	}
}

func TestTruncateStat(t *testing.T) {
	p := strings.Repeat("a", 31)
	for _, c := range []struct {
		in    string
		isMax bool
		want  string
		ok    bool
	}{
		{"short", true, "short", true},
		{p + "bc", false, p + "b", true},
		{p + "bc", true, p + "c", true},
		{p + "é" + "x", true, p + "ê", true},
		{p + "\U0010FFFF" + "x", true, strings.Repeat("a", 30) + "b", true},
		{strings.Repeat("\U0010FFFF", 33), true, "", false},
		{strings.Repeat("\U0010FFFF", 33), false, strings.Repeat("\U0010FFFF", 32), true},
		{p + "\uD7FF" + "x", true, p + "\uE000", true},
	} {
		got, ok := truncateStat(c.in, c.isMax)
		if got != c.want || ok != c.ok {
			t.Errorf("truncateStat(%q, %v) = %q, %v; want %q, %v", c.in, c.isMax, got, ok, c.want, c.ok)
		}
		if ok && c.isMax && got < c.in {
			t.Errorf("max bound %q not above %q", got, c.in)
		}
	}
}

func TestRollingFiles(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	s := mustSchema(t, fld("id", "long", true), fld("s", "string", true))
	as, _ := ArrowSchema(s)
	bld := array.NewRecordBuilder(mem, as)
	defer bld.Release()
	const n = 20000
	for i := 0; i < n; i++ {
		bld.Field(0).(*array.Int64Builder).Append(int64(i))
		bld.Field(1).(*array.StringBuilder).Append(uuid.NewString())
	}
	rec := bld.NewRecordBatch()
	defer rec.Release()
	ti := TableInfo{Schema: s, Allocator: mem}
	adds, err := Write(ctx, st, ti, rec, WriteOptions{TargetFileSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(adds) < 4 {
		t.Fatalf("%d files for ~%d KiB at a 64 KiB target", len(adds), n*45/1024)
	}
	var total int64
	for _, a := range adds {
		if a.Size > 3*(64<<10) {
			t.Errorf("file %s is %d bytes, target 64 KiB", a.Path, a.Size)
		}
		total += parseStatsRows(t, a.Stats)
	}
	if total != n || len(readAll(t, st, ti, adds)) != n {
		t.Errorf("rows: stats say %d, want %d", total, n)
	}
}

func parseStatsRows(t *testing.T, s string) int64 {
	n, _ := parseStats(t, s)["numRecords"].(json.Number).Int64()
	return n
}

// writeRaw writes rec as a Parquet file with the given properties (to make
// files shaped like other writers').
func writeRaw(t *testing.T, st *local.Store, key string, rec arrow.Record, props *parquet.WriterProperties, aprops pqarrow.ArrowWriterProperties) *delta.Add {
	t.Helper()
	var buf bytes.Buffer
	tbl := array.NewTableFromRecords(rec.Schema(), []arrow.Record{rec})
	defer tbl.Release()
	if err := pqarrow.WriteTable(tbl, &buf, 1024, props, aprops); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, key, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	return &delta.Add{Path: key, Size: int64(buf.Len()), PartitionValues: map[string]*string{}}
}

func TestReadPhysicalVariants(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	// The file: timestamps in ms, ns (INT96) and s; decimals stored as
	// INT32 / INT64 / FLBA; narrower ints; binary for a string column.
	fileSchema := arrow.NewSchema([]arrow.Field{
		{Name: "ts_ms", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "ts_96", Type: &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "d32", Type: &arrow.Decimal128Type{Precision: 9, Scale: 2}, Nullable: true},
		{Name: "d64", Type: &arrow.Decimal128Type{Precision: 18, Scale: 4}, Nullable: true},
		{Name: "dfl", Type: &arrow.Decimal128Type{Precision: 30, Scale: 3}, Nullable: true},
		{Name: "wide", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "str", Type: arrow.BinaryTypes.Binary, Nullable: true},
	}, nil)
	rows := `[{"ts_ms":"2021-01-01T00:00:00.123Z","ts_96":"2021-01-01T00:00:00.123456Z","d32":"1234567.89","d64":"-12345678901234.5678","dfl":"123456789012345678901234567.891","wide":7,"str":"aGk="},
{"ts_ms":null,"ts_96":null,"d32":null,"d64":null,"dfl":null,"wide":null,"str":null}]`
	rec, _, err := array.RecordFromJSON(mem, fileSchema, strings.NewReader(rows))
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	int96 := writeRaw(t, st, "int96.parquet", rec,
		parquet.NewWriterProperties(parquet.WithStoreDecimalAsInteger(true), parquet.WithAllocator(mem)),
		pqarrow.NewArrowWriterProperties(pqarrow.WithDeprecatedInt96Timestamps(true)))
	plain := writeRaw(t, st, "plain.parquet", rec, parquet.NewWriterProperties(parquet.WithAllocator(mem)), pqarrow.DefaultWriterProps())

	// Check the variants really are on disk.
	pf := openParquet(t, st, "int96.parquet")
	sc := pf.MetaData().Schema
	for name, want := range map[string]parquet.Type{"ts_96": parquet.Types.Int96, "d32": parquet.Types.Int32, "d64": parquet.Types.Int64, "dfl": parquet.Types.FixedLenByteArray} {
		if got := sc.Column(sc.ColumnIndexByName(name)).PhysicalType(); got != want {
			t.Errorf("%s stored as %s, want %s", name, got, want)
		}
	}
	pf.Close()

	s := mustSchema(t, fld("ts_ms", "timestamp", true), fld("ts_96", "timestamp", true), fld("d32", "decimal(9,2)", true),
		fld("d64", "decimal(20,5)", true), fld("dfl", "decimal(30,3)", true), fld("wide", "long", true), fld("str", "string", true),
		fld("added", "integer", true))
	ti := TableInfo{Schema: s, Allocator: mem}
	want := []string{
		`{"added":null,"d32":"1234567.89","d64":"-12345678901234.5678","dfl":"123456789012345678901234567.891","str":"hi","ts_96":"2021-01-01T00:00:00.123456Z","ts_ms":"2021-01-01T00:00:00.123Z","wide":7}`,
		`{"added":null,"d32":null,"d64":null,"dfl":null,"str":null,"ts_96":null,"ts_ms":null,"wide":null}`,
	}
	for _, add := range []*delta.Add{int96, plain} {
		got := readAll(t, st, ti, []*delta.Add{add})
		sameRows(t, got, want)
	}
	// Narrowing that loses data is an error naming the file, not a panic.
	bad := mustSchema(t, fld("d64", "decimal(20,2)", true))
	if _, err := Read(ctx, st, TableInfo{Schema: bad}, int96); err == nil || !strings.Contains(err.Error(), "int96.parquet") {
		t.Errorf("lossy decimal read: %v", err)
	}
}

// normJSON re-marshals JSON rows with sorted keys.
func normJSON(t *testing.T, rows []string) []string {
	var out []string
	for _, r := range rows {
		var m map[string]any
		if err := json.Unmarshal([]byte(r), &m); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(m)
		out = append(out, string(b))
	}
	return out
}

func TestSchemaEvolutionFill(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	v0 := mustSchema(t, fld("id", "long", true), fld("st", `{"type":"struct","fields":[`+fld("a", "integer", true)+`]}`, true))
	rec := recFromJSON(t, mem, v0, `[{"id":1,"st":{"a":1}},{"id":2,"st":null}]`)
	defer rec.Release()
	adds, err := Write(ctx, st, TableInfo{Schema: v0, Allocator: mem}, rec, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v1 := mustSchema(t, fld("id", "long", true),
		fld("st", `{"type":"struct","fields":[`+fld("a", "integer", true)+`,`+fld("b", "string", true)+`]}`, true),
		fld("new", `{"type":"map","keyType":"string","valueType":"long","valueContainsNull":true}`, true))
	got := readAll(t, st, TableInfo{Schema: v1, Allocator: mem}, adds)
	sameRows(t, got, []string{`{"id":1,"st":{"a":1,"b":null},"new":null}`, `{"id":2,"st":null,"new":null}`})
}

func TestColumnMapping(t *testing.T) {
	for _, mode := range []string{"name", "id"} {
		t.Run(mode, func(t *testing.T) {
			mem := checkedAlloc(t)
			st := newStore(t)
			cm := func(name, typ string, id int, phys string) string {
				f := fld(name, typ, true)
				return strings.Replace(f, `"metadata":{}`, `"metadata":{"delta.columnMapping.id":`+itoa(id)+`,"delta.columnMapping.physicalName":"`+phys+`"}`, 1)
			}
			s := mustSchema(t, cm("id", "long", 1, "col-1"), cm("p", "string", 2, "col-2"),
				cm("st", `{"type":"struct","fields":[`+cm("a", "integer", 4, "col-4")+`]}`, 3, "col-3"))
			ti := TableInfo{Schema: s, PartitionColumns: []string{"p"}, Config: map[string]string{"delta.columnMapping.mode": mode}, Allocator: mem}
			rec := recFromJSON(t, mem, s, `[{"id":1,"p":"x","st":{"a":5}}]`)
			defer rec.Release()
			adds, err := Write(ctx, st, ti, rec, WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			a := adds[0]
			if v := a.PartitionValues["col-2"]; v == nil || *v != "x" {
				t.Errorf("partitionValues %v, want keyed by physical name", a.PartitionValues)
			}
			if !strings.Contains(a.Stats, `"col-1"`) || !strings.Contains(a.Stats, `"col-3":{"col-4"`) {
				t.Errorf("stats not keyed by physical names: %s", a.Stats)
			}
			rel, _ := DecodeForTest(a.Path)
			pf := openParquet(t, st, rel)
			sc := pf.MetaData().Schema
			if sc.ColumnIndexByName("col-1") < 0 || sc.ColumnIndexByName("col-3.col-4") < 0 {
				t.Errorf("physical names missing from file schema: %s", sc)
			}
			if id := sc.Column(sc.ColumnIndexByName("col-3.col-4")).SchemaNode().FieldID(); id != 4 {
				t.Errorf("field id %d, want 4", id)
			}
			pf.Close()
			sameRows(t, readAll(t, st, ti, adds), []string{`{"id":1,"p":"x","st":{"a":5}}`})

			// After a rename (logical name changes, physical stays) rows still resolve.
			renamed := mustSchema(t, cm("ident", "long", 1, "col-1"), cm("p", "string", 2, "col-2"),
				cm("st", `{"type":"struct","fields":[`+cm("renamed", "integer", 4, "col-4")+`]}`, 3, "col-3"))
			ti.Schema = renamed
			sameRows(t, readAll(t, st, ti, adds), []string{`{"ident":1,"p":"x","st":{"renamed":5}}`})
		})
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// dvTable writes ids 0..n-1 and returns the table info and add.
func dvTable(t *testing.T, st *local.Store, mem memory.Allocator, n int) (TableInfo, *delta.Add) {
	s := mustSchema(t, fld("id", "long", true))
	as, _ := ArrowSchema(s)
	bld := array.NewRecordBuilder(mem, as)
	defer bld.Release()
	for i := 0; i < n; i++ {
		bld.Field(0).(*array.Int64Builder).Append(int64(i))
	}
	rec := bld.NewRecordBatch()
	defer rec.Release()
	ti := TableInfo{Schema: s, Allocator: mem}
	adds, err := Write(ctx, st, ti, rec, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ti, adds[0]
}

func idsOf(t *testing.T, st blob.Store, ti TableInfo, add *delta.Add) []int64 {
	t.Helper()
	var ids []int64
	err := Scan(ctx, st, ti, []*delta.Add{add}, func(r arrow.Record) error {
		ids = append(ids, r.Column(0).(*array.Int64).Int64Values()...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestDeletionVectorInline(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	ti, add := dvTable(t, st, mem, 40)
	// The protocol's inline example: rows 3, 4, 7, 11, 18, 29.
	raw := encodeBitmapArray([]uint64{3, 4, 7, 11, 18, 29})
	add.DeletionVector = &delta.DeletionVector{StorageType: "i", PathOrInlineDv: z85Encode(raw), SizeInBytes: int32(len(raw)), Cardinality: 6}
	ids := idsOf(t, st, ti, add)
	if len(ids) != 34 {
		t.Fatalf("%d rows, want 34", len(ids))
	}
	for _, id := range ids {
		switch id {
		case 3, 4, 7, 11, 18, 29:
			t.Errorf("deleted row %d returned", id)
		}
	}
	// The protocol's example string decodes to the same rows.
	rows, err := decodeBitmapArray(mustZ85(t, "^Bg9^0rr910000000000iXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L", 6))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Trim(strings.Join(strings.Fields(strings.Trim(jsonOf(rows), "[]")), ","), ","); got != "3,4,7,11,18,29" {
		t.Errorf("spec inline DV = %v", rows)
	}
	// Wrong cardinality and garbage are errors.
	add.DeletionVector.Cardinality = 5
	if _, err := Read(ctx, st, ti, add); !errors.Is(err, ErrCorruptDV) {
		t.Errorf("cardinality mismatch: %v", err)
	}
	add.DeletionVector = &delta.DeletionVector{StorageType: "i", PathOrInlineDv: "00000", SizeInBytes: 4, Cardinality: 0}
	if _, err := Read(ctx, st, ti, add); !errors.Is(err, ErrCorruptDV) {
		t.Errorf("garbage DV: %v", err)
	}
}

func mustZ85(t *testing.T, s string, _ int) []byte {
	// The example's sizeInBytes is 36; decoding pads to a multiple of 4.
	b, err := z85Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonOf(v any) string { b, _ := json.Marshal(v); return strings.ReplaceAll(string(b), ",", " ") }

func dvFile(prefixBytes []byte, bitmaps ...[]byte) ([]byte, []int32) {
	out := append([]byte{1}, prefixBytes...)
	var offs []int32
	for _, b := range bitmaps {
		offs = append(offs, int32(len(out)))
		out = binary.BigEndian.AppendUint32(out, uint32(len(b)))
		out = append(out, b...)
		out = binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(b))
	}
	return out, offs
}

func TestDeletionVectorFiles(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	ti, add := dvTable(t, st, mem, 70000)
	// Second bitmap has a bitmap container (> 4096 values) and crosses a
	// 65536 boundary.
	var many []uint64
	for i := uint64(0); i < 70000; i += 3 {
		many = append(many, i)
	}
	b1 := encodeBitmapArray([]uint64{0, 69999})
	b2 := encodeBitmapArray(many)
	data, offs := dvFile(nil, b1, b2)
	id := uuid.New()
	if err := st.Put(ctx, "ab/deletion_vector_"+id.String()+".bin", data); err != nil {
		t.Fatal(err)
	}
	rel := "ab" + z85Encode(id[:])
	add.DeletionVector = &delta.DeletionVector{StorageType: "u", PathOrInlineDv: rel, Offset: &offs[1], SizeInBytes: int32(len(b2)), Cardinality: int64(len(many))}
	ids := idsOf(t, st, ti, add)
	if len(ids) != 70000-len(many) {
		t.Fatalf("%d rows, want %d", len(ids), 70000-len(many))
	}
	for _, id := range ids {
		if id%3 == 0 {
			t.Fatalf("deleted row %d returned", id)
		}
	}
	// First DV in the same file, as an absolute path.
	abs := "file://" + filepath.ToSlash(filepath.Join(st.Root(), "ab", "deletion_vector_"+id.String()+".bin"))
	add.DeletionVector = &delta.DeletionVector{StorageType: "p", PathOrInlineDv: abs, Offset: &offs[0], SizeInBytes: int32(len(b1)), Cardinality: 2}
	ids = idsOf(t, st, ti, add)
	if len(ids) != 69998 || ids[0] != 1 || ids[len(ids)-1] != 69998 {
		t.Fatalf("absolute DV: %d rows, first %d last %d", len(ids), ids[0], ids[len(ids)-1])
	}
	// A flipped byte fails the checksum.
	data[offs[0]+6] ^= 0xff
	if err := st.Put(ctx, "ab/deletion_vector_"+id.String()+".bin", data); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(ctx, st, ti, add); !errors.Is(err, ErrCorruptDV) {
		t.Errorf("corrupt DV file: %v", err)
	}
	// Deleting every row yields no records.
	var all []uint64
	for i := uint64(0); i < 70000; i++ {
		all = append(all, i)
	}
	raw := encodeBitmapArray(all)
	add.DeletionVector = &delta.DeletionVector{StorageType: "i", PathOrInlineDv: z85Encode(raw), SizeInBytes: int32(len(raw)), Cardinality: 70000}
	if ids := idsOf(t, st, ti, add); len(ids) != 0 {
		t.Errorf("%d rows after deleting all", len(ids))
	}
}

func TestRoaringRunContainers(t *testing.T) {
	// Hand-built portable bitmap with runs: cookie 12347 | (n-1)<<16, n=2,
	// run flags 0b01: container 0 is a run [10, 14], container 1 (key 1) an
	// array {5}. n < 4, so no offsets.
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, dvMagic)
	b = binary.LittleEndian.AppendUint64(b, 2)
	b = binary.LittleEndian.AppendUint32(b, 0) // high key 0
	b = binary.LittleEndian.AppendUint32(b, roaringWithRuns|1<<16)
	b = append(b, 0x01)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint16(b, 4) // card-1
	b = binary.LittleEndian.AppendUint16(b, 1)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint16(b, 1) // one run
	b = binary.LittleEndian.AppendUint16(b, 10)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint16(b, 5)
	b = binary.LittleEndian.AppendUint32(b, 2) // high key 2
	b = append(b, encodeBitmapArray([]uint64{7})[16:]...)
	rows, err := decodeBitmapArray(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{10, 11, 12, 13, 14, 65536 + 5, 2<<32 | 7}
	if jsonOf(rows) != jsonOf(want) {
		t.Errorf("rows %v, want %v", rows, want)
	}
	// Every truncation is an error, never a panic.
	for i := 0; i < len(b); i++ {
		if _, err := decodeBitmapArray(b[:i]); err == nil {
			t.Errorf("truncated at %d: no error", i)
		}
	}
}

func FuzzDecodeBitmapArray(f *testing.F) {
	f.Add(encodeBitmapArray([]uint64{1, 2, 3, 1 << 33}))
	f.Add(encodeBitmapArray(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := decodeBitmapArray(b)
		if err != nil {
			return
		}
		for i := 1; i < len(rows); i++ {
			if rows[i] <= rows[i-1] {
				t.Fatalf("not ascending: %v", rows)
			}
		}
	})
}

func TestZ85(t *testing.T) {
	// ZeroMQ RFC 32 test vector.
	in := []byte{0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B}
	if got := z85Encode(in); got != "HelloWorld" {
		t.Errorf("encode = %q", got)
	}
	out, err := z85Decode("HelloWorld")
	if err != nil || !bytes.Equal(out, in) {
		t.Errorf("decode = %x, %v", out, err)
	}
	for _, bad := range []string{"Hell", "Hello~orld", "#####"} {
		if _, err := z85Decode(bad); err == nil {
			t.Errorf("z85Decode(%q) accepted", bad)
		}
	}
}

func TestCorruptFile(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	ti, add := dvTable(t, st, mem, 100)
	rel, _ := DecodeForTest(add.Path)
	data, err := st.Get(ctx, rel)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"truncated.parquet": data[:len(data)/2],
		"garbage.parquet":   bytes.Repeat([]byte("PAR1"), 20),
		"flipped.parquet":   flip(data, 40),
		"empty.parquet":     nil,
	} {
		if err := st.Put(ctx, name, b); err != nil {
			t.Fatal(err)
		}
		_, err := Read(ctx, st, ti, &delta.Add{Path: name})
		if err == nil {
			if name == "flipped.parquet" {
				continue // a flip inside a value may still decode
			}
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
	if _, err := Read(ctx, st, ti, &delta.Add{Path: "missing.parquet"}); !errors.Is(err, blob.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0xff
	return c
}

func TestArrowDeltaSchema(t *testing.T) {
	s := mustSchema(t, allTypesFields...)
	as, err := ArrowSchema(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DeltaSchema(as)
	if err != nil {
		t.Fatal(err)
	}
	if back.SchemaString() != s.SchemaString() {
		t.Errorf("round trip\n%s\nwant\n%s", back.SchemaString(), s.SchemaString())
	}
	for name, want := range map[string]string{"ts": "timestamp[us, tz=UTC]", "tn": "timestamp[us]", "dec": "decimal(10, 2)", "dt": "date32", "v": "null"} {
		f, _ := as.FieldsByName(name)
		if got := f[0].Type.String(); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	if _, err := DeltaSchema(arrow.NewSchema([]arrow.Field{{Name: "u", Type: arrow.PrimitiveTypes.Uint64}}, nil)); err == nil {
		t.Error("uint64 accepted")
	}
	if _, err := ArrowSchema(&delta.StructType{Fields: []*delta.StructField{{Name: "x", Type: &delta.PrimitiveType{Name: "variant"}}}}); err == nil {
		t.Error("variant accepted")
	}
}

func TestScanStopsOnCallbackError(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	ti, add := dvTable(t, st, mem, 10)
	stop := errors.New("stop")
	calls := 0
	err := Scan(ctx, st, ti, []*delta.Add{add, add}, func(arrow.Record) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("err %v after %d calls", err, calls)
	}
}

func TestPartitionOnlyTable(t *testing.T) {
	// A file with no data columns at all (every column is a partition column
	// or void) still yields its row count.
	mem := checkedAlloc(t)
	st := newStore(t)
	s := mustSchema(t, fld("p", "integer", true), fld("v", "void", true))
	rec := recFromJSON(t, mem, s, `[{"p":1,"v":null},{"p":1,"v":null},{"p":null,"v":null}]`)
	defer rec.Release()
	ti := TableInfo{Schema: s, PartitionColumns: []string{"p"}, Allocator: mem}
	adds, err := Write(ctx, st, ti, rec, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameRows(t, readAll(t, st, ti, adds), []string{`{"p":1,"v":null}`, `{"p":1,"v":null}`, `{"p":null,"v":null}`})
}

var _ = io.EOF
var _ = os.Getenv

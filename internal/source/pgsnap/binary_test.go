package pgsnap_test

import (
	"context"
	"math"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/bronze"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestBinaryReadsAsText: for every type a snapshot chunk reads in binary
// (bronze.ReadsBinary), PostgreSQL's binary form of each value, through
// bronze.AppendBinary, gives exactly the Arrow value its text form (what
// CDC sends) gives through bronze.AppendText: edge values included (NaN,
// ±Infinity, -0, extreme and BC dates, ±infinity, sub-second times before
// 1970, timestamps beyond int64 µs since 1970; numeric NaN, 38 digits,
// scales above the precision and negative, values past 18 digits), in a
// session time zone with seconds in its historical offsets. A value whose
// text is an error (numeric ±Infinity read for a decimal column) is an
// error in binary too.
func TestBinaryReadsAsText(t *testing.T) {
	db := pgtest.NewDB(t)
	conn := db.Conn(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "SET TimeZone = 'Europe/Amsterdam'"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		oid  uint32
		typ  string
		vals []string
		mod  int32              // typmod (numeric), 0: none
		dt   *delta.DecimalType // Delta type when not the column's (unconstrained numeric values read as a decimal)
	}{
		{oid: 16, typ: "bool", vals: []string{"true", "false"}},
		{oid: 21, typ: "int2", vals: []string{"0", "-1", "32767", "-32768"}},
		{oid: 23, typ: "int4", vals: []string{"0", "-1", "2147483647", "-2147483648"}},
		{oid: 20, typ: "int8", vals: []string{"0", "-1", "9223372036854775807", "-9223372036854775808"}},
		{oid: 700, typ: "float4", vals: []string{"0", "-0", "1.5", "NaN", "Infinity", "-Infinity", "1e-45", "3.4028235e38", "-1.17549435e-38", "0.1", "16777217", "1.00000012"}},
		{oid: 701, typ: "float8", vals: []string{"0", "-0", "2.25", "NaN", "Infinity", "-Infinity", "4.9e-324", "1.7976931348623157e308", "0.1", "0.30000000000000004", "142857.14285714287"}},
		{oid: 1082, typ: "date", vals: []string{"2024-02-29", "1970-01-01", "1969-12-31", "2000-01-01", "0044-03-15 BC", "4713-01-01 BC", "5874897-12-31", "infinity", "-infinity"}},
		{oid: 1114, typ: "timestamp", vals: []string{"2024-02-29 12:34:56.123456", "1969-12-31 23:59:59.5", "1970-01-01 00:00:00.000001", "1999-12-31 23:59:59.999999",
			"0044-03-15 12:00:00 BC", "0001-01-01 00:00:00.999999 BC", "4713-01-01 00:00:00 BC", "294276-12-31 23:59:59.999999", "294247-01-10 04:00:54.775806",
			"294247-01-10 04:00:54.775807", "infinity", "-infinity"}},
		{oid: 1184, typ: "timestamptz", vals: []string{"2024-02-29 12:34:56.123456+02", "1969-12-31 23:59:59.5+00", "1850-06-15 12:00:00.000001", "1900-06-15 12:00:00.25+00:53:28",
			"0001-01-01 00:00:00+00 BC", "4713-01-01 00:00:00.25+00 BC", "294276-12-31 23:59:59.999999+00", "294247-01-10 04:00:54.775807+00", "infinity", "-infinity"}},
		{1700, "numeric(12,2)", []string{"0", "-0", "0.01", "-0.01", "12.3", "100", "0.5", "1234567890.12", "-9999999999.99", "NaN", "10000", "0.1", "-0.10"}, numericMod(12, 2), nil},
		{1700, "numeric(38,0)", []string{"0", "1", "-1", "99999999999999999999999999999999999999", "-99999999999999999999999999999999999999",
			"10000000000000000000", "123456789012345678901234567890", "NaN"}, numericMod(38, 0), nil},
		{1700, "numeric(38,38)", []string{"0", "0.00000000000000000000000000000000000001", "-0.99999999999999999999999999999999999999", "0.5"}, numericMod(38, 38), nil},
		{1700, "numeric(18,4)", []string{"99999999999999.9999", "-12345678901234.5678", "0.0001", "10000.0001"}, numericMod(18, 4), nil},
		{1700, "numeric(20,10)", []string{"1234567890.0123456789", "-0.0000000001", "9999999999"}, numericMod(20, 10), nil},
		{1700, "numeric(3,5)", []string{"0.00123", "-0.00999", "0"}, numericMod(3, 5), nil},
		{1700, "numeric(5,-2)", []string{"12345", "-9999949", "0", "50"}, numericMod(5, -2), nil},
		{1700, "numeric", []string{"Infinity", "-Infinity", "NaN", "1.5", "1.234", "123456789012.5"}, 0, &delta.DecimalType{Precision: 12, Scale: 2}},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			col := change.Column{TypeOID: tc.oid, TypeMod: tc.mod}
			dt := bronze.DeltaType(col)
			if tc.dt != nil {
				dt = tc.dt
			} else if !bronze.ReadsBinary(col) {
				t.Fatalf("%s is not read in binary", tc.typ)
			}
			at, err := datafile.ArrowSchema(&delta.StructType{Fields: []*delta.StructField{{Name: "x", Type: dt, Nullable: true}}})
			if err != nil {
				t.Fatal(err)
			}
			fromText := array.NewBuilder(memory.DefaultAllocator, at.Field(0).Type)
			fromBin := array.NewBuilder(memory.DefaultAllocator, at.Field(0).Type)
			defer fromText.Release()
			defer fromBin.Release()
			args := make([][]byte, len(tc.vals))
			for i, v := range tc.vals {
				args[i] = []byte(v)
			}
			q := "SELECT x, x FROM unnest($1::text[]::" + tc.typ + "[]) WITH ORDINALITY AS u(x, n) ORDER BY n"
			rr := conn.PgConn().ExecParams(ctx, q, [][]byte{[]byte(pgTextArray(tc.vals))}, nil, nil, []int16{0, 1})
			n := 0
			for rr.NextRow() {
				v := rr.Values()
				terr := bronze.AppendText(fromText, dt, v[0])
				berr := bronze.AppendBinary(fromBin, v[1])
				switch {
				case terr != nil && berr != nil: // the same row is refused either way
					fromText.AppendNull()
					fromBin.AppendNull()
					t.Logf("%s %q: text: %v; binary: %v", tc.typ, v[0], terr, berr)
				case terr != nil || berr != nil:
					t.Fatalf("%s %q: text error %v, binary error %v", tc.typ, v[0], terr, berr)
				}
				n++
			}
			if _, err := rr.Close(); err != nil {
				t.Fatal(err)
			}
			if n != len(tc.vals) {
				t.Fatalf("%d rows, want %d", n, len(tc.vals))
			}
			a, b := fromText.NewArray(), fromBin.NewArray()
			defer a.Release()
			defer b.Release()
			for i := 0; i < n; i++ {
				if !sameValue(a, b, i) {
					t.Errorf("%s %s: text gives %s, binary %s", tc.typ, tc.vals[i], a.ValueStr(i), b.ValueStr(i))
				}
			}
		})
	}
}

// numericMod is the typmod of numeric(p,s).
func numericMod(p, s int) int32 { return int32(p<<16|(s&0x7ff)) + 4 }

// sameValue compares row i of a and b bit for bit.
func sameValue(a, b arrow.Array, i int) bool {
	switch x := a.(type) {
	case *array.Float32:
		return math.Float32bits(x.Value(i)) == math.Float32bits(b.(*array.Float32).Value(i))
	case *array.Float64:
		return math.Float64bits(x.Value(i)) == math.Float64bits(b.(*array.Float64).Value(i))
	}
	return array.SliceEqual(a, int64(i), int64(i+1), b, int64(i), int64(i+1))
}

func pgTextArray(vals []string) string {
	s := "{"
	for i, v := range vals {
		if i > 0 {
			s += ","
		}
		s += `"` + v + `"`
	}
	return s + "}"
}

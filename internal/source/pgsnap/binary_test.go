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
// (bronze.BinaryOIDs), PostgreSQL's binary form of each value, through
// bronze.AppendBinary, gives exactly the Arrow value its text form (what
// CDC sends) gives through bronze.AppendText: edge values included (NaN,
// ±Infinity, -0, extreme and BC dates, ±infinity, sub-second times before
// 1970, timestamps beyond int64 µs since 1970), in a session time zone with
// seconds in its historical offsets.
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
	}{
		{16, "bool", []string{"true", "false"}},
		{21, "int2", []string{"0", "-1", "32767", "-32768"}},
		{23, "int4", []string{"0", "-1", "2147483647", "-2147483648"}},
		{20, "int8", []string{"0", "-1", "9223372036854775807", "-9223372036854775808"}},
		{700, "float4", []string{"0", "-0", "1.5", "NaN", "Infinity", "-Infinity", "1e-45", "3.4028235e38", "-1.17549435e-38", "0.1", "16777217", "1.00000012"}},
		{701, "float8", []string{"0", "-0", "2.25", "NaN", "Infinity", "-Infinity", "4.9e-324", "1.7976931348623157e308", "0.1", "0.30000000000000004", "142857.14285714287"}},
		{1082, "date", []string{"2024-02-29", "1970-01-01", "1969-12-31", "2000-01-01", "0044-03-15 BC", "4713-01-01 BC", "5874897-12-31", "infinity", "-infinity"}},
		{1114, "timestamp", []string{"2024-02-29 12:34:56.123456", "1969-12-31 23:59:59.5", "1970-01-01 00:00:00.000001", "1999-12-31 23:59:59.999999",
			"0044-03-15 12:00:00 BC", "0001-01-01 00:00:00.999999 BC", "4713-01-01 00:00:00 BC", "294276-12-31 23:59:59.999999", "294247-01-10 04:00:54.775806",
			"294247-01-10 04:00:54.775807", "infinity", "-infinity"}},
		{1184, "timestamptz", []string{"2024-02-29 12:34:56.123456+02", "1969-12-31 23:59:59.5+00", "1850-06-15 12:00:00.000001", "1900-06-15 12:00:00.25+00:53:28",
			"0001-01-01 00:00:00+00 BC", "4713-01-01 00:00:00.25+00 BC", "294276-12-31 23:59:59.999999+00", "294247-01-10 04:00:54.775807+00", "infinity", "-infinity"}},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			if !bronze.BinaryOIDs[tc.oid] {
				t.Fatalf("%s is not read in binary", tc.typ)
			}
			dt := bronze.DeltaType(change.Column{TypeOID: tc.oid})
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
				if err := bronze.AppendText(fromText, dt, v[0]); err != nil {
					t.Fatalf("%s %q: text: %v", tc.typ, v[0], err)
				}
				if err := bronze.AppendBinary(fromBin, v[1]); err != nil {
					t.Fatalf("%s %q: binary: %v", tc.typ, v[0], err)
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

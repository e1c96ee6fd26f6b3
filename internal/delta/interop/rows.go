// Package interop proves that silt's Delta tables and other engines' Delta
// tables can be read both ways. It writes fixture tables with silt's own
// code (WriteFixtures, run by cmd/writefixtures) together with what silt
// reads from them, and reads tables written by delta-rs and Spark
// (TestReadForeign) against what those engines read. The Python side lives
// in interop/ at the repository root (conftest.py mirrors the normalisation
// below; test_silt_to_others.py and test_others_to_silt.py drive the flow).
//
// # Row normalisation
//
// Both sides encode every row as a JSON object keyed by column name, with
// values chosen so that equal values compare equal whatever engine read
// them, and differing values never do:
//
//	null                      JSON null
//	boolean                   true / false
//	byte, short, int, long    JSON integer (exact; both sides decode as int64 / int)
//	float                     "f32:" + 8 hex digits of the IEEE bits; every NaN is "NaN"
//	double                    "f64:" + 16 hex digits of the IEEE bits; every NaN is "NaN"
//	                          (so -0.0 and 0.0 differ, and ±Inf are exact)
//	string                    JSON string
//	binary                    "hex:" + lower-case hex
//	decimal(p,s)              exact decimal text with exactly s fraction digits ("-1.50")
//	date                      "YYYY-MM-DD" (proleptic Gregorian)
//	timestamp                 JSON integer: microseconds since the epoch, UTC
//	timestamp_ntz             JSON integer: microseconds since 1970-01-01 00:00 wall clock
//	struct                    JSON object keyed by field name
//	array                     JSON array
//	map                       JSON array of [key, value] pairs, sorted by the
//	                          canonical text of the key
//
// Rows are compared as multisets of their canonical text: each side decodes
// the other side's JSON and re-encodes it with its own encoder (sorted keys),
// so JSON spelling differences (escapes, spacing) cannot matter.
//
// # Files
//
// A fixture directory holds manifest.json, one Delta table per entry under
// tables/<name>/, and what the writing engine read under
// expected/<name>/v<version>.json (version, schema, partition columns, file
// count, txn versions) and expected/<name>/v<version>.rows.jsonl (one row a
// line).
package interop

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// RecordRows returns the normalised rows of rec (see the package doc).
func RecordRows(rec arrow.Record) ([]map[string]any, error) {
	rows := make([]map[string]any, rec.NumRows())
	for i := range rows {
		rows[i] = make(map[string]any, rec.NumCols())
	}
	for c := 0; c < int(rec.NumCols()); c++ {
		name := rec.ColumnName(c)
		col := rec.Column(c)
		for i := range rows {
			v, err := Value(col, i)
			if err != nil {
				return nil, fmt.Errorf("column %q row %d: %w", name, i, err)
			}
			rows[i][name] = v
		}
	}
	return rows, nil
}

// Value returns the normalised value of a[i].
func Value(a arrow.Array, i int) (any, error) {
	if a.DataType().ID() == arrow.NULL || a.IsNull(i) {
		return nil, nil
	}
	switch x := a.(type) {
	case *array.Boolean:
		return x.Value(i), nil
	case *array.Int8:
		return int64(x.Value(i)), nil
	case *array.Int16:
		return int64(x.Value(i)), nil
	case *array.Int32:
		return int64(x.Value(i)), nil
	case *array.Int64:
		return x.Value(i), nil
	case *array.Float32:
		return Float32(x.Value(i)), nil
	case *array.Float64:
		return Float64(x.Value(i)), nil
	case *array.String:
		return x.Value(i), nil
	case *array.LargeString:
		return x.Value(i), nil
	case *array.StringView:
		return x.Value(i), nil
	case *array.Binary:
		return "hex:" + hex.EncodeToString(x.Value(i)), nil
	case *array.LargeBinary:
		return "hex:" + hex.EncodeToString(x.Value(i)), nil
	case *array.BinaryView:
		return "hex:" + hex.EncodeToString(x.Value(i)), nil
	case *array.FixedSizeBinary:
		return "hex:" + hex.EncodeToString(x.Value(i)), nil
	case *array.Decimal128:
		return Decimal(x.Value(i).BigInt(), int(x.DataType().(*arrow.Decimal128Type).Scale)), nil
	case *array.Decimal256:
		return Decimal(x.Value(i).BigInt(), int(x.DataType().(*arrow.Decimal256Type).Scale)), nil
	case *array.Date32:
		return Date(int64(x.Value(i))), nil
	case *array.Date64:
		return Date(floorDiv(int64(x.Value(i)), 86400000)), nil
	case *array.Timestamp:
		v := int64(x.Value(i))
		switch x.DataType().(*arrow.TimestampType).Unit {
		case arrow.Second:
			v *= 1e6
		case arrow.Millisecond:
			v *= 1e3
		case arrow.Nanosecond:
			v = floorDiv(v, 1e3)
		}
		return v, nil
	case *array.Struct:
		st := x.DataType().(*arrow.StructType)
		m := make(map[string]any, x.NumField())
		for f := 0; f < x.NumField(); f++ {
			v, err := Value(x.Field(f), i)
			if err != nil {
				return nil, fmt.Errorf("field %q: %w", st.Field(f).Name, err)
			}
			m[st.Field(f).Name] = v
		}
		return m, nil
	case *array.Map: // before ListLike: a Map is a list of entries
		s, e := x.ValueOffsets(i)
		pairs := make([][]any, 0, e-s)
		for j := s; j < e; j++ {
			k, err := Value(x.Keys(), int(j))
			if err != nil {
				return nil, fmt.Errorf("map key: %w", err)
			}
			v, err := Value(x.Items(), int(j))
			if err != nil {
				return nil, fmt.Errorf("map value: %w", err)
			}
			pairs = append(pairs, []any{k, v})
		}
		sort.Slice(pairs, func(p, q int) bool { return Canonical(pairs[p][0]) < Canonical(pairs[q][0]) })
		out := make([]any, len(pairs))
		for k, p := range pairs {
			out[k] = p
		}
		return out, nil
	case array.ListLike:
		s, e := x.ValueOffsets(i)
		out := make([]any, 0, e-s)
		for j := s; j < e; j++ {
			v, err := Value(x.ListValues(), int(j))
			if err != nil {
				return nil, fmt.Errorf("array element: %w", err)
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("no normalisation for Arrow type %s", a.DataType())
}

// Float32 normalises a float.
func Float32(f float32) string {
	if f != f {
		return "NaN"
	}
	return fmt.Sprintf("f32:%08x", math.Float32bits(f))
}

// Float64 normalises a double.
func Float64(f float64) string {
	if math.IsNaN(f) {
		return "NaN"
	}
	return fmt.Sprintf("f64:%016x", math.Float64bits(f))
}

// Decimal renders an unscaled value at scale with exactly scale fraction
// digits ("-1.50").
func Decimal(unscaled *big.Int, scale int) string {
	neg := unscaled.Sign() < 0
	digits := new(big.Int).Abs(unscaled).String()
	if scale > 0 {
		if len(digits) <= scale {
			digits = strings.Repeat("0", scale-len(digits)+1) + digits
		}
		digits = digits[:len(digits)-scale] + "." + digits[len(digits)-scale:]
	}
	if neg {
		return "-" + digits
	}
	return digits
}

// Date renders days since the epoch as YYYY-MM-DD.
func Date(days int64) string {
	return time.Unix(days*86400, 0).UTC().Format("2006-01-02")
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Canonical is the comparison text of a normalised value or row: JSON with
// sorted keys and no HTML escaping. Values decoded from JSON (json.Number,
// []any, map[string]any) encode the same as the values Value returns.
func Canonical(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprintf("!unencodable %T: %v", v, err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// DecodeRows parses JSON lines of rows, keeping integers exact.
func DecodeRows(data []byte) ([]any, error) {
	var out []any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for dec.More() {
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("decode row %d: %w", len(out)+1, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// DiffRows compares two multisets of canonical rows and describes the
// difference ("" when equal).
func DiffRows(got, want []string) string {
	count := map[string]int{}
	for _, r := range got {
		count[r]++
	}
	for _, r := range want {
		count[r]--
	}
	var extra, missing []string
	for r, c := range count {
		for ; c > 0; c-- {
			extra = append(extra, r)
		}
		for ; c < 0; c++ {
			missing = append(missing, r)
		}
	}
	if len(extra) == 0 && len(missing) == 0 {
		return ""
	}
	sort.Strings(extra)
	sort.Strings(missing)
	return fmt.Sprintf("rows differ: got %d, want %d\n  unexpected (%d):\n    %s\n  missing (%d):\n    %s",
		len(got), len(want), len(extra), head(extra), len(missing), head(missing))
}

func head(rows []string) string {
	if len(rows) > 8 {
		rows = append(rows[:8:8], "...")
	}
	return strings.Join(rows, "\n    ")
}

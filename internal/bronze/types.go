package bronze

import (
	"encoding/hex"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
)

// PostgreSQL type OIDs silt maps to a typed Delta column. Every other type is
// kept as its PostgreSQL text form in a string column (lossless).
const (
	oidBool        = 16
	oidBytea       = 17
	oidChar        = 18
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidFloat4      = 700
	oidFloat8      = 701
	oidBPChar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestampTZ = 1184
	oidNumeric     = 1700
)

// DeltaType is the type rule from a PostgreSQL column to a Delta column
// (documented in DESIGN.md, "Type mapping"):
//
//	bool -> boolean; int2 -> short; int4 -> integer; int8, oid -> long;
//	float4 -> float; float8 -> double (NaN and ±Infinity kept);
//	numeric(p,s) with p <= 38 -> decimal(p,s); unconstrained or wider numeric -> string (exact text);
//	date -> date; timestamptz -> timestamp (UTC); timestamp -> timestamp (the wall-clock value read as UTC);
//	bytea -> binary; everything else (text, varchar, uuid, json, arrays, ...) -> string (PostgreSQL text form).
func DeltaType(c change.Column) delta.DataType {
	switch c.TypeOID {
	case oidBool:
		return delta.Boolean
	case oidInt2:
		return delta.Short
	case oidInt4:
		return delta.Integer
	case oidInt8, oidOID:
		return delta.Long
	case oidFloat4:
		return delta.Float
	case oidFloat8:
		return delta.Double
	case oidNumeric:
		if p, s, ok := numericTypmod(c.TypeMod); ok && p <= 38 {
			return &delta.DecimalType{Precision: p, Scale: s}
		}
		return delta.String
	case oidDate:
		return delta.Date
	case oidTimestamp, oidTimestampTZ:
		return delta.Timestamp
	case oidBytea:
		return delta.Binary
	}
	return delta.String
}

func numericTypmod(typmod int32) (precision, scale int, ok bool) {
	if typmod < 4 {
		return 0, 0, false
	}
	t := typmod - 4
	precision = int((t >> 16) & 0xffff)
	scale = int(t & 0x7ff)
	if precision < 1 || scale > precision {
		return 0, 0, false
	}
	return precision, scale, true
}

// AppendText parses one PostgreSQL text-format value (as sent by pgoutput
// with DateStyle=ISO, TimeZone=UTC, bytea_output=hex) and appends it to b,
// whose type must come from ArrowType(DeltaType(col)).
func AppendText(b array.Builder, t delta.DataType, text []byte) error {
	s := string(text)
	switch bb := b.(type) {
	case *array.BooleanBuilder:
		switch s {
		case "t", "true":
			bb.Append(true)
		case "f", "false":
			bb.Append(false)
		default:
			return fmt.Errorf("invalid boolean %q", s)
		}
	case *array.Int16Builder:
		v, err := strconv.ParseInt(s, 10, 16)
		if err != nil {
			return err
		}
		bb.Append(int16(v))
	case *array.Int32Builder:
		v, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return err
		}
		bb.Append(int32(v))
	case *array.Int64Builder:
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		bb.Append(v)
	case *array.Float32Builder:
		v, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return err
		}
		bb.Append(float32(v))
	case *array.Float64Builder:
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		bb.Append(v)
	case *array.Decimal128Builder:
		dt := t.(*delta.DecimalType)
		v, err := parseDecimal(s, dt.Precision, dt.Scale)
		if err != nil {
			return err
		}
		bb.Append(v)
	case *array.Date32Builder:
		d, err := time.Parse("2006-01-02", s)
		if err != nil {
			return fmt.Errorf("invalid date %q (only ISO dates between 0001 and 9999 are supported)", s)
		}
		bb.Append(arrow.Date32FromTime(d))
	case *array.TimestampBuilder:
		ts, err := ParseTimestamp(s)
		if err != nil {
			return err
		}
		bb.Append(arrow.Timestamp(ts.UnixMicro()))
	case *array.BinaryBuilder:
		if !strings.HasPrefix(s, `\x`) {
			return fmt.Errorf("bytea value is not in hex format (set bytea_output=hex)")
		}
		v, err := hex.DecodeString(s[2:])
		if err != nil {
			return fmt.Errorf("invalid bytea hex: %w", err)
		}
		bb.Append(v)
	case *array.StringBuilder:
		bb.Append(s)
	default:
		return fmt.Errorf("no text parser for arrow builder %T", b)
	}
	return nil
}

// ParseTimestamp parses PostgreSQL ISO timestamps with or without zone.
// Values without a zone are read as UTC.
func ParseTimestamp(s string) (time.Time, error) {
	for _, layout := range []string{
		"2006-01-02 15:04:05.999999999Z07",
		"2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02 15:04:05.999999999Z07:00:00",
		"2006-01-02 15:04:05.999999999",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid timestamp %q (infinite and BC timestamps are not supported yet)", s)
}

func parseDecimal(s string, precision, scale int) (decimal128.Num, error) {
	neg := strings.HasPrefix(s, "-")
	digits := strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(digits, ".")
	if intPart == "" && frac == "" {
		return decimal128.Num{}, fmt.Errorf("invalid numeric %q", s)
	}
	if len(frac) > scale {
		return decimal128.Num{}, fmt.Errorf("numeric %q has more than %d fractional digits", s, scale)
	}
	frac += strings.Repeat("0", scale-len(frac))
	all := strings.TrimLeft(intPart+frac, "0")
	if all == "" {
		all = "0"
	}
	if len(all) > precision {
		return decimal128.Num{}, fmt.Errorf("numeric %q does not fit decimal(%d,%d)", s, precision, scale)
	}
	bi, ok := new(big.Int).SetString(all, 10)
	if !ok {
		return decimal128.Num{}, fmt.Errorf("invalid numeric %q (NaN and Infinity are not supported in a constrained numeric column yet)", s)
	}
	if neg {
		bi.Neg(bi)
	}
	return decimal128.FromBigInt(bi), nil
}

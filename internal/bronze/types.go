package bronze

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
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

// DeltaType is the one type rule from a PostgreSQL column to a Delta column,
// used by Bronze, Silver and the verifier (DESIGN.md, "Type mapping"; the
// README has the full table). Values arrive in PostgreSQL's text format with
// the session settings of pipeline.SessionDSN, from pgoutput (CDC) and from
// the snapshot alike, and AppendText parses them, so a value read by the
// snapshot and the same value read by CDC land identically.
//
//	bool                        boolean
//	int2 / int4 / int8, oid     short / integer / long
//	float4 / float8             float / double (NaN, Infinity, -Infinity kept)
//	numeric(p,s)                decimal(p,s) when it fits 38 digits: a negative
//	                            scale gives decimal(p-s,0), a scale above the
//	                            precision decimal(s,s); NaN (the only special
//	                            value a constrained numeric can hold) is stored
//	                            as NULL (see AppendText)
//	numeric, wider numeric      string, the exact text (NaN, Infinity too)
//	date                        date; BC and years past 9999 exact
//	                            (proleptic Gregorian); infinity / -infinity as
//	                            the int32 extremes, as PostgreSQL stores them
//	timestamptz                 timestamp, UTC
//	timestamp                   timestamp: the wall-clock value read as UTC;
//	                            infinity / -infinity as the int64 extremes;
//	                            BC exact; the last 30 years of PostgreSQL's
//	                            range (after 294246-01-10, beyond int64 µs
//	                            since 1970) saturate to the infinity value
//	bytea                       binary
//	domain                      the rule of its base type (with the domain's
//	                            typmod); needs a TypeResolver, see Resolve
//	everything else             string in PostgreSQL's text form: text,
//	                            varchar, char(n) (blank-padded), name, "char",
//	                            time, timetz, interval (IntervalStyle
//	                            postgres), uuid, json, jsonb, xml, arrays,
//	                            enums, composites, ranges, multiranges, inet,
//	                            cidr, macaddr, macaddr8, money (formatted by
//	                            the server's lc_monetary), bit, varbit,
//	                            tsvector, geometric types, pg_lsn, xid, ...
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
		if p, s, ok := decimalFor(c.TypeMod); ok {
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

// TypeResolver tells which user-defined types are domains. PostgreSQL
// announces a domain column with the domain's OID (pgoutput's Relation
// message, pg_attribute); silt stores it by its base type's rule.
type TypeResolver interface {
	// BaseType returns the base type of domain oid, following domains over
	// domains, and the domain's typmod; ok is false if oid is no domain.
	BaseType(oid uint32) (base uint32, typmod int32, ok bool)
}

// Resolve returns col with a domain type replaced by its base type. With a
// nil resolver, or for built-in types (OIDs below 16384, never domains),
// col is returned as is.
func Resolve(r TypeResolver, col change.Column) change.Column {
	if r == nil || col.TypeOID < firstUserOID {
		return col
	}
	if base, typmod, ok := r.BaseType(col.TypeOID); ok {
		col.TypeOID = base
		if typmod >= 0 || col.TypeMod < 0 {
			col.TypeMod = typmod
		}
	}
	return col
}

// firstUserOID is PostgreSQL's FirstNormalObjectId: every OID below it is
// a built-in object.
const firstUserOID = 16384

// decimalFor returns the decimal type that holds every value of
// numeric(typmod) exactly, if one fits Delta's 38 digits.
func decimalFor(typmod int32) (precision, scale int, ok bool) {
	p, s, ok := numericTypmod(typmod)
	if !ok {
		return 0, 0, false
	}
	switch {
	case s < 0: // numeric(5,-2): integers of up to p-s digits
		p, s = p-s, 0
	case s > p: // numeric(3,5): values below 10^(p-s), s fractional digits
		p = s
	}
	if p > 38 {
		return 0, 0, false
	}
	return p, s, true
}

// numericTypmod decodes numeric's typmod. Since PostgreSQL 15 the scale is
// an 11-bit signed field and may be negative or exceed the precision.
func numericTypmod(typmod int32) (precision, scale int, ok bool) {
	if typmod < 4 {
		return 0, 0, false
	}
	t := typmod - 4
	precision = int((t >> 16) & 0xffff)
	scale = int(((t & 0x7ff) ^ 1024) - 1024)
	if precision < 1 || precision > 1000 {
		return 0, 0, false
	}
	return precision, scale, true
}

// AppendText parses one PostgreSQL text-format value (as sent by pgoutput
// and read by the snapshot with pipeline.SessionDSN's settings: DateStyle=ISO,
// TimeZone=UTC, bytea_output=hex, extra_float_digits=3) and appends it to b,
// whose type must come from ArrowType(DeltaType(col)); t is that Delta type.
//
// Special values (the rule in DeltaType): float NaN and ±Infinity are kept;
// a NaN in a decimal column is appended as NULL (Parquet decimals have no
// NaN); date and timestamp ±infinity become the extremes of their integer
// encodings (date: int32 days, timestamp: int64 µs), exactly as PostgreSQL
// itself stores them, and BC dates are exact (proleptic Gregorian).
func AppendText(b array.Builder, t delta.DataType, text []byte) error {
	k := builderKind(b)
	prec, scale := 0, 0
	if k == kDecimal {
		dt, ok := t.(*delta.DecimalType)
		if !ok {
			return fmt.Errorf("decimal builder for Delta type %s", t.TypeName())
		}
		prec, scale = dt.Precision, dt.Scale
	}
	v, err := decodeText(k, prec, scale, text)
	if err != nil {
		if k == kNone {
			return fmt.Errorf("no text parser for arrow builder %T", b)
		}
		return err
	}
	appendValue(b, k, v)
	return nil
}

// valueKind is the Arrow builder (and flat column) a value is decoded for.
type valueKind uint8

const (
	kNone valueKind = iota
	kBool
	kInt16
	kInt32
	kInt64
	kFloat32
	kFloat64
	kDecimal
	kDate
	kTimestamp
	kBinary
	kString
)

var kindNames = [...]string{"none", "boolean", "int16", "int32", "int64", "float32", "float64", "decimal", "date", "timestamp", "binary", "string"}

func builderKind(b array.Builder) valueKind {
	switch b.(type) {
	case *array.BooleanBuilder:
		return kBool
	case *array.Int16Builder:
		return kInt16
	case *array.Int32Builder:
		return kInt32
	case *array.Int64Builder:
		return kInt64
	case *array.Float32Builder:
		return kFloat32
	case *array.Float64Builder:
		return kFloat64
	case *array.Decimal128Builder:
		return kDecimal
	case *array.Date32Builder:
		return kDate
	case *array.TimestampBuilder:
		return kTimestamp
	case *array.BinaryBuilder:
		return kBinary
	case *array.StringBuilder:
		return kString
	}
	return kNone
}

// value is one decoded value: i (integers, bool as 0/1, date days,
// timestamp µs), f (floats), d (decimals), b (string, binary; it may alias
// the input), or null (a NaN decimal).
type value struct {
	i    int64
	f    float64
	d    decimal128.Num
	b    []byte
	null bool
}

// appendValue appends v to b, of kind k.
func appendValue(b array.Builder, k valueKind, v value) {
	if v.null {
		b.AppendNull()
		return
	}
	switch k {
	case kBool:
		b.(*array.BooleanBuilder).Append(v.i != 0)
	case kInt16:
		b.(*array.Int16Builder).Append(int16(v.i))
	case kInt32:
		b.(*array.Int32Builder).Append(int32(v.i))
	case kInt64:
		b.(*array.Int64Builder).Append(v.i)
	case kFloat32:
		b.(*array.Float32Builder).Append(float32(v.f))
	case kFloat64:
		b.(*array.Float64Builder).Append(v.f)
	case kDecimal:
		b.(*array.Decimal128Builder).Append(v.d)
	case kDate:
		b.(*array.Date32Builder).Append(arrow.Date32(v.i))
	case kTimestamp:
		b.(*array.TimestampBuilder).Append(arrow.Timestamp(v.i))
	case kBinary:
		b.(*array.BinaryBuilder).Append(v.b)
	case kString:
		b.(*array.StringBuilder).BinaryBuilder.Append(v.b)
	}
}

// decodeText is AppendText's parsing of one text-format value for kind k
// (prec and scale: a decimal's).
func decodeText(k valueKind, prec, scale int, text []byte) (value, error) {
	switch k {
	case kBool:
		switch string(text) {
		case "t", "true":
			return value{i: 1}, nil
		case "f", "false":
			return value{}, nil
		}
		return value{}, fmt.Errorf("invalid boolean %q", text)
	case kInt16, kInt32, kInt64:
		v, err := parseInt(text, [...]int{kInt16: 16, kInt32: 32, kInt64: 64}[k])
		return value{i: v}, err
	case kFloat32, kFloat64:
		bits := 64
		if k == kFloat32 {
			bits = 32
		}
		v, err := strconv.ParseFloat(string(text), bits)
		return value{f: v}, err
	case kDecimal:
		if string(text) == "NaN" {
			return value{null: true}, nil
		}
		if v, ok := parseDecimalSmall(text, prec, scale); ok {
			return value{d: v}, nil
		}
		v, err := parseDecimal(string(text), prec, scale)
		return value{d: v}, err
	case kDate:
		d, err := ParseDate(text)
		return value{i: int64(d)}, err
	case kTimestamp:
		us, err := ParseTimestampMicros(text)
		return value{i: us}, err
	case kBinary:
		if len(text) < 2 || text[0] != '\\' || text[1] != 'x' {
			return value{}, fmt.Errorf("bytea value is not in hex format (set bytea_output=hex)")
		}
		v := make([]byte, (len(text)-2)/2)
		if _, err := hex.Decode(v, text[2:]); err != nil {
			return value{}, fmt.Errorf("invalid bytea hex: %w", err)
		}
		return value{b: v}, nil
	case kString:
		return value{b: text}, nil
	}
	return value{}, fmt.Errorf("no text parser for %s", kindNames[k])
}

// BinaryOIDs are the built-in types whose binary send format AppendBinary
// reads into exactly the value AppendText gives for their text form.
var BinaryOIDs = map[uint32]bool{oidBool: true, oidInt2: true, oidInt4: true, oidInt8: true,
	oidFloat4: true, oidFloat8: true, oidDate: true, oidTimestamp: true, oidTimestampTZ: true}

// ReadsBinary reports whether a snapshot reads column c in PostgreSQL's
// binary format (AppendBinary): the types of BinaryOIDs, and numeric
// columns whose Delta type is a decimal (constrained, at most 38 digits;
// an unconstrained numeric is a string column and keeps its text).
func ReadsBinary(c change.Column) bool {
	if BinaryOIDs[c.TypeOID] {
		return true
	}
	if c.TypeOID == oidNumeric {
		_, _, ok := decimalFor(c.TypeMod)
		return ok
	}
	return false
}

// pgEpochDays and pgEpochMicros are PostgreSQL's epoch (2000-01-01) in
// days and microseconds since the Unix epoch.
const (
	pgEpochDays   = 10957
	pgEpochMicros = pgEpochDays * 86400 * 1_000_000
)

// AppendBinary appends a value in PostgreSQL's binary send format of one of
// BinaryOIDs to b, the builder of its Delta type (DeltaType), giving the
// value AppendText gives for the type's text output: NaN is Go's NaN,
// ±infinity dates and timestamps are DateInfinity... as in ParseDate and
// ParseTimestampMicros, and timestamps beyond int64 microseconds since 1970
// become ±infinity as there.
func AppendBinary(b array.Builder, v []byte) error {
	k := builderKind(b)
	prec, scale := 0, 0
	if k == kDecimal {
		dt, ok := b.Type().(*arrow.Decimal128Type)
		if !ok {
			return fmt.Errorf("decimal builder of type %s", b.Type())
		}
		prec, scale = int(dt.Precision), int(dt.Scale)
	}
	if k == kNone || k == kBinary || k == kString {
		return fmt.Errorf("no binary reader for arrow builder %T", b)
	}
	x, err := decodeBinary(k, prec, scale, v)
	if err != nil {
		return err
	}
	appendValue(b, k, x)
	return nil
}

// decodeBinary is AppendBinary's reading of one binary-format value for
// kind k (prec and scale: a decimal's).
func decodeBinary(k valueKind, prec, scale int, v []byte) (value, error) {
	be := binary.BigEndian
	switch k {
	case kBool:
		if len(v) == 1 {
			return value{i: int64(b2i(v[0] != 0))}, nil
		}
	case kInt16:
		if len(v) == 2 {
			return value{i: int64(int16(be.Uint16(v)))}, nil
		}
	case kInt32:
		if len(v) == 4 {
			return value{i: int64(int32(be.Uint32(v)))}, nil
		}
	case kInt64:
		if len(v) == 8 {
			return value{i: int64(be.Uint64(v))}, nil
		}
	case kFloat32:
		if len(v) == 4 {
			f := math.Float32frombits(be.Uint32(v))
			if f != f {
				f = float32(math.NaN())
			}
			return value{f: float64(f)}, nil
		}
	case kFloat64:
		if len(v) == 8 {
			f := math.Float64frombits(be.Uint64(v))
			if f != f {
				f = math.NaN()
			}
			return value{f: f}, nil
		}
	case kDate:
		if len(v) == 4 {
			switch d := int32(be.Uint32(v)); d {
			case math.MaxInt32:
				return value{i: int64(DateInfinity)}, nil
			case math.MinInt32:
				return value{i: int64(DateMinusInfinity)}, nil
			default:
				days := int64(d) + pgEpochDays
				if days > math.MaxInt32-1 || days < math.MinInt32+1 {
					return value{}, fmt.Errorf("date %d days after 2000-01-01 out of range", d)
				}
				return value{i: days}, nil
			}
		}
	case kTimestamp:
		if len(v) == 8 {
			switch us := int64(be.Uint64(v)); us {
			case math.MaxInt64:
				return value{i: int64(TimestampInfinity)}, nil
			case math.MinInt64:
				return value{i: int64(TimestampMinusInfinity)}, nil
			default:
				// As parseTimestamp: whole seconds (floor) since 1970,
				// clamped to ±infinity beyond int64 microseconds.
				secs, frac := us/1_000_000, us%1_000_000
				if frac < 0 {
					secs, frac = secs-1, frac+1_000_000
				}
				secs += pgEpochMicros / 1_000_000
				switch {
				case secs > math.MaxInt64/1_000_000-1:
					return value{i: int64(TimestampInfinity)}, nil
				case secs < math.MinInt64/1_000_000+1:
					return value{i: int64(TimestampMinusInfinity)}, nil
				}
				return value{i: secs*1_000_000 + frac}, nil
			}
		}
	case kDecimal:
		n, null, err := numericBinary(v, prec, scale)
		return value{d: n, null: null}, err
	default:
		return value{}, fmt.Errorf("no binary reader for %s", kindNames[k])
	}
	return value{}, fmt.Errorf("binary value of %d bytes does not fit %s", len(v), kindNames[k])
}

func b2i(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// numericBinary reads numeric's binary send format (int16 ndigits, int16
// weight, uint16 sign, int16 dscale, then ndigits base-10000 digits, the
// first one times 10000^weight) as decimal(precision, scale), with
// AppendText's rules for the value's text form: NaN is null (true), the
// infinities and values that do not fit are errors, and so is a value
// with more than scale fractional digits (dscale, as the text shows them).
func numericBinary(v []byte, precision, scale int) (decimal128.Num, bool, error) {
	be := binary.BigEndian
	if len(v) < 8 {
		return decimal128.Num{}, false, fmt.Errorf("binary numeric of %d bytes", len(v))
	}
	ndigits, weight, sign, dscale := int(int16(be.Uint16(v))), int(int16(be.Uint16(v[2:]))), be.Uint16(v[4:]), int(int16(be.Uint16(v[6:])))
	if ndigits < 0 || len(v) != 8+2*ndigits {
		return decimal128.Num{}, false, fmt.Errorf("binary numeric of %d bytes with %d digits", len(v), ndigits)
	}
	switch sign {
	case 0x0000, 0x4000:
	case 0xC000:
		return decimal128.Num{}, true, nil // NaN, as AppendText
	case 0xD000:
		return decimal128.Num{}, false, fmt.Errorf("invalid numeric \"Infinity\"")
	case 0xF000:
		return decimal128.Num{}, false, fmt.Errorf("invalid numeric \"-Infinity\"")
	default:
		return decimal128.Num{}, false, fmt.Errorf("binary numeric with sign %#x", sign)
	}
	if dscale > scale {
		return decimal128.Num{}, false, fmt.Errorf("numeric with %d fractional digits has more than %d", dscale, scale)
	}
	digits := v[8:]
	// Fast path: every digit's place fits int64 (at most 18 digits left of
	// the unscaled value's end).
	if ndigits == 0 || 4*(weight+1)+scale <= 18 {
		var u int64
		for i := 0; i < ndigits; i++ {
			d := int64(be.Uint16(digits[2*i:]))
			if d > 9999 {
				return decimal128.Num{}, false, fmt.Errorf("binary numeric digit %d", d)
			}
			e := 4*(weight-i) + scale
			if e >= 0 {
				u += d * pow10i64[e]
			} else if e > -4 {
				p := pow10i64[-e]
				if d%p != 0 {
					return decimal128.Num{}, false, fmt.Errorf("numeric has more than %d fractional digits", scale)
				}
				u += d / p
			} else if d != 0 {
				return decimal128.Num{}, false, fmt.Errorf("numeric has more than %d fractional digits", scale)
			}
		}
		if u >= pow10i64[min(precision, 18)] && precision <= 18 {
			return decimal128.Num{}, false, fmt.Errorf("numeric of %d digits does not fit decimal(%d,%d)", len(strconv.FormatInt(u, 10)), precision, scale)
		}
		if sign == 0x4000 {
			u = -u
		}
		return decimal128.FromI64(u), false, nil
	}
	u := new(big.Int)
	ten := big.NewInt(10)
	for i := 0; i < ndigits; i++ {
		d := int64(be.Uint16(digits[2*i:]))
		if d > 9999 {
			return decimal128.Num{}, false, fmt.Errorf("binary numeric digit %d", d)
		}
		e := 4*(weight-i) + scale
		switch {
		case d == 0:
		case e >= 0:
			if e > 40 {
				return decimal128.Num{}, false, fmt.Errorf("numeric of more than 38 digits does not fit decimal(%d,%d)", precision, scale)
			}
			u.Add(u, new(big.Int).Mul(big.NewInt(d), new(big.Int).Exp(ten, big.NewInt(int64(e)), nil)))
		case e > -4 && d%pow10i64[-e] == 0:
			u.Add(u, big.NewInt(d/pow10i64[-e]))
		default:
			return decimal128.Num{}, false, fmt.Errorf("numeric has more than %d fractional digits", scale)
		}
	}
	if nd := len(u.String()); u.Sign() != 0 && nd > precision {
		return decimal128.Num{}, false, fmt.Errorf("numeric of %d digits does not fit decimal(%d,%d)", nd, precision, scale)
	}
	if sign == 0x4000 {
		u.Neg(u)
	}
	return decimal128.FromBigInt(u), false, nil
}

// pow10i64[i] is 10^i.
var pow10i64 = [19]int64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18}

// parseInt parses a base-10 integer that fits bits, without allocating.
func parseInt(b []byte, bits int) (int64, error) {
	if len(b) == 0 || len(b) > 20 {
		return 0, fmt.Errorf("invalid integer %q", b)
	}
	neg := b[0] == '-'
	i := 0
	if neg || b[0] == '+' {
		i = 1
	}
	if i == len(b) {
		return 0, fmt.Errorf("invalid integer %q", b)
	}
	var u uint64
	for ; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("invalid integer %q", b)
		}
		if u > (math.MaxUint64-9)/10 {
			return 0, fmt.Errorf("integer %q out of range", b)
		}
		u = u*10 + uint64(c-'0')
	}
	limit := uint64(1) << (bits - 1)
	if (!neg && u >= limit) || (neg && u > limit) {
		return 0, fmt.Errorf("integer %q out of range for %d bits", b, bits)
	}
	if neg {
		return -int64(u), nil
	}
	return int64(u), nil
}

// Date and timestamp extremes that stand for PostgreSQL's ±infinity.
const (
	DateInfinity           = math.MaxInt32
	DateMinusInfinity      = math.MinInt32
	TimestampInfinity      = math.MaxInt64
	TimestampMinusInfinity = math.MinInt64
)

// ParseDate parses PostgreSQL's ISO date output ("2024-01-31",
// "0044-03-15 BC", "12345-01-01", "infinity", "-infinity") into days since
// 1970-01-01 in the proleptic Gregorian calendar.
func ParseDate(b []byte) (int32, error) {
	switch string(b) {
	case "infinity":
		return DateInfinity, nil
	case "-infinity":
		return DateMinusInfinity, nil
	}
	days, rest, err := parseYMD(b)
	if err == nil && len(rest) != 0 {
		err = errors.New("trailing text")
	}
	if err != nil {
		return 0, fmt.Errorf("invalid date %q: %v", b, err)
	}
	if days > math.MaxInt32-1 || days < math.MinInt32+1 {
		return 0, fmt.Errorf("date %q out of range", b)
	}
	return int32(days), nil
}

// ParseTimestampMicros parses PostgreSQL's ISO timestamp output, with or
// without a zone offset ("2024-01-31 12:00:00.5+05:30",
// "0044-03-15 12:00:00 BC", "infinity"), into microseconds since the Unix
// epoch, UTC. A value without an offset is read as UTC.
func ParseTimestampMicros(b []byte) (int64, error) {
	switch string(b) {
	case "infinity":
		return TimestampInfinity, nil
	case "-infinity":
		return TimestampMinusInfinity, nil
	}
	us, err := parseTimestamp(b)
	if err != nil {
		return 0, fmt.Errorf("invalid timestamp %q: %v", b, err)
	}
	return us, nil
}

// ParseTimestamp parses a finite PostgreSQL ISO timestamp (see
// ParseTimestampMicros) into a UTC time.
func ParseTimestamp(s string) (time.Time, error) {
	us, err := parseTimestamp([]byte(s))
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid timestamp %q: %v", s, err)
	}
	return time.UnixMicro(us).UTC(), nil
}

func parseTimestamp(b []byte) (int64, error) {
	bc := false
	if n := len(b); n > 3 && string(b[n-3:]) == " BC" {
		bc, b = true, b[:n-3]
	}
	days, rest, err := parseYMDEra(b, bc)
	if err != nil {
		return 0, err
	}
	if len(rest) < 9 || rest[0] != ' ' || rest[3] != ':' || rest[6] != ':' {
		return 0, errors.New("want HH:MM:SS after the date")
	}
	h, ok1 := digits(rest[1:3])
	mi, ok2 := digits(rest[4:6])
	sec, ok3 := digits(rest[7:9])
	if !ok1 || !ok2 || !ok3 || h > 24 || mi > 59 || sec > 60 {
		return 0, errors.New("bad time of day")
	}
	rest = rest[9:]
	var frac int64
	if len(rest) > 0 && rest[0] == '.' {
		rest = rest[1:]
		n := 0
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 0 || n > 6 {
			return 0, errors.New("bad fraction of a second")
		}
		f, _ := digits(rest[:n])
		for i := n; i < 6; i++ {
			f *= 10
		}
		frac, rest = int64(f), rest[n:]
	}
	var offset int64 // seconds east of UTC
	if len(rest) > 0 {
		sign := int64(1)
		switch rest[0] {
		case '+':
		case '-':
			sign = -1
		default:
			return 0, errors.New("trailing text")
		}
		rest = rest[1:]
		var parts [3]int
		for i := 0; i < 3 && len(rest) > 0; i++ {
			if i > 0 {
				if rest[0] != ':' {
					return 0, errors.New("bad zone offset")
				}
				rest = rest[1:]
			}
			if len(rest) < 2 {
				return 0, errors.New("bad zone offset")
			}
			v, ok := digits(rest[:2])
			if !ok {
				return 0, errors.New("bad zone offset")
			}
			parts[i], rest = v, rest[2:]
		}
		if len(rest) != 0 {
			return 0, errors.New("trailing text")
		}
		offset = sign * int64(parts[0]*3600+parts[1]*60+parts[2])
	}
	secs := days*86400 + int64(h*3600+mi*60+sec) - offset
	switch { // beyond int64 µs since 1970: only PostgreSQL's last 30 years
	case secs > math.MaxInt64/1_000_000-1:
		return TimestampInfinity, nil
	case secs < math.MinInt64/1_000_000+1:
		return TimestampMinusInfinity, nil
	}
	return secs*1_000_000 + frac, nil
}

// parseYMD parses "Y...Y-MM-DD[ BC]" at the start of b and returns days
// since 1970-01-01 and the text after the date.
func parseYMD(b []byte) (int64, []byte, error) {
	bc := false
	if n := len(b); n > 3 && string(b[n-3:]) == " BC" {
		bc, b = true, b[:n-3]
	}
	return parseYMDEra(b, bc)
}

func parseYMDEra(b []byte, bc bool) (int64, []byte, error) {
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	if n < 4 || n > 7 || len(b) < n+6 || b[n] != '-' || b[n+3] != '-' {
		return 0, nil, errors.New("want YYYY-MM-DD")
	}
	y, _ := digits(b[:n])
	m, ok1 := digits(b[n+1 : n+3])
	d, ok2 := digits(b[n+4 : n+6])
	if !ok1 || !ok2 || m < 1 || m > 12 || d < 1 || d > 31 {
		return 0, nil, errors.New("bad month or day")
	}
	year := int64(y)
	if bc {
		if year == 0 {
			return 0, nil, errors.New("year 0 BC")
		}
		year = 1 - year // 1 BC is astronomical year 0
	}
	return daysFromCivil(year, m, d), b[n+6:], nil
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date (astronomical year numbering), for any year.
func daysFromCivil(y int64, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12 // March = 0
	doy := int64((153*mp+2)/5 + d - 1)
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// digits parses a short run of ASCII digits.
func digits(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// parseDecimalSmall is parseDecimal without allocating, for the common
// text [-]digits[.digits] whose unscaled value fits 18 digits; ok false
// means use parseDecimal (which also reports every error).
func parseDecimalSmall(b []byte, precision, scale int) (decimal128.Num, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	intPart, frac := b, []byte(nil)
	if i := bytes.IndexByte(b, '.'); i >= 0 {
		intPart, frac = b[:i], b[i+1:]
	}
	if len(intPart)+len(frac) == 0 || len(frac) > scale {
		return decimal128.Num{}, false
	}
	for len(intPart) > 0 && intPart[0] == '0' {
		intPart = intPart[1:]
	}
	if len(intPart)+scale > 18 {
		return decimal128.Num{}, false
	}
	var v int64
	for _, part := range [2][]byte{intPart, frac} {
		for _, c := range part {
			if c < '0' || c > '9' {
				return decimal128.Num{}, false
			}
			v = v*10 + int64(c-'0')
		}
	}
	for i := len(frac); i < scale; i++ {
		v *= 10
	}
	n := 1
	for x := v; x >= 10; x /= 10 {
		n++
	}
	if n > precision {
		return decimal128.Num{}, false
	}
	if neg {
		v = -v
	}
	return decimal128.FromI64(v), true
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
	if len(all) <= 18 {
		var v int64
		for i := 0; i < len(all); i++ {
			c := all[i]
			if c < '0' || c > '9' {
				return decimal128.Num{}, fmt.Errorf("invalid numeric %q", s)
			}
			v = v*10 + int64(c-'0')
		}
		if neg {
			v = -v
		}
		return decimal128.FromI64(v), nil
	}
	bi, ok := new(big.Int).SetString(all, 10)
	if !ok {
		return decimal128.Num{}, fmt.Errorf("invalid numeric %q", s)
	}
	if neg {
		bi.Neg(bi)
	}
	return decimal128.FromBigInt(bi), nil
}

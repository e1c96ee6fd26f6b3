package datafile

import (
	"fmt"
	"math"
	"math/big"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/decimal128"

	"github.com/silt-dev/silt/internal/delta"
)

// hiveNull is the directory name Hive-style partitioning uses for null.
const hiveNull = "__HIVE_DEFAULT_PARTITION__"

// ParsePartitionValue parses a partitionValues entry (protocol §6) into the
// Go value for t: string, int64 (long), int32 (integer), int16 (short), int8
// (byte), float32, float64, bool, []byte (binary), arrow.Date32 (days since
// the epoch), arrow.Timestamp (microseconds since the epoch, UTC for
// timestamp, wall clock for timestamp_ntz) or decimal128.Num (unscaled, at
// the type's scale). A nil v, or an empty string, is null and gives nil.
//
// Timestamps are accepted as ISO-8601 with a zone ("...T...Z", "+01:00") or
// in the legacy zone-less form "YYYY-MM-DD HH:MM:SS[.ffffff]"; the legacy
// form of a timestamp (with zone) column is interpreted as UTC, since the
// writer's zone is not recorded. ParsePartitionValueIn takes the zone to use
// instead (TableInfo.PartitionTimeZone on the read path).
func ParsePartitionValue(t delta.DataType, v *string) (any, error) {
	return ParsePartitionValueIn(t, v, nil)
}

// ParsePartitionValueIn is ParsePartitionValue with loc as the zone in which
// zone-less timestamp values are interpreted, as Spark's
// spark.sql.session.timeZone (nil = UTC). ISO values with Z or an offset,
// and timestamp_ntz values, are unaffected. A wall-clock time that a DST
// change makes ambiguous takes the earlier instant (the offset before the
// change) and one that falls into a DST gap is moved forward by the gap's
// length, as java.time (and so Spark) does.
func ParsePartitionValueIn(t delta.DataType, v *string, loc *time.Location) (any, error) {
	if v == nil || *v == "" {
		return nil, nil
	}
	s := *v
	bad := func(err error) error {
		return fmt.Errorf("datafile: partition value %q is not a valid %s: %w", s, t.TypeName(), err)
	}
	switch tt := t.(type) {
	case *delta.DecimalType:
		n, err := parseDecimal(s, tt.Precision, tt.Scale)
		if err != nil {
			return nil, bad(err)
		}
		return n, nil
	case *delta.PrimitiveType:
		switch tt.Name {
		case "string":
			return s, nil
		case "binary":
			return []byte(s), nil
		case "long", "integer", "short", "byte":
			bits := map[string]int{"long": 64, "integer": 32, "short": 16, "byte": 8}[tt.Name]
			n, err := strconv.ParseInt(strings.TrimSpace(s), 10, bits)
			if err != nil {
				return nil, bad(err)
			}
			switch bits {
			case 64:
				return n, nil
			case 32:
				return int32(n), nil
			case 16:
				return int16(n), nil
			}
			return int8(n), nil
		case "float", "double":
			f, err := parseFloat(s)
			if err != nil {
				return nil, bad(err)
			}
			if tt.Name == "float" {
				return float32(f), nil
			}
			return f, nil
		case "boolean":
			switch strings.ToLower(strings.TrimSpace(s)) {
			case "true":
				return true, nil
			case "false":
				return false, nil
			}
			return nil, bad(fmt.Errorf("want true or false"))
		case "date":
			d, err := time.Parse("2006-01-02", strings.TrimSpace(s))
			if err != nil {
				return nil, bad(err)
			}
			return arrow.Date32(floorDiv(d.Unix(), 86400)), nil
		case "timestamp", "timestamp_ntz":
			ts, err := parseTimestamp(s, tt.Name == "timestamp_ntz", loc)
			if err != nil {
				return nil, bad(err)
			}
			return ts, nil
		case "void":
			return nil, nil
		}
	}
	return nil, fmt.Errorf("datafile: type %s cannot be a partition column", t.TypeName())
}

func parseFloat(s string) (float64, error) {
	switch strings.TrimSpace(s) {
	case "NaN":
		return math.NaN(), nil
	case "Infinity", "+Infinity":
		return math.Inf(1), nil
	case "-Infinity":
		return math.Inf(-1), nil
	}
	return strconv.ParseFloat(strings.TrimSpace(s), 64)
}

var tsLayouts = []struct {
	layout string
	zoned  bool // the layout requires a zone (Z or an offset)
}{
	{time.RFC3339Nano, true},
	{"2006-01-02 15:04:05Z07:00", true},
	{"2006-01-02 15:04:05", false},
	{"2006-01-02T15:04:05", false},
	{"2006-01-02", false},
}

// parseTimestamp parses s to microseconds since the epoch. With ntz the zone,
// if any, is ignored (the wall clock is kept). Otherwise a zone-less s is a
// wall-clock time in loc (nil = UTC).
func parseTimestamp(s string, ntz bool, loc *time.Location) (arrow.Timestamp, error) {
	s = strings.TrimSpace(s)
	var lastErr error
	for _, l := range tsLayouts {
		t, err := time.Parse(l.layout, s)
		if err != nil {
			lastErr = err
			continue
		}
		if ntz {
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
		} else if !l.zoned && loc != nil && loc != time.UTC {
			t = wallToInstant(t, loc)
		}
		return arrow.Timestamp(t.Unix()*1e6 + int64(t.Nanosecond()/1000)), nil
	}
	return 0, lastErr
}

// wallToInstant interprets the wall clock of w (a UTC time) in loc with
// java.time's rules (ZonedDateTime.of): an ambiguous wall clock (DST end)
// takes the earlier offset; one in a gap (DST start) is shifted forward by
// the gap's length, i.e. keeps the offset in effect before the gap. Go's
// time.Date leaves both choices unspecified.
func wallToInstant(w time.Time, loc *time.Location) time.Time {
	wall := w.Unix()
	at := func(off int) time.Time { return time.Unix(wall-int64(off), int64(w.Nanosecond())).In(loc) }
	valid := func(t time.Time) bool {
		_, off := t.Zone()
		return t.Unix()+int64(off) == wall
	}
	offset := func(t time.Time) int { _, off := t.Zone(); return off }

	t := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), loc)
	start, end := t.ZoneBounds()
	offs := []int{offset(t)}
	if !start.IsZero() {
		offs = append(offs, offset(start.Add(-time.Nanosecond)))
	}
	if !end.IsZero() {
		offs = append(offs, offset(end))
	}
	var best time.Time
	for _, off := range offs {
		if c := at(off); valid(c) && (best.IsZero() || c.Before(best)) {
			best = c
		}
	}
	if !best.IsZero() {
		return best
	}
	// In a gap: use the offset before it. t is just before the gap if its
	// wall clock is earlier than w's, else just after it.
	if _, off := t.Zone(); t.Unix()+int64(off) < wall {
		return at(offset(t))
	}
	return at(offset(start.Add(-time.Nanosecond)))
}

// parseDecimal parses decimal text (optionally with exponent) to an unscaled
// value at scale, rejecting values that need rounding or overflow precision.
func parseDecimal(s string, precision, scale int) (decimal128.Num, error) {
	r, ok := new(big.Rat).SetString(strings.TrimSpace(s))
	if !ok {
		return decimal128.Num{}, fmt.Errorf("not a number")
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)))
	if !r.IsInt() {
		return decimal128.Num{}, fmt.Errorf("more than %d fractional digits", scale)
	}
	n := r.Num()
	limit := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(precision)), nil)
	if new(big.Int).Abs(n).Cmp(limit) >= 0 {
		return decimal128.Num{}, fmt.Errorf("exceeds precision %d", precision)
	}
	return decimal128.FromBigInt(n), nil
}

// FormatPartitionValue formats v as a partitionValues string (protocol §6);
// nil gives nil (JSON null). v may be any type ParsePartitionValue returns,
// or a convertible Go value (int, uint32, time.Time, string for binary...).
// Timestamps are written as ISO-8601 UTC with microseconds and a Z
// ("1970-01-01T00:00:00.123456Z"), timestamp_ntz as "YYYY-MM-DD
// HH:MM:SS.ffffff", floats in Java's style ("1.0", "NaN", "Infinity").
// An empty string is null in Delta, so "" formats as nil. Binary values
// must be valid UTF-8, since the log is JSON.
func FormatPartitionValue(t delta.DataType, v any) (*string, error) {
	if v == nil {
		return nil, nil
	}
	s, err := formatPartition(t, v)
	if err != nil {
		return nil, fmt.Errorf("datafile: format partition value %v as %s: %w", v, t.TypeName(), err)
	}
	if s == "" {
		return nil, nil
	}
	return &s, nil
}

func formatPartition(t delta.DataType, v any) (string, error) {
	switch tt := t.(type) {
	case *delta.DecimalType:
		var n decimal128.Num
		switch x := v.(type) {
		case decimal128.Num:
			n = x
		case string:
			var err error
			if n, err = parseDecimal(x, tt.Precision, tt.Scale); err != nil {
				return "", err
			}
		default:
			i, ok := toInt64(v)
			if !ok {
				return "", fmt.Errorf("unsupported Go type %T", v)
			}
			var err error
			if n, err = parseDecimal(strconv.FormatInt(i, 10), tt.Precision, tt.Scale); err != nil {
				return "", err
			}
		}
		return decimalString(n, tt.Scale), nil
	case *delta.PrimitiveType:
		switch tt.Name {
		case "string":
			switch x := v.(type) {
			case string:
				return x, nil
			case []byte:
				return string(x), nil
			}
		case "binary":
			var b string
			switch x := v.(type) {
			case string:
				b = x
			case []byte:
				b = string(x)
			default:
				return "", fmt.Errorf("unsupported Go type %T", v)
			}
			if !utf8.ValidString(b) {
				return "", fmt.Errorf("binary partition value is not valid UTF-8")
			}
			return b, nil
		case "long", "integer", "short", "byte":
			if i, ok := toInt64(v); ok {
				return strconv.FormatInt(i, 10), nil
			}
		case "float":
			switch x := v.(type) {
			case float32:
				return javaFloat(float64(x), 32), nil
			case float64:
				return javaFloat(x, 32), nil
			}
		case "double":
			switch x := v.(type) {
			case float32:
				return javaFloat(float64(x), 64), nil
			case float64:
				return javaFloat(x, 64), nil
			}
		case "boolean":
			if b, ok := v.(bool); ok {
				return strconv.FormatBool(b), nil
			}
		case "date":
			switch x := v.(type) {
			case arrow.Date32:
				return time.Unix(int64(x)*86400, 0).UTC().Format("2006-01-02"), nil
			case time.Time:
				return x.Format("2006-01-02"), nil
			}
		case "timestamp", "timestamp_ntz":
			var us int64
			switch x := v.(type) {
			case arrow.Timestamp:
				us = int64(x)
			case time.Time:
				if tt.Name == "timestamp_ntz" {
					x = time.Date(x.Year(), x.Month(), x.Day(), x.Hour(), x.Minute(), x.Second(), x.Nanosecond(), time.UTC)
				}
				us = x.Unix()*1e6 + int64(x.Nanosecond()/1000)
			default:
				return "", fmt.Errorf("unsupported Go type %T", v)
			}
			t := time.UnixMicro(us).UTC()
			if tt.Name == "timestamp_ntz" {
				return t.Format("2006-01-02 15:04:05.000000"), nil
			}
			return t.Format("2006-01-02T15:04:05.000000Z"), nil
		case "void":
			return "", nil
		default:
			return "", fmt.Errorf("type cannot be a partition column")
		}
	default:
		return "", fmt.Errorf("type cannot be a partition column")
	}
	return "", fmt.Errorf("unsupported Go type %T", v)
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	}
	return 0, false
}

// javaFloat formats like Java's Double/Float.toString for the common cases:
// shortest round-trip digits, always with a fraction or exponent.
func javaFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	s := strconv.FormatFloat(f, 'g', -1, bits)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}

// decimalString renders an unscaled decimal at scale ("-1.50").
func decimalString(n decimal128.Num, scale int) string {
	b := n.BigInt()
	neg := b.Sign() < 0
	digits := new(big.Int).Abs(b).String()
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

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// escapePartitionPath escapes a partition column name or value for a
// Hive-style directory name, as Spark does: control characters and
// "#%'*/:=?\{[]^ <>| and DEL become %XX.
func escapePartitionPath(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || strings.IndexByte("\"#%'*/:=?\\{[]^ <>|", c) >= 0 {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// encodeAddPath URI-encodes a relative path for add.path, segment by
// segment (so '%' becomes "%25" and '/' stays the separator).
func encodeAddPath(rel string) string {
	parts := strings.Split(rel, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

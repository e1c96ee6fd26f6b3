package bronze

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

func TestParseDate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int32
	}{
		{"1970-01-01", 0},
		{"1970-01-02", 1},
		{"1969-12-31", -1},
		{"2000-02-29", int32(time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC).Unix() / 86400)},
		{"0001-01-01", int32(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 86400)},
		{"0001-12-31 BC", int32(time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC).Unix() / 86400)},
		{"4714-11-24 BC", -2440588}, // PostgreSQL's earliest date, Julian day 0
		{"12345-06-07", int32(time.Date(12345, 6, 7, 0, 0, 0, 0, time.UTC).Unix() / 86400)},
		{"infinity", math.MaxInt32},
		{"-infinity", math.MinInt32},
	} {
		got, err := ParseDate([]byte(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("ParseDate(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "2024-1-01", "2024-13-01", "2024-01-01x", "0000-01-01 BC", "24-01-01"} {
		if _, err := ParseDate([]byte(bad)); err == nil {
			t.Errorf("ParseDate(%q) accepted", bad)
		}
	}
}

// TestParseDateMatchesTime compares the calendar arithmetic with package
// time over random dates from 4713 BC to 9999 AD.
func TestParseDateMatchesTime(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 1))
	for range 20000 {
		y := r.IntN(9999+4713) - 4712 // astronomical
		tm := time.Date(y, time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
		var s string
		if tm.Year() <= 0 {
			s = time.Date(1-tm.Year(), tm.Month(), tm.Day(), 0, 0, 0, 0, time.UTC).Format("2006-01-02") + " BC"
		} else {
			s = tm.Format("2006-01-02")
		}
		got, err := ParseDate([]byte(s))
		if want := tm.Unix() / 86400; err != nil || int64(got) != want {
			t.Fatalf("ParseDate(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
}

func TestParseTimestampMicros(t *testing.T) {
	ref := func(s string) int64 {
		tm, err := time.Parse("2006-01-02 15:04:05.999999Z07:00", s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMicro()
	}
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"1970-01-01 00:00:00", 0},
		{"1970-01-01 00:00:00+00", 0},
		{"2024-02-29 23:59:59.123456+00", ref("2024-02-29 23:59:59.123456Z")},
		{"2024-02-29 23:59:59.5", ref("2024-02-29 23:59:59.5Z")},
		{"2024-02-29 23:59:59.5+05:30", ref("2024-02-29 23:59:59.5+05:30")},
		{"1900-01-01 00:00:00-00:09:21", ref("1900-01-01 00:09:21Z")},
		{"0001-01-01 00:00:00+00 BC", time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()},
		{"200000-12-31 23:59:59.999999", time.Date(200000, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()},
		{"infinity", math.MaxInt64},
		{"-infinity", math.MinInt64},
		{"294276-12-31 23:59:59", math.MaxInt64}, // beyond int64 µs: saturates
	} {
		got, err := ParseTimestampMicros([]byte(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("ParseTimestampMicros(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"2024-01-01", "2024-01-01 1:00:00", "2024-01-01 00:00:00.", "2024-01-01 00:00:00.1234567", "2024-01-01 00:00:00 UTC", "2024-01-01 00:00:00+5"} {
		if _, err := ParseTimestampMicros([]byte(bad)); err == nil {
			t.Errorf("ParseTimestampMicros(%q) accepted", bad)
		}
	}
}

func TestDecimalFor(t *testing.T) {
	typmod := func(p, s int) int32 { return int32(p<<16|(s&0x7ff)) + 4 }
	for _, tc := range []struct {
		typmod     int32
		p, s       int
		ok         bool
		deltaTypeS string
	}{
		{typmod(10, 2), 10, 2, true, "decimal(10,2)"},
		{typmod(38, 0), 38, 0, true, "decimal(38,0)"},
		{typmod(39, 0), 0, 0, false, "string"},
		{typmod(5, -2), 7, 0, true, "decimal(7,0)"},
		{typmod(3, 5), 5, 5, true, "decimal(5,5)"},
		{-1, 0, 0, false, "string"},
	} {
		p, s, ok := decimalFor(tc.typmod)
		if p != tc.p || s != tc.s || ok != tc.ok {
			t.Errorf("decimalFor(%d) = %d,%d,%v; want %d,%d,%v", tc.typmod, p, s, ok, tc.p, tc.s, tc.ok)
		}
		if got := DeltaType(change.Column{TypeOID: oidNumeric, TypeMod: tc.typmod}).TypeName(); got != tc.deltaTypeS {
			t.Errorf("DeltaType(numeric %d) = %s, want %s", tc.typmod, got, tc.deltaTypeS)
		}
	}
}

type domains map[uint32][2]int64

func (d domains) BaseType(oid uint32) (uint32, int32, bool) {
	v, ok := d[oid]
	return uint32(v[0]), int32(v[1]), ok
}

func TestResolve(t *testing.T) {
	r := domains{20000: {oidNumeric, int64(10<<16|2) + 4}, 20001: {oidInt4, -1}}
	col := Resolve(r, change.Column{Name: "x", TypeOID: 20000, TypeMod: -1})
	if col.TypeOID != oidNumeric || DeltaType(col).TypeName() != "decimal(10,2)" {
		t.Fatalf("domain over numeric(10,2): %+v %s", col, DeltaType(col).TypeName())
	}
	if col := Resolve(r, change.Column{TypeOID: 20001, TypeMod: -1}); DeltaType(col) != delta.Integer {
		t.Fatalf("domain over int4: %+v", col)
	}
	if col := Resolve(r, change.Column{TypeOID: 30000, TypeMod: -1}); col.TypeOID != 30000 {
		t.Fatalf("non-domain changed: %+v", col)
	}
	if col := Resolve(nil, change.Column{TypeOID: 20000}); col.TypeOID != 20000 {
		t.Fatal("nil resolver changed the column")
	}
}

// TestAppendTextValues parses one text value of each typed rule and checks
// the Arrow value.
func TestAppendTextValues(t *testing.T) {
	typmod := func(p, s int) int32 { return int32(p<<16|(s&0x7ff)) + 4 }
	for _, tc := range []struct {
		oid    uint32
		typmod int32
		in     string
		want   string // Arrow ValueStr; "NULL" for null
	}{
		{oidBool, -1, "t", "true"},
		{oidInt2, -1, "-32768", "-32768"},
		{oidInt4, -1, "2147483647", "2147483647"},
		{oidInt8, -1, "-9223372036854775808", "-9223372036854775808"},
		{oidOID, -1, "4294967295", "4294967295"},
		{oidFloat8, -1, "NaN", "NaN"},
		{oidFloat8, -1, "-Infinity", "-Inf"},
		{oidFloat4, -1, "Infinity", "+Inf"},
		{oidFloat8, -1, "1.0000000000000002", "1.0000000000000002"},
		{oidNumeric, typmod(10, 2), "-12345678.90", "-12345678.9"},
		{oidNumeric, typmod(38, 10), "1234567890123456789012345678.0123456789", "1234567890123456789012345678.0123456789"},
		{oidNumeric, typmod(10, 2), "NaN", "NULL"},
		{oidNumeric, typmod(5, -2), "1234500", "1234500"},
		{oidNumeric, -1, "NaN", "NaN"},
		{oidNumeric, -1, "-Infinity", "-Infinity"},
		{oidDate, -1, "2024-02-29", "2024-02-29"},
		{oidTimestampTZ, -1, "2024-02-29 12:00:00.000001+00", "2024-02-29T12:00:00.000001Z"},
		{oidBytea, -1, `\x00ff`, "AP8="},
		{oidText, -1, "héllo", "héllo"},
	} {
		col := change.Column{TypeOID: tc.oid, TypeMod: tc.typmod}
		dt := DeltaType(col)
		as, err := datafile.ArrowSchema(&delta.StructType{Fields: []*delta.StructField{{Name: "c", Type: dt, Nullable: true}}})
		if err != nil {
			t.Fatal(err)
		}
		b := array.NewRecordBuilder(memory.DefaultAllocator, as)
		if err := AppendText(b.Field(0), dt, []byte(tc.in)); err != nil {
			t.Errorf("oid %d %q: %v", tc.oid, tc.in, err)
			b.Release()
			continue
		}
		rec := b.NewRecordBatch()
		got := "NULL"
		if !rec.Column(0).IsNull(0) {
			got = rec.Column(0).ValueStr(0)
		}
		if got != tc.want {
			t.Errorf("oid %d %q: got %q, want %q", tc.oid, tc.in, got, tc.want)
		}
		rec.Release()
		b.Release()
	}
}

func TestParseInt(t *testing.T) {
	for _, bad := range []string{"", "-", "+", "1a", "32768", "-32769", "99999999999999999999999"} {
		if _, err := parseInt([]byte(bad), 16); err == nil {
			t.Errorf("parseInt(%q, 16) accepted", bad)
		}
	}
	if v, err := parseInt([]byte("-32768"), 16); err != nil || v != -32768 {
		t.Fatal(v, err)
	}
}

// parseDecimalSmall, where it answers, agrees with parseDecimal, and it
// leaves every input parseDecimal rejects to parseDecimal.
func TestParseDecimalSmallAgrees(t *testing.T) {
	inputs := []string{"0", "-0", "0.00", "-0.00", "1.5", "-1.5", "123.45", ".5", "5.", "00012.30", "-00012.30",
		"999999999999.99", "9999999999999.99", "1.234", "+1", "1e5", "", "-", ".", "-.", "NaN", "1.2.3", "12a", "--1",
		"999999999999999999", "9999999999999999999", "123456789012345678", "0.000000000000000001", "100000000000000000.0"}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		s := strconv.FormatInt(r.Int64N(1<<62)>>r.IntN(62), 10)
		if r.IntN(2) == 0 {
			s = "-" + s
		}
		if k := r.IntN(len(s) + 1); r.IntN(2) == 0 && k > 0 {
			s = s[:k] + "." + s[k:]
		}
		inputs = append(inputs, s)
	}
	checked := 0
	for _, in := range inputs {
		for _, ps := range [][2]int{{1, 0}, {5, 2}, {12, 2}, {14, 2}, {18, 0}, {18, 18}, {20, 4}, {38, 10}, {38, 0}} {
			want, werr := parseDecimal(in, ps[0], ps[1])
			got, ok := parseDecimalSmall([]byte(in), ps[0], ps[1])
			if !ok {
				continue
			}
			checked++
			if werr != nil {
				t.Fatalf("%q decimal(%d,%d): small parser accepts %v, parseDecimal rejects: %v", in, ps[0], ps[1], got, werr)
			}
			if got != want {
				t.Fatalf("%q decimal(%d,%d): small parser %v, parseDecimal %v", in, ps[0], ps[1], got, want)
			}
		}
	}
	if checked < 1000 {
		t.Fatalf("the small parser answered only %d times", checked)
	}
}

// TestNumericBinaryBench: the benchmarks' numericBin reads back as the
// value it encodes.
func TestNumericBinaryBench(t *testing.T) {
	for _, u := range []int64{0, 1, 99, 100, 12345, 999999, -5, -100000, 123456789012} {
		n, null, err := numericBinary(numericBin(u, 2).Data, 18, 2)
		if err != nil || null || n != decimal128.FromI64(u) {
			t.Errorf("%d: got %v %v %v", u, n, null, err)
		}
	}
}

package datafile

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"

	"github.com/silt-dev/silt/internal/delta"
)

// statsStringLen is how many characters string min/max stats keep.
const statsStringLen = 32

// defaultIndexedCols is delta.dataSkippingNumIndexedCols' default.
const defaultIndexedCols = 32

// statNode accumulates the stats of one column (a struct's children, or a
// leaf) of one data file.
type statNode struct {
	name     string // key in the stats JSON (physical name)
	typ      delta.DataType
	children []*statNode // for structs
	indexed  bool        // collect nullCount (and min/max when supported)
	minmax   bool        // the type has min/max stats
	nulls    int64
	has      bool
	min, max any
	// noMinMax turns min/max off for this file (NaN, ±Inf, invalid UTF-8).
	noMinMax bool
}

type statsAcc struct {
	rows  int64
	nodes []*statNode
}

// newStatsAcc builds the accumulator for the data fields, honouring
// delta.dataSkippingNumIndexedCols and delta.dataSkippingStatsColumns.
func newStatsAcc(fields []*delta.StructField, mode mappingMode, cfg map[string]string) *statsAcc {
	limit := defaultIndexedCols
	if v, ok := cfg["delta.dataSkippingNumIndexedCols"]; ok {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
			limit = n
		}
	}
	var named map[string]bool
	if v := strings.TrimSpace(cfg["delta.dataSkippingStatsColumns"]); v != "" {
		named = map[string]bool{}
		for _, c := range strings.Split(v, ",") {
			named[strings.ToLower(strings.ReplaceAll(strings.TrimSpace(c), "`", ""))] = true
		}
	}
	count := 0
	var build func(f *delta.StructField, path string, parentNamed bool) *statNode
	build = func(f *delta.StructField, path string, parentNamed bool) *statNode {
		p := strings.ToLower(f.Name)
		if path != "" {
			p = path + "." + p
		}
		isNamed := parentNamed || (named != nil && named[p])
		n := &statNode{name: physicalName(f, mode), typ: f.Type}
		if st, ok := f.Type.(*delta.StructType); ok {
			for _, cf := range st.Fields {
				n.children = append(n.children, build(cf, p, isNamed))
			}
			return n
		}
		if named != nil {
			n.indexed = isNamed
		} else {
			n.indexed = limit < 0 || count < limit
		}
		count++
		switch t := f.Type.(type) {
		case *delta.DecimalType:
			n.minmax = true
		case *delta.PrimitiveType:
			n.minmax = t.Name != "binary" && t.Name != "void"
		}
		return n
	}
	acc := &statsAcc{}
	for _, f := range fields {
		acc.nodes = append(acc.nodes, build(f, "", false))
	}
	return acc
}

// update adds the rows of cols (physical data columns, in field order).
func (s *statsAcc) update(cols []arrow.Array) {
	if len(cols) == 0 {
		return
	}
	s.rows += int64(cols[0].Len())
	for i, n := range s.nodes {
		n.update(cols[i], nil)
	}
}

// update adds a's rows; parentNull marks rows whose enclosing struct is null
// (those count as null for every field below it).
func (n *statNode) update(a arrow.Array, parentNull []bool) {
	if n.children != nil {
		sa, ok := a.(*array.Struct)
		if !ok {
			return
		}
		mask := parentNull
		if sa.NullN() > 0 {
			mask = make([]bool, sa.Len())
			for i := range mask {
				mask[i] = (parentNull != nil && parentNull[i]) || sa.IsNull(i)
			}
		}
		for k, c := range n.children {
			c.update(sa.Field(k), mask)
		}
		return
	}
	if !n.indexed {
		return
	}
	if parentNull == nil && n.updateFast(a) {
		return
	}
	for i := 0; i < a.Len(); i++ {
		if (parentNull != nil && parentNull[i]) || a.IsNull(i) {
			n.nulls++
			continue
		}
		if !n.minmax || n.noMinMax {
			continue
		}
		v, ok := statValue(a, i)
		if !ok {
			n.noMinMax = true
			continue
		}
		if !n.has {
			n.min, n.max, n.has = v, v, true
			continue
		}
		if statLess(v, n.min) {
			n.min = v
		}
		if statLess(n.max, v) {
			n.max = v
		}
	}
}

// updateFast is update for top-level columns of the common flat types,
// without boxing every value: each array's min and max are found with
// typed loops and merged once. false: a's type has no fast path.
func (n *statNode) updateFast(a arrow.Array) bool {
	switch x := a.(type) {
	case *array.Int8:
		return updateInts(n, a, x.Int8Values())
	case *array.Int16:
		return updateInts(n, a, x.Int16Values())
	case *array.Int32:
		return updateInts(n, a, x.Int32Values())
	case *array.Int64:
		return updateInts(n, a, x.Int64Values())
	case *array.Date32:
		return updateInts(n, a, x.Date32Values())
	case *array.Timestamp:
		return updateInts(n, a, x.TimestampValues())
	case *array.Float32:
		return updateFloats(n, a, x.Float32Values())
	case *array.Float64:
		return updateFloats(n, a, x.Float64Values())
	case *array.Decimal128:
		n.nulls += int64(x.NullN())
		if !n.minmax || n.noMinMax || x.NullN() == x.Len() {
			return true
		}
		vals := x.Values()
		var lo, hi decimal128.Num
		found := false
		for i, v := range vals {
			if x.NullN() > 0 && x.IsNull(i) {
				continue
			}
			if !found {
				lo, hi, found = v, v, true
			} else if v.Less(lo) {
				lo = v
			} else if hi.Less(v) {
				hi = v
			}
		}
		n.merge(lo, hi)
		return true
	case *array.String:
		n.nulls += int64(x.NullN())
		if !n.minmax || n.noMinMax || x.NullN() == x.Len() {
			return true
		}
		var lo, hi string
		found := false
		ascii := isASCII(x.ValueBytes()) // then every value is valid UTF-8
		for i := 0; i < x.Len(); i++ {
			if x.IsNull(i) {
				continue
			}
			v := x.Value(i)
			if !ascii && !utf8.ValidString(v) { // invalid UTF-8 turns min/max off, as in update
				n.noMinMax = true
				return true
			}
			if !found {
				lo, hi, found = v, v, true
			} else if v < lo {
				lo = v
			} else if v > hi {
				hi = v
			}
		}
		n.merge(strings.Clone(lo), strings.Clone(hi))
		return true
	}
	return false
}

// isASCII reports whether b has no byte above 0x7f.
func isASCII(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func updateInts[T int8 | int16 | int32 | int64 | arrow.Date32 | arrow.Timestamp](n *statNode, a arrow.Array, vals []T) bool {
	n.nulls += int64(a.NullN())
	if !n.minmax || n.noMinMax || a.NullN() == a.Len() {
		return true
	}
	var lo, hi T
	found := false
	if a.NullN() == 0 {
		lo, hi, found = vals[0], vals[0], true
		for _, v := range vals[1:] {
			lo = min(lo, v)
			hi = max(hi, v)
		}
	} else {
		for i, v := range vals {
			if a.IsNull(i) {
				continue
			}
			if !found {
				lo, hi, found = v, v, true
				continue
			}
			lo = min(lo, v)
			hi = max(hi, v)
		}
	}
	n.merge(int64(lo), int64(hi))
	return true
}

func updateFloats[T float32 | float64](n *statNode, a arrow.Array, vals []T) bool {
	n.nulls += int64(a.NullN())
	if !n.minmax || n.noMinMax || a.NullN() == a.Len() {
		return true
	}
	var lo, hi float64
	found := false
	for i, v := range vals {
		if a.NullN() > 0 && a.IsNull(i) {
			continue
		}
		f := float64(v)
		if f != f || math.IsInf(f, 0) { // NaN or ±Inf turns min/max off
			n.noMinMax = true
			return true
		}
		if !found {
			lo, hi, found = f, f, true
			continue
		}
		if f < lo {
			lo = f
		}
		if f > hi {
			hi = f
		}
	}
	n.merge(lo, hi)
	return true
}

// merge folds one batch's min and max into the node's.
func (n *statNode) merge(lo, hi any) {
	if !n.has {
		n.min, n.max, n.has = lo, hi, true
		return
	}
	if statLess(lo, n.min) {
		n.min = lo
	}
	if statLess(n.max, hi) {
		n.max = hi
	}
}

// statValue returns the comparable value of row i; false disables min/max.
func statValue(a arrow.Array, i int) (any, bool) {
	switch x := a.(type) {
	case *array.Int8:
		return int64(x.Value(i)), true
	case *array.Int16:
		return int64(x.Value(i)), true
	case *array.Int32:
		return int64(x.Value(i)), true
	case *array.Int64:
		return x.Value(i), true
	case *array.Float32:
		f := float64(x.Value(i))
		return f, !math.IsNaN(f) && !math.IsInf(f, 0)
	case *array.Float64:
		f := x.Value(i)
		return f, !math.IsNaN(f) && !math.IsInf(f, 0)
	case *array.Boolean:
		return x.Value(i), true
	case *array.String:
		s := x.Value(i)
		if !utf8.ValidString(s) {
			return nil, false
		}
		return strings.Clone(s), true
	case *array.Date32:
		return int64(x.Value(i)), true
	case *array.Timestamp:
		return int64(x.Value(i)), true
	case *array.Decimal128:
		return x.Value(i), true
	}
	return nil, false
}

func statLess(a, b any) bool {
	switch x := a.(type) {
	case int64:
		return x < b.(int64)
	case float64:
		return x < b.(float64)
	case bool:
		return !x && b.(bool)
	case string:
		return x < b.(string) // byte order = code point order for UTF-8
	case decimal128.Num:
		return x.Less(b.(decimal128.Num))
	}
	return false
}

// JSON renders the stats as the add.stats string (protocol §7).
func (s *statsAcc) JSON() string {
	var b strings.Builder
	b.WriteString(`{"numRecords":`)
	b.WriteString(strconv.FormatInt(s.rows, 10))
	for _, part := range []string{"minValues", "maxValues", "nullCount"} {
		obj := renderNodes(s.nodes, part)
		if obj == "" {
			continue
		}
		b.WriteString(`,"` + part + `":` + obj)
	}
	b.WriteString("}")
	return b.String()
}

// renderNodes renders one of the stats objects; "" when it would be empty.
func renderNodes(nodes []*statNode, part string) string {
	var items []string
	for _, n := range nodes {
		var v string
		if n.children != nil {
			v = renderNodes(n.children, part)
		} else if n.indexed {
			switch part {
			case "nullCount":
				v = strconv.FormatInt(n.nulls, 10)
			case "minValues":
				if n.has && !n.noMinMax {
					v = renderStat(n.typ, n.min, false)
				}
			case "maxValues":
				if n.has && !n.noMinMax {
					v = renderStat(n.typ, n.max, true)
				}
			}
		}
		if v == "" {
			continue
		}
		k, _ := json.Marshal(n.name)
		items = append(items, string(k)+":"+v)
	}
	if len(items) == 0 {
		return ""
	}
	return "{" + strings.Join(items, ",") + "}"
}

// renderStat renders one min or max value as JSON; "" means omit it.
func renderStat(t delta.DataType, v any, isMax bool) string {
	switch x := v.(type) {
	case int64:
		switch t.TypeName() {
		case "date":
			return `"` + time.Unix(x*86400, 0).UTC().Format("2006-01-02") + `"`
		case "timestamp":
			ms := floorDiv(x, 1000)
			return `"` + time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z") + `"`
		case "timestamp_ntz":
			ms := floorDiv(x, 1000)
			return `"` + time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000") + `"`
		}
		return strconv.FormatInt(x, 10)
	case float64:
		bits := 64
		if t.TypeName() == "float" {
			bits = 32
		}
		return strconv.FormatFloat(x, 'g', -1, bits)
	case bool:
		return strconv.FormatBool(x)
	case decimal128.Num:
		if dt, ok := t.(*delta.DecimalType); ok {
			return decimalString(x, dt.Scale)
		}
	case string:
		s, ok := truncateStat(x, isMax)
		if !ok {
			return ""
		}
		out, _ := json.Marshal(s)
		return string(out)
	}
	return ""
}

// truncateStat keeps at most statsStringLen characters of a string stat.
// A truncated min is a prefix (never greater than the value). A truncated
// max is the prefix with its last incrementable character incremented, so it
// stays strictly above every string sharing the prefix; false when no such
// bound exists.
func truncateStat(s string, isMax bool) (string, bool) {
	if utf8.RuneCountInString(s) <= statsStringLen {
		return s, true
	}
	r := []rune(s)[:statsStringLen]
	if !isMax {
		return string(r), true
	}
	for i := len(r) - 1; i >= 0; i-- {
		next := r[i] + 1
		if next == 0xD800 {
			next = 0xE000 // skip surrogates
		}
		if next <= utf8.MaxRune {
			r[i] = next
			return string(r[:i+1]), true
		}
	}
	return "", false
}

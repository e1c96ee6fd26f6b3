package ops

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Cell points at one value: row Row of array Arr. The zero Cell (Arr nil) is
// null. A Cell is valid only while the array it points into is retained.
type Cell struct {
	Arr arrow.Array
	Row int
}

// Null reports whether the cell is null.
func (c Cell) Null() bool { return c.Arr == nil || c.Arr.IsNull(c.Row) }

// AppendCell appends the value c points at to b. b's type must be the
// type of c.Arr, or a type the value converts to by its text form.
func AppendCell(b array.Builder, c Cell) error {
	if c.Null() {
		b.AppendNull()
		return nil
	}
	i := c.Row
	switch a := c.Arr.(type) {
	case *array.Boolean:
		if bb, ok := b.(*array.BooleanBuilder); ok {
			bb.Append(a.Value(i))
			return nil
		}
	case *array.Int8:
		if bb, ok := b.(*array.Int8Builder); ok {
			bb.Append(a.Value(i))
			return nil
		}
	case *array.Int16:
		if bb, ok := b.(*array.Int16Builder); ok {
			bb.Append(a.Value(i))
			return nil
		}
	case *array.Int32:
		if bb, ok := b.(*array.Int32Builder); ok {
			bb.Append(a.Value(i))
			return nil
		}
	case *array.Int64:
		if bb, ok := b.(*array.Int64Builder); ok {
			bb.Append(a.Value(i))
			return nil
		}
	case *array.Float32:
		if bb, ok := b.(*array.Float32Builder); ok {
			bb.Append(a.Value(i))
			return nil
		}
	case *array.Float64:
		if bb, ok := b.(*array.Float64Builder); ok {
			bb.Append(a.Value(i))
			return nil
		}
	case *array.String:
		if bb, ok := b.(*array.StringBuilder); ok {
			bb.Append(a.Value(i))
			return nil
		}
	case *array.Binary:
		if bb, ok := b.(*array.BinaryBuilder); ok {
			bb.Append(a.Value(i))
			return nil
		}
	case *array.Date32:
		if bb, ok := b.(*array.Date32Builder); ok {
			bb.Append(a.Value(i))
			return nil
		}
	case *array.Timestamp:
		if bb, ok := b.(*array.TimestampBuilder); ok && arrow.TypeEqual(a.DataType(), bb.Type()) {
			bb.Append(a.Value(i))
			return nil
		}
	case *array.Decimal128:
		if bb, ok := b.(*array.Decimal128Builder); ok && arrow.TypeEqual(a.DataType(), bb.Type()) {
			bb.Append(a.Value(i))
			return nil
		}
	}
	if arrow.TypeEqual(b.Type(), c.Arr.DataType()) {
		// Nested and other types: copy through a one-row slice, exactly.
		s := array.NewSlice(c.Arr, int64(i), int64(i+1))
		defer s.Release()
		return appendArray(b, s)
	}
	if err := b.AppendValueFromString(c.Arr.ValueStr(i)); err != nil {
		return fmt.Errorf("copy %s value into %s: %w", c.Arr.DataType(), b.Type(), err)
	}
	return nil
}

// appendArray appends every value of a (same type as b) to b.
func appendArray(b array.Builder, a arrow.Array) error {
	type fromArray interface {
		AppendArraySlice(arr arrow.Array, beg, end int64)
	}
	if fa, ok := b.(fromArray); ok {
		fa.AppendArraySlice(a, 0, int64(a.Len()))
		return nil
	}
	for i := 0; i < a.Len(); i++ {
		if a.IsNull(i) {
			b.AppendNull()
			continue
		}
		if err := b.AppendValueFromString(a.ValueStr(i)); err != nil {
			return fmt.Errorf("copy %s value: %w", a.DataType(), err)
		}
	}
	return nil
}

// compareCells orders two non-null values of comparable types (integers,
// dates, timestamps, floats, strings, binary, booleans, decimals); ok is
// false for anything else.
func compareCells(a, b Cell) (r int, ok bool) {
	if x, ok1 := intValue(a.Arr, a.Row); ok1 {
		if y, ok2 := intValue(b.Arr, b.Row); ok2 {
			return cmp.Compare(x, y), true
		}
	}
	switch x := a.Arr.(type) {
	case *array.Float32, *array.Float64:
		fx, _ := floatValue(a.Arr, a.Row)
		fy, ok := floatValue(b.Arr, b.Row)
		return cmp.Compare(fx, fy), ok
	case *array.String:
		if y, ok := b.Arr.(*array.String); ok {
			return cmp.Compare(x.Value(a.Row), y.Value(b.Row)), true
		}
	case *array.Binary:
		if y, ok := b.Arr.(*array.Binary); ok {
			return bytes.Compare(x.Value(a.Row), y.Value(b.Row)), true
		}
	case *array.Boolean:
		if y, ok := b.Arr.(*array.Boolean); ok {
			return cmp.Compare(b2i(x.Value(a.Row)), b2i(y.Value(b.Row))), true
		}
	case *array.Decimal128:
		if y, ok := b.Arr.(*array.Decimal128); ok {
			return x.Value(a.Row).Cmp(y.Value(b.Row)), true
		}
	}
	return 0, false
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// intValue returns integer-like values (integers, dates, timestamps) as int64.
func intValue(a arrow.Array, i int) (int64, bool) {
	switch x := a.(type) {
	case *array.Int64:
		return x.Value(i), true
	case *array.Int32:
		return int64(x.Value(i)), true
	case *array.Int16:
		return int64(x.Value(i)), true
	case *array.Int8:
		return int64(x.Value(i)), true
	case *array.Uint8:
		return int64(x.Value(i)), true
	case *array.Uint16:
		return int64(x.Value(i)), true
	case *array.Uint32:
		return int64(x.Value(i)), true
	case *array.Date32:
		return int64(x.Value(i)), true
	case *array.Timestamp:
		return int64(x.Value(i)), true
	}
	return 0, false
}

func floatValue(a arrow.Array, i int) (float64, bool) {
	switch x := a.(type) {
	case *array.Float32:
		return float64(x.Value(i)), true
	case *array.Float64:
		return x.Value(i), true
	}
	return 0, false
}

// appendKey appends a byte encoding of row i of a to buf; equal values of
// the same logical type (whatever the integer width) encode equally, and
// the encoding of a sequence of columns is unambiguous.
func appendKey(buf []byte, a arrow.Array, i int) []byte {
	if v, ok := intValue(a, i); ok {
		return binary.BigEndian.AppendUint64(append(buf, 'i'), uint64(v))
	}
	switch x := a.(type) {
	case *array.String:
		s := x.Value(i)
		buf = binary.AppendUvarint(append(buf, 's'), uint64(len(s)))
		return append(buf, s...)
	case *array.Binary:
		s := x.Value(i)
		buf = binary.AppendUvarint(append(buf, 's'), uint64(len(s)))
		return append(buf, s...)
	case *array.Float32:
		return binary.BigEndian.AppendUint64(append(buf, 'f'), math.Float64bits(normZero(float64(x.Value(i)))))
	case *array.Float64:
		return binary.BigEndian.AppendUint64(append(buf, 'f'), math.Float64bits(normZero(x.Value(i))))
	case *array.Boolean:
		return append(buf, 'b', byte(b2i(x.Value(i))))
	case *array.Decimal128:
		v := x.Value(i)
		buf = binary.BigEndian.AppendUint64(append(buf, 'd'), uint64(v.HighBits()))
		return binary.BigEndian.AppendUint64(buf, v.LowBits())
	}
	s := a.ValueStr(i)
	buf = binary.AppendUvarint(append(buf, 'x'), uint64(len(s)))
	return append(buf, s...)
}

func normZero(f float64) float64 {
	if f == 0 {
		return 0
	}
	return f
}

// keyIndex maps changed keys to their index. Single integer-like key
// columns (the common case) use an int64 map; anything else a map of byte
// encodings. Keys with a null column never match (SQL equality).
type keyIndex struct {
	n    int
	ints map[int64]int32
	strs map[string]int32
	// bits is a one-hash filter over ints' keys (about 16 bits per key,
	// a power of two): a row whose bit is clear is not a changed key, so
	// most rows of a file (the unchanged ones) cost a multiply and one
	// load from a table that fits in the CPU cache, not a map probe.
	bits  []uint64
	shift uint
}

// filterBit returns the filter bit of v (see keyIndex.bits).
func (x *keyIndex) filterBit(v int64) uint64 {
	return (uint64(v) * 0x9E3779B97F4A7C15) >> x.shift
}

// mayHave reports whether v can be a changed key (ints only): false means
// it is not one.
func (x *keyIndex) mayHave(v int64) bool {
	b := x.filterBit(v)
	return x.bits[b>>6]&(1<<(b&63)) != 0
}

// intKey returns the key index of v (ints only), or -1.
func (x *keyIndex) intKey(v int64) int {
	if !x.mayHave(v) {
		return -1
	}
	if k, ok := x.ints[v]; ok {
		return int(k)
	}
	return -1
}

func newKeyIndex(cols []arrow.Array) (*keyIndex, error) {
	if len(cols) == 0 {
		return nil, fmt.Errorf("no key columns")
	}
	n := cols[0].Len()
	for _, c := range cols {
		if c.Len() != n {
			return nil, fmt.Errorf("key columns have different lengths (%d, %d)", n, c.Len())
		}
	}
	x := &keyIndex{n: n}
	if len(cols) == 1 && n > 0 {
		if _, ok := intValue(cols[0], 0); ok || cols[0].Len() == cols[0].NullN() {
			x.ints = make(map[int64]int32, n)
		}
	}
	if x.ints == nil {
		x.strs = make(map[string]int32, n)
	}
	var buf []byte
	for k := 0; k < n; k++ {
		if anyNull(cols, k) {
			continue
		}
		if x.ints != nil {
			v, _ := intValue(cols[0], k)
			if _, dup := x.ints[v]; dup {
				return nil, fmt.Errorf("changed key at row %d is a duplicate: reduce changes per key first", k)
			}
			x.ints[v] = int32(k)
			continue
		}
		buf = buf[:0]
		for _, c := range cols {
			buf = appendKey(buf, c, k)
		}
		if _, dup := x.strs[string(buf)]; dup {
			return nil, fmt.Errorf("changed key at row %d is a duplicate: reduce changes per key first", k)
		}
		x.strs[string(buf)] = int32(k)
	}
	if x.ints != nil {
		logBits := uint(12) // at least 4 Kibit
		for 1<<logBits < 16*len(x.ints) && logBits < 30 {
			logBits++
		}
		x.shift = 64 - logBits
		x.bits = make([]uint64, (1<<logBits)/64)
		for v := range x.ints {
			b := x.filterBit(v)
			x.bits[b>>6] |= 1 << (b & 63)
		}
	}
	return x, nil
}

func anyNull(cols []arrow.Array, row int) bool {
	for _, c := range cols {
		if c.IsNull(row) {
			return true
		}
	}
	return false
}

// lookup returns the key index of row i of cols, or -1. buf is scratch.
func (x *keyIndex) lookup(cols []arrow.Array, i int, buf *[]byte) int {
	if x.ints != nil {
		if cols[0].IsNull(i) {
			return -1
		}
		v, ok := intValue(cols[0], i)
		if !ok {
			return -1
		}
		return x.intKey(v)
	}
	b := (*buf)[:0]
	for _, c := range cols {
		if c.IsNull(i) {
			return -1
		}
		b = appendKey(b, c, i)
	}
	*buf = b
	if k, ok := x.strs[string(b)]; ok {
		return int(k)
	}
	return -1
}

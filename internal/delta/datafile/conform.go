package datafile

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/decimal256"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/delta"
)

// conformer converts arrays of whatever shape a Parquet file (or a caller's
// record) has into the Arrow type a Delta type maps to. Arrays that already
// have the target type are shared, not copied; layout-compatible ones
// (renamed struct fields, a zone added to a timestamp) are re-typed over the
// same buffers; everything else is rebuilt.
type conformer struct {
	mem memory.Allocator
	// match is how struct fields of the source are found: by physical name
	// (mapName), by Parquet field id then physical name (mapID), or by
	// logical name (mapNone).
	match mappingMode
	// out is the naming of the target: logical names (mapNone) when
	// reading, physical names when writing a column-mapped table.
	out mappingMode
}

// findField returns the index in src of the field that holds f, or -1.
func (c *conformer) findField(src []arrow.Field, f *delta.StructField) int {
	if c.match == mapID {
		if id, ok := fieldID(f); ok {
			want := strconv.FormatInt(id, 10)
			for i, sf := range src {
				if v, ok := sf.Metadata.GetValue(parquetIDKey); ok && v == want {
					return i
				}
			}
		}
	}
	name := physicalName(f, c.match)
	for i, sf := range src {
		if sf.Name == name {
			return i
		}
	}
	for i, sf := range src {
		if strings.EqualFold(sf.Name, name) {
			return i
		}
	}
	return -1
}

// conform returns d converted to target (the Arrow type of t). The result
// is a new reference the caller must Release; d is not consumed.
func (c *conformer) conform(d arrow.ArrayData, t delta.DataType, target arrow.DataType) (arrow.ArrayData, error) {
	src := d.DataType()
	if arrow.TypeEqual(src, target) {
		d.Retain()
		return d, nil
	}
	if src.ID() == arrow.DICTIONARY {
		u, err := unpackDictionary(c.mem, d)
		if err != nil {
			return nil, err
		}
		defer u.Release()
		return c.conform(u, t, target)
	}
	if target.ID() == arrow.NULL || src.ID() == arrow.NULL {
		return nullData(c.mem, target, d.Offset()+d.Len(), d.Offset(), d.Len()), nil
	}
	switch tt := t.(type) {
	case *delta.StructType:
		sst, ok := src.(*arrow.StructType)
		if !ok {
			return nil, fmt.Errorf("cannot read %s as struct", src)
		}
		return c.conformStruct(d, sst, tt, target.(*arrow.StructType))
	case *delta.ArrayType:
		return c.conformList(d, tt, target.(*arrow.ListType))
	case *delta.MapType:
		return c.conformMap(d, tt, target.(*arrow.MapType))
	}
	return c.conformPrimitive(d, target)
}

func (c *conformer) conformStruct(d arrow.ArrayData, sst *arrow.StructType, t *delta.StructType, target *arrow.StructType) (arrow.ArrayData, error) {
	children := d.Children()
	childLen := d.Offset() + d.Len()
	out := make([]arrow.ArrayData, len(t.Fields))
	defer func() {
		for _, ch := range out {
			if ch != nil {
				ch.Release()
			}
		}
	}()
	for i, f := range t.Fields {
		ft := target.Field(i).Type
		j := c.findField(sst.Fields(), f)
		if j < 0 {
			out[i] = nullData(c.mem, ft, childLen, 0, childLen)
			continue
		}
		ch, err := c.conform(children[j], f.Type, ft)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", f.Name, err)
		}
		if ch.Len() < childLen {
			ch.Release()
			return nil, fmt.Errorf("field %q: child shorter than its struct", f.Name)
		}
		out[i] = ch
	}
	return array.NewData(target, d.Len(), []*memory.Buffer{d.Buffers()[0]}, out, d.NullN(), d.Offset()), nil
}

func (c *conformer) conformList(d arrow.ArrayData, t *delta.ArrayType, target *arrow.ListType) (arrow.ArrayData, error) {
	switch st := d.DataType().(type) {
	case *arrow.ListType:
		ch, err := c.conform(d.Children()[0], t.ElementType, target.Elem())
		if err != nil {
			return nil, fmt.Errorf("array element: %w", err)
		}
		defer ch.Release()
		return array.NewData(target, d.Len(), d.Buffers()[:2], []arrow.ArrayData{ch}, d.NullN(), d.Offset()), nil
	case *arrow.LargeListType, *arrow.FixedSizeListType:
		// Rebuild int32 offsets over the same child values.
		la := array.MakeFromData(d)
		defer la.Release()
		ll := la.(array.ListLike)
		ch, err := c.conform(ll.ListValues().Data(), t.ElementType, target.Elem())
		if err != nil {
			return nil, fmt.Errorf("array element: %w", err)
		}
		defer ch.Release()
		offs := make([]int32, d.Len()+1)
		for i := 0; i < d.Len(); i++ {
			s, e := ll.ValueOffsets(i)
			if e > math.MaxInt32 {
				return nil, fmt.Errorf("list too large for int32 offsets")
			}
			offs[i], offs[i+1] = int32(s), int32(e)
		}
		ob := memory.NewResizableBuffer(c.mem)
		ob.Resize(len(offs) * 4)
		copy(arrow.Int32Traits.CastFromBytes(ob.Bytes()), offs)
		defer ob.Release()
		bm := bitmapAt0(c.mem, la)
		if bm != nil {
			defer bm.Release()
		}
		return array.NewData(target, d.Len(), []*memory.Buffer{bm, ob}, []arrow.ArrayData{ch}, la.NullN(), 0), nil
	default:
		return nil, fmt.Errorf("cannot read %s as array", st)
	}
}

func (c *conformer) conformMap(d arrow.ArrayData, t *delta.MapType, target *arrow.MapType) (arrow.ArrayData, error) {
	var entries arrow.ArrayData
	switch st := d.DataType().(type) {
	case *arrow.MapType:
		entries = d.Children()[0]
	case *arrow.ListType:
		// A legacy map read as list<struct<key, value>>.
		if s, ok := st.Elem().(*arrow.StructType); !ok || s.NumFields() != 2 {
			return nil, fmt.Errorf("cannot read %s as map", st)
		}
		entries = d.Children()[0]
	default:
		return nil, fmt.Errorf("cannot read %s as map", st)
	}
	et := target.Elem().(*arrow.StructType)
	kids := entries.Children()
	if len(kids) != 2 {
		return nil, fmt.Errorf("map entries have %d fields, want 2", len(kids))
	}
	k, err := c.conform(kids[0], t.KeyType, et.Field(0).Type)
	if err != nil {
		return nil, fmt.Errorf("map key: %w", err)
	}
	defer k.Release()
	v, err := c.conform(kids[1], t.ValueType, et.Field(1).Type)
	if err != nil {
		return nil, fmt.Errorf("map value: %w", err)
	}
	defer v.Release()
	e := array.NewData(et, entries.Len(), []*memory.Buffer{entries.Buffers()[0]}, []arrow.ArrayData{k, v}, entries.NullN(), entries.Offset())
	defer e.Release()
	return array.NewData(target, d.Len(), d.Buffers()[:2], []arrow.ArrayData{e}, d.NullN(), d.Offset()), nil
}

// nullData returns all-null data of type dt and the given physical length,
// viewed at [offset, offset+length).
func nullData(mem memory.Allocator, dt arrow.DataType, physLen, offset, length int) arrow.ArrayData {
	a := array.MakeArrayOfNull(mem, dt, physLen)
	defer a.Release()
	if offset == 0 && length == physLen {
		a.Data().Retain()
		return a.Data()
	}
	return array.NewSliceData(a.Data(), int64(offset), int64(offset+length))
}

// bitmapAt0 returns a validity bitmap for a starting at bit 0, or nil when a
// has no nulls. The caller releases the result.
func bitmapAt0(mem memory.Allocator, a arrow.Array) *memory.Buffer {
	if a.NullN() == 0 {
		return nil
	}
	buf := memory.NewResizableBuffer(mem)
	buf.Resize(int((a.Len() + 7) / 8))
	b := buf.Bytes()
	for i := range b {
		b[i] = 0
	}
	for i := 0; i < a.Len(); i++ {
		if a.IsValid(i) {
			b[i/8] |= 1 << (uint(i) % 8)
		}
	}
	return buf
}

func (c *conformer) conformPrimitive(d arrow.ArrayData, target arrow.DataType) (arrow.ArrayData, error) {
	src := d.DataType()
	// Same layout, different type parameters: re-type the buffers.
	if sameLayout(src, target) {
		return array.NewData(target, d.Len(), d.Buffers(), nil, d.NullN(), d.Offset()), nil
	}
	a := array.MakeFromData(d)
	defer a.Release()
	b := array.NewBuilder(c.mem, target)
	defer b.Release()
	b.Reserve(a.Len())
	if err := c.appendConverted(b, a, target); err != nil {
		return nil, fmt.Errorf("cannot read %s as %s: %w", src, target, err)
	}
	out := b.NewArray()
	defer out.Release()
	out.Data().Retain()
	return out.Data(), nil
}

func sameLayout(src, target arrow.DataType) bool {
	switch s := src.(type) {
	case *arrow.TimestampType:
		t, ok := target.(*arrow.TimestampType)
		return ok && t.Unit == s.Unit
	case *arrow.StringType, *arrow.BinaryType:
		return target.ID() == arrow.STRING || target.ID() == arrow.BINARY
	case *arrow.LargeStringType, *arrow.LargeBinaryType:
		return target.ID() == arrow.LARGE_STRING || target.ID() == arrow.LARGE_BINARY
	case *arrow.Decimal128Type:
		t, ok := target.(*arrow.Decimal128Type)
		return ok && t.Scale == s.Scale && t.Precision >= s.Precision
	}
	return false
}

var unitPerSecond = map[arrow.TimeUnit]int64{arrow.Second: 1, arrow.Millisecond: 1e3, arrow.Microsecond: 1e6, arrow.Nanosecond: 1e9}

// appendConverted appends every value of a to b, converting to target.
func (c *conformer) appendConverted(b array.Builder, a arrow.Array, target arrow.DataType) error {
	n := a.Len()
	switch tt := target.(type) {
	case *arrow.TimestampType:
		tb := b.(*array.TimestampBuilder)
		var get func(i int) int64
		var from int64
		switch sa := a.(type) {
		case *array.Timestamp:
			get = func(i int) int64 { return int64(sa.Value(i)) }
			from = unitPerSecond[sa.DataType().(*arrow.TimestampType).Unit]
		case *array.Date32:
			get = func(i int) int64 { return int64(sa.Value(i)) * 86400 }
			from = 1
		case *array.Date64:
			get = func(i int) int64 { return int64(sa.Value(i)) }
			from = 1000
		default:
			if g, ok := intGetter(a); ok {
				// Bare INT64 written without a logical type: assume the target unit.
				get, from = g, unitPerSecond[tt.Unit]
			} else {
				return fmt.Errorf("unsupported conversion")
			}
		}
		to := unitPerSecond[tt.Unit]
		for i := 0; i < n; i++ {
			if a.IsNull(i) {
				tb.AppendNull()
				continue
			}
			v := get(i)
			switch {
			case from == to:
			case from > to:
				v = floorDiv(v, from/to)
			default:
				m := to / from
				if v > math.MaxInt64/m || v < math.MinInt64/m {
					return fmt.Errorf("timestamp %d out of range", v)
				}
				v *= m
			}
			tb.Append(arrow.Timestamp(v))
		}
		return nil
	case *arrow.Date32Type:
		db := b.(*array.Date32Builder)
		switch sa := a.(type) {
		case *array.Date64:
			for i := 0; i < n; i++ {
				if a.IsNull(i) {
					db.AppendNull()
				} else {
					db.Append(arrow.Date32(floorDiv(int64(sa.Value(i)), 86400000)))
				}
			}
			return nil
		case *array.Int32:
			for i := 0; i < n; i++ {
				if a.IsNull(i) {
					db.AppendNull()
				} else {
					db.Append(arrow.Date32(sa.Value(i)))
				}
			}
			return nil
		}
	case *arrow.Int8Type, *arrow.Int16Type, *arrow.Int32Type, *arrow.Int64Type:
		get, ok := intGetter(a)
		if !ok {
			break
		}
		bits := map[arrow.Type]int{arrow.INT8: 8, arrow.INT16: 16, arrow.INT32: 32, arrow.INT64: 64}[tt.ID()]
		lo, hi := int64(-1)<<(bits-1), int64(1)<<(bits-1)-1
		if bits == 64 {
			lo, hi = math.MinInt64, math.MaxInt64
		}
		for i := 0; i < n; i++ {
			if a.IsNull(i) {
				b.AppendNull()
				continue
			}
			v := get(i)
			if v < lo || v > hi {
				return fmt.Errorf("value %d out of range", v)
			}
			switch bb := b.(type) {
			case *array.Int8Builder:
				bb.Append(int8(v))
			case *array.Int16Builder:
				bb.Append(int16(v))
			case *array.Int32Builder:
				bb.Append(int32(v))
			case *array.Int64Builder:
				bb.Append(v)
			}
		}
		return nil
	case *arrow.Float32Type, *arrow.Float64Type:
		var get func(i int) float64
		switch sa := a.(type) {
		case *array.Float32:
			get = func(i int) float64 { return float64(sa.Value(i)) }
		case *array.Float64:
			get = func(i int) float64 { return sa.Value(i) }
		default:
			g, ok := intGetter(a)
			if !ok {
				return fmt.Errorf("unsupported conversion")
			}
			get = func(i int) float64 { return float64(g(i)) }
		}
		for i := 0; i < n; i++ {
			if a.IsNull(i) {
				b.AppendNull()
				continue
			}
			switch bb := b.(type) {
			case *array.Float32Builder:
				bb.Append(float32(get(i)))
			case *array.Float64Builder:
				bb.Append(get(i))
			}
		}
		return nil
	case *arrow.Decimal128Type:
		return appendDecimal(b.(*array.Decimal128Builder), a, tt)
	case *arrow.StringType, *arrow.BinaryType:
		get, ok := bytesGetter(a)
		if !ok {
			break
		}
		for i := 0; i < n; i++ {
			if a.IsNull(i) {
				b.AppendNull()
				continue
			}
			switch bb := b.(type) {
			case *array.StringBuilder:
				bb.BinaryBuilder.Append(get(i))
			case *array.BinaryBuilder:
				bb.Append(get(i))
			}
		}
		return nil
	case *arrow.BooleanType:
		return fmt.Errorf("unsupported conversion")
	}
	return fmt.Errorf("unsupported conversion")
}

func intGetter(a arrow.Array) (func(i int) int64, bool) {
	switch sa := a.(type) {
	case *array.Int8:
		return func(i int) int64 { return int64(sa.Value(i)) }, true
	case *array.Int16:
		return func(i int) int64 { return int64(sa.Value(i)) }, true
	case *array.Int32:
		return func(i int) int64 { return int64(sa.Value(i)) }, true
	case *array.Int64:
		return func(i int) int64 { return sa.Value(i) }, true
	case *array.Uint8:
		return func(i int) int64 { return int64(sa.Value(i)) }, true
	case *array.Uint16:
		return func(i int) int64 { return int64(sa.Value(i)) }, true
	case *array.Uint32:
		return func(i int) int64 { return int64(sa.Value(i)) }, true
	}
	return nil, false
}

func bytesGetter(a arrow.Array) (func(i int) []byte, bool) {
	switch sa := a.(type) {
	case *array.String:
		return func(i int) []byte { return []byte(sa.Value(i)) }, true
	case *array.LargeString:
		return func(i int) []byte { return []byte(sa.Value(i)) }, true
	case *array.StringView:
		return func(i int) []byte { return []byte(sa.Value(i)) }, true
	case *array.Binary:
		return sa.Value, true
	case *array.LargeBinary:
		return sa.Value, true
	case *array.BinaryView:
		return sa.Value, true
	case *array.FixedSizeBinary:
		return sa.Value, true
	}
	return nil, false
}

var bigTen = big.NewInt(10)

// appendDecimal converts decimals of any width/scale (and bare integers,
// read as unscaled values) to tt, refusing values that would lose digits.
func appendDecimal(b *array.Decimal128Builder, a arrow.Array, tt *arrow.Decimal128Type) error {
	var get func(i int) *big.Int
	var scale int32
	switch sa := a.(type) {
	case *array.Decimal128:
		scale = sa.DataType().(*arrow.Decimal128Type).Scale
		get = func(i int) *big.Int { return sa.Value(i).BigInt() }
	case *array.Decimal256:
		scale = sa.DataType().(*arrow.Decimal256Type).Scale
		get = func(i int) *big.Int { return sa.Value(i).BigInt() }
	case *array.FixedSizeBinary:
		get = func(i int) *big.Int { return bigFromTwosComplement(sa.Value(i)) }
		scale = tt.Scale
	default:
		g, ok := intGetter(a)
		if !ok {
			return fmt.Errorf("unsupported conversion")
		}
		scale = tt.Scale
		get = func(i int) *big.Int { return big.NewInt(g(i)) }
	}
	limit := new(big.Int).Exp(bigTen, big.NewInt(int64(tt.Precision)), nil)
	diff := int64(tt.Scale - scale)
	mul := new(big.Int).Exp(bigTen, big.NewInt(abs64(diff)), nil)
	for i := 0; i < a.Len(); i++ {
		if a.IsNull(i) {
			b.AppendNull()
			continue
		}
		v := get(i)
		if diff > 0 {
			v.Mul(v, mul)
		} else if diff < 0 {
			q, r := new(big.Int).QuoRem(v, mul, new(big.Int))
			if r.Sign() != 0 {
				return fmt.Errorf("decimal value would lose digits at scale %d", tt.Scale)
			}
			v = q
		}
		if new(big.Int).Abs(v).Cmp(limit) >= 0 {
			return fmt.Errorf("decimal value exceeds precision %d", tt.Precision)
		}
		b.Append(decimal128.FromBigInt(v))
	}
	return nil
}

var _ = decimal256.Num{}

func bigFromTwosComplement(be []byte) *big.Int {
	v := new(big.Int).SetBytes(be)
	if len(be) > 0 && be[0]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(len(be)*8)))
	}
	return v
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// unpackDictionary returns the values of a dictionary<int32, string or
// binary> array (as read with pqarrow's ReadDict) as a plain string or
// binary array: the sizes are summed, then every value is copied once into
// buffers of the final size.
func unpackDictionary(mem memory.Allocator, d arrow.ArrayData) (arrow.ArrayData, error) {
	dt := d.DataType().(*arrow.DictionaryType)
	vt := dt.ValueType
	if dt.IndexType.ID() != arrow.INT32 || (vt.ID() != arrow.STRING && vt.ID() != arrow.BINARY) {
		return nil, fmt.Errorf("cannot read dictionary %s", dt)
	}
	n, off := d.Len(), d.Offset()
	dict := d.Dictionary()
	var idx []int32
	if n > 0 {
		idx = arrow.Int32Traits.CastFromBytes(d.Buffers()[1].Bytes())[off : off+n]
	}
	dictOffs := arrow.Int32Traits.CastFromBytes(dict.Buffers()[1].Bytes())[dict.Offset():]
	var dictData []byte
	if b := dict.Buffers()[2]; b != nil {
		dictData = b.Bytes()
	}
	// The null count of a sliced ArrayData may be unknown (-1): count it.
	var validBits []byte
	nulls := 0
	if vb := d.Buffers()[0]; vb != nil && n > 0 {
		validBits = vb.Bytes()
		nulls = n - bitutil.CountSetBits(validBits, off, n)
		if nulls == 0 {
			validBits = nil
		}
	}
	valid := func(i int) bool { return validBits == nil || bitutil.BitIsSet(validBits, off+i) }
	size := 0
	for i, k := range idx {
		if valid(i) {
			if k < 0 || int(k) >= dict.Len() {
				return nil, fmt.Errorf("%w: dictionary index %d of a dictionary of %d values", ErrCorruptFile, k, dict.Len())
			}
			size += int(dictOffs[k+1] - dictOffs[k])
		}
	}
	if size > math.MaxInt32 {
		return nil, fmt.Errorf("%d bytes of values in one record", size)
	}
	offsBuf := memory.NewResizableBuffer(mem)
	offsBuf.Resize(arrow.Int32Traits.BytesRequired(n + 1))
	offs := arrow.Int32Traits.CastFromBytes(offsBuf.Bytes())
	data := memory.NewResizableBuffer(mem)
	data.Resize(size)
	dst := data.Bytes()
	pos := int32(0)
	for i, k := range idx {
		offs[i] = pos
		if valid(i) {
			pos += int32(copy(dst[pos:], dictData[dictOffs[k]:dictOffs[k+1]]))
		}
	}
	offs[n] = pos
	var validity *memory.Buffer
	if validBits != nil {
		validity = memory.NewResizableBuffer(mem)
		validity.Resize(int(bitutil.BytesForBits(int64(n))))
		bitutil.CopyBitmap(validBits, off, n, validity.Bytes(), 0)
		defer validity.Release()
	}
	defer offsBuf.Release()
	defer data.Release()
	return array.NewData(vt, n, []*memory.Buffer{validity, offsBuf, data}, nil, nulls, 0), nil
}

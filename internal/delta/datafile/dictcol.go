package datafile

import (
	"math/bits"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// dictColumn dictionary-encodes one string or binary column of the open
// row group itself, instead of arrow-go's dictionary encoder: that one
// hashes each value through a closure that moves the value's slice header
// to the heap, an allocation per row that was the largest single cost of
// compaction (OPTIMIZE) and MERGE rewrites. Here a value costs one Go map
// lookup. The row group's values are kept as indices into the dictionary
// and handed to pqarrow when the row group closes, as an Arrow dictionary
// array in slices of about a data page (see pages); pqarrow writes such an
// array's dictionary page and indices directly (PutDictionary,
// PutIndices), so the dictionary (in order of first appearance), the
// column chunk's statistics and the encodings are those the per-value
// encoder writes.
//
// When the dictionary reaches the dictionary page size limit, the pending
// rows and the rest of the row group's values of the column go to pqarrow
// as plain arrays, so it falls back to plain encoding where it would have
// for the same input.
type dictColumn struct {
	limit  int // dictionary page size limit (bytes, as arrow-go counts them)
	binary bool

	ids   map[string]int32
	data  []byte  // dictionary values, concatenated
	offs  []int32 // len(entries)+1 offsets into data
	size  int     // dictionary page size: sum of len+4
	idx   []int32 // per pending row
	valid []byte  // validity bitmap of idx; nil while there is no null
	nulls int
	dense bool // the dictionary is full: pqarrow's for the rest of the row group
}

func newDictColumn(limit int64, binary bool) *dictColumn {
	d := &dictColumn{limit: int(limit), binary: binary}
	d.reset()
	return d
}

// reset starts a row group. The previous row group's dictionary buffers
// are left to the encoder that may still hold them.
func (d *dictColumn) reset() {
	d.ids = make(map[string]int32, len(d.ids))
	d.data, d.offs, d.size = nil, []int32{0}, 0
	d.idx, d.valid, d.nulls, d.dense = d.idx[:0], nil, 0, false
}

// pending reports whether rows wait to be written.
func (d *dictColumn) pending() bool { return len(d.idx) > 0 }

// estimate is the bytes the pending rows will take at most (uncompressed
// dictionary page and bit-packed indices), for file rolling.
func (d *dictColumn) estimate() int64 {
	if len(d.idx) == 0 {
		return 0
	}
	w := bits.Len(uint(len(d.offs)))
	return int64(d.size) + int64(len(d.idx))*int64(w)/8
}

// add appends arr's values (a *array.String or *array.Binary) and returns
// how many it took: fewer than arr.Len() when the dictionary reached the
// page size limit (the column is then dense for the rest of the row
// group: the caller writes the pending rows with denseArray and the rest
// of arr itself, so pqarrow falls back to plain encoding where it would
// have), none when the column is already dense.
func (d *dictColumn) add(arr arrow.Array) int {
	if d.dense {
		return 0
	}
	n := arr.Len()
	base := len(d.idx)
	d.idx = slices.Grow(d.idx, n)[:base+n]
	idx := d.idx[base:]
	hasNulls := arr.NullN() > 0
	if hasNulls && d.valid == nil {
		d.valid = make([]byte, bitutil.BytesForBits(int64(cap(d.idx))))
		for i := 0; i < base; i++ {
			bitutil.SetBit(d.valid, i)
		}
	}
	if d.valid != nil {
		if need := int(bitutil.BytesForBits(int64(len(d.idx)))); need > len(d.valid) {
			d.valid = append(d.valid, make([]byte, max(need, 2*len(d.valid))-len(d.valid))...)
		}
	}
	var str *array.String
	var bin *array.Binary
	if d.binary {
		bin = arr.(*array.Binary)
	} else {
		str = arr.(*array.String)
	}
	for i := 0; i < n; i++ {
		if hasNulls && arr.IsNull(i) {
			bitutil.ClearBit(d.valid, base+i)
			d.nulls++
			continue
		}
		if d.valid != nil {
			bitutil.SetBit(d.valid, base+i)
		}
		var id int32
		var ok bool
		if str != nil {
			id, ok = d.ids[str.Value(i)]
		} else {
			id, ok = d.ids[string(bin.Value(i))]
		}
		if !ok {
			if d.size >= d.limit {
				d.dense = true
				d.idx = d.idx[:base+i]
				return i
			}
			var v string
			if str != nil {
				v = str.Value(i)
			} else {
				v = string(bin.Value(i))
			}
			id = int32(len(d.offs) - 1)
			d.ids[v] = id
			d.data = append(d.data, v...)
			d.offs = append(d.offs, int32(len(d.data)))
			d.size += len(v) + 4
		}
		idx[i] = id
	}
	return n
}

// denseArray returns the pending rows as a plain string or binary array
// (owned by the caller) and clears them.
func (d *dictColumn) denseArray(mem memory.Allocator) (arrow.Array, error) {
	a := d.array(mem)
	defer a.Release()
	u, err := unpackDictionary(mem, a.Data())
	if err != nil {
		return nil, err
	}
	defer u.Release()
	return array.MakeFromData(u), nil
}

// pages splits the pending rows into data pages the way pqarrow sizes
// pages while it dictionary-encodes dense input: a page ends after the
// first batch of batch rows at which its rows' raw size (value bytes plus
// 4 per non-null value) reaches pageSize. It returns each page's end row.
// (pqarrow does not count raw sizes for dictionary arrays, so without the
// cuts a row group's indices would be one data page.)
func (d *dictColumn) pages(pageSize int64, batch int) []int {
	var ends []int
	n := len(d.idx)
	var raw int64
	for r := 0; r < n; r += batch {
		end := min(r+batch, n)
		for k := r; k < end; k++ {
			if d.valid != nil && !bitutil.BitIsSet(d.valid, k) {
				continue
			}
			id := d.idx[k]
			raw += int64(d.offs[id+1]-d.offs[id]) + 4
		}
		if raw >= pageSize || end == n {
			ends = append(ends, end)
			raw = 0
		}
	}
	return ends
}

// array returns the pending rows as a dictionary array (owned by the
// caller) and clears them; the dictionary's buffers stay with the array.
func (d *dictColumn) array(mem memory.Allocator) arrow.Array {
	vt := arrow.BinaryTypes.String
	if d.binary {
		vt = arrow.BinaryTypes.Binary
	}
	entries := len(d.offs) - 1
	dictData := array.NewData(vt, entries,
		[]*memory.Buffer{nil, memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(d.offs)), memory.NewBufferBytes(d.data)}, nil, 0, 0)
	dict := array.MakeFromData(dictData)
	dictData.Release()
	n := len(d.idx)
	// The indices are copied: d.idx is reused by the next row group.
	ib := memory.NewResizableBuffer(mem)
	ib.Resize(arrow.Int32Traits.BytesRequired(n))
	copy(arrow.Int32Traits.CastFromBytes(ib.Bytes()), d.idx)
	var vb *memory.Buffer
	bufs := []*memory.Buffer{nil, ib}
	if d.nulls > 0 {
		vb = memory.NewResizableBuffer(mem)
		vb.Resize(int(bitutil.BytesForBits(int64(n))))
		copy(vb.Bytes(), d.valid)
		bufs[0] = vb
	}
	indData := array.NewData(arrow.PrimitiveTypes.Int32, n, bufs, nil, d.nulls, 0)
	ib.Release()
	if vb != nil {
		vb.Release()
	}
	indices := array.MakeFromData(indData)
	indData.Release()
	dt := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: vt}
	out := array.NewDictionaryArray(dt, indices, dict)
	indices.Release()
	dict.Release()
	d.idx, d.valid, d.nulls = d.idx[:0], nil, 0
	return out
}

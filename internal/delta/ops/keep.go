package ops

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// keepRuns returns the rows of col in runs ([start, end) row ranges,
// ascending, total rows in all) as a new array, copying the values run by
// run into buffers of the final size; ok is false for types it does not
// handle (nested, boolean, large or view layouts), which the caller
// concatenates slices of instead. A merge drops a few rows from each
// record, so the runs are long and few: one copy per run, not one slice
// object per run as array.Concatenate needs.
func keepRuns(mem memory.Allocator, col arrow.Array, runs [][2]int, total int) (arrow.Array, bool) {
	d := col.Data()
	if len(d.Children()) > 0 || d.DataType().ID() == arrow.DICTIONARY || d.DataType().ID() == arrow.EXTENSION {
		return nil, false
	}
	var width int // bytes per value; 0 for 32-bit offset binaries
	switch dt := col.DataType().(type) {
	case *arrow.StringType, *arrow.BinaryType:
	case arrow.FixedWidthDataType:
		if dt.ID() == arrow.BOOL || dt.BitWidth()%8 != 0 || dt.BitWidth() == 0 {
			return nil, false
		}
		width = dt.BitWidth() / 8
	default:
		return nil, false
	}
	off := d.Offset()
	bufs := d.Buffers()
	var validity *memory.Buffer
	nulls := 0
	if col.NullN() > 0 {
		validity = memory.NewResizableBuffer(mem)
		validity.Resize(int(bitutil.BytesForBits(int64(total))))
		vb := validity.Bytes()
		clear(vb)
		src := bufs[0].Bytes()
		o := 0
		for _, r := range runs {
			for i := r[0]; i < r[1]; i++ {
				if bitutil.BitIsSet(src, off+i) {
					bitutil.SetBit(vb, o)
				} else {
					nulls++
				}
				o++
			}
		}
	}
	var out arrow.ArrayData
	if width > 0 {
		vals := memory.NewResizableBuffer(mem)
		vals.Resize(total * width)
		dst, src := vals.Bytes(), bufs[1].Bytes()
		o := 0
		for _, r := range runs {
			o += copy(dst[o:], src[(off+r[0])*width:(off+r[1])*width])
		}
		out = array.NewData(col.DataType(), total, []*memory.Buffer{validity, vals}, nil, nulls, 0)
		vals.Release()
	} else {
		srcOffs := arrow.Int32Traits.CastFromBytes(bufs[1].Bytes())[off:]
		var src []byte
		if len(bufs) > 2 && bufs[2] != nil {
			src = bufs[2].Bytes()
		}
		size := 0
		for _, r := range runs {
			size += int(srcOffs[r[1]] - srcOffs[r[0]])
		}
		offsBuf := memory.NewResizableBuffer(mem)
		offsBuf.Resize(arrow.Int32Traits.BytesRequired(total + 1))
		offs := arrow.Int32Traits.CastFromBytes(offsBuf.Bytes())
		data := memory.NewResizableBuffer(mem)
		data.Resize(size)
		dst := data.Bytes()
		o, pos := 0, int32(0)
		for _, r := range runs {
			base := srcOffs[r[0]]
			for i := r[0]; i < r[1]; i++ {
				offs[o] = pos + srcOffs[i] - base
				o++
			}
			pos += int32(copy(dst[pos:], src[base:srcOffs[r[1]]]))
		}
		offs[o] = pos
		out = array.NewData(col.DataType(), total, []*memory.Buffer{validity, offsBuf, data}, nil, nulls, 0)
		offsBuf.Release()
		data.Release()
	}
	if validity != nil {
		validity.Release()
	}
	a := array.MakeFromData(out)
	out.Release()
	return a, true
}

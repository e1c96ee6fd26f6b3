package datafile

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// INT96 timestamps (Impala, Hive and Spark's default for TIMESTAMP) are 8
// bytes little-endian nanoseconds of the day followed by 4 bytes
// little-endian Julian day. pqarrow decodes them to Arrow timestamp[ns],
// which cannot hold values outside 1677-09-21..2262-04-11, although Delta
// timestamps (µs) run from 0001-01-01 to 9999-12-31. So top-level INT96
// columns are read here, with the low-level column chunk reader, straight
// to microseconds. INT96 leaves inside structs, lists or maps still go
// through pqarrow and fail (clearly, see int96NestedError) when out of its
// range.

// julianUnixEpoch is the Julian day of 1970-01-01.
const julianUnixEpoch = 2440588

// int96Type is the type of the arrays int96Reader returns; conform turns
// it into the column's target type (re-typing for timestamp_ntz).
var int96Type = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}

// int96Micros converts an INT96 timestamp to microseconds since the Unix
// epoch, rounding sub-microsecond parts down. Like Spark and arrow-rs it
// does not insist the nanoseconds lie within one day; ok is false only when
// the result does not fit in int64.
func int96Micros(v parquet.Int96) (int64, bool) {
	nanos := int64(binary.LittleEndian.Uint64(v[:8]))
	days := int64(binary.LittleEndian.Uint32(v[8:])) - julianUnixEpoch
	const usPerDay = 86400 * 1_000_000
	if days > math.MaxInt64/usPerDay || days < math.MinInt64/usPerDay {
		return 0, false
	}
	base, frac := days*usPerDay, floorDiv(nanos, 1000)
	if (frac > 0 && base > math.MaxInt64-frac) || (frac < 0 && base < math.MinInt64-frac) {
		return 0, false
	}
	return base + frac, true
}

// topLevelInt96 reports whether manifest field j is a top-level,
// non-repeated INT96 leaf, and returns its column index.
func topLevelInt96(pf *file.Reader, m *pqarrow.SchemaManifest, j int) (int, bool) {
	f := &m.Fields[j]
	if !f.IsLeaf() {
		return 0, false
	}
	col := pf.MetaData().Schema.Column(f.ColIndex)
	if col.PhysicalType() != parquet.Types.Int96 || col.MaxRepetitionLevel() != 0 || col.MaxDefinitionLevel() > 1 {
		return 0, false
	}
	return f.ColIndex, true
}

// int96Reader reads one top-level INT96 column, row group after row
// group, as timestamp[us, UTC] arrays.
type int96Reader struct {
	pf     *file.Reader
	mem    memory.Allocator
	col    int
	name   string
	maxDef int16
	nextRG int
	cr     *file.Int96ColumnChunkReader
	vals   []parquet.Int96
	defs   []int16
}

func newInt96Reader(pf *file.Reader, mem memory.Allocator, col int) *int96Reader {
	descr := pf.MetaData().Schema.Column(col)
	return &int96Reader{pf: pf, mem: mem, col: col, name: descr.Path(), maxDef: descr.MaxDefinitionLevel()}
}

func (r *int96Reader) close() {
	if r.cr != nil {
		r.cr.Close()
		r.cr = nil
	}
}

// next returns the column's next n rows. The caller releases the result.
func (r *int96Reader) next(n int) (arrow.ArrayData, error) {
	if cap(r.vals) < n {
		r.vals = make([]parquet.Int96, n)
		r.defs = make([]int16, n)
	}
	vals, defs := r.vals[:n], r.defs[:n]
	rows, nvals := 0, 0
	for rows < n {
		if r.cr == nil {
			if r.nextRG >= r.pf.NumRowGroups() {
				return nil, fmt.Errorf("%w: INT96 column %q has %d rows, want %d more", ErrCorruptFile, r.name, rows, n-rows)
			}
			cc, err := r.pf.RowGroup(r.nextRG).Column(r.col)
			if err != nil {
				return nil, fmt.Errorf("%w: INT96 column %q: %v", ErrCorruptFile, r.name, err)
			}
			cr, ok := cc.(*file.Int96ColumnChunkReader)
			if !ok {
				return nil, fmt.Errorf("%w: INT96 column %q: got a %T", ErrCorruptFile, r.name, cc)
			}
			r.cr = cr
			r.nextRG++
		}
		var dl []int16
		if r.maxDef > 0 {
			dl = defs[rows:]
		}
		lv, nv, err := r.cr.ReadBatch(int64(n-rows), vals[nvals:], dl, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: INT96 column %q: %v", ErrCorruptFile, r.name, err)
		}
		if lv == 0 {
			if err := r.cr.Err(); err != nil {
				return nil, fmt.Errorf("%w: INT96 column %q: %v", ErrCorruptFile, r.name, err)
			}
			r.close() // end of this row group's chunk
			continue
		}
		rows += int(lv)
		nvals += nv
	}
	if r.maxDef == 0 && nvals != n {
		return nil, fmt.Errorf("%w: INT96 column %q: %d values for %d required rows", ErrCorruptFile, r.name, nvals, n)
	}

	data := memory.NewResizableBuffer(r.mem)
	defer data.Release()
	data.Resize(arrow.Int64Traits.BytesRequired(n))
	out := arrow.Int64Traits.CastFromBytes(data.Bytes())
	var valid *memory.Buffer
	nulls := n - nvals
	if nulls > 0 {
		valid = memory.NewResizableBuffer(r.mem)
		defer valid.Release()
		valid.Resize(int(bitutil.BytesForBits(int64(n))))
		clear(valid.Bytes())
	}
	k := 0
	for i := 0; i < n; i++ {
		if nulls > 0 && defs[i] != r.maxDef {
			out[i] = 0
			continue
		}
		if k >= nvals {
			return nil, fmt.Errorf("%w: INT96 column %q: definition levels and values disagree", ErrCorruptFile, r.name)
		}
		us, ok := int96Micros(vals[k])
		if !ok {
			return nil, fmt.Errorf("%w: INT96 column %q: timestamp out of range (Julian day %d)", ErrCorruptFile, r.name, binary.LittleEndian.Uint32(vals[k][8:]))
		}
		out[i] = us
		k++
		if valid != nil {
			bitutil.SetBit(valid.Bytes(), i)
		}
	}
	if k != nvals {
		return nil, fmt.Errorf("%w: INT96 column %q: definition levels and values disagree", ErrCorruptFile, r.name)
	}
	return array.NewData(int96Type, n, []*memory.Buffer{valid, data}, nil, nulls, 0), nil
}

// int96NestedError makes pqarrow's error about an INT96 value outside the
// nanosecond range (only possible for nested INT96 columns, top-level ones
// are read by int96Reader) say what is going on; other errors are returned
// unchanged.
func int96NestedError(err error) error {
	if err == nil || !strings.Contains(err.Error(), "INT96 timestamp is outside the Arrow nanosecond range") {
		return err
	}
	return fmt.Errorf("INT96 timestamp outside 1677-09-21..2262-04-11 inside a struct, array or map: silt reads such values only in top-level columns (%v)", err)
}

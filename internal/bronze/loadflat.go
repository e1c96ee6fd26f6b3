package bronze

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow/decimal128"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

// A snapshot chunk of a table whose Bronze columns all have a flat form
// (datafile.Writer.FlatFields: no struct, array or map columns; every type
// Bronze gives a PostgreSQL column but byte has one) skips Arrow: each
// row's values are decoded (decodeBinary, decodeText: the Arrow path's own
// decoding) straight into typed columns, handed to datafile.WriteFlat every
// loadRecordRows rows. Building Arrow records and arrow-go's per-value
// encoding were most of a snapshot's CPU besides zstd (issue #4).

// flatLoad is a chunk's open FlatBatch and how each of its columns is
// filled.
type flatLoad struct {
	batch datafile.FlatBatch
	cols  []flatSource // per batch column
	// src[ci] is the batch column of relation column ci.
	src   []int
	part  []any     // the batch rows' partition values (commit time parts)
	konst loadConst // the batch rows' LSN, pos, xid and commit time
	bytes int       // string and binary bytes of the batch (loadRecordBytes)
}

// flatSource says where a batch column's values come from: a source
// column (decoded as kind), a Bronze metadata column, or nowhere (null).
type flatSource struct {
	kind        valueKind
	prec, scale int
	meta        string // ColOp, ColLSN, ... ; "" for a source column
	source      bool
}

// flatChunks counts the snapshot chunks (with rows) written by the flat path.
var flatChunks atomic.Int64

// FlatChunks returns how many snapshot chunks with rows this process has
// written through the flat path (tests check which path a table took).
func FlatChunks() int64 { return flatChunks.Load() }

var flatPool sync.Pool // *flatLoad batches' slices, reused across chunks

// newFlatLoad returns the flat filling of rel's rows into fields (the
// writer's FlatFields), or nil when some column has no flat decoding.
func newFlatLoad(rel *change.Relation, fields []*delta.StructField) (*flatLoad, error) {
	idx := map[string]int{}
	for i, f := range fields {
		idx[strings.ToLower(f.Name)] = i
	}
	fl := &flatLoad{cols: make([]flatSource, len(fields)), src: make([]int, len(rel.Columns))}
	for ci, col := range rel.Columns {
		j, ok := idx[strings.ToLower(FieldName(col.Name))]
		if !ok {
			return nil, fmt.Errorf("internal: column %q missing from schema", col.Name)
		}
		fl.src[ci] = j
		fl.cols[j].source = true
	}
	for _, m := range []string{ColOp, ColLSN, ColPos, ColXID, ColCommitTS, ColUnchanged} {
		if j, ok := idx[strings.ToLower(m)]; ok {
			fl.cols[j].meta = m
		}
	}
	for j, f := range fields {
		s := &fl.cols[j]
		switch t := f.Type.(type) {
		case *delta.DecimalType:
			s.kind, s.prec, s.scale = kDecimal, t.Precision, t.Scale
		case *delta.PrimitiveType:
			s.kind = map[string]valueKind{"short": kInt16, "integer": kInt32, "long": kInt64, "float": kFloat32, "double": kFloat64,
				"boolean": kBool, "date": kDate, "timestamp": kTimestamp, "timestamp_ntz": kTimestamp, "string": kString, "binary": kBinary}[t.Name]
		}
		if s.kind == kNone {
			return nil, nil
		}
	}
	if p, ok := flatPool.Get().(*flatLoad); ok && len(p.batch.Cols) >= len(fields) {
		fl.batch.Cols = p.batch.Cols[:len(fields)] // emptied by reset below
	} else {
		fl.batch.Cols = make([]datafile.FlatColumn, len(fields))
	}
	for j, s := range fl.cols { // room for a batch: no growing by doubling
		c := &fl.batch.Cols[j]
		switch s.kind {
		case kInt16, kInt32, kInt64, kDate, kTimestamp:
			c.Int = slices.Grow(c.Int, loadRecordRows)
		case kBool:
			c.Bool = slices.Grow(c.Bool, loadRecordRows)
		case kFloat32, kFloat64:
			c.Float = slices.Grow(c.Float, loadRecordRows)
		case kDecimal:
			c.Dec = slices.Grow(c.Dec, loadRecordRows)
		case kString, kBinary:
			c.Offsets = slices.Grow(c.Offsets, loadRecordRows+1)
		}
	}
	fl.reset()
	return fl, nil
}

// reset empties the batch, keeping its slices.
func (fl *flatLoad) reset() {
	fl.batch.Rows, fl.bytes = 0, 0
	for i := range fl.batch.Cols {
		c := &fl.batch.Cols[i]
		c.Int, c.Float, c.Bool, c.Dec, c.Bytes = c.Int[:0], c.Float[:0], c.Bool[:0], c.Dec[:0], c.Bytes[:0]
		c.Offsets = append(c.Offsets[:0], 0)
		c.Null = nil // until the batch has a null
	}
}

// release returns the batch's slices to the pool.
func (fl *flatLoad) release() {
	flatPool.Put(fl)
}

// add appends row r (op L of the chunk's relation, no unchanged datum).
func (fl *flatLoad) add(r *change.Change) error {
	n := fl.batch.Rows
	for ci, j := range fl.src {
		var d change.Datum
		if ci < len(r.New) {
			d = r.New[ci]
		}
		s, c := &fl.cols[j], &fl.batch.Cols[j]
		// The common cases first, without the value in between (as
		// decodeBinary would read them).
		switch {
		case d.Kind == change.Binary && s.kind == kInt64 && len(d.Data) == 8:
			c.Int = append(c.Int, int64(binary.BigEndian.Uint64(d.Data)))
			markValid(c, n)
			continue
		case d.Kind == change.Binary && s.kind == kInt32 && len(d.Data) == 4:
			c.Int = append(c.Int, int64(int32(binary.BigEndian.Uint32(d.Data))))
			markValid(c, n)
			continue
		case d.Kind == change.Text && s.kind == kString:
			c.Bytes = append(c.Bytes, d.Data...)
			fl.bytes += len(d.Data)
			c.Offsets = append(c.Offsets, int32(len(c.Bytes)))
			markValid(c, n)
			continue
		}
		var v value
		var err error
		switch d.Kind {
		case change.Binary:
			v, err = decodeBinary(s.kind, s.prec, s.scale, d.Data)
		case change.Text:
			v, err = decodeText(s.kind, s.prec, s.scale, d.Data)
		default:
			v.null = true
		}
		if err != nil {
			return fmt.Errorf("column %q: %w", r.Rel.Columns[ci].Name, err)
		}
		if v.null {
			addNull(c, s.kind, n)
			continue
		}
		switch s.kind {
		case kInt16, kInt32, kInt64, kDate, kTimestamp:
			c.Int = append(c.Int, v.i)
		case kBool:
			c.Bool = append(c.Bool, v.i != 0)
		case kFloat32, kFloat64:
			c.Float = append(c.Float, v.f)
		case kDecimal:
			c.Dec = append(c.Dec, v.d)
		case kString, kBinary:
			c.Bytes = append(c.Bytes, v.b...)
			fl.bytes += len(v.b)
			c.Offsets = append(c.Offsets, int32(len(c.Bytes)))
		}
		markValid(c, n)
	}
	fl.batch.Rows++
	return nil
}

// fillMeta fills the columns that are not source columns for the whole
// batch: the metadata columns with the batch's shared values (every row
// of a batch has the same konst), the others (_silt_unchanged, columns
// the relation lacks) with nulls.
func (fl *flatLoad) fillMeta() {
	n, k := fl.batch.Rows, fl.konst
	for j := range fl.cols {
		s, c := &fl.cols[j], &fl.batch.Cols[j]
		if s.source {
			continue
		}
		var v int64
		switch s.meta {
		case ColOp:
			op := opNames['L']
			c.Bytes = slices.Grow(c.Bytes[:0], n*len(op))
			c.Offsets = append(c.Offsets[:0], 0)
			for i := 0; i < n; i++ {
				c.Bytes = append(c.Bytes, op...)
				c.Offsets = append(c.Offsets, int32(len(c.Bytes)))
			}
			continue
		case ColLSN:
			v = int64(k.lsn)
		case ColPos:
			v = int64(k.pos)
		case ColXID:
			v = int64(k.xid)
		case ColCommitTS:
			v = k.commit.UnixMicro()
		default:
			for i := 0; i < n; i++ {
				addNull(c, s.kind, i)
			}
			continue
		}
		c.Int = slices.Grow(c.Int[:0], n)
		for i := 0; i < n; i++ {
			c.Int = append(c.Int, v)
		}
	}
}

// markValid records row n of c as not null (only once c has a null).
func markValid(c *datafile.FlatColumn, n int) {
	if c.Null != nil {
		c.Null = append(c.Null, false)
	}
}

// addNull appends a null row n to c (of kind k).
func addNull(c *datafile.FlatColumn, k valueKind, n int) {
	if c.Null == nil {
		c.Null = make([]bool, n, max(n+1, 1024))
	}
	c.Null = append(c.Null, true)
	switch k {
	case kInt16, kInt32, kInt64, kDate, kTimestamp:
		c.Int = append(c.Int, 0)
	case kBool:
		c.Bool = append(c.Bool, false)
	case kFloat32, kFloat64:
		c.Float = append(c.Float, 0)
	case kDecimal:
		c.Dec = append(c.Dec, decimal128.Num{})
	case kString, kBinary:
		c.Offsets = append(c.Offsets, int32(len(c.Bytes)))
	}
}

package datafile

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/schema"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/delta"
)

// ReadConcat returns the rows of files, in order, as one record whose
// schema is ArrowSchema(ti.Schema): the records Read returns for each file,
// concatenated; nil when the files hold no rows. The caller owns the record.
//
// Compaction reads many small files: when every file has the same
// partition values and the table's data columns are flat (byte, short,
// integer, long, float, double, boolean, string, binary, date, timestamp,
// decimal), the column chunks of files whose Parquet columns hold those
// types as written (no INT96, no millisecond timestamps, decimals of the
// same precision and scale; no deletion vector, no column mapping) are
// decoded
// straight into the output buffers, sized once for the whole group: no
// per-file Arrow records, no concatenation copy. Other files of the group
// go through Read and are copied in. Otherwise ReadConcat is Read followed
// by a concatenation.
func ReadConcat(ctx context.Context, store blob.Store, ti TableInfo, files []*delta.Add) (arrow.RecordBatch, error) {
	if ti.Schema == nil {
		return nil, fmt.Errorf("datafile: read: nil schema")
	}
	outSchema, err := ArrowSchema(ti.Schema)
	if err != nil {
		return nil, fmt.Errorf("datafile: read: %w", err)
	}
	g, ok := newConcatReader(ti, outSchema, files)
	if !ok {
		return readConcatRecords(ctx, store, ti, outSchema, files)
	}
	defer g.release()
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := g.readFile(ctx, store, f); err != nil {
			return nil, err
		}
	}
	return g.record()
}

// readConcatRecords is ReadConcat by Read and array.Concatenate.
func readConcatRecords(ctx context.Context, store blob.Store, ti TableInfo, outSchema *arrow.Schema, files []*delta.Add) (arrow.RecordBatch, error) {
	var recs []arrow.RecordBatch
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	var n int64
	for _, f := range files {
		rs, err := Read(ctx, store, ti, f)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if r.NumRows() == 0 {
				r.Release()
				continue
			}
			n += r.NumRows()
			recs = append(recs, r)
		}
	}
	switch len(recs) {
	case 0:
		return nil, nil
	case 1:
		recs[0].Retain()
		return recs[0], nil
	}
	mem := ti.mem()
	cols := make([]arrow.Array, len(outSchema.Fields()))
	defer releaseAll(cols)
	parts := make([]arrow.Array, len(recs))
	for c := range cols {
		for i, r := range recs {
			parts[i] = r.Column(c)
		}
		a, err := array.Concatenate(parts, mem)
		if err != nil {
			return nil, fmt.Errorf("datafile: read: concatenate column %q: %w", outSchema.Field(c).Name, err)
		}
		cols[c] = a
	}
	return array.NewRecordBatch(outSchema, cols, n), nil
}

// accKind is how a column accumulator stores values.
type accKind int

const (
	accFixed accKind = iota // little-endian values of width bytes
	accBool                 // bitmap
	accBytes                // int32 offsets and data
)

// colAcc accumulates one output column of a concatReader.
type colAcc struct {
	name    string
	dt      arrow.DataType
	kind    accKind
	width   int            // bytes per value in Arrow
	phys    int            // bytes per value in Parquet (4 for short and byte; decimals: per file)
	n       int            // rows so far
	nulls   int            // nulls so far
	valid   *memory.Buffer // validity bitmap; nil while there are no nulls
	values  *memory.Buffer // fixed values, bool bitmap or offsets
	data    *memory.Buffer // accBytes: the bytes
	dataLen int
}

// concatReader decodes the files of one ReadConcat call.
type concatReader struct {
	ti        TableInfo
	mem       memory.Allocator
	outSchema *arrow.Schema
	parts     map[string]*string // the files' partition values
	isPart    []bool             // per output column
	accs      []*colAcc          // per output column; nil for partition columns
	hint      int                // rows expected (stats), for the first allocation
	rows      int                // rows read so far
	// pages allocates the Parquet readers' page buffers, which the next
	// column chunk reuses (every small file needs the same few).
	pages recycler
	// scratch, reused across column chunks
	defs     []int16
	bools    []bool
	lvls     []uint32
	idx      []uint32
	dict     []byte
	dictOffs []int32
	narrowed []byte
}

// newConcatReader returns a reader for the fast path, or false when ti or
// the files do not qualify.
func newConcatReader(ti TableInfo, outSchema *arrow.Schema, files []*delta.Add) (*concatReader, bool) {
	if len(files) == 0 {
		return nil, false
	}
	if mode, err := columnMapping(ti.Config); err != nil || mode != mapNone {
		return nil, false
	}
	for _, f := range files[1:] {
		if !samePartitionValues(f.PartitionValues, files[0].PartitionValues) {
			return nil, false
		}
	}
	isPart := map[string]bool{}
	for _, p := range ti.PartitionColumns {
		isPart[strings.ToLower(p)] = true
	}
	g := &concatReader{ti: ti, mem: ti.mem(), outSchema: outSchema, parts: files[0].PartitionValues,
		isPart: make([]bool, len(ti.Schema.Fields)), accs: make([]*colAcc, len(ti.Schema.Fields))}
	for i, f := range ti.Schema.Fields {
		if isPart[strings.ToLower(f.Name)] {
			g.isPart[i] = true
			continue
		}
		a := &colAcc{name: f.Name, dt: outSchema.Field(i).Type}
		switch a.dt.ID() {
		case arrow.INT8:
			a.kind, a.width = accFixed, 1
		case arrow.INT16:
			a.kind, a.width = accFixed, 2
		case arrow.INT32, arrow.DATE32, arrow.FLOAT32:
			a.kind, a.width = accFixed, 4
		case arrow.DECIMAL128:
			a.kind, a.width = accFixed, 16
		case arrow.INT64, arrow.FLOAT64, arrow.TIMESTAMP:
			if ts, ok := a.dt.(*arrow.TimestampType); ok && ts.Unit != arrow.Microsecond {
				return nil, false
			}
			a.kind, a.width = accFixed, 8
		case arrow.BOOL:
			a.kind = accBool
		case arrow.STRING, arrow.BINARY:
			a.kind = accBytes
		default:
			return nil, false
		}
		a.phys = max(a.width, 4)
		g.accs[i] = a
	}
	for _, f := range files {
		g.hint += int(numRecordsStat(f))
	}
	// The stats only size the first allocation: trust them up to a bound.
	g.hint = min(max(g.hint, 0), maxConcatHint)
	return g, true
}

func samePartitionValues(a, b map[string]*string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || (v == nil) != (w == nil) || (v != nil && *v != *w) {
			return false
		}
	}
	return true
}

// maxConcatHint bounds the rows the stats of a ReadConcat's files may
// make it allocate for up front; more rows grow the buffers as they come.
const maxConcatHint = 1 << 20

// numRecordsStat is add.stats.numRecords, or 0 when unknown.
func numRecordsStat(f *delta.Add) int64 {
	// The stats of a small file are a short JSON object; find the key
	// without decoding the whole of it.
	s := f.Stats
	i := strings.Index(s, `"numRecords":`)
	if i < 0 {
		return 0
	}
	var n int64
	for _, c := range s[i+len(`"numRecords":`):] {
		if c == ' ' && n == 0 {
			continue
		}
		if c < '0' || c > '9' || n > 1<<40 {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

func (g *concatReader) release() {
	for _, a := range g.accs {
		if a == nil {
			continue
		}
		for _, b := range []*memory.Buffer{a.valid, a.values, a.data} {
			if b != nil {
				b.Release()
			}
		}
		a.valid, a.values, a.data = nil, nil, nil
	}
}

// readFile appends the rows of one file.
func (g *concatReader) readFile(ctx context.Context, store blob.Store, add *delta.Add) (err error) {
	if add.DeletionVector != nil {
		return g.readGeneric(ctx, store, add, nil)
	}
	key, err := dataKey(store, g.ti, add.Path)
	if err != nil {
		return fmt.Errorf("datafile: read %s: %w", add.Path, err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("datafile: read %s: %w: %v", key, ErrCorruptFile, r)
		} else if err != nil && !strings.HasPrefix(err.Error(), "datafile: read ") {
			err = fmt.Errorf("datafile: read %s: %w", key, err)
		}
	}()
	src, closeSrc, err := openSource(ctx, store, key, add.Size)
	if err != nil {
		return err
	}
	defer closeSrc()
	pf, err := file.NewParquetReader(src, file.WithReadProps(parquet.NewReaderProperties(&g.pages)))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptFile, err)
	}
	defer pf.Close()
	sch := pf.MetaData().Schema
	leaves := make([]int, len(g.accs)) // file column per output column; -1 missing
	forms := make([]physForm, len(g.accs))
	for i, a := range g.accs {
		if a == nil {
			continue
		}
		leaf, ok := fileLeaf(sch, a)
		if ok && leaf >= 0 {
			forms[i] = physFormOf(sch.Column(leaf), a)
		}
		if !ok {
			// A column in another physical form (INT96, millisecond
			// timestamps, narrower integers, nested...): Read converts it.
			pf.Close()
			return g.readGeneric(ctx, store, add, src)
		}
		leaves[i] = leaf
	}
	total := pf.NumRows()
	if g.rows+int(total) > g.hint {
		g.hint = g.rows + int(total)
	}
	mark := g.mark()
	for r := 0; r < pf.NumRowGroups(); r++ {
		rg := pf.RowGroup(r)
		n := int(rg.NumRows())
		for i, a := range g.accs {
			if a == nil {
				continue
			}
			if leaves[i] < 0 {
				a.appendNulls(g, n)
				continue
			}
			maxDef := sch.Column(leaves[i]).MaxDefinitionLevel()
			if a.kind == accBool {
				cr, err := rg.Column(leaves[i])
				if err != nil {
					return fmt.Errorf("%w: %v", ErrCorruptFile, err)
				}
				err = g.readBools(a, cr, maxDef, n)
				cr.Close() // its page buffers go back to g.pages
				if err != nil {
					return fmt.Errorf("%w: column %q, row group %d: %v", ErrCorruptFile, a.name, r, err)
				}
				continue
			}
			pr, err := rg.GetColumnPageReader(leaves[i])
			if err != nil {
				return fmt.Errorf("%w: %v", ErrCorruptFile, err)
			}
			err = g.readPages(a, pr, forms[i], maxDef, n)
			pr.Close()
			if errors.Is(err, errPageEncoding) {
				pf.Close()
				g.reset(mark)
				return g.readGeneric(ctx, store, add, src)
			}
			if err != nil {
				return fmt.Errorf("%w: column %q, row group %d: %v", ErrCorruptFile, a.name, r, err)
			}
		}
		g.rows += n
	}
	return nil
}

// concatMark is the state of a concatReader between files.
type concatMark struct {
	rows               int
	n, nulls, dataLens []int
}

func (g *concatReader) mark() concatMark {
	m := concatMark{rows: g.rows, n: make([]int, len(g.accs)), nulls: make([]int, len(g.accs)), dataLens: make([]int, len(g.accs))}
	for i, a := range g.accs {
		if a != nil {
			m.n[i], m.nulls[i], m.dataLens[i] = a.n, a.nulls, a.dataLen
		}
	}
	return m
}

// reset drops the rows appended since m (a file read in part).
func (g *concatReader) reset(m concatMark) {
	g.rows = m.rows
	for i, a := range g.accs {
		if a != nil {
			a.n, a.nulls, a.dataLen = m.n[i], m.nulls[i], m.dataLens[i]
		}
	}
}

// readGeneric appends the rows of one file as Read returns them, read
// from src when the file is already open (nil: Read opens it).
func (g *concatReader) readGeneric(ctx context.Context, store blob.Store, add *delta.Add, src parquet.ReaderAtSeeker) error {
	return readFile(ctx, store, g.ti, add, src, func(rec arrow.Record) error {
		n := int(rec.NumRows())
		for i, a := range g.accs {
			if a != nil {
				a.appendArray(g, rec.Column(i))
			}
		}
		g.rows += n
		return nil
	})
}

// fileLeaf finds a's column among the file's top-level columns (by name,
// then case-insensitively, as Read matches them) and reports whether it
// can be decoded straight into a: -1 when the file lacks the column.
func fileLeaf(sch *schema.Schema, a *colAcc) (int, bool) {
	root := sch.Root()
	idx := -1
	for i := 0; i < root.NumFields(); i++ {
		if root.Field(i).Name() == a.name {
			idx = i
			break
		}
	}
	if idx < 0 {
		for i := 0; i < root.NumFields(); i++ {
			if strings.EqualFold(root.Field(i).Name(), a.name) {
				idx = i
				break
			}
		}
	}
	if idx < 0 {
		return -1, true
	}
	node, ok := root.Field(idx).(*schema.PrimitiveNode)
	if !ok || node.RepetitionType() == parquet.Repetitions.Repeated {
		return 0, false
	}
	leaf := sch.ColumnIndexByNode(node)
	if leaf < 0 {
		return 0, false
	}
	col := sch.Column(leaf)
	if col.MaxRepetitionLevel() != 0 || col.MaxDefinitionLevel() > 1 {
		return 0, false
	}
	return leaf, physicalMatches(col, a.dt)
}

// physicalMatches reports whether the Parquet column holds values of dt
// as they are in Arrow (what Read would return without conversion).
func physicalMatches(col *schema.Column, dt arrow.DataType) bool {
	lt := col.LogicalType()
	isInt := func(bits int8) bool {
		switch t := lt.(type) {
		case schema.NoLogicalType:
			return true
		case schema.IntLogicalType:
			return t.BitWidth() == bits && t.IsSigned()
		}
		return false
	}
	none := func() bool { _, ok := lt.(schema.NoLogicalType); return ok }
	if dt.ID() == arrow.DECIMAL128 {
		// The same precision and scale only (Read rescales others).
		t, ok := lt.(schema.DecimalLogicalType)
		d := dt.(*arrow.Decimal128Type)
		if !ok || t.Precision() != d.Precision || t.Scale() != d.Scale {
			return false
		}
		switch col.PhysicalType() {
		case parquet.Types.Int32, parquet.Types.Int64:
			return true
		case parquet.Types.FixedLenByteArray:
			return col.TypeLength() >= 1 && col.TypeLength() <= 16
		}
		return false
	}
	switch col.PhysicalType() {
	case parquet.Types.Int32:
		switch dt.ID() {
		case arrow.INT8, arrow.INT16:
			// Only annotated narrow integers: a plain INT32 could hold
			// values Read refuses to narrow.
			t, ok := lt.(schema.IntLogicalType)
			return ok && t.IsSigned() && int(t.BitWidth()) == 8*dt.(arrow.FixedWidthDataType).Bytes()
		case arrow.INT32:
			return isInt(32)
		case arrow.DATE32:
			_, ok := lt.(schema.DateLogicalType)
			return ok
		}
	case parquet.Types.Int64:
		switch dt.ID() {
		case arrow.INT64:
			return isInt(64)
		case arrow.TIMESTAMP:
			t, ok := lt.(schema.TimestampLogicalType)
			utc := dt.(*arrow.TimestampType).TimeZone != ""
			return ok && t.TimeUnit() == schema.TimeUnitMicros && t.IsAdjustedToUTC() == utc
		}
	case parquet.Types.Float:
		return dt.ID() == arrow.FLOAT32 && none()
	case parquet.Types.Double:
		return dt.ID() == arrow.FLOAT64 && none()
	case parquet.Types.Boolean:
		return dt.ID() == arrow.BOOL && none()
	case parquet.Types.ByteArray:
		switch dt.ID() {
		case arrow.STRING:
			_, ok := lt.(schema.StringLogicalType)
			return ok
		case arrow.BINARY:
			return none()
		}
	}
	return false
}

// readBools appends n rows of one boolean column chunk to a (through
// file.ColumnChunkReader: readPages does not decode bit-packed booleans).
func (g *concatReader) readBools(a *colAcc, cr file.ColumnChunkReader, maxDef int16, n int) error {
	r, ok := cr.(*file.BooleanColumnChunkReader)
	if !ok {
		return fmt.Errorf("unexpected column reader %T", cr)
	}
	var defs []int16
	if maxDef > 0 {
		if cap(g.defs) < n {
			g.defs = make([]int16, n)
		}
		defs = g.defs[:n]
	}
	if cap(g.bools) < n {
		g.bools = make([]bool, n)
	}
	vals := g.bools[:n]
	total, read, err := r.ReadBatch(int64(n), vals, defs, nil)
	if err != nil {
		return err
	}
	if int(total) != n {
		return fmt.Errorf("read %d values, row group has %d rows", total, n)
	}
	spread(vals, defs, maxDef, read)
	a.reserve(g, n)
	bits := a.values.Bytes()
	for i, v := range vals {
		bitutil.SetBitTo(bits, a.n+i, v)
	}
	a.setValidity(g, defs, maxDef, n, n-read)
	a.n += n
	return nil
}

// spread moves the read non-null values (dense at the front of dst) to
// their rows, by the definition levels; null rows get the zero value.
func spread[T any](dst []T, defs []int16, maxDef int16, read int) {
	if defs == nil || read == len(dst) {
		return
	}
	var zero T
	j := read - 1
	for i := len(dst) - 1; i >= 0; i-- {
		if defs[i] == maxDef {
			dst[i] = dst[j]
			j--
		} else {
			dst[i] = zero
		}
	}
}

// reserve makes room for n more rows in a's values (and validity bitmap).
func (a *colAcc) reserve(g *concatReader, n int) {
	rows := max(a.n+n, g.hint)
	var size int
	switch a.kind {
	case accFixed:
		size = rows * a.width
	case accBool:
		size = int(bitutil.BytesForBits(int64(rows)))
	case accBytes:
		size = (rows + 1) * 4
	}
	if a.values == nil {
		a.values = memory.NewResizableBuffer(g.mem)
	}
	if size > a.values.Len() {
		a.values.Resize(max(size, min(2*a.values.Len(), 2*size)))
	}
	if a.kind == accBytes && a.n == 0 {
		a.offsets()[0] = 0
	}
	if a.valid != nil {
		vs := int(bitutil.BytesForBits(int64(rows)))
		if vs > a.valid.Len() {
			a.valid.Resize(max(vs, min(2*a.valid.Len(), 2*vs)))
		}
	}
}

// setValidity records the validity of rows [a.n, a.n+n) (nulls of them
// null, by defs).
func (a *colAcc) setValidity(g *concatReader, defs []int16, maxDef int16, n, nulls int) {
	if nulls == 0 {
		if a.valid != nil {
			bitutil.SetBitsTo(a.valid.Bytes(), int64(a.n), int64(n), true)
		}
		return
	}
	a.ensureValid(g, n)
	bits := a.valid.Bytes()
	for i, d := range defs {
		bitutil.SetBitTo(bits, a.n+i, d == maxDef)
	}
	a.nulls += nulls
}

// ensureValid allocates the validity bitmap (rows so far valid) with room
// for n more rows.
func (a *colAcc) ensureValid(g *concatReader, n int) {
	if a.valid != nil {
		a.reserve(g, n)
		return
	}
	a.valid = memory.NewResizableBuffer(g.mem)
	a.valid.Resize(int(bitutil.BytesForBits(int64(max(a.n+n, g.hint)))))
	bitutil.SetBitsTo(a.valid.Bytes(), 0, int64(a.n), true)
}

func (a *colAcc) appendNulls(g *concatReader, n int) {
	if n == 0 {
		return
	}
	a.reserve(g, n)
	a.ensureValid(g, n)
	bitutil.SetBitsTo(a.valid.Bytes(), int64(a.n), int64(n), false)
	switch a.kind {
	case accFixed:
		clear(a.values.Bytes()[a.n*a.width : (a.n+n)*a.width])
	case accBool:
		bitutil.SetBitsTo(a.values.Bytes(), int64(a.n), int64(n), false)
	case accBytes:
		offs := a.offsets()
		for i := 1; i <= n; i++ {
			offs[a.n+i] = int32(a.dataLen)
		}
	}
	a.nulls += n
	a.n += n
}

// offsets is the accBytes offsets buffer as []int32 (reserve first).
func (a *colAcc) offsets() []int32 {
	b := a.values.Bytes()
	return unsafe.Slice((*int32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// reserveData makes room for size more value bytes, for rows more rows:
// at least enough for the rows the group is expected to hold at the
// bytes per row seen so far, so the buffer rarely grows twice.
func (a *colAcc) reserveData(g *concatReader, size, rows int) error {
	need := int64(a.dataLen) + int64(size)
	if need > int64(1<<31-1) {
		return fmt.Errorf("column %q holds more than 2 GiB of values in one read", a.name)
	}
	if a.data == nil {
		a.data = memory.NewResizableBuffer(g.mem)
	}
	if int(need) > a.data.Len() {
		grow := max(need, 2*int64(a.data.Len()))
		if done := int64(a.n + rows); done > 0 && int64(g.hint) > done {
			grow = max(grow, min(need*int64(g.hint)/done*9/8, 256<<20))
		}
		a.data.Resize(int(min(grow, 1<<31-1)))
	}
	return nil
}

// appendArray appends the rows of arr (of type a.dt).
func (a *colAcc) appendArray(g *concatReader, arr arrow.Array) {
	n := arr.Len()
	if n == 0 {
		return
	}
	d := arr.Data()
	off := d.Offset()
	a.reserve(g, n)
	if arr.NullN() > 0 {
		a.ensureValid(g, n)
		bitutil.CopyBitmap(d.Buffers()[0].Bytes(), off, n, a.valid.Bytes(), a.n)
		a.nulls += arr.NullN()
	} else if a.valid != nil {
		bitutil.SetBitsTo(a.valid.Bytes(), int64(a.n), int64(n), true)
	}
	switch a.kind {
	case accFixed:
		src := d.Buffers()[1].Bytes()[off*a.width : (off+n)*a.width]
		copy(a.values.Bytes()[a.n*a.width:], src)
	case accBool:
		bitutil.CopyBitmap(d.Buffers()[1].Bytes(), off, n, a.values.Bytes(), a.n)
	case accBytes:
		srcOffs := arrow.Int32Traits.CastFromBytes(d.Buffers()[1].Bytes())[off : off+n+1]
		lo, hi := int(srcOffs[0]), int(srcOffs[n])
		if err := a.reserveData(g, hi-lo, n); err != nil {
			panic(err) // recovered by readFile's caller as an error
		}
		var srcData []byte
		if d.Buffers()[2] != nil {
			srcData = d.Buffers()[2].Bytes()
		}
		copy(a.data.Bytes()[a.dataLen:], srcData[lo:hi])
		offs := a.offsets()
		base := int32(a.dataLen - lo)
		for i := 1; i <= n; i++ {
			offs[a.n+i] = srcOffs[i] + base
		}
		a.dataLen += hi - lo
	}
	a.n += n
}

// array returns the accumulated column (a's buffers move into it).
func (a *colAcc) array(g *concatReader) arrow.Array {
	a.reserve(g, 0)
	var bufs []*memory.Buffer
	switch a.kind {
	case accFixed:
		a.values.ResizeNoShrink(a.n * a.width)
	case accBool:
		a.values.ResizeNoShrink(int(bitutil.BytesForBits(int64(a.n))))
	case accBytes:
		a.values.ResizeNoShrink((a.n + 1) * 4)
		if a.data == nil {
			a.data = memory.NewResizableBuffer(g.mem)
		}
		a.data.ResizeNoShrink(a.dataLen)
	}
	if a.nulls == 0 && a.valid != nil {
		a.valid.Release()
		a.valid = nil
	}
	if a.valid != nil {
		a.valid.ResizeNoShrink(int(bitutil.BytesForBits(int64(a.n))))
	}
	bufs = []*memory.Buffer{a.valid, a.values}
	if a.kind == accBytes {
		bufs = append(bufs, a.data)
	}
	d := array.NewData(a.dt, a.n, bufs, nil, a.nulls, 0)
	arr := array.MakeFromData(d)
	d.Release()
	return arr
}

// record returns the rows read (nil when there are none).
func (g *concatReader) record() (arrow.RecordBatch, error) {
	if g.rows == 0 {
		return nil, nil
	}
	cols := make([]arrow.Array, len(g.accs))
	defer releaseAll(cols)
	for i, a := range g.accs {
		if a != nil {
			if a.n != g.rows {
				return nil, fmt.Errorf("datafile: read: column %q has %d rows, want %d", a.name, a.n, g.rows)
			}
			cols[i] = a.array(g)
			continue
		}
		f := g.ti.Schema.Fields[i]
		pv, err := ParsePartitionValueIn(f.Type, g.parts[f.Name], g.ti.PartitionTimeZone)
		if err != nil {
			return nil, fmt.Errorf("datafile: read: column %q: %w", f.Name, err)
		}
		c, err := constantArray(g.mem, g.outSchema.Field(i).Type, pv, g.rows)
		if err != nil {
			return nil, fmt.Errorf("datafile: read: column %q: %w", f.Name, err)
		}
		cols[i] = c
	}
	g.release() // the arrays hold their own references now
	return array.NewRecordBatch(g.outSchema, cols, int64(g.rows)), nil
}

// recycler is a memory.Allocator for the page buffers of the Parquet
// readers of one ReadConcat (one goroutine): a freed buffer is kept and
// handed out again, so reading many small files does not allocate a
// decompression buffer per column chunk. Nothing allocated here reaches the
// returned record (values are copied out before the chunk is closed).
type recycler struct {
	free map[int][][]byte // by capacity (a power of two)
}

func recyclerClass(size int) int {
	c := 64
	for c < size {
		c <<= 1
	}
	return c
}

func (r *recycler) Allocate(size int) []byte {
	c := recyclerClass(size)
	if l := r.free[c]; len(l) > 0 {
		b := l[len(l)-1][:size]
		r.free[c] = l[:len(l)-1]
		clear(b)
		return b
	}
	return make([]byte, size, c)
}

func (r *recycler) Reallocate(size int, b []byte) []byte {
	if size <= cap(b) {
		old := len(b)
		b = b[:size]
		if size > old {
			clear(b[old:])
		}
		return b
	}
	nb := r.Allocate(size)
	copy(nb, b)
	r.Free(b)
	return nb
}

func (r *recycler) Free(b []byte) {
	c := cap(b)
	if c < 64 || c&(c-1) != 0 {
		return // not one of ours
	}
	if r.free == nil {
		r.free = map[int][][]byte{}
	}
	r.free[c] = append(r.free[c], b[:0])
}

// errPageEncoding: a page uses an encoding readPages does not decode; the
// file is read again through Read.
var errPageEncoding = errors.New("page encoding not decoded directly")

// readPages appends n rows of one column chunk of a fixed-width or byte
// array column to a, decoding the pages itself: PLAIN and dictionary
// (RLE_DICTIONARY, PLAIN_DICTIONARY) values, RLE definition levels, data
// pages v1 and v2. The values go straight to a's buffers, without the
// per-page decoders, dictionary conversions and level buffers of
// file.ColumnChunkReader. Other encodings return errPageEncoding.
func (g *concatReader) readPages(a *colAcc, pr file.PageReader, form physForm, maxDef int16, n int) error {
	a.reserve(g, n)
	if maxDef > 1 {
		return errPageEncoding
	}
	var (
		dict     []byte  // fixed: values; bytes: data
		dictOffs []int32 // bytes: offsets (len = entries+1)
		dictN    int
		haveDict bool
		row      int // rows of the chunk done
	)
	for pr.Next() {
		var (
			data    []byte
			defs    []byte // RLE/bit-packed hybrid definition levels; nil when none
			nv      int
			enc     parquet.Encoding
			v1DefOK = true
		)
		switch p := pr.Page().(type) {
		case *file.DictionaryPage:
			enc = parquet.Encoding(p.Encoding())
			if enc != parquet.Encodings.Plain && enc != parquet.Encodings.PlainDict {
				return errPageEncoding
			}
			dictN = int(p.NumValues())
			src := p.Data()
			if a.kind == accFixed {
				if len(src) < dictN*form.width || dictN < 0 {
					return fmt.Errorf("dictionary page of %d values has %d bytes", dictN, len(src))
				}
				dict = form.convert(g.dict[:0], src[:dictN*form.width], a.width)
			} else {
				var err error
				if dict, dictOffs, err = plainByteArrays(g.dict[:0], g.dictOffs[:0], src, dictN); err != nil {
					return fmt.Errorf("dictionary page: %w", err)
				}
				g.dictOffs = dictOffs
			}
			g.dict = dict
			haveDict = true
			continue
		case *file.DataPageV1:
			data, nv, enc = p.Data(), int(p.NumValues()), parquet.Encoding(p.Encoding())
			if maxDef > 0 {
				v1DefOK = p.DefinitionLevelEncoding() == parquet.Encodings.RLE
				if len(data) < 4 {
					return fmt.Errorf("data page of %d bytes", len(data))
				}
				l := int(binary.LittleEndian.Uint32(data))
				if l < 0 || 4+l > len(data) {
					return fmt.Errorf("definition levels of %d bytes in a page of %d", l, len(data))
				}
				defs, data = data[4:4+l], data[4+l:]
			}
		case *file.DataPageV2:
			data, nv, enc = p.Data(), int(p.NumValues()), parquet.Encoding(p.Encoding())
			rl, dl := int(p.RepetitionLevelByteLen()), int(p.DefinitionLevelByteLen())
			if rl < 0 || dl < 0 || rl+dl > len(data) {
				return fmt.Errorf("levels of %d+%d bytes in a page of %d", rl, dl, len(data))
			}
			if maxDef > 0 {
				defs = data[rl : rl+dl]
			}
			data = data[rl+dl:]
		default:
			continue // index pages and the like
		}
		if !v1DefOK {
			return errPageEncoding
		}
		if nv < 0 || row+nv > n {
			return fmt.Errorf("pages hold more than the row group's %d rows", n)
		}
		// Validity of the page's rows.
		valid := nv
		var lv []uint32
		if defs != nil && !allDefined(defs, nv) {
			if cap(g.lvls) < nv {
				g.lvls = make([]uint32, nv)
			}
			lv = g.lvls[:nv]
			if err := decodeHybrid(defs, 1, lv); err != nil {
				return fmt.Errorf("definition levels: %w", err)
			}
			valid = 0
			for _, d := range lv {
				valid += int(d)
			}
			if valid == nv {
				lv = nil
			}
		}
		start := a.n + row
		// Values.
		switch enc {
		case parquet.Encodings.Plain:
			if a.kind == accFixed {
				if len(data) < valid*form.width {
					return fmt.Errorf("page of %d values has %d value bytes", valid, len(data))
				}
				vals := data[:valid*form.width]
				if form.width != a.width || form.bigEndian {
					g.narrowed = form.convert(g.narrowed[:0], vals, a.width)
					vals = g.narrowed
				}
				placeFixed(a, start, nv, lv, vals)
			} else if err := g.placePlainBytes(a, start, nv, lv, data, valid); err != nil {
				return err
			}
		case parquet.Encodings.RLEDict, parquet.Encodings.PlainDict:
			if !haveDict {
				return fmt.Errorf("dictionary-encoded page without a dictionary page")
			}
			if len(data) < 1 {
				return fmt.Errorf("dictionary-encoded page without a bit width")
			}
			bw := int(data[0])
			if bw > 32 {
				return fmt.Errorf("dictionary index bit width %d", bw)
			}
			if cap(g.idx) < valid {
				g.idx = make([]uint32, valid)
			}
			idx := g.idx[:valid]
			if err := decodeHybrid(data[1:], bw, idx); err != nil {
				return fmt.Errorf("dictionary indices: %w", err)
			}
			for _, i := range idx {
				if int(i) >= dictN {
					return fmt.Errorf("dictionary index %d of a dictionary of %d values", i, dictN)
				}
			}
			if a.kind == accFixed {
				placeDictFixed(a, start, nv, lv, dict, idx)
			} else if err := g.placeDictBytes(a, start, nv, lv, dict, dictOffs, idx); err != nil {
				return err
			}
		default:
			return errPageEncoding
		}
		// Validity bitmap.
		if lv != nil {
			a.ensureValid(g, n)
			bits := a.valid.Bytes()
			for i, d := range lv {
				bitutil.SetBitTo(bits, start+i, d == 1)
			}
			a.nulls += nv - valid
		} else if a.valid != nil {
			bitutil.SetBitsTo(a.valid.Bytes(), int64(start), int64(nv), true)
		}
		row += nv
	}
	if err := pr.Err(); err != nil {
		return err
	}
	if row != n {
		return fmt.Errorf("pages hold %d rows, row group has %d", row, n)
	}
	a.n += n
	return nil
}

// plainByteArrays parses n PLAIN byte arrays (4-byte length, bytes) into
// data and offsets (appended to the given slices).
func plainByteArrays(data []byte, offs []int32, src []byte, n int) ([]byte, []int32, error) {
	offs = append(offs, 0)
	p := 0
	for k := 0; k < n; k++ {
		if p+4 > len(src) {
			return nil, nil, fmt.Errorf("value %d of %d past the end of the page", k, n)
		}
		l := int(binary.LittleEndian.Uint32(src[p:]))
		p += 4
		if l < 0 || p+l > len(src) {
			return nil, nil, fmt.Errorf("value %d of %d bytes past the end of the page", k, l)
		}
		data = append(data, src[p:p+l]...)
		p += l
		offs = append(offs, int32(len(data)))
	}
	return data, offs, nil
}

// placeFixed writes the page's rows [start, start+nv) of a fixed-width
// column: the valid rows' values come from vals in order, null rows
// (lv[i] == 0; lv nil = all valid) are zero.
func placeFixed(a *colAcc, start, nv int, lv []uint32, vals []byte) {
	w := a.width
	dst := a.values.Bytes()[start*w : (start+nv)*w]
	if lv == nil {
		copy(dst, vals)
		return
	}
	j := 0
	for i, d := range lv {
		if d == 1 {
			copy(dst[i*w:(i+1)*w], vals[j:j+w])
			j += w
		} else {
			clear(dst[i*w : (i+1)*w])
		}
	}
}

// physForm is how a column's values are stored in one file: width bytes
// each, little-endian, or big-endian (decimals as FIXED_LEN_BYTE_ARRAY).
type physForm struct {
	width     int
	bigEndian bool
}

func physFormOf(col *schema.Column, a *colAcc) physForm {
	switch col.PhysicalType() {
	case parquet.Types.Int32:
		return physForm{width: 4}
	case parquet.Types.Int64:
		return physForm{width: 8}
	case parquet.Types.FixedLenByteArray:
		return physForm{width: col.TypeLength(), bigEndian: true}
	}
	return physForm{width: a.phys}
}

// convert appends the two's complement values of src to dst as
// little-endian values of to bytes each: the low bytes (short and byte
// columns are stored as INT32) or sign-extended (decimals stored as INT32,
// INT64 or big-endian FIXED_LEN_BYTE_ARRAY, read as 16-byte decimal128).
func (f physForm) convert(dst, src []byte, to int) []byte {
	from := f.width
	if from == to && !f.bigEndian {
		return append(dst, src...)
	}
	for i := 0; i+from <= len(src); i += from {
		v := src[i : i+from]
		switch {
		case f.bigEndian:
			var sign byte
			if from > 0 && v[0]&0x80 != 0 {
				sign = 0xff
			}
			for k := 0; k < to; k++ {
				if k < from {
					dst = append(dst, v[from-1-k])
				} else {
					dst = append(dst, sign)
				}
			}
		case from >= to:
			dst = append(dst, v[:to]...)
		default:
			dst = append(dst, v...)
			sign := byte(0)
			if v[from-1]&0x80 != 0 {
				sign = 0xff
			}
			for k := from; k < to; k++ {
				dst = append(dst, sign)
			}
		}
	}
	return dst
}

func placeDictFixed(a *colAcc, start, nv int, lv []uint32, dict []byte, idx []uint32) {
	w := a.width
	dst := a.values.Bytes()[start*w : (start+nv)*w]
	switch w {
	case 8:
		placeDictWords[uint64](dst, nv, lv, dict, idx)
	case 4:
		placeDictWords[uint32](dst, nv, lv, dict, idx)
	default:
		j := 0
		for i := 0; i < nv; i++ {
			if lv == nil || lv[i] == 1 {
				k := int(idx[j])
				copy(dst[i*w:(i+1)*w], dict[k*w:(k+1)*w])
				j++
			} else {
				clear(dst[i*w : (i+1)*w])
			}
		}
	}
}

// placeDictWords is placeDictFixed for values of one machine word T.
func placeDictWords[T uint32 | uint64](dst []byte, nv int, lv []uint32, dict []byte, idx []uint32) {
	d := unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(dst))), nv)
	v := unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(dict))), len(dict)/int(unsafe.Sizeof(T(0))))
	if lv == nil {
		for i, k := range idx {
			d[i] = v[k]
		}
		return
	}
	j := 0
	for i, l := range lv {
		if l == 1 {
			d[i] = v[idx[j]]
			j++
		} else {
			d[i] = 0
		}
	}
}

func (g *concatReader) placePlainBytes(a *colAcc, start, nv int, lv []uint32, src []byte, valid int) error {
	// The value bytes are at most the page's bytes.
	if err := a.reserveData(g, len(src), nv); err != nil {
		return err
	}
	offs := a.offsets()
	out := a.data.Bytes()
	pos, p := a.dataLen, 0
	for i := 0; i < nv; i++ {
		if lv == nil || lv[i] == 1 {
			if p+4 > len(src) {
				return fmt.Errorf("value past the end of the page")
			}
			l := int(binary.LittleEndian.Uint32(src[p:]))
			p += 4
			if l < 0 || p+l > len(src) {
				return fmt.Errorf("value of %d bytes past the end of the page", l)
			}
			pos += copy(out[pos:], src[p:p+l])
			p += l
		}
		offs[start+i+1] = int32(pos)
	}
	a.dataLen = pos
	return nil
}

func (g *concatReader) placeDictBytes(a *colAcc, start, nv int, lv []uint32, dict []byte, dictOffs []int32, idx []uint32) error {
	size := 0
	for _, k := range idx {
		size += int(dictOffs[k+1] - dictOffs[k])
	}
	if err := a.reserveData(g, size, nv); err != nil {
		return err
	}
	offs := a.offsets()
	out := a.data.Bytes()
	pos, j := a.dataLen, 0
	for i := 0; i < nv; i++ {
		if lv == nil || lv[i] == 1 {
			k := idx[j]
			j++
			pos += copy(out[pos:], dict[dictOffs[k]:dictOffs[k+1]])
		}
		offs[start+i+1] = int32(pos)
	}
	a.dataLen = pos
	return nil
}

// allDefined reports whether hybrid-encoded definition levels (bit width
// 1) start with a run of n or more 1s: no nulls in a page of n values (the
// common case, not worth decoding value by value).
func allDefined(defs []byte, n int) bool {
	h, k := binary.Uvarint(defs)
	return k > 0 && h&1 == 0 && h>>1 >= uint64(n) && k < len(defs) && defs[k] == 1
}

// decodeHybrid decodes len(out) values of the RLE/bit-packing hybrid
// encoding of bit width bw (Parquet's levels and dictionary indices).
func decodeHybrid(src []byte, bw int, out []uint32) error {
	mask := uint64(1)<<bw - 1
	vb := (bw + 7) / 8
	p, o := 0, 0
	for o < len(out) {
		h, k := binary.Uvarint(src[p:])
		if k <= 0 {
			return fmt.Errorf("run header at byte %d of %d", p, len(src))
		}
		p += k
		if h&1 == 0 { // RLE run
			cnt := int(h >> 1)
			if p+vb > len(src) {
				return fmt.Errorf("run value past the end")
			}
			var v uint32
			for b := 0; b < vb; b++ {
				v |= uint32(src[p+b]) << (8 * b)
			}
			p += vb
			if cnt > len(out)-o {
				cnt = len(out) - o
			}
			run := out[o : o+cnt]
			for i := range run {
				run[i] = v
			}
			o += cnt
			continue
		}
		groups := int(h >> 1)
		nbytes := groups * bw
		if groups < 0 || p+nbytes > len(src) {
			return fmt.Errorf("bit-packed run of %d groups past the end", groups)
		}
		take := min(groups*8, len(out)-o)
		dst := out[o : o+take]
		bit := p * 8
		for i := range dst {
			// bw <= 32: the value is within the 8 bytes at bit/8.
			q := bit >> 3
			var w uint64
			if q+8 <= len(src) {
				w = binary.LittleEndian.Uint64(src[q:])
			} else {
				for b := 0; q+b < len(src); b++ {
					w |= uint64(src[q+b]) << (8 * b)
				}
			}
			dst[i] = uint32(w >> (bit & 7) & mask)
			bit += bw
		}
		o += take
		p += nbytes
	}
	return nil
}

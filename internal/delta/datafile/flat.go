package datafile

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/arrow-go/v18/parquet/schema"
	"github.com/klauspost/compress/zstd"

	"github.com/silt-dev/silt/internal/delta"
)

// The flat writer: rows of a table whose data columns are all of flat
// primitive types, handed over as typed Go slices (FlatBatch) instead of
// Arrow records, and encoded into Parquet pages by silt itself. It exists
// for the initial snapshot (bronze.Loader), where building Arrow records
// and arrow-go's per-value encoders were most of silt's CPU besides zstd.
//
// The file is the one the Arrow path writes for the same rows, but for the
// encodings: the Parquet schema is pqarrow.ToParquet's of the same Arrow
// schema, the page headers, column chunk metadata and footer are written
// by arrow-go's page writer and metadata builders, and the add's stats are
// the same (TestFlatMatchesArrow). Values are PLAIN encoded, except
// integer and timestamp columns whose first rows do not descend, which are
// DELTA_BINARY_PACKED as SnapshotEncodings writes them; there is no
// dictionary encoding. Data pages are v1, definition levels RLE/bit-packed.

// FlatColumn is one data column of a FlatBatch: the slice for the
// column's Delta type holds one entry per row.
//   - Int: byte, short, integer, long, date (days since 1970-01-01),
//     timestamp and timestamp_ntz (µs since 1970-01-01 UTC);
//   - Float: float and double; Bool: boolean; Dec: decimal (unscaled);
//   - Bytes and Offsets: string and binary, value i is
//     Bytes[Offsets[i]:Offsets[i+1]] (len(Offsets) = rows+1).
//
// Null, when not nil, marks the null rows (their entries are ignored).
type FlatColumn struct {
	Null    []bool
	Int     []int64
	Float   []float64
	Bool    []bool
	Dec     []decimal128.Num
	Bytes   []byte
	Offsets []int32
}

// FlatBatch is rows of a table's data columns (FlatFields order).
type FlatBatch struct {
	Rows int
	Cols []FlatColumn
}

// FlatFields returns the data columns a FlatBatch holds, in order (the
// schema's columns but partition columns), or nil when some column's type
// has no flat form (struct, array, map, void) or the codec is not zstd:
// then only Write can write the table.
func (w *Writer) FlatFields() []*delta.StructField {
	if len(w.skip) > 0 || w.opts.Compression != compress.Codecs.Zstd {
		return nil
	}
	for _, f := range w.dataFields {
		if flatKindOf(f.Type) == flatNone {
			return nil
		}
	}
	return w.dataFields
}

type flatKind uint8

const (
	flatNone flatKind = iota
	flatInt32
	flatInt64
	flatFloat32
	flatFloat64
	flatBool
	flatBytes
	flatDecimal
)

func flatKindOf(t delta.DataType) flatKind {
	switch t := t.(type) {
	case *delta.DecimalType:
		return flatDecimal
	case *delta.PrimitiveType:
		switch t.Name {
		case "byte", "short", "integer", "date":
			return flatInt32
		case "long", "timestamp", "timestamp_ntz":
			return flatInt64
		case "float":
			return flatFloat32
		case "double":
			return flatFloat64
		case "boolean":
			return flatBool
		case "string", "binary":
			return flatBytes
		}
	}
	return flatNone
}

// WriteFlat adds b's rows, all of one partition whose values (Go values of
// the partition columns' types, in TableInfo.PartitionColumns order, nil
// for null) are part. A partition's file is written either by Write or by
// WriteFlat, not both.
func (w *Writer) WriteFlat(b *FlatBatch, part []any) (err error) {
	defer guardWrite(&err)
	if w.done {
		return fmt.Errorf("writer is closed")
	}
	fields := w.FlatFields()
	if fields == nil {
		return fmt.Errorf("the table has columns without a flat form")
	}
	if len(b.Cols) != len(fields) {
		return fmt.Errorf("flat batch has %d columns, the table %d", len(b.Cols), len(fields))
	}
	if b.Rows == 0 {
		return nil
	}
	if err := w.ctx.Err(); err != nil {
		return err
	}
	for i, f := range fields {
		if err := checkFlatColumn(&b.Cols[i], flatKindOf(f.Type), b.Rows); err != nil {
			return fmt.Errorf("column %q: %w", f.Name, err)
		}
		if !f.Nullable && b.Cols[i].Null != nil {
			for _, null := range b.Cols[i].Null {
				if null {
					return fmt.Errorf("non-nullable column %q has nulls", f.Name)
				}
			}
		}
	}
	g, err := w.groupOf(part)
	if err != nil {
		return err
	}
	f := w.open[g.key]
	if f == nil {
		if f, err = w.createFlat(g, b); err != nil {
			return err
		}
	} else if f.ff == nil {
		return fmt.Errorf("partition %q has a file written from Arrow records", g.dir)
	}
	if err := f.ff.write(b, f.stats); err != nil {
		return err
	}
	if f.ff.compressed >= w.opts.TargetFileSize {
		return w.finish(g.key)
	}
	return nil
}

func checkFlatColumn(c *FlatColumn, k flatKind, rows int) error {
	n := 0
	switch k {
	case flatInt32, flatInt64:
		n = len(c.Int)
	case flatFloat32, flatFloat64:
		n = len(c.Float)
	case flatBool:
		n = len(c.Bool)
	case flatDecimal:
		n = len(c.Dec)
	case flatBytes:
		n = len(c.Offsets) - 1
		if n == rows && (c.Offsets[0] < 0 || int(c.Offsets[rows]) > len(c.Bytes)) {
			return fmt.Errorf("offsets out of range")
		}
	}
	if n != rows || c.Null != nil && len(c.Null) != rows {
		return fmt.Errorf("%d values for %d rows", n, rows)
	}
	return nil
}

// groupOf returns the partition group of the partition values part.
func (w *Writer) groupOf(part []any) (*group, error) {
	if len(part) != len(w.partIdx) {
		return nil, fmt.Errorf("%d partition values for %d partition columns", len(part), len(w.partIdx))
	}
	if len(part) == 0 {
		return &group{values: map[string]*string{}}, nil
	}
	vals := make([]*string, len(part))
	for k, i := range w.partIdx {
		s, err := FormatPartitionValue(w.ti.Schema.Fields[i].Type, part[k])
		if err != nil {
			return nil, fmt.Errorf("partition column %q: %w", w.ti.Schema.Fields[i].Name, err)
		}
		vals[k] = s
	}
	return newGroup(w.ti, w.partIdx, w.mode, partitionKey(vals), vals), nil
}

// createFlat opens a flat file for g's partition, choosing each column's
// encoding from b's rows.
func (w *Writer) createFlat(g *group, b *FlatBatch) (*openFile, error) {
	page := w.pageBytes()
	opts := append(w.baseProps(), parquet.WithDictionaryDefault(false))
	// The column chunk metadata lists the encoding the properties name.
	dbp := make([]bool, len(w.dataFields))
	for i, f := range w.dataFields {
		switch k := flatKindOf(f.Type); k {
		case flatFloat32, flatFloat64:
			opts = append(opts, parquet.WithStatsFor(w.schema.Field(i).Name, false)) // as create: no Parquet min/max for floats
		case flatInt32, flatInt64:
			if dbp[i] = nonDescending(b.Cols[i].Int, b.Cols[i].Null); dbp[i] {
				opts = append(opts, parquet.WithEncodingFor(w.schema.Field(i).Name, parquet.Encodings.DeltaBinaryPacked))
			}
		}
	}
	props := parquet.NewWriterProperties(opts...)
	sc, err := pqarrow.ToParquet(w.schema, props, pqarrow.NewArrowWriterProperties(pqarrow.WithAllocator(w.ti.mem())))
	if err != nil {
		return nil, fmt.Errorf("create parquet schema: %w", err)
	}
	if sc.NumColumns() != len(w.dataFields) {
		return nil, fmt.Errorf("flat schema of %d fields has %d Parquet columns", len(w.dataFields), sc.NumColumns())
	}
	ff := &flatFile{props: props, sc: sc, level: w.opts.CompressionLevel, pageBytes: int(page), mem: w.ti.mem()}
	buf, _ := fileBufs.get()
	ff.buf = *bytes.NewBuffer(buf[:0])
	ff.buf.WriteString("PAR1")
	ff.fmb = metadata.NewFileMetadataBuilder(sc, props, nil)
	ff.cols = make([]*flatCol, len(w.dataFields))
	for i, f := range w.dataFields {
		d := sc.Column(i)
		c := newFlatCol()
		c.descr, c.kind, c.isString, c.enc, c.nullable = d, flatKindOf(f.Type), f.Type.TypeName() == "string", parquet.Encodings.Plain, d.MaxDefinitionLevel() > 0
		c.stats, c.signed, c.maxStats = props.StatisticsEnabledFor(d.Path()), d.SortOrder() == schema.SortSIGNED, props.MaxStatsSizeFor(d.Path())
		switch c.kind {
		case flatInt32, flatInt64:
			if dbp[i] {
				c.enc = parquet.Encodings.DeltaBinaryPacked
			}
		case flatDecimal:
			if d.PhysicalType() != parquet.Types.FixedLenByteArray || d.TypeLength() < 1 || d.TypeLength() > 16 {
				return nil, fmt.Errorf("column %q: decimal stored as %s", f.Name, d.PhysicalType())
			}
			c.width = d.TypeLength()
		}
		c.sizeBuffers(int(page), &b.Cols[i], b.Rows)
		ff.cols[i] = c
	}
	w.opened++
	f := &openFile{seq: w.opened, g: g, ff: ff, stats: newStatsAcc(w.dataFields, w.mode, w.ti.Config)}
	for i, c := range ff.cols {
		c.node = f.stats.nodes[i]
	}
	w.open[g.key] = f
	return f, nil
}

// nonDescending reports whether vals (at least distinctMin, no nulls)
// never descend: written DELTA_BINARY_PACKED, as Writer.sorted decides.
func nonDescending(vals []int64, null []bool) bool {
	if null != nil || len(vals) < distinctMin {
		return false
	}
	for i := 1; i < len(vals); i++ {
		if vals[i] < vals[i-1] {
			return false
		}
	}
	return true
}

// flatFile is one data file being written by WriteFlat: the open row
// group's columns hold their compressed pages until the row group ends.
type flatFile struct {
	buf        bytes.Buffer
	props      *parquet.WriterProperties
	sc         *schema.Schema
	fmb        *metadata.FileMetaDataBuilder
	mem        memory.Allocator
	level      int
	pageBytes  int
	cols       []*flatCol
	rgRows     int
	rgOrd      int16
	compressed int64 // compressed page bytes written so far
	closed     bool
}

// tell is the file buffer as arrow-go's page writer sink (Write and Tell).
type tell struct{ b *bytes.Buffer }

func (t tell) Write(p []byte) (int, error) { return t.b.Write(p) }
func (t tell) Tell() int64                 { return int64(t.b.Len()) }

func (ff *flatFile) write(b *FlatBatch, acc *statsAcc) error {
	if ff.closed {
		return fmt.Errorf("write to a closed flat file")
	}
	maxRG := int(ff.props.MaxRowGroupLength())
	for off := 0; off < b.Rows; {
		n := min(b.Rows-off, maxRG-ff.rgRows)
		for i, c := range ff.cols {
			if err := c.add(ff, &b.Cols[i], off, off+n); err != nil {
				return fmt.Errorf("column %q: %w", c.descr.Name(), err)
			}
		}
		ff.rgRows += n
		acc.rows += int64(n)
		off += n
		if ff.rgRows >= maxRG {
			if err := ff.flushRowGroup(); err != nil {
				return err
			}
		}
	}
	return nil
}

// flushRowGroup writes the open row group's column chunks and metadata.
func (ff *flatFile) flushRowGroup() error {
	if ff.rgRows == 0 {
		return nil
	}
	for _, c := range ff.cols {
		if err := c.flushPage(ff); err != nil {
			return err
		}
	}
	size := 16 << 10 // room for the footer
	for _, c := range ff.cols {
		size += c.chunkBytes + 64*len(c.pages) + 1024 // page headers, chunk metadata, footer entry
	}
	ff.buf.Grow(size)
	sink := tell{&ff.buf}
	rgb := ff.fmb.AppendRowGroup()
	for i, c := range ff.cols {
		ccb := rgb.NextColumnChunk()
		pw, err := file.NewPageWriter(sink, compress.Codecs.Zstd, ff.level, ccb, ff.rgOrd, int16(i), ff.mem, false, nil, nil)
		if err != nil {
			return err
		}
		for _, p := range c.pages {
			page := file.NewDataPageV1WithStats(memory.NewBufferBytes(p.data), p.n, c.enc,
				parquet.Encodings.RLE, parquet.Encodings.RLE, p.raw, p.stats)
			if _, err := pw.WriteDataPage(page); err != nil {
				return err
			}
		}
		if c.stats {
			ccb.SetStats(c.chunkStats())
		}
		if err := pw.Close(false, false); err != nil {
			return err
		}
		c.resetChunk()
	}
	rgb.SetNumRows(ff.rgRows)
	if err := rgb.Finish(0, ff.rgOrd); err != nil {
		return err
	}
	ff.rgOrd++
	ff.rgRows = 0
	return nil
}

// Close ends the file: the last row group and the footer.
func (ff *flatFile) Close() error {
	if ff.closed {
		return nil
	}
	ff.closed = true
	if err := ff.flushRowGroup(); err != nil {
		return err
	}
	fm, err := ff.fmb.Finish()
	if err != nil {
		return err
	}
	n, err := fm.WriteTo(&ff.buf, nil)
	if err != nil {
		return err
	}
	ff.buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(n)))
	ff.buf.WriteString("PAR1")
	ff.release()
	return nil
}

// release returns the columns' buffers for the next file.
func (ff *flatFile) release() {
	for _, c := range ff.cols {
		c.resetChunk()
		flatColPool.Put(c)
	}
	ff.cols = nil
}

// fileBufs keeps the buffers of flat files stored (Writer.finish gives
// them back once the store has the file): a snapshot writes one file after
// another of about the same size, each once cleared and grown.
var fileBufs = newFreeList[[]byte](4)

// fileBufKeep is the largest file buffer kept.
const fileBufKeep = 32 << 20

// keepFileBuf gives a stored flat file's buffer back to fileBufs.
func keepFileBuf(b []byte) {
	if cap(b) > 0 && cap(b) <= fileBufKeep {
		fileBufs.put(b[:0])
	}
}

// pageBufs holds compressed pages until their row group is written (a
// size-class pool: pages are about the page size, and each is freed as
// soon as it is in the file).
var pageBufs = NewPoolAllocator()

// flatColPool keeps flatCols with their page and chunk buffers: every
// file of a snapshot fills them to about the same sizes.
var flatColPool sync.Pool

// newFlatCol is a flatCol with empty buffers (reused when there are any).
func newFlatCol() *flatCol {
	c, ok := flatColPool.Get().(*flatCol)
	if !ok {
		return &flatCol{}
	}
	*c = flatCol{vals: c.vals[:0], ints: c.ints[:0], bools: c.bools[:0], nulls: c.nulls[:0], pages: c.pages[:0], page: c.page[:0],
		mm: minMax{bmin: c.mm.bmin[:0], bmax: c.mm.bmax[:0]}, cmm: minMax{bmin: c.cmm.bmin[:0], bmax: c.cmm.bmax[:0]}}
	return c
}

// flatPage is one compressed data page of a column chunk being built.
type flatPage struct {
	data  []byte // compressed, from pageBufs
	n     int32  // values (rows)
	raw   int32  // uncompressed size
	stats metadata.EncodedStatistics
}

// flatCol is one column of a flatFile: the open page's values, and the
// open row group's compressed pages.
type flatCol struct {
	descr    *schema.Column
	kind     flatKind
	enc      parquet.Encoding
	nullable bool
	stats    bool // Parquet statistics
	signed   bool
	maxStats int64
	width    int // decimal FIXED_LEN_BYTE_ARRAY bytes
	isString bool
	node     *statNode // the file's Delta stats of the column

	// open page
	vals  []byte  // PLAIN values
	ints  []int64 // DELTA_BINARY_PACKED values
	bools []bool
	n     int     // rows
	nulls []int32 // null rows (page row numbers)
	mm    minMax

	// open row group
	pages      []flatPage
	chunkBytes int // compressed bytes of pages
	cmm        minMax
	cnulls     int64

	page []byte // scratch: the uncompressed page
}

// minMax is the min and max of a page's or chunk's non-null values.
type minMax struct {
	has              bool
	imin, imax       int64
	fmin, fmax       float64
	bmin, bmax       []byte // copies
	dmin, dmax       decimal128.Num
	boolMin, boolMax bool
	nonFinite        bool // a NaN or ±Inf (float min/max off in Delta stats)
	badUTF8          bool
}

func (c *flatCol) add(ff *flatFile, col *FlatColumn, lo, hi int) error {
	for lo < hi {
		// rows that fit the open page
		n := hi - lo
		switch c.kind {
		case flatBytes: // checked per value below, once the page has room
			if len(c.vals) >= defRoom+ff.pageBytes {
				n = 0
			}
		case flatBool:
			n = min(n, ff.pageBytes-c.n)
		default:
			if c.enc == parquet.Encodings.DeltaBinaryPacked {
				n = min(n, ff.pageBytes/8-len(c.ints))
			} else {
				n = min(n, (ff.pageBytes+defRoom-len(c.vals))/max(c.valueWidth(), 1))
			}
		}
		if n <= 0 {
			if err := c.flushPage(ff); err != nil {
				return err
			}
			continue
		}
		end := lo + n
		if c.kind == flatBytes {
			end = c.addBytes(col, lo, hi, ff.pageBytes)
		} else {
			c.addFixed(col, lo, end)
		}
		c.n += end - lo
		lo = end
		if lo < hi {
			if err := c.flushPage(ff); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *flatCol) valueWidth() int {
	switch c.kind {
	case flatInt32, flatFloat32:
		return 4
	case flatInt64, flatFloat64:
		return 8
	case flatDecimal:
		return c.width
	}
	return 1
}

// addFixed appends rows [lo, hi) of a fixed-width column to the page.
func (c *flatCol) addFixed(col *FlatColumn, lo, hi int) {
	null := col.Null
	if null != nil {
		for r := lo; r < hi; r++ {
			if null[r] {
				c.nulls = append(c.nulls, int32(c.n+r-lo))
			}
		}
		if len(c.nulls) == 0 || c.nulls[len(c.nulls)-1] < int32(c.n) {
			null = nil // no null among these rows
		}
	}
	mm := &c.mm
	switch c.kind {
	case flatInt32, flatInt64:
		vals := col.Int[lo:hi]
		lo64, hi64, any := int64(0), int64(0), false
		if c.enc == parquet.Encodings.DeltaBinaryPacked {
			for i, v := range vals {
				if null != nil && null[lo+i] {
					continue
				}
				c.ints = append(c.ints, v)
				lo64, hi64, any = minMaxInt(lo64, hi64, any, v)
			}
		} else if c.kind == flatInt32 {
			for i, v := range vals {
				if null != nil && null[lo+i] {
					continue
				}
				c.vals = binary.LittleEndian.AppendUint32(c.vals, uint32(int32(v)))
				lo64, hi64, any = minMaxInt(lo64, hi64, any, v)
			}
		} else {
			for i, v := range vals {
				if null != nil && null[lo+i] {
					continue
				}
				c.vals = binary.LittleEndian.AppendUint64(c.vals, uint64(v))
				lo64, hi64, any = minMaxInt(lo64, hi64, any, v)
			}
		}
		if any {
			if !mm.has {
				mm.imin, mm.imax, mm.has = lo64, hi64, true
			} else {
				mm.imin, mm.imax = min(mm.imin, lo64), max(mm.imax, hi64)
			}
		}
	case flatFloat32, flatFloat64:
		for i, v := range col.Float[lo:hi] {
			if null != nil && null[lo+i] {
				continue
			}
			if c.kind == flatFloat32 {
				f := float32(v)
				c.vals = binary.LittleEndian.AppendUint32(c.vals, math.Float32bits(f))
				v = float64(f)
			} else {
				c.vals = binary.LittleEndian.AppendUint64(c.vals, math.Float64bits(v))
			}
			if v != v || math.IsInf(v, 0) {
				mm.nonFinite = true
				continue
			}
			if !mm.has {
				mm.fmin, mm.fmax, mm.has = v, v, true
			} else if v < mm.fmin {
				mm.fmin = v
			} else if v > mm.fmax {
				mm.fmax = v
			}
		}
	case flatBool:
		for i, v := range col.Bool[lo:hi] {
			if null != nil && null[lo+i] {
				continue
			}
			c.bools = append(c.bools, v)
			if !mm.has {
				mm.boolMin, mm.boolMax, mm.has = v, v, true
			} else {
				mm.boolMin = mm.boolMin && v
				mm.boolMax = mm.boolMax || v
			}
		}
	case flatDecimal:
		for i, v := range col.Dec[lo:hi] {
			if null != nil && null[lo+i] {
				continue
			}
			c.vals = appendDecimalBE(c.vals, v, c.width)
			if !mm.has {
				mm.dmin, mm.dmax, mm.has = v, v, true
			} else if v.Less(mm.dmin) {
				mm.dmin = v
			} else if mm.dmax.Less(v) {
				mm.dmax = v
			}
		}
	}
}

func minMaxInt(lo, hi int64, any bool, v int64) (int64, int64, bool) {
	if !any {
		return v, v, true
	}
	return min(lo, v), max(hi, v), true
}

// appendDecimalBE appends v as a width-byte big-endian two's complement.
func appendDecimalBE(b []byte, v decimal128.Num, width int) []byte {
	var full [16]byte
	binary.BigEndian.PutUint64(full[:8], uint64(v.HighBits()))
	binary.BigEndian.PutUint64(full[8:], v.LowBits())
	return append(b, full[16-width:]...)
}

// addBytes appends rows of a string or binary column from lo until the
// page holds pageBytes (at least one row) or hi; it returns the end row.
func (c *flatCol) addBytes(col *FlatColumn, lo, hi, pageBytes int) int {
	offs := col.Offsets
	mm := &c.mm
	var bmin, bmax []byte
	if mm.has {
		bmin, bmax = mm.bmin, mm.bmax
	}
	has := mm.has
	minChanged, maxChanged := false, false
	r := lo
	for ; r < hi && (r == lo || len(c.vals) < defRoom+pageBytes); r++ {
		if col.Null != nil && col.Null[r] {
			c.nulls = append(c.nulls, int32(c.n+r-lo))
			continue
		}
		v := col.Bytes[offs[r]:offs[r+1]]
		c.vals = binary.LittleEndian.AppendUint32(c.vals, uint32(len(v)))
		c.vals = append(c.vals, v...)
		if !has {
			bmin, bmax, has, minChanged, maxChanged = v, v, true, true, true
		} else if bytes.Compare(v, bmin) < 0 {
			bmin, minChanged = v, true
		} else if bytes.Compare(v, bmax) > 0 {
			bmax, maxChanged = v, true
		}
	}
	if c.isString && r > lo && !mm.badUTF8 && !isASCII(col.Bytes[offs[lo]:offs[r]]) {
		for i := lo; i < r; i++ {
			if (col.Null == nil || !col.Null[i]) && !utf8.Valid(col.Bytes[offs[i]:offs[i+1]]) {
				mm.badUTF8 = true
				break
			}
		}
	}
	if has {
		if minChanged {
			mm.bmin = append(mm.bmin[:0:0], bmin...)
		}
		if maxChanged {
			mm.bmax = append(mm.bmax[:0:0], bmax...)
		}
		mm.has = true
	}
	return r
}

// flushPage compresses the open page into the chunk.
func (c *flatCol) flushPage(ff *flatFile) error {
	if c.n == 0 {
		return nil
	}
	var p []byte
	plain := c.enc != parquet.Encodings.DeltaBinaryPacked && c.kind != flatBool
	if plain && len(c.nulls) == 0 {
		// The values are compressed where they are, behind their
		// definition levels written into the room vals keeps in front.
		p = c.vals[defRoom:]
		if c.nullable {
			var lv [defRoom]byte
			d := appendDefLevels(lv[:0], c.n, nil)
			copy(c.vals[defRoom-len(d):], d)
			p = c.vals[defRoom-len(d):]
		}
	} else {
		p = c.page[:0]
		if c.nullable {
			p = appendDefLevels(p, c.n, c.nulls)
		}
		switch {
		case c.enc == parquet.Encodings.DeltaBinaryPacked:
			p = appendDeltaBinaryPacked(p, c.ints, c.kind == flatInt32)
		case c.kind == flatBool:
			p = appendBitPacked(p, c.bools)
		default:
			p = append(p, c.vals[defRoom:]...)
		}
		c.page = p
	}
	if len(p) > math.MaxInt32 {
		return fmt.Errorf("page of %d bytes", len(p))
	}
	enc, pool := pageEncoder(zstdLevel(ff.level))
	data := enc.EncodeAll(p, pageBufs.Allocate(len(p) + len(p)>>7 + 1024)[:0])
	pool.Put(enc)
	ff.compressed += int64(len(data))
	c.chunkBytes += len(data)
	fp := flatPage{data: data, n: int32(c.n), raw: int32(len(p))}
	if c.stats {
		fp.stats = c.encodeStats(&c.mm, int64(len(c.nulls)))
	}
	c.pages = append(c.pages, fp)
	c.updateDelta(c.node, &c.mm, int64(len(c.nulls)))
	c.cnulls += int64(len(c.nulls))
	c.cmm.merge(&c.mm, c.kind)
	c.vals, c.ints, c.bools, c.nulls, c.n = c.vals[:defRoom], c.ints[:0], c.bools[:0], c.nulls[:0], 0
	c.mm = minMax{bmin: c.mm.bmin[:0], bmax: c.mm.bmax[:0]}
	return nil
}

// defRoom is the room kept in front of a page's PLAIN values for its
// definition levels when no row is null (4-byte length, one RLE run).
const defRoom = 16

// sizeBuffers gives the column's page buffers room for one page, or for
// the first batch's rows of col when they take less (a small file does
// not allocate a page's worth per column), so that they do not grow by
// doubling and copying.
func (c *flatCol) sizeBuffers(pageBytes int, col *FlatColumn, rows int) {
	switch {
	case c.enc == parquet.Encodings.DeltaBinaryPacked:
		c.ints = slices.Grow(c.ints[:0], min(pageBytes/8, rows))
	case c.kind == flatBool:
		c.bools = slices.Grow(c.bools[:0], min(pageBytes, rows))
	case c.kind == flatBytes:
		n := 4*rows + int(col.Offsets[rows]-col.Offsets[0])
		c.vals = slices.Grow(c.vals[:0], defRoom+min(pageBytes, n)+64)
	default:
		c.vals = slices.Grow(c.vals[:0], defRoom+min(pageBytes, rows*c.valueWidth())+64)
	}
	c.vals = append(c.vals[:0], make([]byte, defRoom)...)
}

func zstdLevel(level int) zstd.EncoderLevel {
	if level == compress.DefaultCompressionLevel || level == 0 {
		return zstd.SpeedDefault
	}
	return zstd.EncoderLevelFromZstd(level)
}

// merge folds page min/max p into m.
func (m *minMax) merge(p *minMax, k flatKind) {
	m.nonFinite = m.nonFinite || p.nonFinite
	m.badUTF8 = m.badUTF8 || p.badUTF8
	if !p.has {
		return
	}
	if !m.has {
		*m = minMax{has: true, imin: p.imin, imax: p.imax, fmin: p.fmin, fmax: p.fmax, dmin: p.dmin, dmax: p.dmax,
			boolMin: p.boolMin, boolMax: p.boolMax, nonFinite: m.nonFinite, badUTF8: m.badUTF8,
			bmin: append(m.bmin[:0], p.bmin...), bmax: append(m.bmax[:0], p.bmax...)}
		return
	}
	switch k {
	case flatInt32, flatInt64:
		m.imin, m.imax = min(m.imin, p.imin), max(m.imax, p.imax)
	case flatFloat32, flatFloat64:
		m.fmin, m.fmax = min(m.fmin, p.fmin), max(m.fmax, p.fmax)
	case flatBool:
		m.boolMin, m.boolMax = m.boolMin && p.boolMin, m.boolMax || p.boolMax
	case flatDecimal:
		if p.dmin.Less(m.dmin) {
			m.dmin = p.dmin
		}
		if m.dmax.Less(p.dmax) {
			m.dmax = p.dmax
		}
	case flatBytes:
		if bytes.Compare(p.bmin, m.bmin) < 0 {
			m.bmin = append(m.bmin[:0], p.bmin...)
		}
		if bytes.Compare(p.bmax, m.bmax) > 0 {
			m.bmax = append(m.bmax[:0], p.bmax...)
		}
	}
}

// encodeStats is Parquet's statistics of min/max m and nulls nulls, as
// arrow-go's column writer encodes them (plain values, byte arrays
// without their length, dropped beyond the size limit).
func (c *flatCol) encodeStats(m *minMax, nulls int64) metadata.EncodedStatistics {
	var e metadata.EncodedStatistics
	e.Signed = c.signed
	e.SetNullCount(nulls)
	if !m.has {
		e.AllNullValue = true
		return e
	}
	var lo, hi []byte
	switch c.kind {
	case flatInt32:
		lo = binary.LittleEndian.AppendUint32(nil, uint32(int32(m.imin)))
		hi = binary.LittleEndian.AppendUint32(nil, uint32(int32(m.imax)))
	case flatInt64:
		lo = binary.LittleEndian.AppendUint64(nil, uint64(m.imin))
		hi = binary.LittleEndian.AppendUint64(nil, uint64(m.imax))
	case flatBool:
		lo, hi = []byte{b2i(m.boolMin)}, []byte{b2i(m.boolMax)}
	case flatDecimal:
		lo, hi = appendDecimalBE(nil, m.dmin, c.width), appendDecimalBE(nil, m.dmax, c.width)
	case flatBytes:
		lo, hi = bytes.Clone(m.bmin), bytes.Clone(m.bmax)
		if lo == nil {
			lo = []byte{}
		}
		if hi == nil {
			hi = []byte{}
		}
	default:
		return e
	}
	e.SetMin(lo)
	e.SetMax(hi)
	e.ApplyStatSizeLimits(int(c.maxStats))
	return e
}

func b2i(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func (c *flatCol) chunkStats() metadata.EncodedStatistics {
	return c.encodeStats(&c.cmm, c.cnulls)
}

// resetChunk empties the row group's pages after they are written, and
// folds the chunk's min/max into nothing (the Delta stats were updated
// page by page).
func (c *flatCol) resetChunk() {
	for _, p := range c.pages {
		pageBufs.Free(p.data)
	}
	clear(c.pages)
	c.pages, c.cnulls, c.chunkBytes = c.pages[:0], 0, 0
	c.cmm = minMax{bmin: c.cmm.bmin[:0], bmax: c.cmm.bmax[:0]}
}

// appendDefLevels appends the page's definition levels (max level 1) as
// the RLE/bit-packed hybrid with its 4-byte length: one RLE run of 1s when
// no row is null, else one bit-packed run.
func appendDefLevels(p []byte, n int, nulls []int32) []byte {
	at := len(p)
	p = append(p, 0, 0, 0, 0)
	if len(nulls) == 0 {
		p = binary.AppendUvarint(p, uint64(n)<<1)
		p = append(p, 1)
	} else {
		groups := (n + 7) / 8
		p = binary.AppendUvarint(p, uint64(groups)<<1|1)
		start := len(p)
		for i := 0; i < groups; i++ {
			p = append(p, 0xff)
		}
		if last := n % 8; last != 0 {
			p[len(p)-1] = byte(1<<last - 1)
		}
		for _, r := range nulls {
			p[start+int(r)/8] &^= 1 << (r % 8)
		}
	}
	binary.LittleEndian.PutUint32(p[at:], uint32(len(p)-at-4))
	return p
}

// appendBitPacked appends booleans PLAIN: one bit each, LSB first.
func appendBitPacked(p []byte, v []bool) []byte {
	for i := 0; i < len(v); i += 8 {
		var b byte
		for j := 0; j < 8 && i+j < len(v); j++ {
			if v[i+j] {
				b |= 1 << j
			}
		}
		p = append(p, b)
	}
	return p
}

// DELTA_BINARY_PACKED layout: blocks of 128 values in 4 miniblocks of 32.
const (
	dbpBlock     = 128
	dbpMiniblock = 32
	dbpMinis     = dbpBlock / dbpMiniblock
)

// appendDeltaBinaryPacked appends vals DELTA_BINARY_PACKED. With is32 the
// deltas are taken in 32-bit wrapping arithmetic (an INT32 column), so that
// no miniblock is wider than 32 bits, as readers of INT32 columns expect.
func appendDeltaBinaryPacked(p []byte, vals []int64, is32 bool) []byte {
	p = binary.AppendUvarint(p, dbpBlock)
	p = binary.AppendUvarint(p, dbpMinis)
	p = binary.AppendUvarint(p, uint64(len(vals)))
	if len(vals) == 0 {
		return binary.AppendVarint(p, 0)
	}
	p = binary.AppendVarint(p, vals[0]) // zigzag
	var deltas [dbpBlock]int64
	var packed [dbpMiniblock]uint64
	for i := 1; i < len(vals); i += dbpBlock {
		n := min(dbpBlock, len(vals)-i)
		minD := int64(math.MaxInt64)
		for j := 0; j < n; j++ {
			var d int64
			if is32 {
				d = int64(int32(vals[i+j]) - int32(vals[i+j-1]))
			} else {
				d = vals[i+j] - vals[i+j-1]
			}
			deltas[j] = d
			minD = min(minD, d)
		}
		p = binary.AppendVarint(p, minD)
		wpos := len(p)
		p = append(p, 0, 0, 0, 0)
		for m := 0; m < dbpMinis && m*dbpMiniblock < n; m++ {
			lo, hi := m*dbpMiniblock, min((m+1)*dbpMiniblock, n)
			var or uint64
			for j := lo; j < hi; j++ {
				var u uint64
				if is32 {
					u = uint64(uint32(int32(deltas[j]) - int32(minD)))
				} else {
					u = uint64(deltas[j] - minD)
				}
				packed[j-lo] = u
				or |= u
			}
			for j := hi - lo; j < dbpMiniblock; j++ {
				packed[j] = 0
			}
			w := bits.Len64(or)
			p[wpos+m] = byte(w)
			p = packBits(p, &packed, w)
		}
	}
	return p
}

// packBits appends 32 values of w bits each, LSB first (4*w bytes).
func packBits(p []byte, v *[dbpMiniblock]uint64, w int) []byte {
	if w == 0 {
		return p
	}
	var acc uint64
	var nb uint
	for _, x := range v {
		acc |= x << nb
		if nb+uint(w) >= 64 {
			p = binary.LittleEndian.AppendUint64(p, acc)
			used := 64 - nb
			acc = 0
			if used < 64 {
				acc = x >> used
			}
			nb = nb + uint(w) - 64
		} else {
			nb += uint(w)
		}
	}
	if nb > 0 { // 32*w bits: what is left is 32 bits
		p = binary.LittleEndian.AppendUint32(p, uint32(acc))
	}
	return p
}

// updateDelta folds a page's min/max and nulls into the file's Delta stats
// node (statsAcc), with the values statNode.update would give.
func (c *flatCol) updateDelta(n *statNode, m *minMax, nulls int64) {
	n.nulls += nulls
	if !n.indexed || !n.minmax || n.noMinMax {
		return
	}
	if m.nonFinite || m.badUTF8 {
		n.noMinMax = true
		return
	}
	if !m.has {
		return
	}
	switch c.kind {
	case flatInt32, flatInt64:
		n.merge(m.imin, m.imax)
	case flatFloat32, flatFloat64:
		n.merge(m.fmin, m.fmax)
	case flatBool:
		n.merge(m.boolMin, m.boolMax)
	case flatDecimal:
		n.merge(m.dmin, m.dmax)
	case flatBytes:
		n.merge(string(m.bmin), string(m.bmax))
	}
}

package datafile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/delta"
)

// TableInfo is what reading and writing data files needs from a snapshot.
type TableInfo struct {
	Root             string            // table root key prefix in the store ("" = store root)
	Schema           *delta.StructType // logical schema
	PartitionColumns []string
	Config           map[string]string // table configuration (column mapping mode etc.)
	// Allocator for Arrow buffers; nil means memory.DefaultAllocator.
	Allocator memory.Allocator
	// PartitionTimeZone is the zone in which zone-less timestamp partition
	// values ("2021-09-08 11:11:11", the legacy form) are interpreted when
	// reading, as Spark's spark.sql.session.timeZone; nil = UTC. ISO values
	// with Z or an offset, and timestamp_ntz values, are unaffected. The
	// writer's zone is not recorded in the table, so this is the reader's
	// choice. Write always writes ISO UTC and ignores it.
	PartitionTimeZone *time.Location
}

func (ti TableInfo) mem() memory.Allocator {
	if ti.Allocator != nil {
		return ti.Allocator
	}
	return memory.DefaultAllocator
}

// readBatchRows is the number of rows per record Read produces (at most).
const readBatchRows = 64 * 1024

// wholeReadBytes: data files up to this size (add.size) are read with one
// Get rather than ranged reads.
var wholeReadBytes int64 = 4 << 20

// ErrCorruptFile is wrapped by errors about data files that cannot be decoded.
var ErrCorruptFile = errors.New("corrupt data file")

// Read returns the rows of one data file as records whose schema is exactly
// ArrowSchema(ti.Schema): partition columns are materialised from
// add.PartitionValues, columns the file lacks are null, Parquet variants
// (INT96 timestamps, read straight to microseconds in top-level columns,
// millisecond timestamps, decimals stored as INT32/INT64/FLBA,
// legacy lists) are converted, column mapping is resolved, and the rows of
// the add's deletion vector are dropped.
//
// The caller owns the returned records and must Release each one. Records
// never share buffers with the blob store's memory; they may share buffers
// with each other.
func Read(ctx context.Context, store blob.Store, ti TableInfo, add *delta.Add) ([]arrow.Record, error) {
	var out []arrow.Record
	err := readFile(ctx, store, ti, add, nil, func(r arrow.Record) error {
		r.Retain()
		out = append(out, r)
		return nil
	})
	if err != nil {
		for _, r := range out {
			r.Release()
		}
		return nil, err
	}
	return out, nil
}

// Scan reads files in order and calls fn for every record (see Read). The
// record is released when fn returns; fn must Retain it to keep it. An
// error from fn stops the scan and is returned as is.
func Scan(ctx context.Context, store blob.Store, ti TableInfo, files []*delta.Add, fn func(arrow.Record) error) error {
	for _, add := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := readFile(ctx, store, ti, add, nil, fn); err != nil {
			return err
		}
	}
	return nil
}

// fnError marks errors returned by the caller's callback, so they are not
// wrapped with the file name.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// dataKey resolves add.path (URI-encoded, relative or absolute) to a key.
func dataKey(store blob.Store, ti TableInfo, p string) (string, error) {
	if strings.Contains(p, "://") || strings.HasPrefix(p, "/") || strings.HasPrefix(p, "file:") {
		return absoluteKey(store, p)
	}
	rel, err := url.PathUnescape(p)
	if err != nil {
		return "", fmt.Errorf("add.path %q is not URI-encoded: %w", p, err)
	}
	return blob.Join(ti.Root, rel), nil
}

type colKind int

const (
	colFile colKind = iota
	colPartition
	colMissing
	colInt96 // a top-level INT96 column, read by an int96Reader
)

type colPlan struct {
	kind  colKind
	src   int // index into the record reader's columns (colFile) or into the INT96 readers (colInt96)
	value any // parsed partition value (colPartition)
}

// readFile reads add's file from src, or, with src nil, opens it
// (openSource), and calls fn for every record.
func readFile(ctx context.Context, store blob.Store, ti TableInfo, add *delta.Add, src parquet.ReaderAtSeeker, fn func(arrow.Record) error) (err error) {
	if add == nil {
		return fmt.Errorf("datafile: read: nil add")
	}
	key, err := dataKey(store, ti, add.Path)
	if err != nil {
		return fmt.Errorf("datafile: read %s: %w", add.Path, err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("datafile: read %s: %w: %v", key, ErrCorruptFile, r)
		}
		var fe fnError
		if errors.As(err, &fe) {
			err = fe.err
		} else if err != nil && !strings.HasPrefix(err.Error(), "datafile: read ") {
			err = fmt.Errorf("datafile: read %s: %w", key, err)
		}
	}()
	if ti.Schema == nil {
		return fmt.Errorf("nil schema")
	}
	mode, err := columnMapping(ti.Config)
	if err != nil {
		return err
	}
	outSchema, err := ArrowSchema(ti.Schema)
	if err != nil {
		return err
	}
	deleted, err := deletedRows(ctx, store, ti, add.DeletionVector)
	if err != nil {
		return err
	}
	mem := ti.mem()

	if src == nil {
		s, closeSrc, err := openSource(ctx, store, key, add.Size)
		if err != nil {
			return err
		}
		defer closeSrc()
		src = s
	}
	pf, err := file.NewParquetReader(src, file.WithReadProps(parquet.NewReaderProperties(mem)))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptFile, err)
	}
	defer pf.Close()
	// Small files get buffers of their size, not of a whole batch.
	batchRows := min(readBatchRows, max(pf.NumRows(), 1))
	fr, err := pqarrow.NewFileReader(pf, dictReadProps(pf, batchRows), mem)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptFile, err)
	}
	fileSchema, err := fr.Schema()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptFile, err)
	}

	isPart := map[string]bool{}
	for _, p := range ti.PartitionColumns {
		isPart[strings.ToLower(p)] = true
	}
	c := &conformer{mem: mem, match: mode, out: mapNone}
	plans := make([]colPlan, len(ti.Schema.Fields))
	var selected []int
	i96pos := map[int]int{} // file field index -> index into i96
	var i96 []*int96Reader
	defer func() {
		for _, r := range i96 {
			r.close()
		}
	}()
	for i, f := range ti.Schema.Fields {
		if isPart[strings.ToLower(f.Name)] {
			v, ok := add.PartitionValues[physicalName(f, mode)]
			if !ok {
				v = add.PartitionValues[f.Name]
			}
			pv, err := ParsePartitionValueIn(f.Type, v, ti.PartitionTimeZone)
			if err != nil {
				return fmt.Errorf("column %q: %w", f.Name, err)
			}
			plans[i] = colPlan{kind: colPartition, value: pv}
			continue
		}
		j := c.findField(fileSchema.Fields(), f)
		if j < 0 {
			plans[i] = colPlan{kind: colMissing}
			continue
		}
		if col, ok := topLevelInt96(pf, fr.Manifest, j); ok {
			k, seen := i96pos[j]
			if !seen {
				k = len(i96)
				i96pos[j] = k
				i96 = append(i96, newInt96Reader(pf, mem, col))
			}
			plans[i] = colPlan{kind: colInt96, src: k}
			continue
		}
		plans[i] = colPlan{kind: colFile, src: j}
		selected = append(selected, j)
	}
	sort.Ints(selected)
	pos := map[int]int{}
	var leaves []int
	for _, j := range selected {
		if _, dup := pos[j]; dup {
			continue
		}
		pos[j] = len(pos)
		leaves = appendLeaves(leaves, &fr.Manifest.Fields[j])
	}
	for i := range plans {
		if plans[i].kind == colFile {
			plans[i].src = pos[plans[i].src]
		}
	}

	emit := func(cols []arrow.Array, n int, rowStart int64) error {
		rec := array.NewRecordBatch(outSchema, cols, int64(n))
		defer rec.Release()
		rec2, err := applyDeletes(mem, rec, rowStart, deleted)
		if err != nil || rec2 == nil {
			return err
		}
		defer rec2.Release()
		if err := fn(rec2); err != nil {
			return fnError{err}
		}
		return nil
	}
	// batch builds and emits the output for the next n rows, taking the
	// file columns pqarrow read from rec (nil when there are none).
	batch := func(rec arrow.Record, n int, rowStart int64) error {
		i96cols := make([]arrow.ArrayData, len(i96))
		defer func() {
			for _, d := range i96cols {
				if d != nil {
					d.Release()
				}
			}
		}()
		for k, r := range i96 {
			d, err := r.next(n)
			if err != nil {
				return err
			}
			i96cols[k] = d
		}
		cols, err := buildColumns(c, ti.Schema, outSchema, plans, rec, i96cols, n)
		if err != nil {
			return err
		}
		defer releaseAll(cols)
		return emit(cols, n, rowStart)
	}

	total := pf.NumRows()
	if len(leaves) == 0 {
		// Nothing for pqarrow to read (only partition, missing, void or
		// top-level INT96 columns).
		for start := int64(0); start < total; start += readBatchRows {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := batch(nil, int(min(readBatchRows, total-start)), start); err != nil {
				return err
			}
		}
		return nil
	}

	rr, err := fr.GetRecordReader(ctx, leaves, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptFile, err)
	}
	defer rr.Release()
	rowStart := int64(0)
	for rr.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec := rr.RecordBatch()
		if int(rec.NumCols()) != len(pos) {
			return fmt.Errorf("%w: read %d columns, want %d", ErrCorruptFile, rec.NumCols(), len(pos))
		}
		n := int(rec.NumRows())
		if err := batch(rec, n, rowStart); err != nil {
			return err
		}
		rowStart += int64(n)
	}
	if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
		if e := int96NestedError(err); e != err {
			return e
		}
		return fmt.Errorf("%w: %v", ErrCorruptFile, err)
	}
	if rowStart != total {
		return fmt.Errorf("%w: read %d rows, footer says %d", ErrCorruptFile, rowStart, total)
	}
	return nil
}

// dictReadProps are the read properties of pf: top-level BYTE_ARRAY
// columns whose every column chunk starts with a dictionary page are read
// as Arrow dictionaries (indices into the page's values) and unpacked by
// conform in one pass (unpackDictionary), instead of pqarrow appending
// every value to a binary builder.
func dictReadProps(pf *file.Reader, batchRows int64) pqarrow.ArrowReadProperties {
	props := pqarrow.ArrowReadProperties{BatchSize: batchRows}
	md := pf.MetaData()
	sch := md.Schema
	for i := 0; i < sch.NumColumns(); i++ {
		col := sch.Column(i)
		if col.PhysicalType() != parquet.Types.ByteArray || col.MaxRepetitionLevel() != 0 || len(col.ColumnPath()) != 1 {
			continue
		}
		dict := md.NumRowGroups() > 0
		for r := 0; r < md.NumRowGroups() && dict; r++ {
			cc, err := md.RowGroup(r).ColumnChunk(i)
			dict = err == nil && cc.HasDictionaryPage()
		}
		if dict {
			props.SetReadDict(i, true)
		}
	}
	return props
}

func appendLeaves(out []int, f *pqarrow.SchemaField) []int {
	if f.IsLeaf() {
		return append(out, f.ColIndex)
	}
	for i := range f.Children {
		out = appendLeaves(out, &f.Children[i])
	}
	return out
}

func releaseAll(cols []arrow.Array) {
	for _, c := range cols {
		if c != nil {
			c.Release()
		}
	}
}

// buildColumns returns one array per output column, n rows each.
// i96 holds the arrays of the top-level INT96 columns (see int96Reader).
func buildColumns(c *conformer, s *delta.StructType, outSchema *arrow.Schema, plans []colPlan, rec arrow.Record, i96 []arrow.ArrayData, n int) ([]arrow.Array, error) {
	cols := make([]arrow.Array, len(plans))
	for i, p := range plans {
		f := s.Fields[i]
		target := outSchema.Field(i).Type
		switch p.kind {
		case colMissing:
			cols[i] = array.MakeArrayOfNull(c.mem, target, n)
		case colPartition:
			a, err := constantArray(c.mem, target, p.value, n)
			if err != nil {
				releaseAll(cols)
				return nil, fmt.Errorf("column %q: %w", f.Name, err)
			}
			cols[i] = a
		case colFile, colInt96:
			var src arrow.ArrayData
			if p.kind == colInt96 {
				src = i96[p.src]
			} else {
				src = rec.Column(p.src).Data()
			}
			d, err := c.conform(src, f.Type, target)
			if err != nil {
				releaseAll(cols)
				return nil, fmt.Errorf("column %q: %w", f.Name, err)
			}
			cols[i] = array.MakeFromData(d)
			d.Release()
		}
	}
	return cols, nil
}

// applyDeletes returns rec without the rows whose file positions
// (rowStart+i) are in deleted (sorted); nil when every row is deleted. The
// result is a new reference.
func applyDeletes(mem memory.Allocator, rec arrow.Record, rowStart int64, deleted []uint64) (arrow.Record, error) {
	n := rec.NumRows()
	lo := sort.Search(len(deleted), func(i int) bool { return deleted[i] >= uint64(rowStart) })
	hi := sort.Search(len(deleted), func(i int) bool { return deleted[i] >= uint64(rowStart+n) })
	if lo == hi {
		rec.Retain()
		return rec, nil
	}
	if int64(hi-lo) == n {
		return nil, nil
	}
	// Kept runs [a, b) between deleted rows.
	var runs [][2]int64
	next := int64(0)
	for _, d := range deleted[lo:hi] {
		p := int64(d) - rowStart
		if p > next {
			runs = append(runs, [2]int64{next, p})
		}
		next = p + 1
	}
	if next < n {
		runs = append(runs, [2]int64{next, n})
	}
	cols := make([]arrow.Array, rec.NumCols())
	defer releaseAll(cols)
	kept := int64(0)
	for _, r := range runs {
		kept += r[1] - r[0]
	}
	for ci := range cols {
		col := rec.Column(ci)
		parts := make([]arrow.Array, len(runs))
		for k, r := range runs {
			parts[k] = array.NewSlice(col, r[0], r[1])
		}
		var err error
		if len(parts) == 1 {
			cols[ci] = parts[0]
			parts = nil
		} else {
			cols[ci], err = array.Concatenate(parts, mem)
		}
		releaseAll(parts)
		if err != nil {
			return nil, err
		}
	}
	return array.NewRecordBatch(rec.Schema(), cols, kept), nil
}

// constantArray returns n copies of v (a ParsePartitionValue result) as an
// array of type dt.
func constantArray(mem memory.Allocator, dt arrow.DataType, v any, n int) (arrow.Array, error) {
	if v == nil || dt.ID() == arrow.NULL {
		return array.MakeArrayOfNull(mem, dt, n), nil
	}
	b := array.NewBuilder(mem, dt)
	defer b.Release()
	b.Reserve(n)
	for i := 0; i < n; i++ {
		if err := appendGo(b, v); err != nil {
			return nil, err
		}
	}
	return b.NewArray(), nil
}

// Info is the TableInfo of table t as of snapshot s.
func Info(t *delta.Table, s *delta.Snapshot) TableInfo {
	return TableInfo{Root: t.Root(), Schema: s.Schema(), PartitionColumns: s.PartitionColumns(), Config: s.Config()}
}

// openSource opens a data file of size bytes (add.size, 0 if unknown) for
// Parquet reading: files up to wholeReadBytes with one GET instead of a
// footer read and a ranged read per column chunk (each a round trip on an
// object store), larger ones as ranged reads. closeSrc releases it.
func openSource(ctx context.Context, store blob.Store, key string, size int64) (src parquet.ReaderAtSeeker, closeSrc func(), err error) {
	if size > 0 && size <= wholeReadBytes {
		data, err := store.Get(ctx, key)
		if err != nil {
			return nil, nil, err
		}
		return bytes.NewReader(data), func() {}, nil
	}
	r, err := store.Open(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	return io.NewSectionReader(r, 0, r.Size()), func() { r.Close() }, nil
}

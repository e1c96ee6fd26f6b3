package datafile

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/google/uuid"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/delta"
)

// DefaultTargetFileSize is WriteOptions.TargetFileSize's default.
const DefaultTargetFileSize = 128 << 20

// WriteOptions tunes Write. The zero value is usable except for
// DataChange, which callers appending new rows must set to true.
type WriteOptions struct {
	// TargetFileSize is the approximate size at which a data file is closed
	// and the next one started (default 128 MiB). Files may overshoot by
	// about one Parquet page per column.
	TargetFileSize int64
	// Compression codec; the zero value (Uncompressed) means zstd.
	Compression compress.Compression
	// CompressionLevel is the codec's level (zstd: 1 fastest .. 22); 0
	// means the codec's default (zstd: 3).
	CompressionLevel int
	// Now gives add.modificationTime (default time.Now).
	Now func() time.Time
	// DataChange is copied into every add: true for appends, false only for
	// rearranging existing rows (compaction).
	DataChange bool
	// Allocator for Arrow and Parquet buffers; nil means memory.DefaultAllocator.
	Allocator memory.Allocator
	// SnapshotEncodings picks encodings for files of rows read in bulk (a
	// snapshot chunk), from each column's first rows: a constant column is
	// written plain instead of dictionary-encoded (cheaper in CPU: no
	// hashing of every value; zstd folds the repeats, but the open page
	// holds plain values, up to a page, 1 MiB, until it is compressed), and
	// a non-decreasing integer or timestamp column (serial keys,
	// insertion times, constants) DELTA_BINARY_PACKED (a few bits per
	// value: less to compress and to store).
	SnapshotEncodings bool
	// SortedRuns, with SnapshotEncodings, also writes DELTA_BINARY_PACKED
	// an integer or timestamp column whose first rows are non-decreasing
	// runs of sortedRunMin rows on average: rows concatenated from files
	// each sorted by the column (OPTIMIZE compacting a stream's files,
	// whose keys, sequence numbers and times ascend within each file).
	SortedRuns bool
}

func (o *WriteOptions) defaults() {
	if o.TargetFileSize <= 0 {
		o.TargetFileSize = DefaultTargetFileSize
	}
	if o.Compression == compress.Codecs.Uncompressed {
		o.Compression = compress.Codecs.Zstd
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Allocator == nil {
		o.Allocator = memory.DefaultAllocator
	}
}

var codecSuffix = map[compress.Compression]string{
	compress.Codecs.Zstd:   "zstd",
	compress.Codecs.Snappy: "snappy",
	compress.Codecs.Gzip:   "gz",
	compress.Codecs.Brotli: "br",
	compress.Codecs.Lz4Raw: "lz4raw",
}

// Write stores the rows of rec as data files of the table and returns one
// add action per file, for the caller to commit.
//
// rec's columns are matched to ti.Schema by name (case-insensitively, in
// any order); missing nullable columns are written as nulls, extra columns
// are an error, and compatible Arrow types are converted (for example
// timestamp[ns] to timestamp[us]). Rows are split by the partition columns
// into Hive-style directories (col=value, %XX escapes,
// __HIVE_DEFAULT_PARTITION__ for null; "" is null in Delta), each
// partition's rows are written to part-<uuid>.<codec>.parquet files rolled
// near TargetFileSize, without the partition columns, with physical names
// and field ids under column mapping. Each add carries partitionValues
// (protocol §6 strings, keyed by physical name), size, modificationTime,
// dataChange and stats (numRecords, minValues, maxValues, nullCount).
//
// Files are created with PutIfAbsent. On error, files already stored are
// left behind unreferenced (VACUUM removes them). Write does not retain rec.
func Write(ctx context.Context, store blob.Store, ti TableInfo, rec arrow.Record, opts WriteOptions) ([]*delta.Add, error) {
	if rec == nil {
		return nil, fmt.Errorf("datafile: write: nil record")
	}
	w, err := NewWriter(ctx, store, ti, opts)
	if err != nil {
		return nil, err
	}
	if err := w.Write(rec); err != nil {
		w.Abort()
		return nil, err
	}
	return w.Close()
}

// Writer writes a stream of records to data files, as Write does for one
// record: each partition has at most one open file, which is stored once it
// reaches TargetFileSize and at Close. Memory is bounded by the open files'
// encoded bytes, not by the rows written. A Writer is used by one goroutine.
type Writer struct {
	ctx        context.Context
	store      blob.Store
	ti         TableInfo
	opts       WriteOptions
	mode       mappingMode
	partIdx    []int // schema index per partition column
	isPart     map[int]bool
	skip       map[int]bool // void columns not materialised
	schema     *arrow.Schema
	dataFields []*delta.StructField
	open       map[string]*openFile // by partition key
	opened     int                  // files created so far
	adds       []*delta.Add
	done       bool
}

// openFile is a partition's file being written.
type openFile struct {
	seq   int // creation order
	g     *group
	buf   *bytes.Buffer
	fw    pqFile    // nil when ff writes the file
	ff    *flatFile // WriteFlat's file
	stats *statsAcc
}

// NewWriter starts a Writer (see Write for how records map to files).
func NewWriter(ctx context.Context, store blob.Store, ti TableInfo, opts WriteOptions) (*Writer, error) {
	opts.defaults()
	if ti.Allocator == nil {
		ti.Allocator = opts.Allocator
	}
	w, err := newWriter(ctx, store, ti, opts)
	if err != nil {
		return nil, fmt.Errorf("datafile: write: %w", err)
	}
	return w, nil
}

func newWriter(ctx context.Context, store blob.Store, ti TableInfo, opts WriteOptions) (*Writer, error) {
	if ti.Schema == nil {
		return nil, fmt.Errorf("nil schema")
	}
	mode, err := columnMapping(ti.Config)
	if err != nil {
		return nil, err
	}
	// Classify the table's columns.
	partIdx := make([]int, len(ti.PartitionColumns))
	isPart := map[int]bool{}
	for k, p := range ti.PartitionColumns {
		i := fieldIndex(ti.Schema, p)
		if i < 0 {
			return nil, fmt.Errorf("partition column %q is not in the schema", p)
		}
		switch ti.Schema.Fields[i].Type.(type) {
		case *delta.StructType, *delta.ArrayType, *delta.MapType:
			return nil, fmt.Errorf("partition column %q has nested type", p)
		}
		partIdx[k] = i
		isPart[i] = true
	}
	// void columns are never materialised in Parquet (readers fill nulls).
	skip := map[int]bool{}
	var dataFields []*delta.StructField
	for i, f := range ti.Schema.Fields {
		if isPart[i] {
			continue
		}
		if f.Type.TypeName() == "void" {
			skip[i] = true
			continue
		}
		dataFields = append(dataFields, f)
	}
	if len(dataFields) == 0 {
		// A Parquet file needs a column to carry its row count: keep the
		// void columns (read back as nulls by any reader), if there are any.
		if len(skip) == 0 {
			return nil, fmt.Errorf("table has no data columns (every column is a partition column)")
		}
		for i, f := range ti.Schema.Fields {
			if skip[i] {
				delete(skip, i)
				dataFields = append(dataFields, f)
			}
		}
	}
	physSchema, err := physicalSchema(dataFields, mode)
	if err != nil {
		return nil, err
	}
	return &Writer{ctx: ctx, store: store, ti: ti, opts: opts, mode: mode, partIdx: partIdx, isPart: isPart,
		skip: skip, schema: physSchema, dataFields: dataFields, open: map[string]*openFile{}}, nil
}

// Write adds the rows of rec (see Write). It does not retain rec. After an
// error the Writer must be aborted.
func (w *Writer) Write(rec arrow.Record) (err error) {
	defer guardWrite(&err)
	if w.done {
		return fmt.Errorf("writer is closed")
	}
	if rec == nil {
		return fmt.Errorf("nil record")
	}
	ti, mem := w.ti, w.ti.mem()
	// Conform the input columns: data columns to their physical types,
	// partition columns to their logical types.
	recFields := rec.Schema().Fields()
	used := make([]bool, len(recFields))
	cols := make([]arrow.Array, len(ti.Schema.Fields))
	defer releaseAll(cols)
	n := int(rec.NumRows())
	c := &conformer{mem: mem, match: mapNone, out: w.mode}
	pi := 0
	for i, f := range ti.Schema.Fields {
		var target arrow.DataType
		if w.isPart[i] || w.skip[i] {
			if target, err = arrowType(f.Type, mapNone); err != nil {
				return fmt.Errorf("column %q: %w", f.Name, err)
			}
		} else {
			target = w.schema.Field(pi).Type
			pi++
		}
		j := c.findField(recFields, &delta.StructField{Name: f.Name})
		if j < 0 {
			if !f.Nullable {
				return fmt.Errorf("non-nullable column %q is missing from the record", f.Name)
			}
			cols[i] = array.MakeArrayOfNull(mem, target, n)
			continue
		}
		used[j] = true
		d, err := c.conform(rec.Column(j).Data(), f.Type, target)
		if err != nil {
			return fmt.Errorf("column %q: %w", f.Name, err)
		}
		cols[i] = array.MakeFromData(d)
		d.Release()
		if !f.Nullable && cols[i].NullN() > 0 {
			return fmt.Errorf("non-nullable column %q has %d nulls", f.Name, cols[i].NullN())
		}
	}
	for j, u := range used {
		if !u {
			return fmt.Errorf("record column %q is not in the table schema", recFields[j].Name)
		}
	}
	if n == 0 {
		return nil
	}
	groups, err := partitionRows(ti, w.partIdx, cols, n)
	if err != nil {
		return err
	}
	var dataCols []arrow.Array
	for i := range ti.Schema.Fields {
		if !w.isPart[i] && !w.skip[i] {
			dataCols = append(dataCols, cols[i])
		}
	}
	chunk := chunkRows(dataCols, n, w.opts.TargetFileSize)
	for _, g := range groups {
		for _, r := range g.runs {
			for start := r[0]; start < r[1]; start += chunk {
				if err := w.writeChunk(g, dataCols, start, min(start+chunk, r[1])); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// guardWrite, deferred by the Writer's methods, turns a panic into an
// error and marks errors as the writer's.
func guardWrite(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("internal error: %v", r)
	}
	if *err != nil {
		*err = fmt.Errorf("datafile: write: %w", *err)
	}
}

// Close stores the open files and returns the adds of every file written.
func (w *Writer) Close() (adds []*delta.Add, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
		if err != nil {
			w.Abort()
			err = fmt.Errorf("datafile: write: %w", err)
		}
	}()
	if w.done {
		return nil, fmt.Errorf("writer is closed")
	}
	keys := make([]string, 0, len(w.open))
	for k := range w.open {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return w.open[keys[i]].seq < w.open[keys[j]].seq })
	for _, k := range keys {
		if err := w.finish(k); err != nil {
			return nil, err
		}
	}
	w.done = true
	return w.adds, nil
}

// Abort frees the open files without storing them. Files already stored
// stay behind unreferenced (VACUUM removes them).
func (w *Writer) Abort() {
	for k, f := range w.open {
		if f.fw != nil {
			_ = f.fw.Close()
		}
		if f.ff != nil {
			f.ff.release()
		}
		delete(w.open, k)
	}
	w.done = true
}

func fieldIndex(s *delta.StructType, name string) int {
	for i, f := range s.Fields {
		if f.Name == name {
			return i
		}
	}
	for i, f := range s.Fields {
		if strings.EqualFold(f.Name, name) {
			return i
		}
	}
	return -1
}

// group is the rows of one partition, as runs [start, end) of the record.
type group struct {
	key    string             // partition key (unique per partition values)
	values map[string]*string // partitionValues, keyed by physical name
	dir    string             // "col=value/..." (no trailing slash), "" unpartitioned
	runs   [][2]int
}

// partitionRows splits the rows by partition values, keeping first-seen
// order of partitions and row order within each.
func partitionRows(ti TableInfo, partIdx []int, cols []arrow.Array, n int) ([]*group, error) {
	if len(partIdx) == 0 {
		return []*group{{values: map[string]*string{}, runs: [][2]int{{0, n}}}}, nil
	}
	// Fast path: every partition column holds one value in all rows (a
	// snapshot chunk's rows share the commit-time partition); the group is
	// that of the first row.
	if n > 1 && constantColumns(cols, partIdx) {
		g, err := partitionRows(ti, partIdx, cols, 1)
		if err != nil {
			return nil, err
		}
		g[0].runs = [][2]int{{0, n}}
		return g, nil
	}
	mode, _ := columnMapping(ti.Config)
	byKey := map[string]*group{}
	var order []*group
	var prev *group
	vals := make([]*string, len(partIdx))
	for row := 0; row < n; row++ {
		for k, i := range partIdx {
			f := ti.Schema.Fields[i]
			v, err := valueAt(cols[i], row)
			if err != nil {
				return nil, fmt.Errorf("partition column %q: %w", f.Name, err)
			}
			s, err := FormatPartitionValue(f.Type, v)
			if err != nil {
				return nil, fmt.Errorf("partition column %q: %w", f.Name, err)
			}
			vals[k] = s
		}
		key := partitionKey(vals)
		g := byKey[key]
		if g == nil {
			g = newGroup(ti, partIdx, mode, key, vals)
			byKey[key] = g
			order = append(order, g)
		}
		if g == prev && g.runs[len(g.runs)-1][1] == row {
			g.runs[len(g.runs)-1][1] = row + 1
		} else {
			g.runs = append(g.runs, [2]int{row, row + 1})
		}
		prev = g
	}
	return order, nil
}

// partitionKey is the group key of formatted partition values.
func partitionKey(vals []*string) string {
	var key strings.Builder
	for _, s := range vals {
		if s == nil {
			key.WriteString("\x00N")
		} else {
			key.WriteString("\x00V")
			key.WriteString(*s)
		}
	}
	return key.String()
}

// newGroup is the (empty) group of formatted partition values vals.
func newGroup(ti TableInfo, partIdx []int, mode mappingMode, key string, vals []*string) *group {
	g := &group{key: key, values: map[string]*string{}}
	var dir []string
	for k, i := range partIdx {
		pn := physicalName(ti.Schema.Fields[i], mode)
		g.values[pn] = vals[k]
		dv := hiveNull
		if vals[k] != nil {
			dv = escapePartitionPath(*vals[k])
		}
		dir = append(dir, escapePartitionPath(pn)+"="+dv)
	}
	g.dir = strings.Join(dir, "/")
	return g
}

// constantColumns reports whether each of cols[idx...] is all null or has
// no nulls and one value in every row (for the fixed-width and string types
// partition columns have; other types report false).
func constantColumns(cols []arrow.Array, idx []int) bool {
	for _, i := range idx {
		a := cols[i]
		if nn := a.NullN(); nn == a.Len() {
			continue
		} else if nn > 0 {
			return false
		}
		var ok bool
		switch x := a.(type) {
		case *array.Int32:
			ok = allEqual(x.Int32Values())
		case *array.Int64:
			ok = allEqual(x.Int64Values())
		case *array.Int16:
			ok = allEqual(x.Int16Values())
		case *array.Int8:
			ok = allEqual(x.Int8Values())
		case *array.Date32:
			ok = allEqual(x.Date32Values())
		case *array.Timestamp:
			ok = allEqual(x.TimestampValues())
		case *array.String:
			v := x.Value(0)
			ok = true
			for j := 1; j < x.Len() && ok; j++ {
				ok = x.Value(j) == v
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func allEqual[T comparable](v []T) bool {
	for _, x := range v {
		if x != v[0] {
			return false
		}
	}
	return true
}

// chunkRows picks how many rows to hand the Parquet writer at a time, so
// that the size check between chunks can roll files near the target.
func chunkRows(cols []arrow.Array, n int, target int64) int {
	var bytes int64
	for _, c := range cols {
		bytes += dataBytes(c.Data())
	}
	perRow := max(bytes/int64(n), 1)
	rows := target / perRow / 8
	return int(min(max(rows, 1), 64*1024))
}

func dataBytes(d arrow.ArrayData) int64 {
	var s int64
	for _, b := range d.Buffers() {
		if b != nil {
			s += int64(b.Len())
		}
	}
	for _, c := range d.Children() {
		s += dataBytes(c)
	}
	return s
}

// writeChunk writes rows [start, end) of the data columns to g's file.
func (w *Writer) writeChunk(g *group, cols []arrow.Array, start, end int) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	slices := make([]arrow.Array, len(cols))
	defer releaseAll(slices)
	for i, c := range cols {
		slices[i] = array.NewSlice(c, int64(start), int64(end))
	}
	f := w.open[g.key]
	if f == nil {
		var err error
		if f, err = w.create(g, slices); err != nil {
			return err
		}
	}
	if f.fw == nil {
		return fmt.Errorf("partition %q has a file written by WriteFlat", g.dir)
	}
	rec := array.NewRecordBatch(w.schema, slices, int64(end-start))
	defer rec.Release()
	if err := f.fw.WriteBuffered(rec); err != nil {
		return fmt.Errorf("write parquet: %w", err)
	}
	f.stats.update(slices)
	if f.fw.TotalCompressedBytes() >= w.opts.TargetFileSize {
		return w.finish(g.key)
	}
	return nil
}

// pageBytes is the data page size of the Writer's files: a sixteenth of
// the target file size, between 4 KiB and 1 MiB.
func (w *Writer) pageBytes() int64 { return min(max(w.opts.TargetFileSize/16, 4096), 1<<20) }

// baseProps are the Parquet writer properties of every file (create and
// createFlat add the per-column ones).
func (w *Writer) baseProps() []parquet.WriterProperty {
	opts := []parquet.WriterProperty{
		parquet.WithAllocator(w.ti.mem()),
		parquet.WithCompression(w.opts.Compression),
		parquet.WithDataPageSize(w.pageBytes()),
		parquet.WithMaxRowGroupLength(1 << 20),
		parquet.WithStats(true),
		parquet.WithCreatedBy("silt"),
	}
	if w.opts.CompressionLevel != 0 {
		opts = append(opts, parquet.WithCompressionLevel(w.opts.CompressionLevel))
	}
	return opts
}

// create opens a new file for g's partition; first is the file's first
// rows (one array per data column).
func (w *Writer) create(g *group, first []arrow.Array) (*openFile, error) {
	opts := append(w.baseProps(), parquet.WithDictionaryPageSizeLimit(w.pageBytes()))
	// Floats and timestamps are nearly always distinct: a dictionary costs
	// CPU (hashing every value) and falls back to plain anyway.
	// Columns whose first rows are mostly distinct (keys, sequence numbers)
	// would fill the dictionary page and fall back to plain encoding after
	// hashing its worth of values: write them plain from the start.
	for i, f := range w.schema.Fields() {
		switch f.Type.ID() {
		case arrow.FLOAT32, arrow.FLOAT64:
			// No Parquet min/max for floats: the spec's min/max leave NaN
			// out, and parquet-mr (Spark's filter pushdown) then skips row
			// groups holding NaN for "= NaN" (found by the pipeline-lake
			// interop test); Spark's own writer drops them likewise.
			// Delta's add.stats still give data skipping.
			opts = append(opts, parquet.WithDictionaryFor(f.Name, false), parquet.WithStatsFor(f.Name, false))
		case arrow.TIMESTAMP:
			opts = append(opts, parquet.WithDictionaryFor(f.Name, false))
			if w.opts.SnapshotEncodings && i < len(first) && w.sorted(first[i]) {
				opts = append(opts, parquet.WithEncodingFor(f.Name, parquet.Encodings.DeltaBinaryPacked))
			}
		default:
			if w.opts.SnapshotEncodings && i < len(first) && w.sorted(first[i]) {
				opts = append(opts, parquet.WithDictionaryFor(f.Name, false), parquet.WithEncodingFor(f.Name, parquet.Encodings.DeltaBinaryPacked))
				continue
			}
			if i < len(first) && (mostlyDistinct(first[i]) || w.opts.SnapshotEncodings && constant(first[i])) {
				opts = append(opts, parquet.WithDictionaryFor(f.Name, false))
			}
		}
	}
	props := parquet.NewWriterProperties(opts...)
	buf := &bytes.Buffer{}
	fw, err := newPQFile(w.schema, buf, props, pqarrow.NewArrowWriterProperties(pqarrow.WithAllocator(w.ti.mem())))
	if err != nil {
		return nil, fmt.Errorf("create parquet writer: %w", err)
	}
	w.opened++
	f := &openFile{seq: w.opened, g: g, buf: buf, fw: fw, stats: newStatsAcc(w.dataFields, w.mode, w.ti.Config)}
	w.open[g.key] = f
	return f, nil
}

// finish closes the partition's open file, stores it and records its add.
func (w *Writer) finish(key string) error {
	f := w.open[key]
	if f == nil {
		return nil
	}
	delete(w.open, key)
	var data []byte
	if f.ff != nil {
		if err := f.ff.Close(); err != nil {
			return fmt.Errorf("close parquet writer: %w", err)
		}
		data = f.ff.buf.Bytes()
	} else {
		if err := f.fw.Close(); err != nil {
			return fmt.Errorf("close parquet writer: %w", err)
		}
		data = f.buf.Bytes()
	}
	suffix := codecSuffix[w.opts.Compression]
	name := "part-" + uuid.NewString()
	if suffix != "" {
		name += "." + suffix
	}
	name += ".parquet"
	rel := name
	if f.g.dir != "" {
		rel = f.g.dir + "/" + name
	}
	k := blob.Join(w.ti.Root, rel)
	if err := w.store.PutIfAbsent(w.ctx, k, data); err != nil {
		return fmt.Errorf("store %s: %w", k, err)
	}
	pv := make(map[string]*string, len(f.g.values))
	for k, v := range f.g.values {
		pv[k] = v
	}
	w.adds = append(w.adds, &delta.Add{
		Path:             encodeAddPath(rel),
		PartitionValues:  pv,
		Size:             int64(len(data)),
		ModificationTime: w.opts.Now().UnixMilli(),
		DataChange:       w.opts.DataChange,
		Stats:            f.stats.JSON(),
	})
	if f.ff != nil { // stored: the store keeps no reference to data
		keepFileBuf(data)
	}
	return nil
}

// distinctSample is how many leading values mostlyDistinct looks at, and
// distinctMin the fewest it decides on.
// Hashing the sample costs about as much per file as encoding 4,096 rows
// of the column again, and a snapshot chunk's files are small (tens of
// thousands of rows): the sample is kept short, and strictly increasing
// integer columns (keys, sequences) are recognised without hashing.
const (
	distinctSample = 4 * 1024
	distinctMin    = 1024
)

// mostlyDistinct reports whether more than half of a's first values
// (integer, decimal, string and binary columns, at least distinctMin non-null of
// them) are distinct.
func mostlyDistinct(a arrow.Array) bool {
	n := min(a.Len(), distinctSample)
	if n-a.NullN() < distinctMin {
		return false
	}
	switch x := a.(type) {
	case *array.Int64:
		if a.NullN() == 0 && increasing(x.Int64Values()[:n]) {
			return true
		}
		return distinctHalf(a, n, x.Value)
	case *array.Int32:
		if a.NullN() == 0 && increasing(x.Int32Values()[:n]) {
			return true
		}
		return distinctHalf(a, n, x.Value)
	case *array.String:
		return distinctHalf(a, n, x.Value)
	case *array.Decimal128:
		return distinctHalf(a, n, x.Value)
	case *array.Binary:
		return distinctHalf(a, n, func(i int) string { return string(x.Value(i)) })
	}
	return false
}

// constant reports whether a has no nulls and one value in every row (of
// the types constantColumns knows) and at least distinctMin rows: such a
// column (a snapshot chunk's _silt_op, _silt_lsn, ...) is cheaper written
// plain, where zstd folds the repeats at memory speed, than through a
// dictionary that hashes every value.
func constant(a arrow.Array) bool {
	return a.Len() >= distinctMin && a.NullN() == 0 && constantColumns([]arrow.Array{a}, []int{0})
}

// sorted reports whether a is written DELTA_BINARY_PACKED: its first
// values (at least distinctMin, no nulls) are non-decreasing integers or
// timestamps (increasing keys and times, constant columns), which
// DELTA_BINARY_PACKED stores in a few bits a value (zero for a constant),
// or, with SortedRuns, they descend at most once every sortedRunMin rows.
func (w *Writer) sorted(a arrow.Array) bool {
	d, n, ok := intDescents(a)
	return ok && (d == 0 || w.opts.SortedRuns && d <= n/sortedRunMin)
}

// sortedRunMin is the average run length SortedRuns asks for: at most one
// descent every sortedRunMin rows keeps most of DELTA_BINARY_PACKED's
// 32-value miniblocks free of the large delta a descent costs.
const sortedRunMin = 512

// intDescents counts the descents among a's first n values (at most
// distinctSample); ok is false unless a is an integer or timestamp column
// of at least distinctMin rows, no nulls.
func intDescents(a arrow.Array) (d, n int, ok bool) {
	if a.Len() < distinctMin || a.NullN() != 0 {
		return 0, 0, false
	}
	n = min(a.Len(), distinctSample)
	switch x := a.(type) {
	case *array.Int64:
		return descents(x.Int64Values()[:n]), n, true
	case *array.Int32:
		return descents(x.Int32Values()[:n]), n, true
	case *array.Timestamp:
		return descents(x.TimestampValues()[:n]), n, true
	}
	return 0, 0, false
}

func descents[T int32 | int64 | arrow.Timestamp](v []T) int {
	d := 0
	for i := 1; i < len(v); i++ {
		if v[i] < v[i-1] {
			d++
		}
	}
	return d
}

// increasing reports whether v is strictly increasing (so all distinct).
func increasing[T int32 | int64](v []T) bool {
	for i := 1; i < len(v); i++ {
		if v[i] <= v[i-1] {
			return false
		}
	}
	return true
}

// distinctHalf reports whether more than half of the non-null values among
// a's first n (at least distinctMin of them) are distinct.
func distinctHalf[T comparable](a arrow.Array, n int, value func(int) T) bool {
	seen := make(map[T]struct{}, n)
	valid := 0
	for i := 0; i < n; i++ {
		if a.IsNull(i) {
			continue
		}
		valid++
		seen[value(i)] = struct{}{}
	}
	return valid >= distinctMin && len(seen)*2 > valid
}

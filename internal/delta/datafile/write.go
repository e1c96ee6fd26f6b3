package datafile

import (
	"bytes"
	"context"
	"fmt"
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
	// Now gives add.modificationTime (default time.Now).
	Now func() time.Time
	// DataChange is copied into every add: true for appends, false only for
	// rearranging existing rows (compaction).
	DataChange bool
	// Allocator for Arrow and Parquet buffers; nil means memory.DefaultAllocator.
	Allocator memory.Allocator
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
	opts.defaults()
	if ti.Allocator == nil {
		ti.Allocator = opts.Allocator
	}
	adds, err := write(ctx, store, ti, rec, opts)
	if err != nil {
		return nil, fmt.Errorf("datafile: write: %w", err)
	}
	return adds, nil
}

func write(ctx context.Context, store blob.Store, ti TableInfo, rec arrow.Record, opts WriteOptions) (adds []*delta.Add, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	if ti.Schema == nil {
		return nil, fmt.Errorf("nil schema")
	}
	if rec == nil {
		return nil, fmt.Errorf("nil record")
	}
	mode, err := columnMapping(ti.Config)
	if err != nil {
		return nil, err
	}
	mem := ti.mem()

	// Classify the table's columns.
	partIdx := make([]int, len(ti.PartitionColumns)) // schema index per partition column
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

	// Conform the input columns: data columns to their physical types,
	// partition columns to their logical types.
	recFields := rec.Schema().Fields()
	used := make([]bool, len(recFields))
	cols := make([]arrow.Array, len(ti.Schema.Fields))
	defer releaseAll(cols)
	n := int(rec.NumRows())
	c := &conformer{mem: mem, match: mapNone, out: mode}
	pi := 0
	for i, f := range ti.Schema.Fields {
		var target arrow.DataType
		if isPart[i] || skip[i] {
			if target, err = arrowType(f.Type, mapNone); err != nil {
				return nil, fmt.Errorf("column %q: %w", f.Name, err)
			}
		} else {
			target = physSchema.Field(pi).Type
			pi++
		}
		j := c.findField(recFields, &delta.StructField{Name: f.Name})
		if j < 0 {
			if !f.Nullable {
				return nil, fmt.Errorf("non-nullable column %q is missing from the record", f.Name)
			}
			cols[i] = array.MakeArrayOfNull(mem, target, n)
			continue
		}
		used[j] = true
		d, err := c.conform(rec.Column(j).Data(), f.Type, target)
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", f.Name, err)
		}
		cols[i] = array.MakeFromData(d)
		d.Release()
		if !f.Nullable && cols[i].NullN() > 0 {
			return nil, fmt.Errorf("non-nullable column %q has %d nulls", f.Name, cols[i].NullN())
		}
	}
	for j, u := range used {
		if !u {
			return nil, fmt.Errorf("record column %q is not in the table schema", recFields[j].Name)
		}
	}
	if n == 0 {
		return nil, nil
	}

	groups, err := partitionRows(ti, partIdx, cols, n)
	if err != nil {
		return nil, err
	}
	var dataCols []arrow.Array
	for i := range ti.Schema.Fields {
		if !isPart[i] && !skip[i] {
			dataCols = append(dataCols, cols[i])
		}
	}
	w := &writer{ctx: ctx, store: store, ti: ti, opts: opts, mode: mode, schema: physSchema, dataFields: dataFields, cols: dataCols}
	w.chunkRows = chunkRows(dataCols, n, opts.TargetFileSize)
	defer func() {
		if w.fw != nil { // failed mid-file: free the writer's buffers
			_ = w.fw.Close()
		}
	}()
	for _, g := range groups {
		if err := w.writeGroup(g); err != nil {
			return nil, err
		}
	}
	return w.adds, nil
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
	mode, _ := columnMapping(ti.Config)
	byKey := map[string]*group{}
	var order []*group
	var prev *group
	var key strings.Builder
	vals := make([]*string, len(partIdx))
	for row := 0; row < n; row++ {
		key.Reset()
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
			if s == nil {
				key.WriteString("\x00N")
			} else {
				key.WriteString("\x00V")
				key.WriteString(*s)
			}
		}
		g := byKey[key.String()]
		if g == nil {
			g = &group{values: map[string]*string{}}
			var dir []string
			for k, i := range partIdx {
				f := ti.Schema.Fields[i]
				pn := physicalName(f, mode)
				g.values[pn] = vals[k]
				dv := hiveNull
				if vals[k] != nil {
					dv = escapePartitionPath(*vals[k])
				}
				dir = append(dir, escapePartitionPath(pn)+"="+dv)
			}
			g.dir = strings.Join(dir, "/")
			byKey[key.String()] = g
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

// writer writes the groups of one Write call.
type writer struct {
	ctx        context.Context
	store      blob.Store
	ti         TableInfo
	opts       WriteOptions
	mode       mappingMode
	schema     *arrow.Schema
	dataFields []*delta.StructField
	cols       []arrow.Array
	chunkRows  int
	adds       []*delta.Add

	// current file
	buf   *bytes.Buffer
	fw    *pqarrow.FileWriter
	stats *statsAcc
	g     *group
}

func (w *writer) writeGroup(g *group) error {
	for _, r := range g.runs {
		for start := r[0]; start < r[1]; start += w.chunkRows {
			end := min(start+w.chunkRows, r[1])
			if err := w.writeChunk(g, start, end); err != nil {
				return err
			}
		}
	}
	return w.finish()
}

func (w *writer) writeChunk(g *group, start, end int) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if w.fw == nil {
		if err := w.open(g); err != nil {
			return err
		}
	}
	slices := make([]arrow.Array, len(w.cols))
	defer releaseAll(slices)
	for i, c := range w.cols {
		slices[i] = array.NewSlice(c, int64(start), int64(end))
	}
	rec := array.NewRecordBatch(w.schema, slices, int64(end-start))
	defer rec.Release()
	if err := w.fw.WriteBuffered(rec); err != nil {
		return fmt.Errorf("write parquet: %w", err)
	}
	w.stats.update(slices)
	if w.fw.TotalCompressedBytes() >= w.opts.TargetFileSize {
		return w.finish()
	}
	return nil
}

func (w *writer) open(g *group) error {
	page := min(max(w.opts.TargetFileSize/16, 4096), 1<<20)
	opts := []parquet.WriterProperty{
		parquet.WithAllocator(w.ti.mem()),
		parquet.WithCompression(w.opts.Compression),
		parquet.WithDataPageSize(page),
		parquet.WithDictionaryPageSizeLimit(page),
		parquet.WithMaxRowGroupLength(1 << 20),
		parquet.WithStats(true),
		parquet.WithCreatedBy("silt"),
	}
	// Floats and timestamps are nearly always distinct: a dictionary costs
	// CPU (hashing every value) and falls back to plain anyway.
	for _, f := range w.schema.Fields() {
		switch f.Type.ID() {
		case arrow.FLOAT32, arrow.FLOAT64, arrow.TIMESTAMP:
			opts = append(opts, parquet.WithDictionaryFor(f.Name, false))
		}
	}
	props := parquet.NewWriterProperties(opts...)
	w.buf = &bytes.Buffer{}
	fw, err := pqarrow.NewFileWriter(w.schema, w.buf, props, pqarrow.NewArrowWriterProperties(pqarrow.WithAllocator(w.ti.mem())))
	if err != nil {
		return fmt.Errorf("create parquet writer: %w", err)
	}
	w.fw = fw
	w.g = g
	w.stats = newStatsAcc(w.dataFields, w.mode, w.ti.Config)
	return nil
}

// finish closes the current file (if any), stores it and records its add.
func (w *writer) finish() error {
	if w.fw == nil {
		return nil
	}
	fw := w.fw
	w.fw = nil
	if err := fw.Close(); err != nil {
		return fmt.Errorf("close parquet writer: %w", err)
	}
	suffix := codecSuffix[w.opts.Compression]
	name := "part-" + uuid.NewString()
	if suffix != "" {
		name += "." + suffix
	}
	name += ".parquet"
	rel := name
	if w.g.dir != "" {
		rel = w.g.dir + "/" + name
	}
	data := w.buf.Bytes()
	key := blob.Join(w.ti.Root, rel)
	if err := w.store.PutIfAbsent(w.ctx, key, data); err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	pv := make(map[string]*string, len(w.g.values))
	for k, v := range w.g.values {
		pv[k] = v
	}
	w.adds = append(w.adds, &delta.Add{
		Path:             encodeAddPath(rel),
		PartitionValues:  pv,
		Size:             int64(len(data)),
		ModificationTime: w.opts.Now().UnixMilli(),
		DataChange:       w.opts.DataChange,
		Stats:            w.stats.JSON(),
	})
	w.buf = nil
	return nil
}

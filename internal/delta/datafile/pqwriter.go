package datafile

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// pqFile is the Parquet encoder of one data file: pqarrow.FileWriter, or
// columnsWriter for flat schemas.
type pqFile interface {
	WriteBuffered(rec arrow.RecordBatch) error
	TotalCompressedBytes() int64
	Close() error
}

// newPQFile returns the encoder for one file: columns of a flat schema
// (no struct, list or map columns) are encoded in parallel, anything else
// by pqarrow column after column. Both write the same bytes for the same
// rows: the parallel one calls pqarrow.WriteArrowToColumn per column, as
// pqarrow.FileWriter does, with the same properties.
func newPQFile(schema *arrow.Schema, w io.Writer, props *parquet.WriterProperties, arrProps pqarrow.ArrowWriterProperties) (pqFile, error) {
	conc := runtime.GOMAXPROCS(0)
	if conc > 1 && len(schema.Fields()) > 1 && flatSchema(schema) {
		return newColumnsWriter(schema, w, props, arrProps, conc)
	}
	return pqarrow.NewFileWriter(schema, w, props, arrProps)
}

func flatSchema(s *arrow.Schema) bool {
	for _, f := range s.Fields() {
		switch f.Type.ID() {
		case arrow.STRUCT, arrow.LIST, arrow.LARGE_LIST, arrow.FIXED_SIZE_LIST, arrow.MAP,
			arrow.DICTIONARY, arrow.EXTENSION, arrow.LIST_VIEW, arrow.LARGE_LIST_VIEW,
			arrow.DENSE_UNION, arrow.SPARSE_UNION, arrow.RUN_END_ENCODED:
			return false
		}
	}
	return true
}

// columnsWriter writes buffered row groups whose column chunks are encoded
// and compressed by up to conc goroutines at once (one column each).
type columnsWriter struct {
	wr       *file.Writer
	rgw      file.BufferedRowGroupWriter
	rgRows   int64
	maxRows  int64
	nullable []bool
	ctxs     []context.Context // per column: pqarrow's write context is not shareable
	defs     [][]int16         // per column: definition levels scratch
	dicts    []*dictColumn     // per column: silt's dictionary encoding (nil: pqarrow's)
	mem      memory.Allocator
	conc     int
	closed   bool
}

func newColumnsWriter(schema *arrow.Schema, w io.Writer, props *parquet.WriterProperties, arrProps pqarrow.ArrowWriterProperties, conc int) (*columnsWriter, error) {
	pqschema, err := pqarrow.ToParquet(schema, props, arrProps)
	if err != nil {
		return nil, err
	}
	if pqschema.NumColumns() != len(schema.Fields()) {
		return nil, fmt.Errorf("flat schema of %d fields has %d Parquet columns", len(schema.Fields()), pqschema.NumColumns())
	}
	meta := make(metadata.KeyValueMetadata, 0)
	for i := 0; i < schema.Metadata().Len(); i++ {
		meta.Append(schema.Metadata().Keys()[i], schema.Metadata().Values()[i])
	}
	wr, err := file.NewParquetWriterWithError(w, pqschema.Root(), file.WithWriterProps(props), file.WithWriteMetadata(meta))
	if err != nil {
		return nil, err
	}
	n := len(schema.Fields())
	cw := &columnsWriter{wr: wr, maxRows: props.MaxRowGroupLength(), nullable: make([]bool, n),
		ctxs: make([]context.Context, n), defs: make([][]int16, n), dicts: make([]*dictColumn, n), mem: props.Allocator(), conc: conc}
	for i, f := range schema.Fields() {
		cw.nullable[i] = f.Nullable
		cw.ctxs[i] = pqarrow.NewArrowWriteContext(context.Background(), &arrProps)
		path := pqschema.Column(i).Path()
		if id := f.Type.ID(); (id == arrow.STRING || id == arrow.BINARY) && props.DictionaryEnabledFor(path) &&
			!props.DictionaryCostFallbackEnabledFor(path) {
			cw.dicts[i] = newDictColumn(props.DictionaryPageSizeLimit(), id == arrow.BINARY)
		}
	}
	return cw, nil
}

// WriteBuffered adds rec's rows to the open row group, starting a new one
// at maxRows rows (as pqarrow.FileWriter.WriteBuffered).
func (w *columnsWriter) WriteBuffered(rec arrow.RecordBatch) error {
	if w.closed {
		return fmt.Errorf("write to a closed parquet writer")
	}
	n := rec.NumRows()
	for off := int64(0); off < n || w.rgw == nil; {
		if w.rgw == nil || w.rgRows >= w.maxRows || w.dictPending() >= dictPendingMax {
			if err := w.flushDicts(); err != nil {
				return err
			}
			rgw, err := w.wr.AppendBufferedRowGroupChecked()
			if err != nil {
				return err
			}
			w.rgw, w.rgRows = rgw, 0
		}
		size := min(n-off, w.maxRows-w.rgRows)
		if err := w.writeColumns(rec, off, size); err != nil {
			return err
		}
		w.rgRows += size
		off += size
	}
	return nil
}

// dictPendingMax bounds the bytes of dictionary indices the open row group
// holds (4 a row per string or binary column, until the row group
// closes): past it the row group closes early, so a wide table's
// string columns do not hold 4 bytes a row each for up to a million rows.
var dictPendingMax = 32 << 20

// dictPending is the bytes of indices the dictionary columns hold.
func (w *columnsWriter) dictPending() int {
	n := 0
	for _, d := range w.dicts {
		if d != nil {
			n += 4 * len(d.idx)
		}
	}
	return n
}

// parallelMinRows: smaller writes encode their columns on the caller's
// goroutine (a hand-off costs more than it saves).
const parallelMinRows = 4096

// writeColumns writes rows [off, off+size) of every column, up to conc
// columns at a time. The caller encodes columns too and waits only for
// columns a helper goroutine actually took, so a helper the scheduler
// starts late never delays the write.
func (w *columnsWriter) writeColumns(rec arrow.RecordBatch, off, size int64) error {
	ncols := int(rec.NumCols())
	errs := make([]error, ncols)
	if size < parallelMinRows || w.conc < 2 {
		for i := 0; i < ncols; i++ {
			errs[i] = w.writeColumn(i, rec.Column(i), off, size)
		}
		return firstColumnError(errs)
	}
	var next atomic.Int64
	done := make([]chan struct{}, ncols)
	for i := range done {
		done[i] = make(chan struct{})
	}
	for g := 1; g < min(w.conc, ncols); g++ {
		go func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= ncols {
					return
				}
				errs[i] = w.writeColumn(i, rec.Column(i), off, size)
				close(done[i])
			}
		}()
	}
	for {
		i := int(next.Add(1) - 1)
		if i >= ncols {
			break
		}
		errs[i] = w.writeColumn(i, rec.Column(i), off, size)
		close(done[i])
	}
	for i := range done {
		<-done[i] // closed by whoever took column i
	}
	return firstColumnError(errs)
}

func firstColumnError(errs []error) error {
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return nil
}

func (w *columnsWriter) writeColumn(i int, col arrow.Array, off, size int64) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	arr := col
	if off != 0 || size != int64(col.Len()) {
		arr = array.NewSlice(col, off, off+size)
		defer arr.Release()
	}
	cw, err := w.rgw.Column(i)
	if err != nil {
		return err
	}
	if d := w.dicts[i]; d != nil {
		k := d.add(arr)
		if k == arr.Len() {
			return nil
		}
		if d.pending() { // the dictionary is full: pqarrow takes over
			p, err := d.denseArray(w.mem)
			if err != nil {
				return err
			}
			err = w.writeArrow(i, cw, p)
			p.Release()
			if err != nil {
				return err
			}
		}
		if k > 0 {
			rest := array.NewSlice(arr, int64(k), int64(arr.Len()))
			defer rest.Release()
			arr = rest
		}
	}
	return w.writeArrow(i, cw, arr)
}

// writeArrow hands arr (a whole column or a slice of it) to pqarrow.
func (w *columnsWriter) writeArrow(i int, cw file.ColumnChunkWriter, arr arrow.Array) error {
	size := int64(arr.Len())
	var def []int16
	if w.nullable[i] {
		if int64(cap(w.defs[i])) < size {
			w.defs[i] = make([]int16, size)
		}
		def = w.defs[i][:size]
		if arr.NullN() == 0 {
			for k := range def {
				def[k] = 1
			}
		} else {
			for k := range def {
				if arr.IsValid(k) {
					def[k] = 1
				} else {
					def[k] = 0
				}
			}
		}
	}
	return pqarrow.WriteArrowToColumn(w.ctxs[i], cw, arr, def, nil, w.nullable[i])
}

// flushDict writes column i's pending dictionary-encoded rows and, when
// its dictionary outgrew the page limit, leaves the rest of the row group
// to pqarrow.
func (w *columnsWriter) flushDict(i int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	d := w.dicts[i]
	if !d.pending() {
		return nil
	}
	cw, err := w.rgw.Column(i)
	if err != nil {
		return err
	}
	ends := d.pages(cw.Properties().DataPageSize(), int(cw.Properties().WriteBatchSize()))
	arr := d.array(w.mem)
	defer arr.Release()
	flusher, _ := cw.(interface{ FlushCurrentPage() error })
	start := 0
	for k, end := range ends {
		s := array.NewSlice(arr, int64(start), int64(end))
		err := w.writeArrow(i, cw, s)
		s.Release()
		if err != nil {
			return err
		}
		if k < len(ends)-1 && flusher != nil {
			if err := flusher.FlushCurrentPage(); err != nil {
				return err
			}
		}
		start = end
	}
	return nil
}

// flushDicts writes the open row group's pending dictionary-encoded rows
// and starts the dictionaries afresh (before the row group closes).
func (w *columnsWriter) flushDicts() error {
	if w.rgw == nil {
		return nil
	}
	for i, d := range w.dicts {
		if d == nil {
			continue
		}
		if err := w.flushDict(i); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
		d.reset()
	}
	return nil
}

// TotalCompressedBytes is the file's size so far (closed row groups plus
// the open one's compressed pages, plus at most what the pending
// dictionary-encoded rows will add).
func (w *columnsWriter) TotalCompressedBytes() int64 {
	n := w.wr.TotalCompressedBytes()
	for _, d := range w.dicts {
		if d != nil {
			n += d.estimate()
		}
	}
	return n
}

// Close writes the open row group and the footer.
func (w *columnsWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if err := w.flushDicts(); err != nil {
		w.wr.Close()
		return err
	}
	return w.wr.Close()
}

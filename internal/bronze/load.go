package bronze

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

// Loader writes initial-snapshot chunks (op L rows) straight into Bronze,
// beside the Writer and without the stream, from several goroutines at
// once. Each chunk is one blind-append commit to its table carrying
// txn(appId, version) — the chunk's identity — in the same atomic commit
// as its rows, so a chunk redone after a crash finds itself committed
// (LoadChunk.Done) and is never written twice.
//
// A chunk commit never changes the table's metadata (except by creating
// the table), so it cannot make a concurrent Writer commit fail: Delta
// rebases a blind append over another, and txn appIds differ. When the
// table's schema lacks a column of the chunk's relation (an ADD COLUMN the
// stream has not carried to Bronze yet), Begin returns ErrSchemaBehind and
// the caller sends the chunk through the stream instead, where the Writer
// evolves the schema.
type Loader struct {
	store blob.Store
	opts  Options
	arrow bool // write through Arrow records even when the flat path could (tests, benchmarks)
}

// ErrSchemaBehind: the Bronze table cannot hold the relation without a
// schema change; write the chunk through the stream.
var ErrSchemaBehind = errors.New("bronze: table schema lacks columns of the snapshot relation")

// NewLoader returns a Loader writing with opts (PartitionBy,
// TargetFileSize, SnapshotZstdLevel, Types; the rest is unused).
func NewLoader(store blob.Store, opts Options) *Loader { return &Loader{store: store, opts: opts} }

// DefaultSnapshotZstdLevel is Options.SnapshotZstdLevel's default: zstd's
// fastest level. A snapshot is CPU-bound on Parquet writing, and zstd was
// the largest part of it at the default level 3; for snapshot pages (1 MiB,
// mostly plain-encoded) level 1 compresses about as well (BenchmarkLoadChunk
// compares size and time of both).
const DefaultSnapshotZstdLevel = 1

func (l *Loader) zstdLevel() int {
	if l.opts.SnapshotZstdLevel > 0 {
		return l.opts.SnapshotZstdLevel
	}
	return DefaultSnapshotZstdLevel
}

// loadRecordRows is the number of rows of a snapshot chunk turned into one
// Arrow record before it goes into the Parquet writer: larger than the
// Writer's chunkRows (fewer, larger pages and dictionaries per file; a
// snapshot chunk's rows are all one relation), still bounded.
const loadRecordRows = 64 << 10

// loadRecordBytes also ends a flat batch (loadflat.go): once its string and
// binary values hold this many bytes, so that wide rows (large text,
// TOASTed documents) keep the batch's memory bounded and its int32 offsets
// far from overflowing.
const loadRecordBytes = 64 << 20

// loadMem holds the column buffers of snapshot records: a chunk's records
// are built, written and released one after another, and every chunk of
// every table has buffers of about the same sizes, so they are reused
// instead of being allocated, zeroed and collected each time.
var loadMem = datafile.NewPoolAllocator()

// newLoadBuilder is newRecBuilder with room for loadRecordRows rows in
// every column, so that the builders do not grow by doubling and copying.
func newLoadBuilder(schema *delta.StructType, partCols []string) (*recBuilder, error) {
	rb, err := newRecBuilderMem(schema, partCols, loadMem)
	if err == nil {
		rb.b.Reserve(loadRecordRows)
	}
	return rb, err
}

// LoadChunk is one chunk being written: rows are appended to an Arrow
// builder as they come, and every loadRecordRows rows the record goes into the
// chunk's open Parquet writer (datafile.Writer), so memory is bounded by
// the encoded file, not by the chunk's rows; Commit stores the files and
// commits them.
type LoadChunk struct {
	l       *Loader
	rel     *change.Relation
	tbl     *delta.Table
	snap    *delta.Snapshot
	schema  *delta.StructType
	rows    int
	appID   string
	version int64
	ctx     context.Context  // of Begin: the Parquet writer stores files with it
	rb      *recBuilder      // rows not yet in dw
	pl      *recPlan         // rb's plan of rel (nil until the first row)
	pending int              // rows of rb whose shared columns are not appended yet
	konst   loadConst        // the pending rows' shared columns
	dw      *datafile.Writer // nil until the first record (the Arrow path)
	flat    *flatLoad        // the flat path's open batch (loadflat.go); nil: Arrow
}

// Begin starts chunk (appID, version) of rel's table, creating the table
// if it does not exist. done reports that the chunk is committed already.
func (l *Loader) Begin(ctx context.Context, rel *change.Relation, appID string, version int64) (c *LoadChunk, done bool, err error) {
	id := rel.Table
	tbl := delta.NewTable(l.store, TablePath(id))
	probe := []*change.Change{{Rel: rel}}
	snap, err := tbl.Snapshot(ctx)
	if errors.Is(err, delta.ErrNotATable) {
		schema, _, parts, eerr := evolve(nil, probe, l.opts.Types)
		if eerr != nil {
			return nil, false, fmt.Errorf("bronze: table %s: %w", id, eerr)
		}
		schema, parts = trimPartitions(schema, parts, l.opts.PartitionBy)
		conf := map[string]string{"delta.appendOnly": "true", ConfPrimaryKey: strings.Join(keyNames(rel), ",")}
		if snap, err = delta.CreateTable(ctx, tbl, schema, parts, conf, id.String()); errors.Is(err, delta.ErrConflict) {
			snap, err = tbl.Snapshot(ctx) // the Writer (or another chunk) created it
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("bronze: open table %s: %w", id, err)
	}
	if err := snap.CanWrite(); err != nil {
		return nil, false, fmt.Errorf("bronze: table %s: %w", id, err)
	}
	if v, ok := snap.TxnVersion(appID); ok && v == version {
		return nil, true, nil
	}
	schema, changed, _, err := evolve(snap.Schema(), probe, l.opts.Types)
	if err != nil {
		return nil, false, fmt.Errorf("bronze: table %s: %w", id, err)
	}
	if changed || snap.Config()[ConfPrimaryKey] != strings.Join(keyNames(rel), ",") {
		return nil, false, ErrSchemaBehind
	}
	c = &LoadChunk{l: l, rel: rel, tbl: tbl, snap: snap, schema: schema, appID: appID, version: version, ctx: ctx}
	if err := c.openWriter(); err != nil {
		return nil, false, err
	}
	if fields := c.dw.FlatFields(); fields != nil && !l.arrow {
		if c.flat, err = newFlatLoad(rel, fields); err != nil {
			c.Release()
			return nil, false, err
		}
	}
	if c.flat == nil {
		if c.rb, err = newLoadBuilder(schema, snap.PartitionColumns()); err != nil {
			c.Release()
			return nil, false, err
		}
	}
	return c, false, nil
}

// openWriter starts the chunk's data file writer.
func (c *LoadChunk) openWriter() error {
	ti := datafile.TableInfo{Root: c.tbl.Root(), Schema: c.schema, PartitionColumns: c.snap.PartitionColumns(), Config: c.snap.Config()}
	dw, err := datafile.NewWriter(c.ctx, c.l.store, ti, datafile.WriteOptions{TargetFileSize: c.l.opts.TargetFileSize, DataChange: true, CompressionLevel: c.l.zstdLevel(), Allocator: loadMem, SnapshotEncodings: true})
	if err != nil {
		return fmt.Errorf("bronze: write %s: %w", c.rel.Table, err)
	}
	c.dw = dw
	return nil
}

// Append adds rows (op L, all of the chunk's relation) to the chunk. The
// changes are not retained.
func (c *LoadChunk) Append(rows []*change.Change) error {
	if c.flat != nil {
		return c.appendFlat(rows)
	}
	for _, r := range rows {
		if err := c.addRow(r); err != nil {
			return fmt.Errorf("bronze: table %s: %w", c.rel.Table, err)
		}
		if c.rb.rows >= loadRecordRows {
			if err := c.flushRecord(); err != nil {
				return err
			}
		}
	}
	return nil
}

// loadConst are the Bronze columns every row of a snapshot chunk shares
// (pgsnap gives them all the same op, LSN, pos, xid and commit time).
type loadConst struct {
	lsn, pos, xid uint64
	commit        time.Time
}

// addRow appends one row as recBuilder.add does, but for the common case
// (an op L row of the chunk's relation, no unchanged datum) it appends
// only the source columns; the shared columns are filled for a run of
// rows at once by fillConst.
func (c *LoadChunk) addRow(r *change.Change) error {
	if r.Op != change.OpLoad || r.Rel != c.rel || hasUnchanged(r.New) {
		c.fillConst()
		return c.rb.add(r)
	}
	k := loadConst{lsn: uint64(r.LSN), pos: uint64(r.Pos), xid: uint64(r.XID), commit: r.CommitTime}
	if c.pending > 0 && (k.lsn != c.konst.lsn || k.pos != c.konst.pos || k.xid != c.konst.xid || !k.commit.Equal(c.konst.commit)) {
		c.fillConst()
	}
	c.konst = k
	if c.pl == nil {
		pl, err := c.rb.planFor(c.rel)
		if err != nil {
			return err
		}
		c.pl = pl
	}
	b, schema := c.rb.b, c.rb.schema
	for ci, fi := range c.pl.fields {
		var d change.Datum
		if ci < len(r.New) {
			d = r.New[ci]
		}
		var err error
		switch d.Kind {
		case change.Binary:
			switch fb := b.Field(fi).(type) {
			case *array.Int64Builder:
				if len(d.Data) != 8 {
					err = AppendBinary(fb, d.Data)
				} else {
					fb.Append(int64(binary.BigEndian.Uint64(d.Data)))
				}
			case *array.Int32Builder:
				if len(d.Data) != 4 {
					err = AppendBinary(fb, d.Data)
				} else {
					fb.Append(int32(binary.BigEndian.Uint32(d.Data)))
				}
			default:
				err = AppendBinary(fb, d.Data)
			}
		case change.Text:
			if sb, ok := b.Field(fi).(*array.StringBuilder); ok {
				sb.BinaryBuilder.Append(d.Data)
			} else {
				err = AppendText(b.Field(fi), schema.Fields[fi].Type, d.Data)
			}
		default:
			b.Field(fi).AppendNull()
		}
		if err != nil {
			return fmt.Errorf("table %s column %q: %w", c.rel.Table, c.rel.Columns[ci].Name, err)
		}
	}
	c.pending++
	c.rb.rows++
	return nil
}

func hasUnchanged(img []change.Datum) bool {
	for _, d := range img {
		if d.Kind == change.Unchanged {
			return true
		}
	}
	return false
}

// fillConst appends the shared columns of the pending rows (added by
// addRow's fast path) as emit would for each of them.
func (c *LoadChunk) fillConst() {
	n, rb, k := c.pending, c.rb, c.konst
	if n == 0 {
		return
	}
	c.pending = 0
	rb.opB.Reserve(n)
	rb.opB.ReserveData(n * len(opNames['L']))
	op := []byte(opNames['L'])
	for i := 0; i < n; i++ {
		rb.opB.BinaryBuilder.UnsafeAppend(op)
	}
	fillInt64(rb.lsnB, int64(k.lsn), n)
	fillInt64(rb.posB, int64(k.pos), n)
	fillInt64(rb.xidB, int64(k.xid), n)
	ts := arrow.Timestamp(k.commit.UnixMicro())
	rb.tsB.Reserve(n)
	for i := 0; i < n; i++ {
		rb.tsB.UnsafeAppend(ts)
	}
	rb.unB.AppendNulls(n)
	if len(rb.partB) > 0 {
		parts := commitParts(k.commit)
		for pi, pb := range rb.partB {
			pb.Reserve(n)
			for i := 0; i < n; i++ {
				pb.UnsafeAppend(parts[pi])
			}
		}
	}
	for _, i := range c.pl.missing {
		rb.b.Field(i).AppendNulls(n)
	}
}

// commitParts is the values of the partition columns (year, month, day,
// hour: a prefix of them) of a row committed at t.
func commitParts(t time.Time) [4]int32 {
	t = t.UTC()
	return [4]int32{int32(t.Year()), int32(t.Month()), int32(t.Day()), int32(t.Hour())}
}

func fillInt64(b *array.Int64Builder, v int64, n int) {
	b.Reserve(n)
	for i := 0; i < n; i++ {
		b.UnsafeAppend(v)
	}
}

// appendFlat is Append on the flat path.
func (c *LoadChunk) appendFlat(rows []*change.Change) error {
	fl := c.flat
	for _, r := range rows {
		if r.Op != change.OpLoad || r.Rel != c.rel || hasUnchanged(r.New) {
			return fmt.Errorf("bronze: table %s: internal error: a snapshot chunk got a row that is not a snapshot row of its relation", c.rel.Table)
		}
		// A batch's rows share their metadata columns (filled at
		// flushFlat) and partition: pgsnap gives every row of a chunk the
		// same LSN, pos, xid and commit time.
		if k := (loadConst{lsn: uint64(r.LSN), pos: uint64(r.Pos), xid: uint64(r.XID), commit: r.CommitTime}); fl.part == nil || k != fl.konst {
			if err := c.flushFlat(); err != nil {
				return err
			}
			parts := commitParts(r.CommitTime)
			fl.part = make([]any, len(c.snap.PartitionColumns()))
			for i := range fl.part {
				fl.part[i] = parts[i]
			}
			fl.konst = k
		}
		if err := fl.add(r); err != nil {
			return fmt.Errorf("bronze: table %s: %w", c.rel.Table, err)
		}
		if fl.batch.Rows >= loadRecordRows || fl.bytes >= loadRecordBytes {
			if err := c.flushFlat(); err != nil {
				return err
			}
		}
	}
	return nil
}

// flushFlat hands the flat path's open batch to the writer.
func (c *LoadChunk) flushFlat() error {
	fl := c.flat
	if fl.batch.Rows == 0 {
		return nil
	}
	if c.rows == 0 {
		flatChunks.Add(1)
	}
	c.rows += fl.batch.Rows
	fl.fillMeta()
	err := c.dw.WriteFlat(&fl.batch, fl.part)
	fl.reset()
	if err != nil {
		return fmt.Errorf("bronze: write %s: %w", c.rel.Table, err)
	}
	return nil
}

// flushRecord moves the builder's rows into the Parquet writer.
func (c *LoadChunk) flushRecord() error {
	if c.flat != nil {
		return c.flushFlat()
	}
	c.fillConst()
	if c.rb.rows == 0 {
		return nil
	}
	if c.dw == nil {
		if err := c.openWriter(); err != nil {
			return err
		}
	}
	c.rows += c.rb.rows
	rec := c.rb.finish()
	werr := c.dw.Write(rec)
	rec.Release()
	rb, err := newLoadBuilder(c.schema, c.snap.PartitionColumns())
	c.rb, c.pl = rb, nil
	if werr != nil {
		return fmt.Errorf("bronze: write %s: %w", c.rel.Table, werr)
	}
	return err
}

// Commit writes the rows as Parquet and commits them with txn(appID,
// version); it returns the Bronze version. A chunk without rows commits
// nothing (-1): redoing it costs nothing.
func (c *LoadChunk) Commit(ctx context.Context) (int64, error) {
	if err := c.flushRecord(); err != nil {
		return -1, err
	}
	if c.rows == 0 { // no rows
		if c.dw != nil {
			c.dw.Abort()
			c.dw = nil
		}
		return -1, nil
	}
	adds, err := c.dw.Close()
	c.dw = nil
	if err != nil {
		return -1, fmt.Errorf("bronze: write %s: %w", c.rel.Table, err)
	}
	snap := c.snap
	for attempt := 0; ; attempt++ {
		tx := c.tbl.Begin(snap)
		tx.Add(adds...)
		tx.SetAppTxn(c.appID, c.version)
		v, err := tx.Commit(ctx, "WRITE", map[string]any{"mode": "Append", "queryId": "silt-snapshot"})
		if err == nil {
			return v, nil
		}
		// A concurrent schema change by the Writer (metadata) conflicts
		// with every commit; the files stay valid (columns only get
		// added), so commit them again on top of it.
		var ce *delta.ConflictError
		if !errors.As(err, &ce) || ce.Kind != delta.ConflictMetadataChanged || attempt >= 10 {
			return -1, fmt.Errorf("bronze: commit %s: %w", c.rel.Table, err)
		}
		if snap, err = c.tbl.Snapshot(ctx); err != nil {
			return -1, fmt.Errorf("bronze: reload %s: %w", c.rel.Table, err)
		}
		if _, changed, _, err := evolve(snap.Schema(), []*change.Change{{Rel: c.rel}}, c.l.opts.Types); err != nil || changed {
			return -1, fmt.Errorf("bronze: table %s changed under a snapshot chunk: %v", c.rel.Table, err)
		}
		if v, ok := snap.TxnVersion(c.appID); ok && v == c.version {
			return -1, fmt.Errorf("bronze: internal error: chunk %s of %s committed twice", c.appID, c.rel.Table)
		}
	}
}

// Table returns the chunk's table.
func (c *LoadChunk) Table() change.TableID { return c.rel.Table }

// Rows returns how many rows were appended.
func (c *LoadChunk) Rows() int { return c.rows }

// Release frees the builder; call it after Commit or to abandon the chunk.
func (c *LoadChunk) Release() {
	if c.rb != nil {
		c.rb.b.Release()
		c.rb = nil
	}
	if c.dw != nil {
		c.dw.Abort()
		c.dw = nil
	}
	if c.flat != nil {
		c.flat.release()
		c.flat = nil
	}
}

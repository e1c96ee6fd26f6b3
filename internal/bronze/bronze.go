// Package bronze writes change events from the stream into Bronze: one
// append-only Delta table per source table, Parquet (zstd) files partitioned
// by the commit time's year/month/day/hour, each row one change with its
// operation, commit LSN, position and commit time.
//
// Exactly-once: every Bronze commit carries a txn action per stream shard
// whose version is the next shard offset not yet in that table (appId
// "shard-<n>"). After all tables of a flush are committed, the progress
// table (<lake>/_silt/bronze_progress) commits a txn per shard with the
// position every table has reached (the watermark). On restart the writer
// reads from the watermark and skips, per table, the records below that
// table's own txn version, so nothing is written twice and nothing skipped.
package bronze

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/stream"
)

// Metadata columns of every Bronze table.
const (
	ColOp        = "_silt_op"        // I, U, D, T, or L (snapshot row)
	ColLSN       = "_silt_lsn"       // commit LSN of the source transaction
	ColPos       = "_silt_pos"       // position of the change in its transaction
	ColXID       = "_silt_xid"       // source transaction id
	ColCommitTS  = "_silt_commit_ts" // source commit time (UTC)
	ColUnchanged = "_silt_unchanged" // comma-separated columns whose unchanged TOAST value was not sent
)

// TablePath is the key prefix of a source table's Bronze table.
func TablePath(t change.TableID) string { return "bronze/" + t.Schema + "/" + t.Name }

// ProgressPath is the key prefix of the progress table.
const ProgressPath = "_silt/bronze_progress"

// AppID is the txn appId for a stream shard.
func AppID(shard int) string { return fmt.Sprintf("shard-%d", shard) }

// Options tune the writer.
type Options struct {
	// PartitionBy is the commit-time granularity of new Bronze tables'
	// partitions: "hour" (year/month/day/hour; the default), "day", "month"
	// or "none". Existing tables keep theirs.
	PartitionBy    string
	FlushInterval  time.Duration
	FlushBytes     int64
	TargetFileSize int64
	// SnapshotZstdLevel is the zstd level of the Loader's (initial
	// snapshot) Parquet files, 1 (fastest) .. 22; 0 means
	// DefaultSnapshotZstdLevel. The Writer uses zstd's default (3).
	SnapshotZstdLevel int
	// ReadBatch is the maximum records read from a shard per call.
	ReadBatch int
	// OnProgress is called after each durable flush with the per-shard
	// watermark (next offset to read). It must not block for long.
	OnProgress func(pos []int64)
	// OnCommit is called after a table's Bronze commit.
	OnCommit func(t change.TableID, version int64, rows int)
	// Types resolves domain columns to their base type (see Resolve). Nil:
	// domains are stored as strings.
	Types  TypeResolver
	Logger *slog.Logger
}

// Writer moves records from a stream.Log into Bronze.
type Writer struct {
	store     blob.Store
	log       stream.Log
	opts      Options
	pos       []int64
	progress  *delta.Table
	tables    map[change.TableID]*table
	buffered  int64
	lastFlush time.Time
	relCache  change.RelationCache
	// readTo is how far each shard was read; pos (durable) trails it.
	readTo           []int64
	progressSnapshot *delta.Snapshot
	// dropped: a table commit started (its decoded changes are released)
	// and has not completed. If it failed, the buffer no longer matches
	// readTo and Run must not be called again on this writer.
	dropped bool
	// consumed counts the records read from the stream (Consumed).
	consumed atomic.Int64
}

// Consumed is the number of stream records the writer has read since it
// started (buffered or committed). Safe to call while Run runs.
func (w *Writer) Consumed() int64 { return w.consumed.Load() }

// table is one Bronze table and what is buffered for its next commit.
//
// Changes are not kept decoded until the flush: each is appended to an
// Arrow builder of at most chunkRows rows, and every full chunk goes to an
// open Parquet writer (datafile.Writer), so a table's buffer costs about
// one chunk plus the encoded (compressed) bytes of its open files, however
// many changes a flush covers. The files are referenced only by the commit.
type table struct {
	id     change.TableID
	tbl    *delta.Table
	snap   *delta.Snapshot // nil until the table exists
	done   map[int]int64   // shard -> next offset already in this table
	maxOff map[int]int64   // shard -> highest offset buffered

	// Buffer of the next commit.
	schema  *delta.StructType         // write schema (nil: nothing buffered yet)
	parts   []string                  // partition columns
	rels    map[*change.Relation]bool // relations schema covers
	lastRel *change.Relation          // relation of the last change (primary key)
	chunk   *recBuilder               // current Arrow chunk (nil: none)
	dw      *datafile.Writer          // open Parquet files of schema (nil: none)
	dwBytes int64                     // Arrow bytes written to dw
	adds    []*delta.Add              // files already stored for the commit
	rows    int                       // changes buffered
}

// chunkRows is the number of changes turned into one Arrow record before it
// is handed to the Parquet writer.
const chunkRows = 16 << 10

// NewWriter returns a writer; call Run.
func NewWriter(store blob.Store, log stream.Log, opts Options) *Writer {
	if opts.ReadBatch == 0 {
		opts.ReadBatch = 4096
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = time.Second
	}
	if opts.FlushBytes == 0 {
		opts.FlushBytes = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Writer{store: store, log: log, opts: opts, tables: map[change.TableID]*table{}}
}

// Positions returns the durable per-shard watermark loaded at start or after the last flush.
func (w *Writer) Positions() []int64 { return append([]int64(nil), w.pos...) }

// LoadProgress reads the per-shard watermark from the progress table.
func LoadProgress(ctx context.Context, store blob.Store, shards int) ([]int64, error) {
	pos := make([]int64, shards)
	snap, err := delta.NewTable(store, ProgressPath).Snapshot(ctx)
	if errors.Is(err, delta.ErrNotATable) {
		return pos, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bronze: read progress: %w", err)
	}
	for s := range pos {
		if v, ok := snap.TxnVersion(AppID(s)); ok {
			pos[s] = v
		}
	}
	return pos, nil
}

// Run reads the stream and writes Bronze until ctx is done; it flushes what
// is buffered before returning on a clean stop.
func (w *Writer) Run(ctx context.Context) error {
	if w.dropped {
		return errors.New("bronze: a table commit of this writer failed and its buffered changes were released; start a new writer (it rereads them from the stream)")
	}
	var err error
	w.pos, err = LoadProgress(ctx, w.store, w.log.Shards())
	if err != nil {
		return err
	}
	w.progress = delta.NewTable(w.store, ProgressPath)
	w.lastFlush = time.Now()
	if w.opts.OnProgress != nil {
		w.opts.OnProgress(append([]int64(nil), w.pos...)) // what is durable already
	}
	for {
		read := 0
		for s := 0; s < w.log.Shards(); s++ {
			n, err := w.readShard(ctx, s)
			if err != nil {
				return err
			}
			read += n
		}
		if w.buffered >= w.opts.FlushBytes || (time.Since(w.lastFlush) >= w.opts.FlushInterval) {
			// Flush even with nothing buffered only if records were consumed
			// (pos moved); otherwise just reset the timer.
			if err := w.flush(context.WithoutCancel(ctx)); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			if err := w.flush(context.WithoutCancel(ctx)); err != nil {
				return err
			}
			return nil
		}
		if read == 0 {
			w.wait(ctx)
		}
	}
}

// readPos is the next offset to read per shard (beyond the durable watermark).
func (w *Writer) readShard(ctx context.Context, s int) (int, error) {
	from := w.nextRead(s)
	recs, err := w.log.Read(ctx, s, from, w.opts.ReadBatch)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil
		}
		return 0, fmt.Errorf("bronze: read shard %d at %d: %w", s, from, err)
	}
	for _, r := range recs {
		data := append([]byte(nil), r.Data...) // Read's buffer is reused
		c, err := change.Decode(data, &w.relCache)
		if err != nil {
			return 0, fmt.Errorf("bronze: shard %d offset %d: %w", s, r.Offset, err)
		}
		t, err := w.table(ctx, c.Rel.Table)
		if err != nil {
			return 0, err
		}
		w.setRead(s, r.Offset+1)
		if r.Offset < t.done[s] {
			continue // already committed to this table before a restart
		}
		if err := w.buffer(ctx, t, c); err != nil {
			w.dropped = true
			return 0, err
		}
		t.maxOff[s] = r.Offset
		// What a flush covers, counted as the decoded size of the changes
		// (record bytes plus the Change and its datums): flush_bytes sizes
		// Bronze commits, hence Silver's micro-batches. The memory held is
		// far less (an Arrow chunk and compressed Parquet pages, see table).
		w.buffered += int64(len(data)) + 160 + 32*int64(len(c.New)+len(c.Old))
	}
	w.consumed.Add(int64(len(recs)))
	return len(recs), nil
}

// buffer adds one change to t's next commit: it extends the write schema
// for a relation not seen yet, appends the change to the Arrow chunk and
// hands a full chunk to the Parquet writer.
func (w *Writer) buffer(ctx context.Context, t *table, c *change.Change) error {
	if t.schema == nil {
		var have *delta.StructType
		if t.snap != nil {
			have, t.parts = t.snap.Schema(), t.snap.PartitionColumns()
		}
		schema, _, parts, err := evolve(have, []*change.Change{c}, w.opts.Types)
		if err != nil {
			return fmt.Errorf("bronze: table %s: %w", t.id, err)
		}
		if t.snap == nil {
			schema, parts = trimPartitions(schema, parts, w.opts.PartitionBy)
			t.parts = parts
		}
		t.schema, t.rels = schema, map[*change.Relation]bool{c.Rel: true}
	}
	if !t.rels[c.Rel] {
		schema, changed, _, err := evolve(t.schema, []*change.Change{c}, w.opts.Types)
		if err != nil {
			return fmt.Errorf("bronze: table %s: %w", t.id, err)
		}
		if changed {
			// New columns: the files written so far keep the old schema
			// (readers fill the missing columns with nulls).
			if err := w.closeFiles(t); err != nil {
				return err
			}
			t.schema = schema
		}
		t.rels[c.Rel] = true
	}
	if t.chunk == nil {
		rb, err := newRecBuilder(t.schema, t.parts)
		if err != nil {
			return fmt.Errorf("bronze: table %s: %w", t.id, err)
		}
		t.chunk = rb
	}
	if err := t.chunk.add(c); err != nil {
		return fmt.Errorf("bronze: %w", err)
	}
	t.lastRel = c.Rel
	t.rows++
	if t.chunk.rows >= chunkRows {
		return w.writeChunk(ctx, t)
	}
	return nil
}

// writeChunk hands the Arrow chunk to t's Parquet writer (opened on demand).
func (w *Writer) writeChunk(ctx context.Context, t *table) error {
	if t.chunk == nil || t.chunk.rows == 0 {
		return nil
	}
	rec := t.chunk.finish()
	defer rec.Release()
	t.chunk = nil
	if t.dw == nil {
		ti := datafile.TableInfo{Root: t.tbl.Root(), Schema: t.schema, PartitionColumns: t.parts}
		if t.snap != nil {
			ti.Config = t.snap.Config()
		}
		// Not cancelled with Run's ctx: the final flush of a clean stop
		// stores these files (flush runs without cancellation too).
		dw, err := datafile.NewWriter(context.WithoutCancel(ctx), w.store, ti, datafile.WriteOptions{TargetFileSize: w.opts.TargetFileSize, DataChange: true})
		if err != nil {
			return fmt.Errorf("bronze: write %s: %w", t.id, err)
		}
		t.dw = dw
	}
	if err := t.dw.Write(rec); err != nil {
		return fmt.Errorf("bronze: write %s: %w", t.id, err)
	}
	// The Parquet writer keeps a file's encoded pages until it closes:
	// store the file once it has taken fileBytes of Arrow data.
	t.dwBytes += recordBytes(rec)
	if t.dwBytes >= fileBytes {
		return w.closeFiles(t)
	}
	return nil
}

// fileBytes is the Arrow size of the rows after which a table's open Parquet
// files are stored (several files per commit), bounding what they hold.
const fileBytes = 32 << 20

func recordBytes(rec arrow.RecordBatch) int64 {
	var n int64
	var add func(d arrow.ArrayData)
	add = func(d arrow.ArrayData) {
		for _, b := range d.Buffers() {
			if b != nil {
				n += int64(b.Len())
			}
		}
		for _, c := range d.Children() {
			add(c)
		}
	}
	for _, c := range rec.Columns() {
		add(c.Data())
	}
	return n
}

// closeFiles writes the chunk, then stores t's open files and keeps their adds.
func (w *Writer) closeFiles(t *table) error {
	if err := w.writeChunk(context.Background(), t); err != nil {
		return err
	}
	if t.dw == nil {
		return nil
	}
	adds, err := t.dw.Close()
	t.dw, t.dwBytes = nil, 0
	if err != nil {
		return fmt.Errorf("bronze: write %s: %w", t.id, err)
	}
	t.adds = append(t.adds, adds...)
	return nil
}

// readAhead tracks how far each shard was read (beyond pos, which is durable).
func (w *Writer) nextRead(s int) int64 {
	if w.readTo == nil {
		w.readTo = append([]int64(nil), w.pos...)
	}
	return w.readTo[s]
}

func (w *Writer) setRead(s int, off int64) { w.readTo[s] = off }

func (w *Writer) wait(ctx context.Context) {
	if wt, ok := w.log.(interface {
		Wait(ctx context.Context, shard int, offset int64) error
	}); ok && w.log.Shards() == 1 {
		wctx, cancel := context.WithTimeout(ctx, w.opts.FlushInterval)
		defer cancel()
		_ = wt.Wait(wctx, 0, w.nextRead(0))
		return
	}
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (w *Writer) table(ctx context.Context, id change.TableID) (*table, error) {
	if t, ok := w.tables[id]; ok {
		return t, nil
	}
	t := &table{id: id, tbl: delta.NewTable(w.store, TablePath(id)), done: map[int]int64{}, maxOff: map[int]int64{}}
	snap, err := t.tbl.Snapshot(ctx)
	switch {
	case errors.Is(err, delta.ErrNotATable):
	case err != nil:
		return nil, fmt.Errorf("bronze: open table %s: %w", id, err)
	default:
		if err := snap.CanWrite(); err != nil {
			return nil, fmt.Errorf("bronze: table %s: %w", id, err)
		}
		t.snap = snap
		for s := 0; s < w.log.Shards(); s++ {
			if v, ok := snap.TxnVersion(AppID(s)); ok {
				t.done[s] = v
			}
		}
	}
	w.tables[id] = t
	return t, nil
}

// flush commits every buffered table, then the progress watermark.
func (w *Writer) flush(ctx context.Context) error {
	w.lastFlush = time.Now()
	moved := false
	for s := range w.pos {
		if w.nextRead(s) != w.pos[s] {
			moved = true
		}
	}
	if !moved {
		return nil
	}
	for _, t := range w.tables {
		if t.rows == 0 {
			continue
		}
		if err := w.commitTable(ctx, t); err != nil {
			w.dropped = true
			return err
		}
	}
	newPos := append([]int64(nil), w.readTo...)
	tx := w.progress.Begin(w.progressSnap(ctx))
	if w.progressSnapshot == nil {
		if err := w.createProgress(ctx); err != nil {
			return err
		}
		tx = w.progress.Begin(w.progressSnapshot)
	}
	for s, p := range newPos {
		tx.SetAppTxn(AppID(s), p)
	}
	if _, err := tx.Commit(ctx, "STREAMING UPDATE", map[string]any{"outputMode": "Append", "queryId": "silt-bronze-progress"}); err != nil {
		return fmt.Errorf("bronze: commit progress: %w", err)
	}
	snap, err := w.progress.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("bronze: read progress: %w", err)
	}
	w.progressSnapshot = snap
	w.pos = newPos
	w.buffered = 0
	if w.opts.OnProgress != nil {
		w.opts.OnProgress(append([]int64(nil), newPos...))
	}
	return nil
}

func (w *Writer) progressSnap(ctx context.Context) *delta.Snapshot {
	if w.progressSnapshot == nil {
		snap, err := w.progress.Snapshot(ctx)
		if err == nil {
			w.progressSnapshot = snap
		}
	}
	return w.progressSnapshot
}

func (w *Writer) createProgress(ctx context.Context) error {
	schema := &delta.StructType{Fields: []*delta.StructField{{Name: "shard", Type: delta.Integer, Nullable: true}}}
	snap, err := delta.CreateTable(ctx, w.progress, schema, nil, nil, "silt_bronze_progress")
	if err != nil {
		return fmt.Errorf("bronze: create progress table: %w", err)
	}
	w.progressSnapshot = snap
	return nil
}

func (w *Writer) commitTable(ctx context.Context, t *table) error {
	if t.snap == nil {
		// New table: created with the write schema and partitions; the data
		// commit follows.
		conf := map[string]string{"delta.appendOnly": "true", ConfPrimaryKey: strings.Join(keyNames(t.lastRel), ",")}
		snap, err := delta.CreateTable(ctx, t.tbl, t.schema, t.parts, conf, t.id.String())
		if err != nil {
			if !errors.Is(err, delta.ErrConflict) {
				return fmt.Errorf("bronze: create table %s: %w", t.id, err)
			}
			if snap, err = t.tbl.Snapshot(ctx); err != nil {
				return fmt.Errorf("bronze: create table %s: %w", t.id, err)
			}
		}
		if strings.Join(snap.PartitionColumns(), ",") != strings.Join(t.parts, ",") || snap.Schema().SchemaString() != t.schema.SchemaString() {
			return fmt.Errorf("bronze: table %s was created meanwhile by another writer with a different schema or partitioning: stop the other writer (one silt per lake), then restart", t.id)
		}
		t.snap = snap
	}
	if err := w.closeFiles(t); err != nil {
		return err
	}
	// The table schema is the union of every relation seen (new columns are
	// added as nullable columns: schema evolution in the same commit).
	schema := t.snap.Schema()
	newSchema, changed := t.schema, t.schema.SchemaString() != schema.SchemaString()
	tx := t.tbl.Begin(t.snap)
	pk := strings.Join(keyNames(t.lastRel), ",")
	if changed || t.snap.Config()[ConfPrimaryKey] != pk {
		md := *t.snap.Metadata
		md.SchemaString = newSchema.SchemaString()
		md.Configuration = map[string]string{}
		for k, v := range t.snap.Metadata.Configuration {
			md.Configuration[k] = v
		}
		md.Configuration[ConfPrimaryKey] = pk
		tx.SetMetadata(&md)
	}
	tx.Add(t.adds...)
	for s, off := range t.maxOff {
		tx.SetAppTxn(AppID(s), off+1)
	}
	v, err := tx.Commit(ctx, "STREAMING UPDATE", map[string]any{"outputMode": "Append", "queryId": "silt-bronze"})
	if err != nil {
		return fmt.Errorf("bronze: commit %s: %w", t.id, err)
	}
	snap, err := t.tbl.SnapshotAt(ctx, v)
	if err != nil {
		return fmt.Errorf("bronze: reload %s: %w", t.id, err)
	}
	t.snap = snap
	for s, off := range t.maxOff {
		t.done[s] = off + 1
	}
	if w.opts.OnCommit != nil {
		w.opts.OnCommit(t.id, v, t.rows)
	}
	t.maxOff = map[int]int64{}
	t.schema, t.rels, t.adds, t.rows = nil, nil, nil, 0
	return nil
}

// Partition columns of Bronze tables; a source column of the same name makes
// the table use the "_silt_" prefixed names instead.
var partitionNames = []string{"year", "month", "day", "hour"}

// trimPartitions keeps the partition columns of the granularity (hour: all
// four, day: three, month: two, none: zero) and drops the others from schema.
func trimPartitions(schema *delta.StructType, parts []string, by string) (*delta.StructType, []string) {
	keep := map[string]int{"": 4, "hour": 4, "day": 3, "month": 2, "none": 0}[by]
	if keep >= len(parts) {
		return schema, parts
	}
	drop := map[string]bool{}
	for _, p := range parts[keep:] {
		drop[p] = true
	}
	out := &delta.StructType{}
	for _, f := range schema.Fields {
		if !drop[f.Name] {
			out.Fields = append(out.Fields, f)
		}
	}
	return out, parts[:keep]
}

func partitionColumns(source *delta.StructType) []string {
	var out []string
	for _, n := range partitionNames {
		if source.Field(n) != nil {
			out = append(out, "_silt_"+n)
		} else {
			out = append(out, n)
		}
	}
	return out
}

// evolve returns the Bronze schema covering every relation in rows, starting
// from have (nil: new table), whether it differs from have, and for a new
// table its partition columns.
func evolve(have *delta.StructType, rows []*change.Change, types TypeResolver) (*delta.StructType, bool, []string, error) {
	out := &delta.StructType{}
	if have != nil {
		out.Fields = append(out.Fields, have.Fields...)
	}
	changed := false
	var seen *change.Relation
	for _, c := range rows {
		if c.Rel == seen {
			continue
		}
		seen = c.Rel
		for _, col := range c.Rel.Columns {
			dt := DeltaType(Resolve(types, col))
			name := FieldName(col.Name)
			if f := out.Field(name); f != nil {
				if f.Name != name {
					return nil, false, nil, fmt.Errorf("columns %q and %q of %s differ only in case; Delta column names are case-insensitive: rename one in the source", f.Name, name, c.Rel.Table)
				}
				if f.Type.TypeName() != dt.TypeName() {
					return nil, false, nil, fmt.Errorf("column %q changed type from %s to %s; silt cannot change a column's type in place yet: stop silt, rename or recreate the Bronze table %s, then restart", col.Name, f.Type.TypeName(), dt.TypeName(), c.Rel.Table)
				}
				continue
			}
			if strings.HasPrefix(strings.ToLower(name), "_silt_") {
				return nil, false, nil, fmt.Errorf("column %q uses the reserved prefix _silt_: rename it in the source", col.Name)
			}
			changed = true
			// Insert source columns before the metadata columns.
			md := map[string]any{}
			if name != col.Name {
				md["silt.sourceName"] = col.Name
			}
			f := &delta.StructField{Name: name, Type: dt, Nullable: true, Metadata: md}
			idx := len(out.Fields)
			for i, of := range out.Fields {
				if strings.HasPrefix(of.Name, "_silt_") {
					idx = i
					break
				}
			}
			out.Fields = append(out.Fields[:idx], append([]*delta.StructField{f}, out.Fields[idx:]...)...)
		}
	}
	var parts []string
	if have == nil {
		parts = partitionColumns(out)
		out.Fields = append(out.Fields,
			&delta.StructField{Name: ColOp, Type: delta.String, Nullable: false, Metadata: map[string]any{}},
			&delta.StructField{Name: ColLSN, Type: delta.Long, Nullable: false, Metadata: map[string]any{}},
			&delta.StructField{Name: ColPos, Type: delta.Long, Nullable: false, Metadata: map[string]any{}},
			&delta.StructField{Name: ColXID, Type: delta.Long, Nullable: false, Metadata: map[string]any{}},
			&delta.StructField{Name: ColCommitTS, Type: delta.Timestamp, Nullable: false, Metadata: map[string]any{}},
			&delta.StructField{Name: ColUnchanged, Type: delta.String, Nullable: true, Metadata: map[string]any{}},
		)
		for _, n := range parts {
			out.Fields = append(out.Fields, &delta.StructField{Name: n, Type: delta.Integer, Nullable: false, Metadata: map[string]any{}})
		}
		changed = true
	}
	return out, changed, parts, nil
}

// buildRecord turns changes into one Arrow record of the Bronze schema.
func buildRecord(schema *delta.StructType, partCols []string, rows []*change.Change) (arrow.RecordBatch, error) {
	rb, err := newRecBuilder(schema, partCols)
	if err != nil {
		return nil, err
	}
	for _, c := range rows {
		if err := rb.add(c); err != nil {
			rb.b.Release()
			return nil, err
		}
	}
	return rb.finish(), nil
}

// recBuilder appends changes to an Arrow record of the Bronze schema.
type recBuilder struct {
	schema   *delta.StructType
	b        *array.RecordBuilder
	idx      map[string]int // lower-case field name -> index
	partCols []string
	opB      *array.StringBuilder
	lsnB     *array.Int64Builder
	posB     *array.Int64Builder
	xidB     *array.Int64Builder
	tsB      *array.TimestampBuilder
	unB      *array.StringBuilder
	partB    []*array.Int32Builder
	// Per relation (the few distinct *Relation of a batch): the schema
	// field of each source column, and the fields the relation lacks (NULL).
	plans     map[*change.Relation]*recPlan
	unchanged []string
	rows      int
}

type recPlan struct {
	fields  []int
	missing []int
}

func newRecBuilder(schema *delta.StructType, partCols []string) (*recBuilder, error) {
	return newRecBuilderMem(schema, partCols, memory.DefaultAllocator)
}

// newRecBuilderMem is newRecBuilder with the builders' allocator.
func newRecBuilderMem(schema *delta.StructType, partCols []string, mem memory.Allocator) (*recBuilder, error) {
	as, err := datafile.ArrowSchema(schema)
	if err != nil {
		return nil, err
	}
	rb := &recBuilder{schema: schema, b: array.NewRecordBuilder(mem, as), idx: map[string]int{},
		partCols: partCols, plans: map[*change.Relation]*recPlan{}}
	for i, f := range schema.Fields {
		rb.idx[strings.ToLower(f.Name)] = i
	}
	b := rb.b
	rb.opB = b.Field(rb.field(ColOp)).(*array.StringBuilder)
	rb.lsnB = b.Field(rb.field(ColLSN)).(*array.Int64Builder)
	rb.posB = b.Field(rb.field(ColPos)).(*array.Int64Builder)
	rb.xidB = b.Field(rb.field(ColXID)).(*array.Int64Builder)
	rb.tsB = b.Field(rb.field(ColCommitTS)).(*array.TimestampBuilder)
	rb.unB = b.Field(rb.field(ColUnchanged)).(*array.StringBuilder)
	rb.partB = make([]*array.Int32Builder, len(partCols))
	for i, pn := range partCols {
		rb.partB[i] = b.Field(rb.field(pn)).(*array.Int32Builder)
	}
	return rb, nil
}

func (rb *recBuilder) field(name string) int { return rb.idx[strings.ToLower(name)] }

func (rb *recBuilder) planFor(rel *change.Relation) (*recPlan, error) {
	if pl, ok := rb.plans[rel]; ok {
		return pl, nil
	}
	pl := &recPlan{fields: make([]int, len(rel.Columns))}
	covered := make([]bool, len(rb.schema.Fields))
	for ci, colDef := range rel.Columns {
		fi, ok := rb.idx[strings.ToLower(FieldName(colDef.Name))]
		if !ok {
			return nil, fmt.Errorf("internal: column %q missing from schema", colDef.Name)
		}
		pl.fields[ci] = fi
		covered[fi] = true
	}
	for _, n := range []string{ColOp, ColLSN, ColPos, ColXID, ColCommitTS, ColUnchanged} {
		covered[rb.field(n)] = true
	}
	for _, pn := range rb.partCols {
		covered[rb.field(pn)] = true
	}
	for i, cv := range covered {
		if !cv {
			pl.missing = append(pl.missing, i) // dropped or not yet added
		}
	}
	rb.plans[rel] = pl
	return pl, nil
}

// add appends the Bronze row(s) of one change (two for a key change).
func (rb *recBuilder) add(c *change.Change) error {
	pl, err := rb.planFor(c.Rel)
	if err != nil {
		return err
	}
	switch c.Op {
	case change.OpInsert:
		err = rb.emit(c, pl, 'I', c.New)
	case change.OpUpdate:
		if c.Old != nil && keyChanged(c) {
			if err = rb.emit(c, pl, 'D', c.Old); err != nil {
				break
			}
		}
		err = rb.emit(c, pl, 'U', c.New)
	case change.OpDelete:
		err = rb.emit(c, pl, 'D', c.Old)
	case change.OpTruncate:
		err = rb.emit(c, pl, 'T', nil)
	case change.OpLoad: // snapshot row (internal/source/pgsnap)
		err = rb.emit(c, pl, 'L', c.New)
	default:
		err = fmt.Errorf("unknown op %v", c.Op)
	}
	if err == nil {
		rb.rows++
	}
	return err
}

func (rb *recBuilder) emit(c *change.Change, pl *recPlan, op byte, img []change.Datum) error {
	b, schema := rb.b, rb.schema
	rb.unchanged = rb.unchanged[:0]
	for ci, fi := range pl.fields {
		var d change.Datum
		if ci < len(img) {
			d = img[ci]
		}
		switch d.Kind {
		case change.Text:
			if err := AppendText(b.Field(fi), schema.Fields[fi].Type, d.Data); err != nil {
				return fmt.Errorf("table %s column %q: %w", c.Rel.Table, c.Rel.Columns[ci].Name, err)
			}
		case change.Binary:
			if err := AppendBinary(b.Field(fi), d.Data); err != nil {
				return fmt.Errorf("table %s column %q: %w", c.Rel.Table, c.Rel.Columns[ci].Name, err)
			}
		case change.Unchanged:
			rb.unchanged = append(rb.unchanged, schema.Fields[fi].Name)
			b.Field(fi).AppendNull()
		default:
			b.Field(fi).AppendNull()
		}
	}
	rb.opB.Append(opNames[op])
	rb.lsnB.Append(int64(c.LSN))
	rb.posB.Append(int64(c.Pos))
	rb.xidB.Append(int64(c.XID))
	rb.tsB.Append(arrow.Timestamp(c.CommitTime.UnixMicro()))
	if len(rb.unchanged) > 0 {
		rb.unB.Append(strings.Join(rb.unchanged, ","))
	} else {
		rb.unB.AppendNull()
	}
	if len(rb.partB) > 0 {
		ts := c.CommitTime.UTC()
		parts := [4]int32{int32(ts.Year()), int32(ts.Month()), int32(ts.Day()), int32(ts.Hour())}
		for pi, pb := range rb.partB {
			pb.Append(parts[pi])
		}
	}
	for _, i := range pl.missing {
		b.Field(i).AppendNull()
	}
	return nil
}

// finish returns the record of the rows added and frees the builder.
func (rb *recBuilder) finish() arrow.RecordBatch {
	rec := rb.b.NewRecordBatch()
	rb.b.Release()
	return rec
}

// ConfPrimaryKey is the table property that records the source key columns.
const ConfPrimaryKey = "silt.primaryKey"

// FieldName is the Delta column name of a source column (schema
// normalisation): the name as it is, except that characters Delta tables
// without column mapping cannot hold in a name (space , ; { } ( ) newline
// tab =) become '_'. The source name is kept in the field's metadata
// ("silt.sourceName"). Names are otherwise case-preserving; two source
// columns that differ only in case are an error (Delta names are
// case-insensitive).
func FieldName(col string) string {
	if !strings.ContainsAny(col, " ,;{}()\n\t=") {
		return col
	}
	b := []byte(col)
	for i, c := range b {
		switch c {
		case ' ', ',', ';', '{', '}', '(', ')', '\n', '\t', '=':
			b[i] = '_'
		}
	}
	return string(b)
}

func keyNames(r *change.Relation) []string {
	var out []string
	for _, c := range r.Columns {
		if c.Key {
			out = append(out, FieldName(c.Name))
		}
	}
	return out
}

// opNames are the _silt_op values, without a per-row allocation.
var opNames = [256]string{'I': "I", 'U': "U", 'D': "D", 'T': "T", 'L': "L"}

func keyChanged(c *change.Change) bool {
	for i, col := range c.Rel.Columns {
		if !col.Key || i >= len(c.Old) || i >= len(c.New) {
			continue
		}
		o, n := c.Old[i], c.New[i]
		if o.Kind == change.Absent || n.Kind == change.Unchanged {
			continue
		}
		if o.Kind != n.Kind || string(o.Data) != string(n.Data) {
			return true
		}
	}
	return false
}

package silver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

// Tombstones: the deleted-key memory that stops a late, older change from
// resurrecting a deleted row.
//
// When a micro-batch deletes a key, the key and the delete's (LSN, pos) are
// recorded. A later batch that finds no Silver row for a key consults the
// record: a change at or before the delete is stale and dropped; a newer
// change (a real re-insert) applies. Tombstones live in a Delta table per
// source table at <lake>/_silt/tombstones/<schema>/<table> (columns key,
// lsn, pos, deleted_at), written BEFORE the Silver commit of the same batch
// with txn(appId "silt-bronze", version = last Bronze version), so a crash
// between the two commits leaves tombstones for deletes Silver has not
// applied yet — harmless, since the retried batch applies those deletes.
// Tombstones older than Options.TombstoneRetention (by deleted_at) are
// dropped when the table is compacted (every 50 tombstone commits).

// TombstonePath is the key prefix of a table's tombstone table.
func TombstonePath(t change.TableID) string { return "_silt/tombstones/" + t.Schema + "/" + t.Name }

type tombstone struct {
	lsn, pos int64
	at       int64 // deleted_at, µs
}

// tombstones is the in-memory copy of one table's tombstone table.
type tombstones struct {
	mu      sync.Mutex
	table   *delta.Table
	snap    *delta.Snapshot
	m       map[string]tombstone
	commits int
}

var tombSchema = &delta.StructType{Fields: []*delta.StructField{
	{Name: "key", Type: delta.String, Nullable: false, Metadata: map[string]any{}},
	{Name: "lsn", Type: delta.Long, Nullable: false, Metadata: map[string]any{}},
	{Name: "pos", Type: delta.Long, Nullable: false, Metadata: map[string]any{}},
	{Name: "deleted_at", Type: delta.Timestamp, Nullable: false, Metadata: map[string]any{}},
}}

// loadTombstones reads a table's tombstones (empty when none exist yet).
func loadTombstones(ctx context.Context, store blob.Store, id change.TableID) (*tombstones, error) {
	ts := &tombstones{table: delta.NewTable(store, TombstonePath(id)), m: map[string]tombstone{}}
	snap, err := ts.table.Snapshot(ctx)
	if errors.Is(err, delta.ErrNotATable) {
		return ts, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tombstones %s: %w", id, err)
	}
	ts.snap = snap
	ti := datafile.Info(ts.table, snap)
	err = datafile.Scan(ctx, store, ti, snap.Files(), func(r arrow.RecordBatch) error {
		k := r.Column(0).(*array.String)
		l := r.Column(1).(*array.Int64)
		p := r.Column(2).(*array.Int64)
		at := r.Column(3).(*array.Timestamp)
		for i := 0; i < int(r.NumRows()); i++ {
			t := tombstone{l.Value(i), p.Value(i), int64(at.Value(i))}
			if old, ok := ts.m[k.Value(i)]; !ok || change.Less(change.LSN(old.lsn), uint32(old.pos), change.LSN(t.lsn), uint32(t.pos)) {
				ts.m[k.Value(i)] = t
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tombstones %s: %w", id, err)
	}
	return ts, nil
}

// get returns the key's tombstone.
func (ts *tombstones) get(key string) (tombstone, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.m[key]
	return t, ok
}

// size is the number of keys with a tombstone.
func (ts *tombstones) size() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.m)
}

// record commits new tombstones (and, every 50 commits, drops expired
// ones) with txn(appID, version); it is a no-op for a version already
// recorded.
func (ts *tombstones) record(ctx context.Context, store blob.Store, add map[string]tombstone, appID string, version int64, retention time.Duration, now time.Time) error {
	if len(add) == 0 {
		return nil
	}
	if ts.snap != nil {
		if v, ok := ts.snap.TxnVersion(appID); ok && v >= version {
			return nil
		}
	}
	ts.mu.Lock()
	for k, t := range add {
		if old, ok := ts.m[k]; !ok || change.Less(change.LSN(old.lsn), uint32(old.pos), change.LSN(t.lsn), uint32(t.pos)) {
			ts.m[k] = t
		}
	}
	compact := ts.commits > 0 && ts.commits%50 == 0
	rows := add
	if compact {
		cut := now.Add(-retention).UnixMicro()
		for k, t := range ts.m {
			if t.at < cut {
				delete(ts.m, k)
			}
		}
		rows = make(map[string]tombstone, len(ts.m))
		for k, t := range ts.m {
			rows[k] = t
		}
	}
	ts.mu.Unlock()
	if ts.snap == nil {
		snap, err := delta.CreateTable(ctx, ts.table, tombSchema, nil, nil, "silt_tombstones")
		if err != nil {
			return err
		}
		ts.snap = snap
	}
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	sort.Strings(keys) // sorted files keep key min/max tight
	as, err := datafile.ArrowSchema(tombSchema)
	if err != nil {
		return err
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, as)
	defer b.Release()
	for _, k := range keys {
		t := rows[k]
		b.Field(0).(*array.StringBuilder).Append(k)
		b.Field(1).(*array.Int64Builder).Append(t.lsn)
		b.Field(2).(*array.Int64Builder).Append(t.pos)
		b.Field(3).(*array.TimestampBuilder).Append(arrow.Timestamp(t.at))
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	ti := datafile.Info(ts.table, ts.snap)
	tx := ts.table.Begin(ts.snap)
	if rec.NumRows() > 0 {
		adds, err := datafile.Write(ctx, store, ti, rec, datafile.WriteOptions{DataChange: true})
		if err != nil {
			return err
		}
		tx.Add(adds...)
	}
	if compact {
		ms := now.UnixMilli()
		for _, f := range ts.snap.Files() {
			size := f.Size
			tx.Remove(&delta.Remove{Path: f.Path, DeletionTimestamp: &ms, DataChange: true, PartitionValues: f.PartitionValues, Size: &size})
		}
	}
	tx.SetAppTxn(appID, version)
	v, err := tx.Commit(ctx, "WRITE", map[string]any{"mode": "Append", "source": "silt tombstones"})
	if err != nil {
		return err
	}
	snap, err := ts.table.SnapshotAt(ctx, v)
	if err != nil {
		return err
	}
	ts.snap = snap
	ts.commits++
	return nil
}

package ops_test

import (
	"bytes"
	"errors"
	"slices"
	"sort"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"

	"github.com/silt-dev/silt/internal/blob/faulty"

	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/delta/ops"
)

// TestMergeStreamsLargeFile: a file of several read records (64Ki rows
// each, more than merge holds before writing speculatively) where the first
// dropped row is in the last record keeps every other row, and a merge
// whose keys are all kept (guard) rewrites nothing.
func TestMergeStreamsLargeFile(t *testing.T) {
	e := newEnv(t, false)
	const n = 300_000
	e.seed(n, n) // one file
	w := want(n)
	// Stale changes (guard lsn 0 <= 1): kept, nothing rewritten.
	res, err := e.merge(e.snapshot(), []string{"lsn"}, []row{{ID: 5, V: "stale", LSN: 0}, {ID: n - 3, V: "stale", LSN: 0}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Kept != 2 || res.FilesRewritten != 0 || res.Version != -1 {
		t.Fatalf("stale merge: %+v", res)
	}
	// Changes only in the last record, plus an insert.
	ups := []row{{ID: n - 10, Part: 1, V: "new", LSN: 2}, {ID: n + 1, Part: 0, V: "ins", LSN: 2}}
	res, err = e.merge(e.snapshot(), []string{"lsn"}, ups, []int64{n - 2}, []int64{2})
	if err != nil {
		t.Fatal(err)
	}
	if res.FilesRewritten != 1 || res.Updated != 1 || res.Inserted != 1 || res.Deleted != 1 || res.RowsCopied != n-2 {
		t.Fatalf("merge: %+v", res)
	}
	for _, u := range ups {
		w[u.ID] = u
	}
	delete(w, n-2)
	check(t, e.rowsAt(-1), w)
	// The rewritten file keeps the ascending ids DELTA_BINARY_PACKED.
	var big *delta.Add
	for _, f := range e.snapshot().Files() {
		if big == nil || f.Size > big.Size {
			big = f
		}
	}
	data, err := e.store.Get(e.ctx, "tbl/"+big.Path)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := pf.MetaData().RowGroup(0).ColumnChunk(0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cc.Encodings(), parquet.Encodings.DeltaBinaryPacked) {
		t.Fatalf("rewritten file's id column encodings %v, want DELTA_BINARY_PACKED", cc.Encodings())
	}
	pf.Close()
	// Changes in the first and the middle record.
	ups = []row{{ID: 0, Part: 0, V: "first", LSN: 3}, {ID: 150_000, Part: 0, V: "mid", LSN: 3}}
	if _, err = e.merge(e.snapshot(), []string{"lsn"}, ups, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, u := range ups {
		w[u.ID] = u
	}
	check(t, e.rowsAt(-1), w)
}

// TestOptimizeCompactsInGroups: a bin larger than one compaction group
// (64Ki rows) is read by several readers and written in file order.
func TestOptimizeCompactsInGroups(t *testing.T) {
	e := newEnv(t, false)
	const n, per = 150_000, 5_000
	e.seed(n, per)
	// Bins take files smallest first, then by path.
	before := e.snapshot()
	files := append([]*delta.Add(nil), before.Files()...)
	sort.SliceStable(files, func(i, j int) bool {
		if files[i].Size != files[j].Size {
			return files[i].Size < files[j].Size
		}
		return files[i].Path < files[j].Path
	})
	wantOrder := e.rowsIn(before, files)
	res, err := ops.Optimize(e.ctx, e.tbl, ops.OptimizeOptions{Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.FilesRemoved != n/per || res.FilesAdded != 1 {
		t.Fatalf("optimize: %+v", res)
	}
	check(t, e.rowsAt(-1), want(n))
	after := e.snapshot()
	got := e.rowsIn(after, after.Files())
	if len(got) != len(wantOrder) {
		t.Fatalf("read %d rows, want %d", len(got), len(wantOrder))
	}
	for i := range got {
		if got[i] != wantOrder[i] {
			t.Fatalf("row %d: id %d, want %d (rows out of the bin's file order)", i, got[i].ID, wantOrder[i].ID)
		}
	}
}

// rowsIn reads the ids of files' rows as stored, file by file.
func (e *env) rowsIn(s *delta.Snapshot, files []*delta.Add) []row {
	e.t.Helper()
	var out []row
	err := datafile.Scan(e.ctx, e.store, e.ti(s), files, func(r arrow.RecordBatch) error {
		for i := 0; i < int(r.NumRows()); i++ {
			out = append(out, row{ID: r.Column(0).(*array.Int64).Value(i)})
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// TestMergePipelineFailuresFreeEverything: a merge whose data-file write
// fails midway (the writer runs on its own goroutine) or whose read fails
// returns the store's error, commits nothing, and frees every Arrow
// buffer it allocated, including the records decoded ahead.
func TestMergePipelineFailuresFreeEverything(t *testing.T) {
	e := newEnv(t, false)
	const n = 300_000
	e.seed(n, n) // one file of several read records
	for _, tc := range []struct {
		name string
		rule faulty.StoreRule
	}{
		{"write", faulty.StoreRule{Op: faulty.OpPutIfAbsent, KeyContains: ".parquet", Times: 1, Err: faulty.ErrInjected}},
		{"read", faulty.StoreRule{Op: faulty.OpGet, KeyContains: ".parquet", Times: 1, Err: faulty.ErrInjected}}, // a small file: one Get
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := faulty.NewStore(e.store)
			fs.Add(tc.rule)
			tbl := delta.NewTable(fs, "tbl")
			snap, err := tbl.Snapshot(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
			ur := e.record([]row{{ID: 7, V: "new", LSN: 2}, {ID: n + 1, V: "ins", LSN: 2}})
			defer ur.Release()
			ch, err := ops.NewChanges(testSchema, []string{"id"}, nil, ur, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Release()
			// Small output files: the writer stores files while the
			// merge is still reading, so the failure hits mid-stream.
			_, err = ops.Merge(e.ctx, tbl, ops.MergeSpec{Keys: []string{"id"}, Changed: ch.Keys(), Decider: ch,
				Snapshot: snap, TargetFileSize: 256 << 10, Allocator: mem})
			if !errors.Is(err, faulty.ErrInjected) {
				t.Fatalf("merge: %v, want the injected fault", err)
			}
			mem.AssertSize(t, 0)
			if v := e.snapshot().Version; v != snap.Version {
				t.Fatalf("version %d after a failed merge, want %d", v, snap.Version)
			}
		})
	}
	check(t, e.rowsAt(-1), want(n))
}

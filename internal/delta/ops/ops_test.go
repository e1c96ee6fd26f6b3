package ops_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/delta/ops"
)

// row is one row of the test schema: id long, part int (partition
// column when the table is partitioned), v string, lsn long.
type row struct {
	ID   int64
	Part int32
	V    string
	LSN  int64
}

var testSchema = &delta.StructType{Fields: []*delta.StructField{
	{Name: "id", Type: delta.Long, Nullable: false, Metadata: map[string]any{}},
	{Name: "part", Type: delta.Integer, Nullable: true, Metadata: map[string]any{}},
	{Name: "v", Type: delta.String, Nullable: true, Metadata: map[string]any{}},
	{Name: "lsn", Type: delta.Long, Nullable: true, Metadata: map[string]any{}},
}}

type env struct {
	t     *testing.T
	ctx   context.Context
	dir   string
	store *local.Store
	tbl   *delta.Table
	parts []string
}

func newEnv(t *testing.T, partitioned bool) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.NoSync = true
	e := &env{t: t, ctx: context.Background(), dir: dir, store: st, tbl: delta.NewTable(st, "tbl")}
	if partitioned {
		e.parts = []string{"part"}
	}
	if _, err := delta.CreateTable(e.ctx, e.tbl, testSchema, e.parts, nil, "t"); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) record(rows []row) arrow.RecordBatch {
	as, err := datafile.ArrowSchema(testSchema)
	if err != nil {
		e.t.Fatal(err)
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, as)
	defer b.Release()
	for _, r := range rows {
		b.Field(0).(*array.Int64Builder).Append(r.ID)
		b.Field(1).(*array.Int32Builder).Append(r.Part)
		b.Field(2).(*array.StringBuilder).Append(r.V)
		b.Field(3).(*array.Int64Builder).Append(r.LSN)
	}
	return b.NewRecordBatch()
}

func (e *env) ti(s *delta.Snapshot) datafile.TableInfo {
	return datafile.Info(e.tbl, s)
}

// appendRows commits rows as one blind append (one file per partition).
func (e *env) appendRows(rows []row) int64 {
	e.t.Helper()
	s, err := e.tbl.Snapshot(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	rec := e.record(rows)
	defer rec.Release()
	adds, err := datafile.Write(e.ctx, e.store, e.ti(s), rec, datafile.WriteOptions{DataChange: true})
	if err != nil {
		e.t.Fatal(err)
	}
	tx := e.tbl.Begin(s)
	tx.Add(adds...)
	v, err := tx.Commit(e.ctx, "WRITE", map[string]any{"mode": "Append"})
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

// rowsAt reads every row at version (-1: latest), sorted by id.
func (e *env) rowsAt(version int64) []row {
	e.t.Helper()
	var s *delta.Snapshot
	var err error
	if version < 0 {
		s, err = e.tbl.Snapshot(e.ctx)
	} else {
		s, err = e.tbl.SnapshotAt(e.ctx, version)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var out []row
	err = datafile.Scan(e.ctx, e.store, e.ti(s), s.Files(), func(r arrow.RecordBatch) error {
		for i := 0; i < int(r.NumRows()); i++ {
			out = append(out, row{
				ID:   r.Column(0).(*array.Int64).Value(i),
				Part: r.Column(1).(*array.Int32).Value(i),
				V:    r.Column(2).(*array.String).Value(i),
				LSN:  r.Column(3).(*array.Int64).Value(i),
			})
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (e *env) snapshot() *delta.Snapshot {
	e.t.Helper()
	s, err := e.tbl.Snapshot(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func idRecord(ids []int64, lsns []int64) arrow.RecordBatch {
	sch := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "lsn", Type: arrow.PrimitiveTypes.Int64}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, sch)
	defer b.Release()
	b.Field(0).(*array.Int64Builder).AppendValues(ids, nil)
	b.Field(1).(*array.Int64Builder).AppendValues(lsns, nil)
	return b.NewRecordBatch()
}

// merge runs ops.Merge with a Changes source.
func (e *env) merge(snap *delta.Snapshot, guard []string, ups []row, dels []int64, delLSN []int64) (*ops.MergeResult, error) {
	e.t.Helper()
	var ur, dr arrow.RecordBatch
	if ups != nil {
		ur = e.record(ups)
		defer ur.Release()
	}
	if dels != nil {
		if delLSN == nil {
			delLSN = make([]int64, len(dels))
		}
		dr = idRecord(dels, delLSN)
		defer dr.Release()
	}
	ch, err := ops.NewChanges(testSchema, []string{"id"}, guard, ur, dr)
	if err != nil {
		return nil, err
	}
	defer ch.Release()
	return ops.Merge(e.ctx, e.tbl, ops.MergeSpec{Keys: []string{"id"}, Changed: ch.Keys(), Decider: ch, Snapshot: snap})
}

// seed writes ids 0..n-1 in files of per ids each (one commit per file).
func (e *env) seed(n, per int) {
	for lo := 0; lo < n; lo += per {
		var rows []row
		for id := lo; id < min(lo+per, n); id++ {
			rows = append(rows, row{ID: int64(id), Part: int32(id % 2), V: fmt.Sprintf("v%d", id), LSN: 1})
		}
		e.appendRows(rows)
	}
}

func want(n int) map[int64]row {
	m := map[int64]row{}
	for id := 0; id < n; id++ {
		m[int64(id)] = row{ID: int64(id), Part: int32(id % 2), V: fmt.Sprintf("v%d", id), LSN: 1}
	}
	return m
}

func check(t *testing.T, got []row, want map[int64]row) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d rows, want %d", len(got), len(want))
	}
	for _, r := range got {
		if w, ok := want[r.ID]; !ok || w != r {
			t.Fatalf("row %+v, want %+v (present %v)", r, w, ok)
		}
	}
}

func TestMergePrunesAndRewritesOnlyTouchedFiles(t *testing.T) {
	e := newEnv(t, false)
	e.seed(1000, 100) // 10 files: ids [0,100), [100,200), ...
	res, err := e.merge(nil, nil,
		[]row{{ID: 5, V: "new5", LSN: 2}, {ID: 1500, Part: 1, V: "ins", LSN: 2}},
		[]int64{250}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.FilesTotal != 10 || res.FilesCandidate != 2 || res.FilesRewritten != 2 {
		t.Fatalf("files: %+v, want 10 total, 2 candidates, 2 rewritten", res)
	}
	if res.Inserted != 1 || res.Updated != 1 || res.Deleted != 1 || res.RowsCopied != 198 {
		t.Fatalf("counts: %+v", res)
	}
	w := want(1000)
	w[5] = row{ID: 5, V: "new5", LSN: 2}
	w[1500] = row{ID: 1500, Part: 1, V: "ins", LSN: 2}
	delete(w, 250)
	check(t, e.rowsAt(-1), w)
	// History: the merge commit removes with dataChange=true.
	acts, err := e.tbl.ReadCommit(e.ctx, res.Version)
	if err != nil {
		t.Fatal(err)
	}
	var removes int
	for _, a := range acts {
		if a.Remove != nil {
			removes++
			if !a.Remove.DataChange || a.Remove.DeletionTimestamp == nil {
				t.Fatalf("remove %+v", a.Remove)
			}
		}
		if a.CommitInfo != nil && a.CommitInfo["operation"] != "MERGE" {
			t.Fatalf("operation %v", a.CommitInfo["operation"])
		}
	}
	if removes != 2 {
		t.Fatalf("%d removes", removes)
	}
}

func TestMergePartitionedKeyPrunesByPartitionValue(t *testing.T) {
	e := newEnv(t, true)
	e.seed(100, 100) // one commit, two partition files, both spanning ids 0..99
	s := e.snapshot()
	ur := e.record([]row{{ID: 4, Part: 0, V: "x", LSN: 2}})
	defer ur.Release()
	ch, err := ops.NewChanges(testSchema, []string{"part", "id"}, nil, ur, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Release()
	res, err := ops.Merge(e.ctx, e.tbl, ops.MergeSpec{Keys: []string{"part", "id"}, Changed: ch.Keys(), Decider: ch, Snapshot: s})
	if err != nil {
		t.Fatal(err)
	}
	if res.FilesCandidate != 1 || res.FilesRewritten != 1 || res.Updated != 1 {
		t.Fatalf("%+v", res)
	}
	w := want(100)
	w[4] = row{ID: 4, Part: 0, V: "x", LSN: 2}
	check(t, e.rowsAt(-1), w)
}

func TestMergeGuardKeepsNewerRowsAndSkipsRewrite(t *testing.T) {
	e := newEnv(t, false)
	e.appendRows([]row{{ID: 1, V: "a", LSN: 10}, {ID: 2, V: "b", LSN: 10}})
	res, err := e.merge(nil, []string{"lsn"},
		[]row{{ID: 1, V: "stale", LSN: 9}, {ID: 2, V: "same", LSN: 10}},
		[]int64{1}, []int64{5})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kept != 2 || res.FilesRewritten != 0 || res.Version != -1 {
		t.Fatalf("%+v", res)
	}
	res, err = e.merge(nil, []string{"lsn"}, []row{{ID: 2, V: "newer", LSN: 11}}, []int64{1}, []int64{12})
	if err != nil {
		t.Fatal(err)
	}
	if res.Updated != 1 || res.Deleted != 1 {
		t.Fatalf("%+v", res)
	}
	check(t, e.rowsAt(-1), map[int64]row{2: {ID: 2, V: "newer", LSN: 11}})
}

func TestChangesReducesPerKey(t *testing.T) {
	e := newEnv(t, false)
	e.appendRows([]row{{ID: 1, V: "a", LSN: 1}, {ID: 2, V: "b", LSN: 1}, {ID: 3, V: "c", LSN: 1}})
	// id 1: upsert 5, delete 4 -> upsert wins by guard. id 2: upsert 3,
	// upsert 7, delete 6 -> upsert 7. id 3: upsert 2, delete 8 -> delete.
	res, err := e.merge(nil, []string{"lsn"},
		[]row{{ID: 1, V: "u5", LSN: 5}, {ID: 2, V: "u3", LSN: 3}, {ID: 2, V: "u7", LSN: 7}, {ID: 3, V: "u2", LSN: 2}},
		[]int64{1, 2, 3}, []int64{4, 6, 8})
	if err != nil {
		t.Fatal(err)
	}
	if res.Updated != 2 || res.Deleted != 1 {
		t.Fatalf("%+v", res)
	}
	check(t, e.rowsAt(-1), map[int64]row{1: {ID: 1, V: "u5", LSN: 5}, 2: {ID: 2, V: "u7", LSN: 7}})
	// Without a guard: the last upsert wins and a delete beats upserts.
	res, err = e.merge(nil, nil, []row{{ID: 1, V: "x", LSN: 0}, {ID: 1, V: "y", LSN: 0}, {ID: 2, V: "z", LSN: 0}}, []int64{2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	check(t, e.rowsAt(-1), map[int64]row{1: {ID: 1, V: "y", LSN: 0}})
}

func TestMergeReplansAfterConcurrentOptimize(t *testing.T) {
	e := newEnv(t, false)
	e.seed(100, 10) // 10 small files
	stale := e.snapshot()
	ores, err := ops.Optimize(e.ctx, e.tbl, ops.OptimizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ores.FilesRemoved != 10 || ores.FilesAdded != 1 {
		t.Fatalf("optimize: %+v", ores)
	}
	// A merge planned on the snapshot before OPTIMIZE read files that
	// OPTIMIZE removed: ConcurrentDeleteRead, re-planned on the latest.
	res, err := e.merge(stale, nil, []row{{ID: 42, V: "x", LSN: 2}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 || res.Updated != 1 {
		t.Fatalf("%+v", res)
	}
	w := want(100)
	w[42] = row{ID: 42, V: "x", LSN: 2}
	check(t, e.rowsAt(-1), w)
}

func TestMergeDoesNotConflictWithBlindAppend(t *testing.T) {
	e := newEnv(t, false)
	e.seed(100, 50)
	s := e.snapshot()
	e.appendRows([]row{{ID: 500, V: "appended", LSN: 1}})
	res, err := e.merge(s, nil, []row{{ID: 1, V: "x", LSN: 2}}, []int64{60}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 1 {
		t.Fatalf("%+v", res)
	}
	w := want(100)
	w[1] = row{ID: 1, V: "x", LSN: 2}
	delete(w, 60)
	w[500] = row{ID: 500, V: "appended", LSN: 1}
	check(t, e.rowsAt(-1), w)
}

func TestMergeFailsOnSameAppIDConflict(t *testing.T) {
	e := newEnv(t, false)
	e.seed(10, 10)
	s := e.snapshot()
	tx := e.tbl.Begin(s)
	tx.SetAppTxn("app", 1)
	if _, err := tx.Commit(e.ctx, "STREAMING UPDATE", nil); err != nil {
		t.Fatal(err)
	}
	ur := e.record([]row{{ID: 1, V: "x"}})
	defer ur.Release()
	ch, err := ops.NewChanges(testSchema, []string{"id"}, nil, ur, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Release()
	_, err = ops.Merge(e.ctx, e.tbl, ops.MergeSpec{Keys: []string{"id"}, Changed: ch.Keys(), Decider: ch, Snapshot: s, AppID: "app", AppVersion: 2})
	var ce *delta.ConflictError
	if !errors.As(err, &ce) || ce.Kind != delta.ConflictConcurrentTransaction {
		t.Fatalf("err = %v, want ConcurrentTransaction", err)
	}
}

func TestMergeTruncate(t *testing.T) {
	e := newEnv(t, true)
	e.seed(100, 25)
	ur := e.record([]row{{ID: 7, V: "after", LSN: 3}})
	defer ur.Release()
	ch, err := ops.NewChanges(testSchema, []string{"id"}, nil, ur, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Release()
	res, err := ops.Merge(e.ctx, e.tbl, ops.MergeSpec{Keys: []string{"id"}, Changed: ch.Keys(), Decider: ch, Truncate: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.FilesRewritten != 8 || res.Inserted != 1 {
		t.Fatalf("%+v", res)
	}
	check(t, e.rowsAt(-1), map[int64]row{7: {ID: 7, V: "after", LSN: 3}})
}

func TestOptimizeBinPacksPerPartition(t *testing.T) {
	e := newEnv(t, true)
	e.seed(1000, 50) // 20 commits x 2 partitions = 40 small files
	before := e.snapshot()
	if len(before.Files()) != 40 {
		t.Fatalf("%d files", len(before.Files()))
	}
	res, err := ops.Optimize(e.ctx, e.tbl, ops.OptimizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.FilesRemoved != 40 || res.FilesAdded != 2 || res.Partitions != 2 {
		t.Fatalf("%+v", res)
	}
	check(t, e.rowsAt(-1), want(1000))
	acts, err := e.tbl.ReadCommit(e.ctx, res.Version)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acts {
		switch {
		case a.Add != nil && a.Add.DataChange, a.Remove != nil && a.Remove.DataChange:
			t.Fatalf("OPTIMIZE action with dataChange=true: %+v %+v", a.Add, a.Remove)
		case a.CommitInfo != nil:
			if a.CommitInfo["operation"] != "OPTIMIZE" || a.CommitInfo["isBlindAppend"] != false {
				t.Fatalf("commitInfo %v", a.CommitInfo)
			}
		}
	}
	// Nothing left to do: no commit.
	res, err = ops.Optimize(e.ctx, e.tbl, ops.OptimizeOptions{})
	if err != nil || res.Version != -1 {
		t.Fatalf("second optimize: %+v, %v", res, err)
	}
	// A partition filter limits the work to matching partitions.
	e.seed(100, 10)
	f, err := ops.ParsePartitionFilter("part = 1")
	if err != nil {
		t.Fatal(err)
	}
	res, err = ops.Optimize(e.ctx, e.tbl, ops.OptimizeOptions{Filter: f, MinFileSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	// The 10 new files of partition 1 and its earlier compacted file.
	if res.Partitions != 1 || res.FilesRemoved != 11 {
		t.Fatalf("filtered: %+v", res)
	}
}

func TestOptimizeNeverConflictsWithBlindAppend(t *testing.T) {
	e := newEnv(t, false)
	e.seed(100, 10)
	s := e.snapshot()
	e.appendRows([]row{{ID: 1000, V: "late", LSN: 1}})
	res, err := ops.Optimize(e.ctx, e.tbl, ops.OptimizeOptions{Snapshot: s})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 1 || res.FilesRemoved != 10 {
		t.Fatalf("%+v", res)
	}
	w := want(100)
	w[1000] = row{ID: 1000, V: "late", LSN: 1}
	check(t, e.rowsAt(-1), w)
	if n := len(e.snapshot().Files()); n != 2 {
		t.Fatalf("%d files, want the compacted one and the appended one", n)
	}
}

func TestOptimizeReplansAfterConcurrentMerge(t *testing.T) {
	e := newEnv(t, false)
	e.seed(100, 10)
	s := e.snapshot()
	if _, err := e.merge(nil, nil, []row{{ID: 3, V: "m", LSN: 2}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	res, err := ops.Optimize(e.ctx, e.tbl, ops.OptimizeOptions{Snapshot: s})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 {
		t.Fatalf("%+v", res)
	}
	w := want(100)
	w[3] = row{ID: 3, V: "m", LSN: 2}
	check(t, e.rowsAt(-1), w)
}

func TestParsePartitionFilter(t *testing.T) {
	f, err := ops.ParsePartitionFilter(`year = 2026 AND month >= '3', region<>"eu" and day IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(f.Terms)
	wantS := "[{year = 2026} {month >= 3} {region != eu} {day notnull }]"
	if got != wantS {
		t.Fatalf("got %s, want %s", got, wantS)
	}
	for _, bad := range []string{"year", "x ~ 1", "a = 1 AND"} {
		if _, err := ops.ParsePartitionFilter(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	e := newEnv(t, false)
	f, _ = ops.ParsePartitionFilter("v = 'x'")
	if _, err := ops.Optimize(e.ctx, e.tbl, ops.OptimizeOptions{Filter: f}); err == nil || !strings.Contains(err.Error(), "not a partition column") {
		t.Fatalf("err = %v", err)
	}
}

// setOld backdates every data file (not the log) to ts.
func (e *env) setOld(ts time.Time) {
	e.t.Helper()
	root := filepath.Join(e.dir, "tbl")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.Contains(p, "_delta_log") {
			return nil
		}
		return os.Chtimes(p, ts, ts)
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) dataFiles() map[string]bool {
	e.t.Helper()
	infos, err := e.store.List(e.ctx, "tbl/")
	if err != nil {
		e.t.Fatal(err)
	}
	m := map[string]bool{}
	for _, in := range infos {
		rel := strings.TrimPrefix(in.Key, "tbl/")
		if !strings.HasPrefix(rel, "_delta_log/") {
			m[rel] = true
		}
	}
	return m
}

func TestVacuum(t *testing.T) {
	e := newEnv(t, true)
	e.seed(200, 50)
	v1 := e.snapshot().Version
	if _, err := ops.Optimize(e.ctx, e.tbl, ops.OptimizeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.merge(nil, nil, []row{{ID: 1, V: "x", LSN: 2}}, []int64{2}, nil); err != nil {
		t.Fatal(err)
	}
	// Files nobody references: an orphan of a failed write, and files
	// VACUUM must never touch.
	for _, k := range []string{"tbl/part=0/orphan.parquet", "tbl/_hidden/x.parquet", "tbl/.keep", "tbl/part=1/_SUCCESS"} {
		if err := e.store.Put(e.ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	all := e.dataFiles()
	live := map[string]bool{}
	for _, f := range e.snapshot().Files() {
		p, _ := delta.DecodePath(f.Path)
		live[p] = true
	}

	// Everything is younger than 7 days: nothing goes.
	res, err := ops.Vacuum(e.ctx, e.tbl, ops.VacuumOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 0 {
		t.Fatalf("deleted young files: %v", res.Files)
	}
	// Shorter than the table's retention: refused unless forced.
	if _, err := ops.Vacuum(e.ctx, e.tbl, ops.VacuumOptions{Retain: time.Hour}); !errors.Is(err, ops.ErrRetentionTooShort) {
		t.Fatalf("err = %v", err)
	}
	// Eight days later, files backdated: the removed files and the orphan
	// go; live and hidden files stay.
	later := time.Now().Add(8 * 24 * time.Hour)
	e.setOld(time.Now().Add(-time.Hour))
	res, err = ops.Vacuum(e.ctx, e.tbl, ops.VacuumOptions{DryRun: true, Now: func() time.Time { return later }})
	if err != nil {
		t.Fatal(err)
	}
	var wantDel []string
	for p := range all {
		if !live[p] && !strings.HasPrefix(p, "_hidden/") && p != ".keep" && p != "part=1/_SUCCESS" {
			wantDel = append(wantDel, p)
		}
	}
	sort.Strings(wantDel)
	if fmt.Sprint(res.Files) != fmt.Sprint(wantDel) {
		t.Fatalf("dry run lists %v\nwant %v", res.Files, wantDel)
	}
	if len(e.dataFiles()) != len(all) {
		t.Fatal("dry run deleted files")
	}
	if _, err := ops.Vacuum(e.ctx, e.tbl, ops.VacuumOptions{Now: func() time.Time { return later }}); err != nil {
		t.Fatal(err)
	}
	after := e.dataFiles()
	for _, p := range wantDel {
		if after[p] {
			t.Fatalf("%s not deleted", p)
		}
	}
	for p := range live {
		if !after[p] {
			t.Fatalf("live file %s deleted", p)
		}
	}
	for _, p := range []string{"_hidden/x.parquet", ".keep", "part=1/_SUCCESS"} {
		if !after[p] {
			t.Fatalf("hidden file %s deleted", p)
		}
	}
	w := want(200)
	w[1] = row{ID: 1, Part: 0, V: "x", LSN: 2}
	delete(w, 2)
	check(t, e.rowsAt(-1), w)
	_ = v1
}

// A file removed by a commit inside the window stays even when its
// tombstone's deletionTimestamp claims it is old (a writer with a skewed
// clock): time travel to the version before that commit keeps working.
func TestVacuumKeepsFilesOfVersionsInsideWindow(t *testing.T) {
	e := newEnv(t, false)
	e.seed(100, 10)
	before := e.snapshot().Version
	e.tbl.SetClock(func() time.Time { return time.Now().Add(-30 * 24 * time.Hour) })
	if _, err := ops.Optimize(e.ctx, e.tbl, ops.OptimizeOptions{Now: func() time.Time { return time.Now().Add(-30 * 24 * time.Hour) }}); err != nil {
		t.Fatal(err)
	}
	e.tbl.SetClock(time.Now)
	e.setOld(time.Now().Add(-20 * 24 * time.Hour))
	res, err := ops.Vacuum(e.ctx, e.tbl, ops.VacuumOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 0 {
		t.Fatalf("deleted %v: version %d (inside the window) needs them", res.Files, before)
	}
	check(t, e.rowsAt(before), want(100))
	// Once the commit itself is older than the window, they go.
	res, err = ops.Vacuum(e.ctx, e.tbl, ops.VacuumOptions{Now: func() time.Time { return time.Now().Add(8 * 24 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 10 {
		t.Fatalf("deleted %d files, want 10", len(res.Files))
	}
	check(t, e.rowsAt(-1), want(100))
}

func TestVacuumRetentionProperty(t *testing.T) {
	dir := t.TempDir()
	st, _ := local.New(dir)
	tbl := delta.NewTable(st, "")
	ctx := context.Background()
	if _, err := delta.CreateTable(ctx, tbl, testSchema, nil, map[string]string{"delta.deletedFileRetentionDuration": "interval 2 days"}, ""); err != nil {
		t.Fatal(err)
	}
	res, err := ops.Vacuum(ctx, tbl, ops.VacuumOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Retention != 48*time.Hour {
		t.Fatalf("retention %s", res.Retention)
	}
	if _, err := ops.Vacuum(ctx, tbl, ops.VacuumOptions{Retain: time.Hour, Force: true, DryRun: true}); err != nil {
		t.Fatal(err)
	}
}

// TestZOrderReducesFilesScanned writes rows in random order, Z-orders them
// by (x, y) and counts, for range filters on x and on y, the files whose
// min/max stats overlap the range, before and after.
func TestZOrderReducesFilesScanned(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, _ := local.New(dir)
	st.NoSync = true
	tbl := delta.NewTable(st, "")
	schema := &delta.StructType{Fields: []*delta.StructField{
		{Name: "x", Type: delta.Long, Nullable: true, Metadata: map[string]any{}},
		{Name: "y", Type: delta.Long, Nullable: true, Metadata: map[string]any{}},
		{Name: "s", Type: delta.String, Nullable: true, Metadata: map[string]any{}},
	}}
	snap, err := delta.CreateTable(ctx, tbl, schema, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	ti := datafile.TableInfo{Schema: schema}
	as, _ := datafile.ArrowSchema(schema)
	rng := rand.New(rand.NewPCG(1, 2))
	const files, perFile = 32, 4000
	tx := tbl.Begin(snap)
	for f := 0; f < files; f++ {
		b := array.NewRecordBuilder(memory.DefaultAllocator, as)
		for i := 0; i < perFile; i++ {
			b.Field(0).(*array.Int64Builder).Append(rng.Int64N(100000))
			b.Field(1).(*array.Int64Builder).Append(rng.Int64N(1000))
			b.Field(2).(*array.StringBuilder).Append(fmt.Sprintf("row-%d-%d", f, i))
		}
		rec := b.NewRecordBatch()
		adds, err := datafile.Write(ctx, st, ti, rec, datafile.WriteOptions{DataChange: true})
		rec.Release()
		b.Release()
		if err != nil {
			t.Fatal(err)
		}
		tx.Add(adds...)
	}
	if _, err := tx.Commit(ctx, "WRITE", nil); err != nil {
		t.Fatal(err)
	}
	scanned := func(col string, lo, hi int64) (int, int) {
		s, err := tbl.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, f := range s.Files() {
			var st delta.Stats
			if err := jsonUnmarshal(f.Stats, &st); err != nil {
				t.Fatal(err)
			}
			mn, mx := toInt(st.MinValues[col]), toInt(st.MaxValues[col])
			if mx >= lo && mn <= hi {
				n++
			}
		}
		return n, len(s.Files())
	}
	type q struct {
		col    string
		lo, hi int64
	}
	queries := []q{{"x", 10000, 14999}, {"y", 100, 149}}
	var before []int
	for _, qq := range queries {
		n, _ := scanned(qq.col, qq.lo, qq.hi)
		before = append(before, n)
	}
	// Target size chosen so the 128k rows land in about as many files (27:
	// at 18 the y query sat at exactly half, where file boundaries a chunk
	// apart decide).
	res, err := ops.Optimize(ctx, tbl, ops.OptimizeOptions{ZOrderBy: []string{"x", "y"}, TargetFileSize: 32 << 10, MinFileSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	for i, qq := range queries {
		after, total := scanned(qq.col, qq.lo, qq.hi)
		t.Logf("Z-ORDER BY (x, y): filter %s in [%d, %d] (5%% of the range): files scanned %d of %d before, %d of %d after (%.0f%% fewer)",
			qq.col, qq.lo, qq.hi, before[i], files, after, total, 100*(1-float64(after)/float64(total)*float64(files)/float64(before[i])))
		if after*files >= before[i]*total/2 {
			t.Errorf("z-order did not halve the share of files scanned for %s: %d/%d -> %d/%d", qq.col, before[i], files, after, total)
		}
	}
	if res.FilesRemoved != files {
		t.Fatalf("%+v", res)
	}
	// Same rows after.
	s, _ := tbl.Snapshot(ctx)
	var n int64
	if err := datafile.Scan(ctx, st, ti, s.Files(), func(r arrow.RecordBatch) error { n += r.NumRows(); return nil }); err != nil {
		t.Fatal(err)
	}
	if n != files*perFile {
		t.Fatalf("%d rows after z-order", n)
	}
}

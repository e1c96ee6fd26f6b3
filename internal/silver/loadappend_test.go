package silver_test

import (
	"context"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/silver"
	"github.com/silt-dev/silt/internal/stream"
)

// loadAll runs ProcessLoad one Bronze version per batch until caught up
// and returns the rows appended without MERGE and the batches merged.
func loadAll(t *testing.T, h *harness, opts silver.Options) (appended, merged int) {
	t.Helper()
	return loadTable(t, h, rel.Table, opts)
}

// loadTable is loadAll for table.
func loadTable(t *testing.T, h *harness, table change.TableID, opts silver.Options) (appended, merged int) {
	t.Helper()
	if opts.MaxVersionsPerBatch == 0 {
		opts.MaxVersionsPerBatch = 1
	}
	p := silver.New(h.store, opts)
	for {
		res, err := p.ProcessLoad(context.Background(), table)
		if err != nil {
			t.Fatal(err)
		}
		if res.ToVersion < 0 {
			break
		}
		appended += res.LoadAppended
		if res.LoadAppended == 0 && res.Changes > 0 {
			merged++
		}
	}
	return appended, merged
}

func keyRow(id int, v string) []change.Datum {
	return []change.Datum{txt(strconv.Itoa(id)), txt(v), null}
}

// TestSilverLoadAppendFresh: a fresh load whose chunks hold disjoint key
// ranges is written as plain appends (no MERGE commit, no file read or
// removed), with the rows MERGE gives, and replaying it changes nothing.
func TestSilverLoadAppendFresh(t *testing.T) {
	chunks := func(h *harness) {
		h.load(99, 0, keyRow(1, "a"), keyRow(2, "b"), keyRow(3, "c"))
		h.bronze()
		h.load(99, 2, keyRow(7, "g"), keyRow(8, "h")) // chunks land out of order
		h.bronze()
		h.load(99, 1, keyRow(4, "d"), keyRow(5, "e"), keyRow(6, "f"))
		h.bronze()
	}
	h := newHarness(t)
	chunks(h)
	_, flat0 := silver.LoadAppendedRows()
	appended, merged := loadAll(t, h, silver.Options{})
	if _, flat := silver.LoadAppendedRows(); flat-flat0 != 8 {
		t.Errorf("%d rows appended through the flat path, want 8", flat-flat0)
	}
	if appended != 8 || merged != 0 {
		t.Fatalf("appended %d rows, merged %d batches; want 8 appended, none merged", appended, merged)
	}
	expect(t, h.rows(), "1,a,NULL", "2,b,NULL", "3,c,NULL", "4,d,NULL", "5,e,NULL", "6,f,NULL", "7,g,NULL", "8,h,NULL")
	// All three Bronze versions in one batch: appended too.
	h1 := newHarness(t)
	chunks(h1)
	appended, merged = loadAll(t, h1, silver.Options{MaxVersionsPerBatch: 50, LoadArrow: true}) // from Arrow records
	if appended != 8 || merged != 0 {
		t.Fatalf("appended %d rows, merged %d batches; want 8 appended, none merged", appended, merged)
	}
	want := []string{"1,a,NULL", "2,b,NULL", "3,c,NULL", "4,d,NULL", "5,e,NULL", "6,f,NULL", "7,g,NULL", "8,h,NULL"}
	expect(t, h1.rows(), want...)

	// The commits only added files, each committed with its txn.
	st := delta.NewTable(h.store, silver.TablePath(rel.Table))
	snap, err := st.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := snap.TxnVersion(silver.LoadAppID); !ok || v < 2 {
		t.Fatalf("txn %s = %d, %v", silver.LoadAppID, v, ok)
	}
	for v := int64(1); v <= snap.Version; v++ {
		acts, err := st.ReadCommit(context.Background(), v)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range acts {
			if a.Remove != nil && a.Remove.DataChange {
				t.Fatalf("version %d removes %s", v, a.Remove.Path)
			}
			if a.CommitInfo != nil && a.CommitInfo["operation"] == "MERGE" {
				t.Fatalf("version %d is a MERGE", v)
			}
		}
	}
	// The same Bronze versions through MERGE give the same rows.
	h2 := newHarness(t)
	chunks(h2)
	if appended, _ := loadAll(t, h2, silver.Options{LoadMerge: true}); appended != 0 {
		t.Fatalf("LoadMerge appended %d rows", appended)
	}
	expect(t, h2.rows(), want...)

	// Replay: nothing to do, nothing changes.
	if appended, merged := loadAll(t, h, silver.Options{}); appended != 0 || merged != 0 {
		t.Fatalf("replay appended %d, merged %d", appended, merged)
	}
	expect(t, h.rows(), want...)
}

// TestSilverLoadAppendNotNew: load batches whose keys are not all new to
// Silver are merged, never appended (an append would leave two rows for a
// key or bring back a deleted one); each case is checked with MERGE forced
// too, which must give the same rows.
func TestSilverLoadAppendNotNew(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(h *harness)
		want  []string
		// merged: batches that must have gone through MERGE.
		merged int
	}{
		{
			// A re-planned table (new generation) copies keys Silver has
			// from an earlier generation's chunks: the later chunk
			// (higher pos) wins, as MERGE decides.
			name: "restarted generation",
			setup: func(h *harness) {
				h.load(99, 0, keyRow(1, "a"), keyRow(2, "a"), keyRow(3, "a"))
				h.bronze()
				h.load(99, 1, keyRow(2, "b"), keyRow(3, "b"), keyRow(4, "b"))
				h.bronze()
			},
			want:   []string{"1,a,NULL", "2,b,NULL", "3,b,NULL", "4,b,NULL"},
			merged: 1,
		},
		{
			// A key in two chunks of one batch (a row an update moved
			// between chunks read at different snapshots).
			name: "key twice in a batch",
			setup: func(h *harness) {
				h.load(99, 0, keyRow(5, "x"), keyRow(6, "x"))
				h.load(99, 1, keyRow(5, "y"))
				h.bronze()
			},
			want:   []string{"5,y,NULL", "6,x,NULL"},
			merged: 1,
		},
		{
			// The key was deleted (logged change merged before the
			// snapshot rows: a Bronze table that held changes first): its
			// tombstone makes the older snapshot row stale.
			name: "tombstone",
			setup: func(h *harness) {
				h.txn(&change.Change{Op: change.OpDelete, Old: []change.Datum{txt("7"), {Kind: change.Absent}, {Kind: change.Absent}}})
				h.bronze()
				if h.silver() == 0 {
					h.t.Fatal("no silver batch for the delete")
				}
				h.load(99, 0, keyRow(7, "old"), keyRow(8, "z"))
				h.bronze()
			},
			want:   []string{"8,z,NULL"},
			merged: 1,
		},
		{
			// Snapshot rows that went through the stream share a Bronze
			// file with logged changes.
			name: "mixed file",
			setup: func(h *harness) {
				h.load(99, 0, keyRow(9, "s"))
				h.txn(&change.Change{Op: change.OpInsert, New: keyRow(10, "i")})
				h.bronze()
			},
			want:   []string{"9,s,NULL"},
			merged: 1,
		},
		{
			// Silver rows Bronze does not show as snapshot rows of this
			// load (rows merged from logged changes): same key range.
			name: "rows already in silver",
			setup: func(h *harness) {
				h.txn(&change.Change{Op: change.OpInsert, New: keyRow(11, "new")})
				h.bronze()
				h.silver()
				h.load(99, 0, keyRow(11, "old"), keyRow(12, "o"))
				h.bronze()
			},
			// The snapshot row is older than the logged insert: stale.
			want:   []string{"11,new,NULL", "12,o,NULL"},
			merged: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One Bronze version per batch, all in one batch, MERGE forced.
			for _, o := range []silver.Options{{}, {MaxVersionsPerBatch: 50}, {LoadMerge: true}} {
				h := newHarness(t)
				tc.setup(h)
				_, merged := loadAll(t, h, o)
				if !o.LoadMerge && merged != tc.merged {
					t.Errorf("%+v: %d batches merged, want %d", o, merged, tc.merged)
				}
				expect(t, h.rows(), tc.want...)
			}
		})
	}
}

// rel2 has a composite text key (a, b).
var rel2 = &change.Relation{ID: 2, Table: change.TableID{Schema: "public", Name: "t2"}, Columns: []change.Column{
	{Name: "a", TypeOID: 25, TypeMod: -1, Key: true},
	{Name: "b", TypeOID: 25, TypeMod: -1, Key: true},
	{Name: "v", TypeOID: 25, TypeMod: -1},
}}

// loadRel appends snapshot rows of r at LSN lsn, position pos.
func (h *harness) loadRel(r *change.Relation, lsn change.LSN, pos uint32, rows ...[]change.Datum) {
	var entries []stream.Entry
	for _, row := range rows {
		c := &change.Change{Rel: r, Op: change.OpLoad, LSN: lsn, Pos: pos, EndLSN: lsn, CommitTime: time.Unix(1767225600, 0), New: row}
		entries = append(entries, stream.Entry{PartitionKey: row[0].Data, Data: change.AppendEncode(nil, c)})
	}
	if err := h.Log.Append(context.Background(), entries); err != nil {
		h.t.Fatal(err)
	}
}

// rowsOf is table's Silver rows as their first three columns joined by
// commas, sorted.
func (h *harness) rowsOf(table change.TableID) []string {
	tb := delta.NewTable(h.store, silver.TablePath(table))
	snap, err := tb.Snapshot(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	err = datafile.Scan(context.Background(), h.store, datafile.Info(tb, snap), snap.Files(), func(r arrow.RecordBatch) error {
		for i := range int(r.NumRows()) {
			out = append(out, r.Column(0).ValueStr(i)+","+r.Column(1).ValueStr(i)+","+r.Column(2).ValueStr(i))
		}
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TestSilverLoadAppendCompositeStringKeys: text keys, composite keys that
// differ only in their second column, and keys longer than the 32
// characters string stats keep (multi-byte ones): a batch is appended only
// when its keys are new, and every run gives the rows MERGE gives.
func TestSilverLoadAppendCompositeStringKeys(t *testing.T) {
	long := strings.Repeat("é", 40)
	longer := strings.Repeat("é", 31) + "ê" // the truncated max stat of long's file
	for _, tc := range []struct {
		name   string
		chunks [][][3]string // one Bronze version each, chunk i at pos i
		want   []string
		merged int // batches merged, one Bronze version per batch
	}{
		{
			name:   "second key column differs",
			chunks: [][][3]string{{{"k", "1", "a"}}, {{"k", "2", "b"}}},
			want:   []string{"k,1,a", "k,2,b"},
		},
		{
			name:   "same composite key again",
			chunks: [][][3]string{{{"k", "1", "a"}, {"k", "3", "a"}}, {{"k", "2", "b"}}, {{"k", "3", "c"}}},
			want:   []string{"k,1,a", "k,2,b", "k,3,c"},
			merged: 2, // (k, 2) lies within the first file's ranges of both columns
		},
		{
			name:   "long multi-byte key again",
			chunks: [][][3]string{{{long, "1", "a"}}, {{long, "1", "b"}}},
			want:   []string{long + ",1,b"},
			merged: 1,
		},
		{
			name:   "key equal to a truncated max stat",
			chunks: [][][3]string{{{long, "1", "a"}, {longer, "1", "a"}}, {{longer, "1", "b"}}},
			want:   []string{long + ",1,a", longer + ",1,b"},
			merged: 1,
		},
		{
			name:   "key above a truncated max stat",
			chunks: [][][3]string{{{long, "1", "a"}}, {{longer + "x", "1", "b"}}},
			want:   []string{long + ",1,a", longer + "x,1,b"},
			merged: 1, // the 32-character max proves nothing
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, o := range []silver.Options{{MaxVersionsPerBatch: 1}, {MaxVersionsPerBatch: 50}, {LoadMerge: true}} {
				h := newHarness(t)
				for i, c := range tc.chunks {
					for _, r := range c {
						h.loadRel(rel2, 99, uint32(i), []change.Datum{txt(r[0]), txt(r[1]), txt(r[2])})
					}
					h.bronze()
				}
				_, merged := loadTable(t, h, rel2.Table, o)
				if o.MaxVersionsPerBatch == 1 && merged != tc.merged {
					t.Errorf("%d batches merged, want %d", merged, tc.merged)
				}
				expect(t, h.rowsOf(rel2.Table), tc.want...)
			}
		})
	}
}

// raceStore runs hook once, just before the first Silver commit whose
// bytes contain mark is written (a concurrent writer that won the version).
type raceStore struct {
	blob.Store
	mark string
	hook func()
	done bool
}

func (s *raceStore) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	if !s.done && strings.HasPrefix(key, silver.TablePath(rel.Table)+"/_delta_log/") && strings.Contains(string(data), s.mark) {
		s.done = true
		s.hook()
	}
	return s.Store.PutIfAbsent(ctx, key, data)
}

// TestSilverLoadAppendConcurrentMerge: a logged insert of a key of the
// batch merged by another writer between the load append's snapshot and
// its commit makes the append conflict; the batch is then merged on the
// new snapshot, so the key keeps one row, the newer one.
func TestSilverLoadAppendConcurrentMerge(t *testing.T) {
	h := newHarness(t)
	h.load(99, 0, keyRow(5, "old"), keyRow(6, "o"))
	h.bronze()
	h.txn(&change.Change{Op: change.OpInsert, New: keyRow(5, "new")})
	h.bronze()
	rs := &raceStore{Store: h.store, mark: "keys new to silver", hook: func() {
		if h.silver() == 0 {
			t.Error("the concurrent writer merged nothing")
		}
	}}
	p := silver.New(rs, silver.Options{MaxVersionsPerBatch: 50})
	res, err := p.ProcessLoad(context.Background(), rel.Table)
	if err != nil {
		t.Fatal(err)
	}
	if !rs.done {
		t.Fatal("no load append was tried")
	}
	if res.LoadAppended != 0 {
		t.Errorf("%d rows appended after a conflicting commit", res.LoadAppended)
	}
	expect(t, h.rows(), "5,new,NULL", "6,o,NULL")
}

// TestSilverLoadAppendPartitioned: a Silver table partitioned by a data
// column (v) or by the key: appended rows land in their partitions, a
// key again is merged (the key's stats are absent when it is the
// partition column: nothing is proved), and the rows are MERGE's.
func TestSilverLoadAppendPartitioned(t *testing.T) {
	for _, tc := range []struct {
		by           string
		wantAppended int
	}{{"v", 4}, {"id", 3}} {
		t.Run(tc.by, func(t *testing.T) {
			for _, o := range []silver.Options{{MaxVersionsPerBatch: 1}, {LoadMerge: true, MaxVersionsPerBatch: 1}} {
				h := newHarness(t)
				h.load(99, 0, keyRow(1, "a"), keyRow(2, "b"), keyRow(3, "a"))
				h.bronze()
				h.load(99, 1, keyRow(4, "b"))
				h.bronze()
				h.load(99, 2, keyRow(2, "c"))
				h.bronze()
				o.Table = func(change.TableID) silver.TableOptions { return silver.TableOptions{PartitionBy: []string{tc.by}} }
				appended, _ := loadAll(t, h, o)
				if !o.LoadMerge && appended != tc.wantAppended {
					t.Errorf("partition by %s: %d rows appended, want %d", tc.by, appended, tc.wantAppended)
				}
				snap, err := delta.NewTable(h.store, silver.TablePath(rel.Table)).Snapshot(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range snap.Files() {
					if _, ok := f.PartitionValues[tc.by]; !ok {
						t.Fatalf("file %s has no partition value of %s", f.Path, tc.by)
					}
				}
				expect(t, h.rows(), "1,a,NULL", "2,c,NULL", "3,a,NULL", "4,b,NULL")
			}
		})
	}
}

// TestSilverLoadAppendInt64Limits: bigint keys at both ends of int64 (the
// strictly-ascending fast path and the stats compare): new keys are
// appended, a key again is merged, and the rows are MERGE's.
func TestSilverLoadAppendInt64Limits(t *testing.T) {
	rel3 := &change.Relation{ID: 3, Table: change.TableID{Schema: "public", Name: "t3"}, Columns: []change.Column{
		{Name: "id", TypeOID: 20, TypeMod: -1, Key: true},
		{Name: "v", TypeOID: 25, TypeMod: -1},
		{Name: "w", TypeOID: 25, TypeMod: -1},
	}}
	row := func(id int64, v string) []change.Datum {
		return []change.Datum{txt(strconv.FormatInt(id, 10)), txt(v), txt("w")}
	}
	const hi, lo = math.MaxInt64, math.MinInt64
	for _, o := range []silver.Options{{MaxVersionsPerBatch: 1}, {LoadMerge: true, MaxVersionsPerBatch: 1}} {
		h := newHarness(t)
		h.loadRel(rel3, 99, 0, row(hi-1, "a"), row(hi, "a"))
		h.bronze()
		h.loadRel(rel3, 99, 1, row(lo, "b"), row(lo+1, "b"), row(0, "b"))
		h.bronze()
		h.loadRel(rel3, 99, 2, row(hi, "c"))
		h.bronze()
		h.loadRel(rel3, 99, 3, row(lo, "d"))
		h.bronze()
		appended, merged := loadTable(t, h, rel3.Table, o)
		if !o.LoadMerge && (appended != 5 || merged != 2) {
			t.Errorf("%d rows appended, %d batches merged; want 5 and 2", appended, merged)
		}
		expect(t, h.rowsOf(rel3.Table), "-9223372036854775807,b,w", "-9223372036854775808,d,w", "0,b,w", "9223372036854775806,a,w", "9223372036854775807,c,w")
	}
}

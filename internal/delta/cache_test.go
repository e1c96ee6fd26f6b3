package delta

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/blob/local"
)

// uncached wraps a store in a value (not a pointer): tables on it are never
// cached, so every Snapshot is a full replay (the reference).
type uncached struct{ blob.Store }

func newLocal(t testing.TB, dir string) *local.Store {
	t.Helper()
	st, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.NoSync = true
	return st
}

// snapState is everything a snapshot exposes, in comparable form.
type snapState struct {
	Version           int64
	Protocol          string
	Metadata          string
	CommitInfo        string
	Files, Tombstones []string
	Txns, Domains     string
	Timestamp         time.Time
	CheckpointVersion int64
	Schema            string
}

func stateOf(t testing.TB, s *Snapshot) snapState {
	t.Helper()
	js := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	out := snapState{Version: s.Version, Protocol: js(s.Protocol), Metadata: js(s.Metadata), CommitInfo: js(s.CommitInfo),
		Txns: js(s.Txns()), Domains: js(s.DomainMetadata()), Timestamp: s.Timestamp(), CheckpointVersion: s.checkpointVersion,
		Schema: js(s.Schema())}
	for _, a := range s.Files() {
		out.Files = append(out.Files, js(a))
	}
	for _, r := range s.Tombstones() {
		out.Tombstones = append(out.Tombstones, js(r))
	}
	return out
}

func sameState(t testing.TB, what string, got, want snapState) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
		for i := 0; i < gv.NumField(); i++ {
			if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
				t.Fatalf("%s: %s differs:\n got %v\nwant %v", what, gv.Type().Field(i).Name, gv.Field(i).Interface(), wv.Field(i).Interface())
			}
		}
	}
}

// randomLog writes random commits straight to the log (so every action
// kind can appear): adds (some with URI-escaped paths removed by their
// decoded form), removes of live and of unknown files, re-adds, txns,
// metadata changes (properties, a new column), protocol upgrades, domain
// metadata set and removed, and checkpoints at random versions (some with
// a clock far enough ahead to drop tombstones).
type randomLog struct {
	t     testing.TB
	rng   *rand.Rand
	st    blob.Store
	tab   *Table // uncached: writes and reference replays
	v     int64
	live  []string
	dead  []string
	cols  int
	clock time.Time
}

func newRandomLog(t testing.TB, seed uint64, st blob.Store) *randomLog {
	l := &randomLog{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), st: st, tab: NewTable(uncached{st}, "t"), v: -1, cols: 1,
		clock: time.UnixMilli(1_700_000_000_000)}
	l.tab.SetClock(func() time.Time { return l.clock })
	return l
}

func (l *randomLog) schema() string {
	var f []string
	for i := 0; i < l.cols; i++ {
		f = append(f, fmt.Sprintf(`{"name":"c%d","type":"long","nullable":true,"metadata":{}}`, i))
	}
	out := `{"type":"struct","fields":[`
	for i, x := range f {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out + `]}`
}

func (l *randomLog) metadata(conf map[string]string) *Metadata {
	created := int64(1)
	return &Metadata{ID: "rand", Format: Format{Provider: "parquet", Options: map[string]string{}}, SchemaString: l.schema(),
		PartitionColumns: []string{}, Configuration: conf, CreatedTime: &created}
}

// commit writes the next version and returns it.
func (l *randomLog) commit() int64 {
	l.v++
	l.clock = l.clock.Add(time.Duration(1+l.rng.IntN(3)) * time.Hour)
	ts := l.clock.UnixMilli()
	acts := []Action{{CommitInfo: map[string]any{"timestamp": ts, "operation": "WRITE", "n": l.v}}}
	if l.v == 0 {
		acts = append(acts, Action{Protocol: &Protocol{MinReaderVersion: 1, MinWriterVersion: 2}}, Action{MetaData: l.metadata(map[string]string{})})
	}
	n := 1 + l.rng.IntN(6)
	used := map[string]bool{}
	for i := 0; i < n; i++ {
		switch r := l.rng.IntN(100); {
		case r < 40 || len(l.live) == 0:
			p := fmt.Sprintf("f-%d-%d.parquet", l.v, i)
			if l.rng.IntN(5) == 0 {
				p = fmt.Sprintf("dir%%20x/f-%d-%d.parquet", l.v, i) // escaped
			}
			if used[p] {
				continue
			}
			used[p] = true
			acts = append(acts, Action{Add: &Add{Path: p, PartitionValues: map[string]*string{}, Size: int64(l.rng.IntN(1000)),
				ModificationTime: ts, DataChange: true, Stats: fmt.Sprintf(`{"numRecords":%d}`, l.rng.IntN(100))}})
			l.live = append(l.live, p)
		case r < 65:
			j := l.rng.IntN(len(l.live))
			p := l.live[j]
			if used[p] {
				continue
			}
			used[p] = true
			l.live = append(l.live[:j], l.live[j+1:]...)
			l.dead = append(l.dead, p)
			rp := p
			if dp, err := DecodePath(p); err == nil && l.rng.IntN(2) == 0 {
				rp = dp // remove by the decoded path: the same file
			}
			dt := ts
			if l.rng.IntN(3) == 0 {
				dt = ts - 30*24*3600*1000 // old: expired at the next checkpoint
			}
			acts = append(acts, Action{Remove: &Remove{Path: rp, DataChange: true, DeletionTimestamp: &dt}})
		case r < 70 && len(l.dead) > 0:
			p := l.dead[l.rng.IntN(len(l.dead))]
			if used[p] {
				continue
			}
			used[p] = true
			// Re-add a removed file (RESTORE) or remove it again.
			if l.rng.IntN(2) == 0 {
				acts = append(acts, Action{Add: &Add{Path: p, PartitionValues: map[string]*string{}, Size: 7, ModificationTime: ts, DataChange: false}})
				l.live = append(l.live, p)
			} else {
				dt := ts
				acts = append(acts, Action{Remove: &Remove{Path: p, DataChange: false, DeletionTimestamp: &dt}})
			}
		case r < 82:
			lu := ts
			acts = append(acts, Action{Txn: &SetTransaction{AppID: fmt.Sprintf("app-%d", l.rng.IntN(4)), Version: l.v, LastUpdated: &lu}})
		case r < 88:
			conf := map[string]string{"k": fmt.Sprint(l.rng.IntN(10))}
			if l.rng.IntN(2) == 0 {
				l.cols++
			}
			if l.rng.IntN(4) == 0 {
				conf["delta.enableInCommitTimestamps"] = "true"
			}
			acts = append(acts, Action{MetaData: l.metadata(conf)})
		case r < 91:
			acts = append(acts, Action{Protocol: &Protocol{MinReaderVersion: 1, MinWriterVersion: 2 + l.rng.IntN(3)}})
		default:
			acts = append(acts, Action{DomainMetadata: &DomainMetadata{Domain: fmt.Sprintf("d%d", l.rng.IntN(3)),
				Configuration: fmt.Sprint(l.v), Removed: l.rng.IntN(3) == 0}})
		}
	}
	acts[0].CommitInfo["inCommitTimestamp"] = ts + 1
	data, err := MarshalActions(acts)
	if err != nil {
		l.t.Fatal(err)
	}
	if err := l.st.PutIfAbsent(context.Background(), l.tab.CommitKey(l.v), data); err != nil {
		l.t.Fatal(err)
	}
	return l.v
}

// checkpoint writes a checkpoint of version v (not necessarily the latest).
func (l *randomLog) checkpoint(v int64) {
	ctx := context.Background()
	s, err := l.tab.SnapshotAt(ctx, v)
	if err != nil {
		l.t.Fatal(err)
	}
	if err := l.tab.WriteCheckpoint(ctx, s); err != nil {
		l.t.Fatal(err)
	}
}

// TestIncrementalEqualsFullReplay: over random commit sequences, the
// cached (incremental) Snapshot and SnapshotAt of a long-lived Table and of
// new Tables equal a full replay without cache, version by version.
func TestIncrementalEqualsFullReplay(t *testing.T) {
	ctx := context.Background()
	applied, fromCP, unchanged := cacheCounts.applied.Load(), cacheCounts.fromNewCheckpoint.Load(), cacheCounts.unchanged.Load()
	defer func() {
		// Every path was taken.
		if cacheCounts.applied.Load() == applied || cacheCounts.fromNewCheckpoint.Load() == fromCP || cacheCounts.unchanged.Load() == unchanged {
			t.Errorf("paths taken: applied %d, from a new checkpoint %d, unchanged %d", cacheCounts.applied.Load()-applied,
				cacheCounts.fromNewCheckpoint.Load()-fromCP, cacheCounts.unchanged.Load()-unchanged)
		}
	}()
	seeds := uint64(8)
	if testing.Short() {
		seeds = 3
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			st := newLocal(t, t.TempDir())
			l := newRandomLog(t, seed, st)
			cached := NewTable(st, "t")
			var old []*Snapshot
			var oldState []snapState
			steps := 40 + l.rng.IntN(40)
			for i := 0; i < steps; i++ {
				for n := l.rng.IntN(3); n >= 0; n-- {
					l.commit()
				}
				if l.rng.IntN(6) == 0 {
					l.checkpoint(l.v - int64(l.rng.IntN(int(min(l.v, 3))+1)))
				}
				want, err := l.tab.Snapshot(ctx)
				if err != nil {
					t.Fatal(err)
				}
				ws := stateOf(t, want)
				var got *Snapshot
				if l.rng.IntN(5) == 0 {
					// Nothing new since the last look.
					if _, err := cached.Snapshot(ctx); err != nil {
						t.Fatal(err)
					}
				}
				switch l.rng.IntN(3) {
				case 0:
					got, err = cached.Snapshot(ctx)
				case 1:
					got, err = NewTable(st, "t").Snapshot(ctx)
				default:
					got, err = cached.SnapshotAt(ctx, l.v)
				}
				if err != nil {
					t.Fatal(err)
				}
				sameState(t, fmt.Sprintf("step %d version %d", i, l.v), stateOf(t, got), ws)
				if got.Table() == nil {
					t.Fatal("snapshot without table")
				}
				// Time travel stays exact.
				if l.v > 0 && l.rng.IntN(4) == 0 {
					v := l.rng.Int64N(l.v)
					g, err := cached.SnapshotAt(ctx, v)
					if err != nil {
						t.Fatal(err)
					}
					w, err := l.tab.SnapshotAt(ctx, v)
					if err != nil {
						t.Fatal(err)
					}
					sameState(t, fmt.Sprintf("step %d SnapshotAt(%d)", i, v), stateOf(t, g), stateOf(t, w))
				}
				if i%7 == 0 {
					old = append(old, got)
					oldState = append(oldState, ws)
				}
			}
			// Snapshots handed out earlier did not change.
			for i, s := range old {
				sameState(t, fmt.Sprintf("old snapshot %d (version %d)", i, s.Version), stateOf(t, s), oldState[i])
			}
		})
	}
}

// TestSnapshotSeesOtherWriter: a Table reading through another store value
// (another process, for the cache) sees every commit of the writer, and a
// table re-created at the same root is noticed.
func TestSnapshotSeesOtherWriter(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w := NewTable(newLocal(t, dir), "tables/t1")
	r := NewTable(newLocal(t, dir), "tables/t1")
	snap := mustCreate(t, w, nil, map[string]string{"delta.checkpointInterval": "4"})
	for i := 0; i < 15; i++ {
		commitAdds(t, w, snap, addFile(fmt.Sprintf("f%d.parquet", i), nil))
		var err error
		if snap, err = w.Snapshot(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := r.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != snap.Version || len(got.Files()) != i+1 {
			t.Fatalf("reader at version %d with %d files, writer at %d with %d", got.Version, len(got.Files()), snap.Version, i+1)
		}
	}
	// Concurrent readers and a writer on one shared cache entry.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := int64(-1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := NewTable(r.Store(), "tables/t1").Snapshot(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if s.Version < last || int64(len(s.Files())) != s.Version {
					t.Errorf("version %d after %d, %d files", s.Version, last, len(s.Files()))
					return
				}
				last = s.Version
			}
		}()
	}
	for i := 15; i < 30; i++ {
		snap = mustSnapshot(t, w)
		commitAdds(t, w, snap, addFile(fmt.Sprintf("f%d.parquet", i), nil))
	}
	close(stop)
	wg.Wait()

	// Delete the table and create another at the same root.
	if err := os.RemoveAll(filepath.Join(dir, "tables/t1")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Snapshot(ctx); !errorsIsAny(err, ErrNotATable) {
		t.Fatalf("deleted table: %v", err)
	}
	w2 := NewTable(newLocal(t, dir), "tables/t1")
	s2 := mustCreate(t, w2, nil, nil)
	for i := 0; i < 3; i++ {
		commitAdds(t, w2, s2, addFile(fmt.Sprintf("g%d.parquet", i), nil))
		s2 = mustSnapshot(t, w2)
	}
	got := mustSnapshot(t, r)
	sameState(t, "re-created table", stateOf(t, got), stateOf(t, s2))
}

func mustSnapshot(t *testing.T, tab *Table) *Snapshot {
	t.Helper()
	s, err := tab.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOldSnapshotImmutable: a snapshot handed out keeps its files,
// tombstones, txns, metadata and schema after newer commits remove its
// files, change its txns and its schema.
func TestOldSnapshotImmutable(t *testing.T) {
	ctx := context.Background()
	tab := newTestTable(t)
	snap := mustCreate(t, tab, nil, map[string]string{"delta.checkpointInterval": "1000"})
	var adds []*Add
	for i := 0; i < 5; i++ {
		a := addFile(fmt.Sprintf("f%d.parquet", i), nil)
		adds = append(adds, a)
		tx := tab.Begin(snap)
		tx.Add(a)
		tx.SetAppTxn("app", int64(i))
		if _, err := tx.Commit(ctx, "WRITE", nil); err != nil {
			t.Fatal(err)
		}
		snap = mustSnapshot(t, tab)
	}
	old := snap
	before := stateOf(t, old)
	oldFiles := old.Files()

	tx := tab.Begin(old)
	tx.Remove(removeOf(adds[0]), removeOf(adds[3]))
	tx.Add(addFile("g.parquet", nil), addFile("a.parquet", nil))
	tx.SetAppTxn("app", 99)
	tx.SetAppTxn("other", 1)
	md := *old.Metadata
	md.SchemaString = `{"type":"struct","fields":[{"name":"id","type":"long","nullable":false,"metadata":{}},{"name":"part","type":"string","nullable":true,"metadata":{}},{"name":"x","type":"long","nullable":true,"metadata":{}}]}`
	tx.SetMetadata(&md)
	if _, err := tx.Commit(ctx, "MERGE", nil); err != nil {
		t.Fatal(err)
	}
	snap2 := mustSnapshot(t, tab)
	if snap2.Version != old.Version+1 || len(snap2.Files()) != 5 || len(snap2.Tombstones()) != 2 || len(snap2.Schema().Fields) != 3 {
		t.Fatalf("new snapshot: version %d, %d files, %d tombstones, %d columns", snap2.Version, len(snap2.Files()), len(snap2.Tombstones()), len(snap2.Schema().Fields))
	}
	if v, _ := snap2.TxnVersion("app"); v != 99 {
		t.Fatalf("txn app = %d", v)
	}
	sameState(t, "old snapshot", stateOf(t, old), before)
	for i, a := range old.Files() {
		if a != oldFiles[i] {
			t.Fatalf("old snapshot's file %d replaced", i)
		}
	}
	// The same through another Table value on the same store.
	snap3, err := NewTable(tab.Store(), tab.Root()).Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, "other table", stateOf(t, snap3), stateOf(t, snap2))
}

// TestIdleSnapshotRequests: once cached, a Snapshot of an unchanged table
// is one LIST and nothing else, also through a new Table value; a new
// commit adds one GET.
func TestIdleSnapshotRequests(t *testing.T) {
	ctx := context.Background()
	cs := &countingStore{Store: newLocal(t, t.TempDir())}
	tab := NewTable(cs, "t")
	snap := mustCreate(t, tab, nil, nil)
	for i := 0; i < 25; i++ {
		commitAdds(t, tab, snap, addFile(fmt.Sprintf("f%d.parquet", i), nil))
		snap = mustSnapshot(t, tab)
	}
	cs.reset()
	for i := 0; i < 10; i++ {
		if _, err := NewTable(cs, "t").Snapshot(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if l, g, o := cs.lists.Load(), cs.gets.Load(), cs.opens.Load(); l != 10 || g != 0 || o != 0 {
		t.Fatalf("10 idle snapshots: %d LIST, %d GET, %d Open; want 10, 0, 0", l, g, o)
	}
	commitAdds(t, tab, snap, addFile("new.parquet", nil))
	cs.reset()
	if s := mustSnapshot(t, NewTable(cs, "t")); s.Version != 26 || len(s.Files()) != 26 {
		t.Fatalf("version %d, %d files", s.Version, len(s.Files()))
	}
	if l, g, o := cs.lists.Load(), cs.gets.Load(), cs.opens.Load(); l != 1 || g != 1 || o != 0 {
		t.Fatalf("snapshot after one commit: %d LIST, %d GET, %d Open; want 1, 1, 0", l, g, o)
	}
}

// TestSnapshotCacheEviction: with tiny limits entries are dropped and
// snapshots stay right.
func TestSnapshotCacheEviction(t *testing.T) {
	ctx := context.Background()
	defer SetSnapshotCacheLimits(DefaultSnapshotCacheTables, DefaultSnapshotCacheFileActions)
	SetSnapshotCacheLimits(2, 5)
	st := newLocal(t, t.TempDir())
	var tabs []*Table
	for i := 0; i < 4; i++ {
		tab := NewTable(st, fmt.Sprintf("t%d", i))
		s := mustCreate(t, tab, nil, nil)
		for j := 0; j <= i; j++ {
			commitAdds(t, tab, s, addFile(fmt.Sprintf("f%d.parquet", j), nil))
			s = mustSnapshot(t, tab)
		}
		tabs = append(tabs, tab)
	}
	for round := 0; round < 3; round++ {
		for i, tab := range tabs {
			s, err := tab.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Files()) != i+1 {
				t.Fatalf("table %d: %d files", i, len(s.Files()))
			}
		}
	}
	snapCache.mu.Lock()
	n, files := snapCache.lru.Len(), snapCache.files
	snapCache.mu.Unlock()
	if n > 2 || (files > 5 && n > 1) {
		t.Fatalf("cache holds %d tables, %d file actions", n, files)
	}
	SetSnapshotCacheLimits(0, 0) // disabled
	if s := mustSnapshot(t, tabs[3]); len(s.Files()) != 4 {
		t.Fatalf("uncached: %d files", len(s.Files()))
	}
}

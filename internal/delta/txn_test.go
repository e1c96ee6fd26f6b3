package delta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/blob/local"
)

func newTestTable(t *testing.T) *Table {
	t.Helper()
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st.NoSync = true
	return NewTable(st, "tables/t1")
}

func testSchema(t *testing.T) *StructType {
	t.Helper()
	s, err := ParseSchema(`{"type":"struct","fields":[{"name":"id","type":"long","nullable":false,"metadata":{}},{"name":"part","type":"string","nullable":true,"metadata":{}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func str(s string) *string { return &s }

func addFile(path string, pv map[string]*string) *Add {
	if pv == nil {
		pv = map[string]*string{}
	}
	return &Add{Path: path, PartitionValues: pv, Size: 100, ModificationTime: 1, DataChange: true, Stats: `{"numRecords":1}`}
}

func removeOf(a *Add) *Remove {
	size := a.Size
	ext := true
	return &Remove{Path: a.Path, DataChange: true, ExtendedFileMetadata: &ext, PartitionValues: a.PartitionValues, Size: &size}
}

func paths(s *Snapshot) []string {
	var out []string
	for _, a := range s.Files() {
		out = append(out, a.Path)
	}
	return out
}

func mustCreate(t *testing.T, tab *Table, parts []string, cfg map[string]string) *Snapshot {
	t.Helper()
	s, err := CreateTable(context.Background(), tab, testSchema(t), parts, cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func commitAdds(t *testing.T, tab *Table, snap *Snapshot, adds ...*Add) int64 {
	t.Helper()
	tx := tab.Begin(snap)
	tx.Add(adds...)
	v, err := tx.Commit(context.Background(), "WRITE", map[string]any{"mode": "Append"})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseActions(t *testing.T) {
	in := []byte(`{"commitInfo":{"timestamp":1,"operation":"WRITE"}}

{"some_new_action":{"x":1}}
{"add":{"path":"a","partitionValues":{},"size":1,"modificationTime":2,"dataChange":true,"newField":{"nested":[1,2]}}}
{"remove":{"path":"b","deletionTimestamp":3,"dataChange":true}}
{"txn":{"appId":"app","version":7}}
`)
	acts, err := ParseActions(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 4 || acts[0].CommitInfo == nil || acts[1].Add == nil || acts[2].Remove == nil || acts[3].Txn.Version != 7 {
		t.Fatalf("acts = %+v", acts)
	}
	for _, bad := range []string{
		`{"add":{"path":"a"}`,
		`{"add":{"path":""}}`,
		`{"add":{"path":"a"},"remove":{"path":"a"}}`,
		`{"txn":{"version":1}}`,
		`[1,2]`,
		`{"add":{"path":"a","size":"x"}}`,
	} {
		if _, err := ParseActions([]byte(bad)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("ParseActions(%s) err = %v, want ErrCorrupt", bad, err)
		}
	}
	// Round trip.
	out, err := MarshalActions(acts)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseActions(out)
	if err != nil || !reflect.DeepEqual(acts, again) {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, acts, again)
	}
}

func TestReplayRules(t *testing.T) {
	proto := &Protocol{MinReaderVersion: 1, MinWriterVersion: 2}
	proto2 := &Protocol{MinReaderVersion: 1, MinWriterVersion: 3}
	meta := &Metadata{ID: "m1", SchemaString: `{"type":"struct","fields":[]}`, Configuration: map[string]string{}}
	meta2 := &Metadata{ID: "m1", SchemaString: `{"type":"struct","fields":[]}`, Configuration: map[string]string{"k": "v"}}
	off := int32(4)
	dv1 := &DeletionVector{StorageType: "u", PathOrInlineDv: "abc", Offset: &off, SizeInBytes: 10, Cardinality: 2}
	dv2 := &DeletionVector{StorageType: "u", PathOrInlineDv: "def", SizeInBytes: 10, Cardinality: 3}
	ts := int64(5)
	commits := [][]Action{
		{{Protocol: proto}, {MetaData: meta}, {Add: addFile("a", nil)}, {Add: addFile("b%20c", nil)}, {Txn: &SetTransaction{AppID: "x", Version: 1}}},
		// remove by decoded-equal path; re-add a; txn x moves (not necessarily up).
		{{Remove: &Remove{Path: "b c", DeletionTimestamp: &ts, DataChange: true}}, {Txn: &SetTransaction{AppID: "x", Version: 0}}, {Txn: &SetTransaction{AppID: "y", Version: 9}}},
		// DV update: remove (d, none), add (d, dv1).
		{{Add: addFile("d", nil)}},
		{{Remove: &Remove{Path: "d", DataChange: true}}, {Add: &Add{Path: "d", PartitionValues: map[string]*string{}, DeletionVector: dv1, DataChange: true}}},
		// second DV replaces first; protocol+metadata change; domain set then removed.
		{{Remove: &Remove{Path: "d", DataChange: true, DeletionVector: dv1}}, {Add: &Add{Path: "d", PartitionValues: map[string]*string{}, DeletionVector: dv2, DataChange: true}},
			{Protocol: proto2}, {MetaData: meta2}, {DomainMetadata: &DomainMetadata{Domain: "dom", Configuration: "{}"}}, {DomainMetadata: &DomainMetadata{Domain: "dom2", Configuration: "{}"}}},
		{{DomainMetadata: &DomainMetadata{Domain: "dom", Removed: true}}, {CommitInfo: map[string]any{"operation": "X"}}},
	}
	s, err := Replay(nil, -1, commits)
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != 5 {
		t.Errorf("Version = %d", s.Version)
	}
	if got := paths(s); !reflect.DeepEqual(got, []string{"a", "d"}) {
		t.Errorf("files = %v", got)
	}
	if s.Files()[1].DeletionVector.UniqueID() != "udef" {
		t.Errorf("dv = %+v", s.Files()[1].DeletionVector)
	}
	if len(s.Tombstones()) != 3 { // "b c", (d,none), (d,dv1)
		t.Errorf("tombstones = %d", len(s.Tombstones()))
	}
	if s.Protocol != proto2 || s.Metadata != meta2 {
		t.Errorf("last protocol/metadata must win")
	}
	if v, _ := s.TxnVersion("x"); v != 0 {
		t.Errorf("txn x = %d, want 0 (last wins)", v)
	}
	if _, ok := s.TxnVersion("z"); ok {
		t.Errorf("txn z present")
	}
	if _, ok := s.DomainMetadata()["dom"]; ok || len(s.DomainMetadata()) != 1 {
		t.Errorf("domains = %v", s.DomainMetadata())
	}
	if s.CommitInfo["operation"] != "X" {
		t.Errorf("commitInfo = %v", s.CommitInfo)
	}
	// Re-add after remove makes the file live again (RESTORE).
	s, err = Replay(nil, -1, append(commits, []Action{{Add: addFile("b c", nil)}}))
	if err != nil || len(s.Files()) != 3 || len(s.Tombstones()) != 2 {
		t.Fatalf("restore: %v %v", err, s)
	}
	// Missing protocol / metadata.
	if _, err := Replay(nil, -1, [][]Action{{{MetaData: meta}}}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("no protocol: %v", err)
	}
	if _, err := Replay(nil, -1, [][]Action{{{Protocol: proto}}}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("no metadata: %v", err)
	}
	// Checkpoint base + commits.
	s, err = Replay([]Action{{Protocol: proto}, {MetaData: meta}, {Add: addFile("cp", nil)}}, 10, [][]Action{{{Add: addFile("n", nil)}}})
	if err != nil || s.Version != 11 || len(s.Files()) != 2 {
		t.Fatalf("checkpoint replay: %v %v", err, s)
	}
}

func TestCreateAndCommit(t *testing.T) {
	ctx := context.Background()
	tab := newTestTable(t)
	now := time.UnixMilli(1_700_000_000_000)
	tab.SetClock(func() time.Time { return now })
	snap := mustCreate(t, tab, []string{"part"}, nil)
	if snap.Version != 0 || snap.Protocol.MinReaderVersion != 1 || snap.Protocol.MinWriterVersion != 2 || len(snap.Metadata.ID) != 36 {
		t.Fatalf("created %+v %+v", snap.Protocol, snap.Metadata)
	}
	if _, err := CreateTable(ctx, tab, testSchema(t), nil, nil, ""); !errors.Is(err, ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	a1 := addFile("part=x/f1.parquet", map[string]*string{"part": str("x")})
	a2 := addFile("part=__HIVE_DEFAULT_PARTITION__/f2.parquet", map[string]*string{"part": nil})
	tx := tab.Begin(snap)
	tx.Add(a1, a2)
	tx.SetAppTxn("shard-0", 42)
	v, err := tx.Commit(ctx, "WRITE", map[string]any{"mode": "Append"})
	if err != nil || v != 1 {
		t.Fatalf("commit: %d %v", v, err)
	}
	snap, err = tab.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Files()) != 2 {
		t.Fatalf("files = %v", paths(snap))
	}
	if v, ok := snap.TxnVersion("shard-0"); !ok || v != 42 {
		t.Errorf("txn = %d %v", v, ok)
	}
	ci := snap.CommitInfo
	for _, k := range []string{"timestamp", "operation", "operationParameters", "readVersion", "isolationLevel", "isBlindAppend", "engineInfo", "txnId"} {
		if _, ok := ci[k]; !ok {
			t.Errorf("commitInfo lacks %s: %v", k, ci)
		}
	}
	if ci["isBlindAppend"] != true || ci["engineInfo"] != EngineInfo || ci["readVersion"] != float64(0) {
		t.Errorf("commitInfo = %v", ci)
	}
	// The commit file starts with commitInfo.
	raw, _ := tab.Store().Get(ctx, tab.CommitKey(1))
	if !bytes.HasPrefix(raw, []byte(`{"commitInfo":`)) {
		t.Errorf("commit 1 = %s", raw)
	}
	// Remove gets a deletionTimestamp; the rewrite is not a blind append.
	tx = tab.Begin(snap)
	tx.ReadFiles(a1.Path)
	tx.Remove(removeOf(a1))
	tx.Add(addFile("part=x/f3.parquet", map[string]*string{"part": str("x")}))
	if v, err = tx.Commit(ctx, "DELETE", nil); err != nil || v != 2 {
		t.Fatalf("commit 2: %v", err)
	}
	snap, _ = tab.Snapshot(ctx)
	if len(snap.Tombstones()) != 1 || *snap.Tombstones()[0].DeletionTimestamp != now.UnixMilli() {
		t.Errorf("tombstones = %+v", snap.Tombstones())
	}
	if snap.CommitInfo["isBlindAppend"] != false {
		t.Errorf("isBlindAppend = %v", snap.CommitInfo["isBlindAppend"])
	}
	acts, err := tab.ReadCommit(ctx, 2)
	if err != nil || len(acts) != 3 {
		t.Fatalf("ReadCommit: %v %v", acts, err)
	}
	if _, err := tab.ReadCommit(ctx, 3); !errors.Is(err, ErrVersionNotFound) {
		t.Errorf("ReadCommit(3) = %v", err)
	}
	if !snap.Timestamp().After(time.Time{}) {
		t.Errorf("Timestamp zero")
	}
	// Reused txn object refuses a second commit.
	if _, err := tx.Commit(ctx, "DELETE", nil); err == nil {
		t.Errorf("second Commit on one Txn succeeded")
	}
}

func TestCreateTableTimestampNTZ(t *testing.T) {
	tab := newTestTable(t)
	schema, err := ParseSchema(`{"type":"struct","fields":[{"name":"t","type":{"type":"array","elementType":"timestamp_ntz","containsNull":true},"nullable":true,"metadata":{}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	s, err := CreateTable(context.Background(), tab, schema, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Protocol.MinReaderVersion != 3 || s.Protocol.MinWriterVersion != 7 || !hasFeature(s.Protocol, "timestampNtz") {
		t.Errorf("protocol = %+v", s.Protocol)
	}
	if err := s.CanWrite(); err != nil {
		t.Errorf("CanWrite: %v", err)
	}
}

func TestCommitValidation(t *testing.T) {
	ctx := context.Background()
	tab := newTestTable(t)
	snap := mustCreate(t, tab, []string{"part"}, map[string]string{"delta.appendOnly": "true"})
	pv := map[string]*string{"part": str("a")}
	cases := []struct {
		name  string
		build func(tx *Txn)
	}{
		{"duplicate add", func(tx *Txn) { tx.Add(addFile("f", pv), addFile("f", pv)) }},
		{"missing partition value", func(tx *Txn) { tx.Add(addFile("f", nil)) }},
		{"extra partition value", func(tx *Txn) {
			tx.Add(addFile("f", map[string]*string{"part": str("a"), "id": str("1")}))
		}},
		{"append-only remove", func(tx *Txn) { tx.Remove(removeOf(addFile("f", pv))) }},
		{"add and remove same file", func(tx *Txn) {
			tx.Add(addFile("f", pv))
			r := removeOf(addFile("f", pv))
			r.DataChange = false
			tx.Remove(r)
		}},
		{"deletion vector", func(tx *Txn) {
			a := addFile("f", pv)
			a.DeletionVector = &DeletionVector{StorageType: "i", PathOrInlineDv: "x"}
			tx.Add(a)
		}},
		{"protocol downgrade", func(tx *Txn) { tx.SetProtocol(&Protocol{MinReaderVersion: 1, MinWriterVersion: 1}) }},
		{"reader features without 3/7", func(tx *Txn) {
			tx.SetProtocol(&Protocol{MinReaderVersion: 1, MinWriterVersion: 2, ReaderFeatures: []string{"timestampNtz"}})
		}},
		{"metadata id change", func(tx *Txn) {
			m := *snap.Metadata
			m.ID = "other"
			tx.SetMetadata(&m)
		}},
		{"partition column not in schema", func(tx *Txn) {
			m := *snap.Metadata
			m.PartitionColumns = []string{"nope"}
			tx.SetMetadata(&m)
		}},
		{"unsupported property", func(tx *Txn) {
			m := *snap.Metadata
			m.Configuration = map[string]string{"delta.enableChangeDataFeed": "true"}
			tx.SetMetadata(&m)
		}},
		{"invariants", func(tx *Txn) {
			m := *snap.Metadata
			m.SchemaString = `{"type":"struct","fields":[{"name":"id","type":"long","nullable":true,"metadata":{"delta.invariants":"{\"expression\":{\"expression\":\"id > 0\"}}"}},{"name":"part","type":"string","nullable":true,"metadata":{}}]}`
			tx.SetMetadata(&m)
		}},
		{"empty appId", func(tx *Txn) { tx.SetAppTxn("", 1) }},
	}
	for _, c := range cases {
		tx := tab.Begin(snap)
		c.build(tx)
		if _, err := tx.Commit(ctx, "WRITE", nil); err == nil {
			t.Errorf("%s: commit succeeded", c.name)
		}
	}
	// Removal without dataChange (compaction) is fine on append-only.
	tx := tab.Begin(snap)
	tx.Add(addFile("f", pv))
	if _, err := tx.Commit(ctx, "WRITE", nil); err != nil {
		t.Fatal(err)
	}
	snap, _ = tab.Snapshot(ctx)
	tx = tab.Begin(snap)
	r := removeOf(snap.Files()[0])
	r.DataChange = false
	tx.Remove(r)
	a := addFile("g", pv)
	a.DataChange = false
	tx.Add(a)
	if _, err := tx.Commit(ctx, "OPTIMIZE", nil); err != nil {
		t.Fatalf("compaction on append-only: %v", err)
	}
	if v, _ := tab.LatestVersion(ctx); v != 2 {
		t.Fatalf("failed commits left files: latest %d", v)
	}
	// Creating without protocol/metadata.
	if _, err := newTestTable(t).Begin(nil).Commit(ctx, "CREATE", nil); err == nil {
		t.Errorf("create without protocol succeeded")
	}
}

func conflictKind(err error) string {
	var ce *ConflictError
	if errors.As(err, &ce) {
		return ce.Kind
	}
	return ""
}

func TestConflictRules(t *testing.T) {
	ctx := context.Background()
	type step func(tx *Txn, s *Snapshot)
	appendNew := func(name string) step {
		return func(tx *Txn, s *Snapshot) { tx.Add(addFile(name, nil)) }
	}
	removeFirst := func(tx *Txn, s *Snapshot) {
		tx.ReadFiles(s.Files()[0].Path)
		tx.Remove(removeOf(s.Files()[0]))
	}
	cases := []struct {
		name          string
		winner, loser step
		want          string // "" = loser succeeds after rebase
		winnerOp      string
	}{
		{"blind appends", appendNew("w"), appendNew("l"), "", ""},
		{"delete-delete", removeFirst, removeFirst, ConflictConcurrentDeleteDelete, ""},
		{"delete-read", removeFirst, func(tx *Txn, s *Snapshot) { tx.ReadFiles(s.Files()[0].Path); tx.Add(addFile("l", nil)) }, ConflictConcurrentDeleteRead, ""},
		{"delete vs whole-table read", func(tx *Txn, s *Snapshot) {
			tx.Remove(removeOf(s.Files()[1]))
		}, func(tx *Txn, s *Snapshot) { tx.ReadWholeTable(); tx.Add(addFile("l", nil)) }, ConflictConcurrentDeleteRead, ""},
		{"non-blind append vs whole-table read", func(tx *Txn, s *Snapshot) {
			tx.ReadFiles(s.Files()[1].Path)
			tx.Add(addFile("w", nil))
		}, func(tx *Txn, s *Snapshot) { tx.ReadWholeTable(); tx.Add(addFile("l", nil)) }, ConflictConcurrentAppend, ""},
		{"blind append vs whole-table read (WriteSerializable)", appendNew("w"), func(tx *Txn, s *Snapshot) {
			tx.ReadWholeTable()
			tx.Remove(removeOf(s.Files()[0]))
		}, "", ""},
		{"blind append vs whole-table read (Serializable)", appendNew("w"), func(tx *Txn, s *Snapshot) {
			tx.ReadWholeTable()
			tx.SetIsolationLevel(Serializable)
			tx.Add(addFile("l", nil))
		}, ConflictConcurrentAppend, ""},
		{"metadata change", func(tx *Txn, s *Snapshot) {
			m := *s.Metadata
			m.Configuration = map[string]string{"a": "b"}
			tx.SetMetadata(&m)
		}, appendNew("l"), ConflictMetadataChanged, ""},
		{"protocol change", func(tx *Txn, s *Snapshot) {
			tx.SetProtocol(&Protocol{MinReaderVersion: 1, MinWriterVersion: 3})
		}, appendNew("l"), ConflictProtocolChanged, ""},
		{"same appId", func(tx *Txn, s *Snapshot) { tx.SetAppTxn("app", 1); tx.Add(addFile("w", nil)) },
			func(tx *Txn, s *Snapshot) { tx.SetAppTxn("app", 1); tx.Add(addFile("l", nil)) }, ConflictConcurrentTransaction, ""},
		{"different appIds", func(tx *Txn, s *Snapshot) { tx.SetAppTxn("a1", 1); tx.Add(addFile("w", nil)) },
			func(tx *Txn, s *Snapshot) { tx.SetAppTxn("a2", 1); tx.Add(addFile("l", nil)) }, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tab := newTestTable(t)
			s0 := mustCreate(t, tab, nil, nil)
			commitAdds(t, tab, s0, addFile("base1", nil), addFile("base2", nil))
			s, err := tab.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			loser := tab.Begin(s)
			c.loser(loser, s)
			winner := tab.Begin(s)
			c.winner(winner, s)
			if _, err := winner.Commit(ctx, "W", nil); err != nil {
				t.Fatalf("winner: %v", err)
			}
			v, err := loser.Commit(ctx, "L", nil)
			if c.want == "" {
				if err != nil || v != 3 {
					t.Fatalf("loser: v=%d err=%v, want success at 3", v, err)
				}
				return
			}
			if !errors.Is(err, ErrConflict) || conflictKind(err) != c.want {
				t.Fatalf("loser err = %v, want %s", err, c.want)
			}
			var ce *ConflictError
			errors.As(err, &ce)
			if ce.Version != 2 {
				t.Errorf("conflict version = %d, want 2", ce.Version)
			}
		})
	}
}

func TestConcurrentCommits(t *testing.T) {
	ctx := context.Background()
	tab := newTestTable(t)
	s0 := mustCreate(t, tab, nil, map[string]string{"delta.checkpointInterval": "5"})
	commitAdds(t, tab, s0, addFile("base-0", nil), addFile("base-1", nil))
	start, err := tab.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const writers, perWriter = 8, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter+1)
	var rewriteVersion atomic.Int64
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				snap, err := tab.Snapshot(ctx)
				if err != nil {
					errs <- err
					return
				}
				tx := tab.Begin(snap)
				tx.Add(addFile(fmt.Sprintf("w%d-%d", w, i), nil))
				if _, err := tx.Commit(ctx, "WRITE", nil); err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
		}()
	}
	// A rewrite (reads the whole table, replaces base-0) racing the blind
	// appends: under WriteSerializable it rebases over them and succeeds.
	wg.Add(1)
	go func() {
		defer wg.Done()
		tx := tab.Begin(start)
		tx.ReadWholeTable()
		tx.Remove(removeOf(start.Files()[0]))
		tx.Add(addFile("rewritten-0", nil))
		v, err := tx.Commit(ctx, "UPDATE", nil)
		if err != nil {
			errs <- fmt.Errorf("rewrite: %w", err)
		}
		rewriteVersion.Store(v)
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	snap, err := tab.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantVersion := int64(1 + writers*perWriter + 1) // base commit 1, then every append and the rewrite
	if snap.Version != wantVersion {
		t.Errorf("latest = %d, want %d", snap.Version, wantVersion)
	}
	for v := int64(0); v <= snap.Version; v++ {
		if _, err := tab.ReadCommit(ctx, v); err != nil {
			t.Errorf("commit %d: %v", v, err)
		}
	}
	want := []string{"base-1", "rewritten-0"}
	for w := 0; w < writers; w++ {
		for i := 0; i < perWriter; i++ {
			want = append(want, fmt.Sprintf("w%d-%d", w, i))
		}
	}
	sort.Strings(want)
	if got := paths(snap); !reflect.DeepEqual(got, want) {
		t.Errorf("files:\n got %v\nwant %v", got, want)
	}
	// Checkpoints were written along the way and agree with JSON replay.
	if snap.checkpointVersion < 5 {
		t.Errorf("checkpointVersion = %d", snap.checkpointVersion)
	}
	if rewriteVersion.Load() < 2 {
		t.Errorf("rewrite version = %d", rewriteVersion.Load())
	}
}

func TestConcurrentConflictingRewrites(t *testing.T) {
	ctx := context.Background()
	tab := newTestTable(t)
	s0 := mustCreate(t, tab, nil, nil)
	commitAdds(t, tab, s0, addFile("victim", nil))
	snap, _ := tab.Snapshot(ctx)
	const n = 6
	var wg sync.WaitGroup
	results := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx := tab.Begin(snap)
			tx.ReadFiles("victim")
			tx.Remove(removeOf(snap.Files()[0]))
			tx.Add(addFile(fmt.Sprintf("new-%d", i), nil))
			_, results[i] = tx.Commit(ctx, "DELETE", nil)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range results {
		switch {
		case err == nil:
			ok++
		case conflictKind(err) != ConflictConcurrentDeleteRead && conflictKind(err) != ConflictConcurrentDeleteDelete:
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d rewrites succeeded, want exactly 1", ok)
	}
	snap, _ = tab.Snapshot(ctx)
	if snap.Version != 2 || len(snap.Files()) != 1 {
		t.Errorf("v=%d files=%v", snap.Version, paths(snap))
	}
}

// flakyStore performs PutIfAbsent on commit files and then reports an error
// (an ambiguous outcome), a given number of times; optionally it fails
// without writing.
type flakyStore struct {
	blob.Store
	mu         sync.Mutex
	ambiguous  int // writes then errors
	lost       int // errors without writing
	getFails   int // Get errors (unknown outcome)
	putIfCalls int
}

var errFlaky = errors.New("connection reset")

func (f *flakyStore) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !strings.HasSuffix(key, ".json") {
		return f.Store.PutIfAbsent(ctx, key, data)
	}
	f.putIfCalls++
	if f.lost > 0 {
		f.lost--
		return errFlaky
	}
	if f.ambiguous > 0 {
		f.ambiguous--
		_ = f.Store.PutIfAbsent(ctx, key, data) // whatever happened, report an error
		return errFlaky
	}
	return f.Store.PutIfAbsent(ctx, key, data)
}

func (f *flakyStore) Get(ctx context.Context, key string) ([]byte, error) {
	f.mu.Lock()
	fail := f.getFails > 0
	if fail {
		f.getFails--
	}
	f.mu.Unlock()
	if fail {
		return nil, errFlaky
	}
	return f.Store.Get(ctx, key)
}

func TestAmbiguousCommit(t *testing.T) {
	ctx := context.Background()
	st, _ := local.New(t.TempDir())
	st.NoSync = true
	fs := &flakyStore{Store: st}
	tab := NewTable(fs, "")
	s0 := mustCreate(t, tab, nil, nil)

	// Written then error: the commit is recognised as ours, once.
	fs.ambiguous = 1
	v := commitAdds(t, tab, s0, addFile("a", nil))
	if v != 1 {
		t.Fatalf("v = %d", v)
	}
	// Not written then error: retried at the same version.
	fs.lost = 1
	snap, _ := tab.Snapshot(ctx)
	if v := commitAdds(t, tab, snap, addFile("b", nil)); v != 2 {
		t.Fatalf("v = %d", v)
	}
	// Ambiguous write racing another writer: someone else's commit at
	// that version is treated as a conflict, then we rebase.
	snap, _ = tab.Snapshot(ctx)
	other := tab.Begin(snap)
	other.Add(addFile("other", nil))
	if _, err := other.Commit(ctx, "WRITE", nil); err != nil {
		t.Fatal(err)
	}
	fs.ambiguous = 1
	if v := commitAdds(t, tab, snap, addFile("c", nil)); v != 4 {
		t.Fatalf("v = %d, want 4", v)
	}
	// Unknown outcome (write error and re-read error) is reported as such.
	snap, _ = tab.Snapshot(ctx)
	fs.ambiguous, fs.getFails = 1, 1
	tx := tab.Begin(snap)
	tx.Add(addFile("d", nil))
	tx.SetAppTxn("app", 7)
	if _, err := tx.Commit(ctx, "WRITE", nil); !errors.Is(err, ErrCommitUnknown) {
		t.Fatalf("err = %v, want ErrCommitUnknown", err)
	}
	// The idempotent retry finds its txn and does not commit again.
	snap, _ = tab.Snapshot(ctx)
	if v, ok := snap.TxnVersion("app"); !ok || v != 7 {
		t.Fatalf("txn app = %d %v", v, ok)
	}
	snap, err := tab.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := paths(snap); !reflect.DeepEqual(got, []string{"a", "b", "c", "d", "other"}) {
		t.Errorf("files = %v (no loss, no duplicates)", got)
	}
	if snap.Version != 5 {
		t.Errorf("version = %d", snap.Version)
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	ctx := context.Background()
	tab := newTestTable(t)
	now := time.Now()
	tab.SetClock(func() time.Time { return now })
	snap := mustCreate(t, tab, []string{"part"}, map[string]string{"delta.checkpointInterval": "1000", "custom": "x"})
	var adds []*Add
	for i := 0; i < 50; i++ {
		a := addFile(fmt.Sprintf("part=p%d/f%02d%%20x.parquet", i%3, i), map[string]*string{"part": str(fmt.Sprintf("p%d", i%3))})
		if i%7 == 0 {
			a.PartitionValues["part"] = nil
		}
		if i%5 == 0 {
			a.Tags = map[string]string{"k": "v"}
			a.Stats = ""
		}
		adds = append(adds, a)
	}
	commitAdds(t, tab, snap, adds...)
	snap, _ = tab.Snapshot(ctx)
	tx := tab.Begin(snap)
	tx.ReadFiles(adds[0].Path, adds[1].Path)
	tx.Remove(removeOf(adds[0]), removeOf(adds[1]))
	tx.SetAppTxn("app-1", 3)
	tx.SetAppTxn("app-2", 9)
	if _, err := tx.Commit(ctx, "DELETE", nil); err != nil {
		t.Fatal(err)
	}
	want, err := tab.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.WriteCheckpoint(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := tab.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.checkpointVersion != want.Version {
		t.Fatalf("checkpoint not used: %d", got.checkpointVersion)
	}
	compareSnapshots(t, got, want)
	lc := tab.readLastCheckpoint(ctx)
	if lc == nil || lc.Version != 2 || lc.NumOfAddFiles != 48 || lc.Size != 2+2+48+2 || len(lc.Checksum) != 32 {
		t.Errorf("_last_checkpoint = %+v", lc)
	}
	// Writing it again is harmless.
	if err := tab.WriteCheckpoint(ctx, want); err != nil {
		t.Fatal(err)
	}
	// Expired tombstones are dropped from a checkpoint.
	later := now.Add(8 * 24 * time.Hour)
	acts, err := want.CheckpointActions(later)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acts {
		if a.Remove != nil {
			t.Errorf("expired tombstone kept: %+v", a.Remove)
		}
	}
}

// compareSnapshots checks the state that a checkpoint must preserve.
func compareSnapshots(t *testing.T, got, want *Snapshot) {
	t.Helper()
	if !reflect.DeepEqual(got.Protocol, want.Protocol) {
		t.Errorf("protocol %+v != %+v", got.Protocol, want.Protocol)
	}
	gm, wm := *got.Metadata, *want.Metadata
	if gm.Format.Options == nil {
		gm.Format.Options = map[string]string{}
	}
	if wm.Format.Options == nil {
		wm.Format.Options = map[string]string{}
	}
	if !reflect.DeepEqual(gm, wm) {
		t.Errorf("metadata\n%+v\n%+v", gm, wm)
	}
	if len(got.Files()) != len(want.Files()) {
		t.Fatalf("%d files, want %d", len(got.Files()), len(want.Files()))
	}
	for i := range want.Files() {
		// Compare the JSON forms: an empty and an absent tags map are the
		// same action.
		g, _ := json.Marshal(got.Files()[i])
		w, _ := json.Marshal(want.Files()[i])
		if !bytes.Equal(g, w) {
			t.Errorf("file %d\n got %s\nwant %s", i, g, w)
		}
	}
	if !reflect.DeepEqual(got.Txns(), want.Txns()) {
		t.Errorf("txns %v != %v", got.Txns(), want.Txns())
	}
	if len(got.Tombstones()) != len(want.Tombstones()) {
		t.Errorf("%d tombstones, want %d", len(got.Tombstones()), len(want.Tombstones()))
	}
}

// Rewriting the checkpoint of foreign tables (partition nulls, escaped
// paths, DVs, txns, struct stats) and reading it back gives the same state.
func TestCheckpointRewriteCorpus(t *testing.T) {
	loadManifest(t)
	ctx := context.Background()
	for _, root := range []string{
		"dat/multi_partitioned/delta",
		"golden/dv-partitioned-with-checkpoint/delta",
		"kernel-rs/app-txn-checkpoint",
		"golden/data-reader-partition-values/delta",
		"delta-spark/transaction_log_schema_evolvability",
		"delta-rs/delta-1.2.1-only-struct-stats",
	} {
		t.Run(root, func(t *testing.T) {
			tab, dir := copyTable(t, root)
			tab.SetClock(func() time.Time { return time.UnixMilli(0) }) // keep every tombstone
			want, err := tab.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Remove existing checkpoints so ours is the one read back.
			matches, _ := filepath.Glob(filepath.Join(dir, "_delta_log", "*.checkpoint*.parquet"))
			for _, m := range matches {
				os.Remove(m)
			}
			if err := tab.WriteCheckpoint(ctx, want); err != nil {
				t.Fatal(err)
			}
			got, err := tab.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got.checkpointVersion != want.Version {
				t.Fatalf("checkpoint not used")
			}
			compareSnapshots(t, got, want)
		})
	}
}

func TestCheckpointIntervalAndCleanup(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, _ := local.New(dir)
	st.NoSync = true
	tab := NewTable(st, "")
	clock := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	tab.SetClock(func() time.Time { return clock })
	snap := mustCreate(t, tab, nil, map[string]string{"delta.checkpointInterval": "3", "delta.logRetentionDuration": "interval 2 days"})
	setMtime := func(v int64, tm time.Time) {
		if err := os.Chtimes(filepath.Join(dir, "_delta_log", jsonName(v)), tm, tm); err != nil {
			t.Fatal(err)
		}
	}
	setMtime(0, clock)
	for i := 1; i <= 7; i++ {
		clock = clock.Add(24 * time.Hour)
		v := commitAdds(t, tab, snap, addFile(fmt.Sprintf("f%d", i), nil))
		setMtime(v, clock)
		snap, _ = tab.Snapshot(ctx)
	}
	// Checkpoints at 3 and 6; at the commit of 6 (clock = Jan 7 12:00) the
	// cutoff is Jan 5 00:00: expired commits are 0..3 (Jan 1..4), the
	// newest checkpoint among them is 3, so 0..2 are gone.
	for _, v := range []int64{3, 6} {
		if _, err := os.Stat(filepath.Join(dir, "_delta_log", fmt.Sprintf("%020d.checkpoint.parquet", v))); err != nil {
			t.Errorf("checkpoint %d: %v", v, err)
		}
	}
	for v := int64(0); v < 3; v++ {
		if _, err := os.Stat(filepath.Join(dir, "_delta_log", jsonName(v))); !os.IsNotExist(err) {
			t.Errorf("commit %d not cleaned up (%v)", v, err)
		}
	}
	if _, err := tab.SnapshotAt(ctx, 2); !errors.Is(err, ErrVersionNotFound) {
		t.Errorf("SnapshotAt(2) = %v, want ErrVersionNotFound", err)
	}
	for v := int64(3); v <= 7; v++ {
		s, err := tab.SnapshotAt(ctx, v)
		if err != nil || len(s.Files()) != int(v) {
			t.Errorf("SnapshotAt(%d) = %v files, %v", v, s, err)
		}
	}
	// Timestamp travel starts at the oldest reconstructable version.
	if _, err := tab.SnapshotAsOf(ctx, time.Date(2024, 1, 3, 0, 0, 0, 0, time.UTC)); !errors.Is(err, ErrVersionNotFound) {
		t.Errorf("AsOf before retained = %v", err)
	}
	if s, err := tab.SnapshotAsOf(ctx, time.Date(2024, 1, 5, 13, 0, 0, 0, time.UTC)); err != nil || s.Version != 4 {
		t.Errorf("AsOf Jan 5 13:00 = %v, %v", s, err)
	}
}

func TestParseInterval(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"interval 30 days":            30 * 24 * time.Hour,
		"interval 1 weeks":            7 * 24 * time.Hour,
		"INTERVAL 2 hours 30 minutes": 150 * time.Minute,
		"7 days":                      7 * 24 * time.Hour,
	} {
		got, err := parseInterval(in)
		if err != nil || got != want {
			t.Errorf("parseInterval(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "interval", "interval x days", "interval 3 fortnights"} {
		if _, err := parseInterval(bad); err == nil {
			t.Errorf("parseInterval(%q) succeeded", bad)
		}
	}
}

func TestPaths(t *testing.T) {
	tab := NewTable(nil, "/a/b/")
	if tab.Root() != "a/b" {
		t.Errorf("root %q", tab.Root())
	}
	k, err := tab.ObjectKey("x=%2F%2520/f%20g.parquet")
	if err != nil || k != "a/b/x=/%20/f g.parquet" {
		t.Errorf("ObjectKey = %q %v", k, err)
	}
	if _, err := tab.ObjectKey("s3://bucket/x.parquet"); err == nil {
		t.Errorf("absolute path accepted")
	}
	if e := EncodePath("x=a b%/c+d.parquet"); e != "x=a%20b%25/c+d.parquet" {
		t.Errorf("EncodePath = %q", e)
	}
	p, _ := DecodePath(EncodePath("letter=/%20%f/ü 😈.parquet"))
	if p != "letter=/%20%f/ü 😈.parquet" {
		t.Errorf("round trip = %q", p)
	}
}

// TestCleanupOncePerCutoff: log cleanup lists the whole log only when its
// cutoff (midnight UTC of now minus the retention) has moved since the last
// run for the table, not at every checkpoint.
func TestCleanupOncePerCutoff(t *testing.T) {
	ctx := context.Background()
	st, _ := local.New(t.TempDir())
	st.NoSync = true
	tab := NewTable(st, "")
	clock := time.Date(2024, 3, 1, 1, 0, 0, 0, time.UTC)
	tab.SetClock(func() time.Time { return clock })
	snap := mustCreate(t, tab, nil, map[string]string{"delta.checkpointInterval": "1"})
	before := cleanupRuns.Load()
	for i := 1; i <= 4; i++ {
		commitAdds(t, tab, snap, addFile(fmt.Sprintf("a%d", i), nil))
		snap, _ = tab.Snapshot(ctx)
	}
	if n := cleanupRuns.Load() - before; n != 1 {
		t.Errorf("4 checkpoints on one day: %d cleanup runs, want 1", n)
	}
	// A table opened again (another Table value, same store and root)
	// shares what was cleaned.
	tab2 := NewTable(st, "")
	tab2.SetClock(func() time.Time { return clock })
	commitAdds(t, tab2, snap, addFile("b", nil))
	if n := cleanupRuns.Load() - before; n != 1 {
		t.Errorf("after a commit through a new Table value: %d cleanup runs, want 1", n)
	}
	clock = clock.Add(24 * time.Hour)
	snap, _ = tab.Snapshot(ctx)
	commitAdds(t, tab, snap, addFile("c", nil))
	if n := cleanupRuns.Load() - before; n != 2 {
		t.Errorf("next day: %d cleanup runs, want 2", n)
	}
}

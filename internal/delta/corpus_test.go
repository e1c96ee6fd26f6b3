package delta

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/testutil/corpus"
)

// The conformance corpus lives outside the repo (never committed, never
// written to). Tests that need it skip when it is absent, except in CI.
// corpusDir is found by testutil/corpus ("" when absent: loadManifest skips, or fails in CI).
var corpusDir = corpus.Find()

type manifestTable struct {
	Dir           string    `json:"dir"`
	TableRoot     string    `json:"table_root"`
	LatestVersion int64     `json:"latest_version"`
	Protocol      *Protocol `json:"protocol"`
	ExpectError   *string   `json:"expect_error"`
}

func loadManifest(t *testing.T) []manifestTable {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(corpusDir, "manifest.json"))
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("conformance corpus missing: %v", err)
		}
		t.Skipf("conformance corpus missing: %v", err)
	}
	var m struct {
		Tables []manifestTable `json:"tables"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m.Tables
}

// corpusTable opens a corpus table read-only (in place).
func corpusTable(t *testing.T, root string) *Table {
	t.Helper()
	st, err := local.New(filepath.Join(corpusDir, root))
	if err != nil {
		t.Fatal(err)
	}
	return NewTable(st, "")
}

// copyTable copies a corpus table to a temp dir (for tests that write or
// change mtimes) and returns the table and its directory.
func copyTable(t *testing.T, root string) (*Table, string) {
	t.Helper()
	src := filepath.Join(corpusDir, root)
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := local.New(dst)
	if err != nil {
		t.Fatal(err)
	}
	st.NoSync = true
	return NewTable(st, ""), dst
}

// corpusExpect holds the expected number of live files at each version,
// from an independent JSON-only log replay (a Python script applying the
// (decoded path, DV id) rule) cross-checked with the corpus README. -1
// means the version must not be reconstructable (ErrVersionNotFound);
// -2 means a version gap (ErrCorrupt naming it); -3 another ErrCorrupt;
// -4 ErrUnsupportedFeature (protocol gating).
var corpusExpect = map[string][]int{
	"dat/basic_append":                                {1, 2},
	"dat/multi_partitioned":                           {3, 5, 2},
	"dat/multi_partitioned_2":                         {3},
	"dat/all_primitive_types":                         {1},
	"dat/nested_types":                                {1},
	"dat/with_checkpoint":                             {0, 1, 1, 1},
	"dat/no_replay":                                   {-1, -1, 1, 1}, // commits 0-1 cleaned up; v2 from _last_checkpoint numOfAddFiles
	"dat/no_stats":                                    {0, 1, 1, 1},
	"dat/with_schema_change":                          {1, 1},
	"golden/basic-with-inserts-deletes-checkpoint":    {1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 6, 7, 8, 7},
	"golden/basic-with-inserts-overwrite-restore":     {2, 4, 2, 4},
	"golden/multi-part-checkpoint":                    {1, 10},
	"golden/corrupted-last-checkpoint-kernel":         {2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 2},
	"golden/checkpoint":                               {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
	"golden/time-travel-start-start20-start40":        {2, 4, 6},
	"golden/time-travel-schema-changes-b":             {2, 4},
	"golden/time-travel-partition-changes-b":          {10, 4},
	"golden/data-reader-primitives":                   {2},
	"golden/decimal-various-scale-precision":          {1},
	"golden/data-reader-partition-values":             {3},
	"golden/data-reader-escaped-chars":                {1, 2, 3},
	"golden/data-reader-nested-struct":                {2},
	"golden/data-reader-array-complex-objects":        {2},
	"golden/table-with-columnmapping-mode-name":       {2},
	"golden/data-reader-timestamp_ntz":                {0, 4},
	"golden/parquet-all-types":                        {1},
	"golden/kernel-timestamp-int96":                   {5},
	"golden/kernel-timestamp-timestamp_millis":        {5},
	"golden/data-skipping-basic-stats-all-types":      {1},
	"golden/data-skipping-partition-and-data-column":  {1, 2, 3, 4},
	"golden/dv-partitioned-with-checkpoint":           {20, 20, 20, 20, 20, 20, 20, 20, 20, 19, 18, 17, 16, 15, 15, 15},
	"golden/dv-with-columnmapping":                    {20, 20, 20, 20, 20, 20, 20, 20, 20, 19, 18, 17, 16, 15, 15, 15},
	"golden/log-replay-latest-metadata-protocol":      {2, 4, 4},
	"golden/v2-checkpoint-parquet":                    {0, -4, -4}, // v0 is 1/2; v1 adds v2Checkpoint
	"golden/basic-with-vacuum-protocol-check-feature": {2, 2},
	"golden/snapshot-vacuumed":                        {2, 4, 2, 4, 3, 2},
	"golden/deltalog-getChanges":                      {1, 0, 0},
	"golden/deltalog-invalid-protocol-version":        {-4},
	"golden/versions-not-contiguous":                  {-3, -2, -2}, // v0's metaData lacks schemaString
	"kernel-rs/app-txn-checkpoint":                    {2, 4},
	"kernel-rs/app-txn-with-last-updated":             {1, 2, 3, 4},
	"kernel-rs/table-with-dv-small":                   {1, 1},
	"kernel-rs/void-column":                           {3},
	"delta-rs/delta-0.8.0-special-partition":          {2},
	"delta-rs/delta-0.8.0-null-partition":             {2},
	"delta-rs/delta-1.2.1-only-struct-stats":          {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
	"delta-rs/simple_table_features":                  {-4, -4, -4, -4, -4},
	"delta-rs/simple_table_with_cdc":                  {0, 1, 1},
	"delta-rs/table_with_liquid_clustering":           {10},
	"delta-spark/transaction_log_schema_evolvability": {2, 2, 2, 4, 2, 4},
}

// corpusReject: tables a reader must refuse, with a substring the error
// must contain (the reason).
var corpusReject = map[string]string{
	"golden/deltalog-invalid-protocol-version": "reader version 99",
	"golden/versions-not-contiguous":           "not contiguous",
	"delta-rs/simple_table_features":           "blahabl",
	"golden/v2-checkpoint-parquet":             `reader feature "v2Checkpoint"`,
}

// corpusWriteReject: readable tables silt must refuse to write, with the
// feature the error must name. Tables absent here must be writable.
var corpusWriteReject = map[string]string{
	"golden/table-with-columnmapping-mode-name": "columnMapping",
	"golden/dv-partitioned-with-checkpoint":     "deletionVectors",
	"golden/dv-with-columnmapping":              "deletionVectors",
	"kernel-rs/table-with-dv-small":             "deletionVectors",
	"delta-rs/simple_table_with_cdc":            "changeDataFeed",
	"delta-rs/table_with_liquid_clustering":     "deletionVectors",
	"delta-rs/delta-1.2.1-only-struct-stats":    "writeStatsAsStruct",
	// writeStatsAsJson=false, writeStatsAsStruct=true: our checkpoints
	// would not follow the table's stats format.
	"delta-spark/transaction_log_schema_evolvability": "writeStatsAsStruct",
}

func TestCorpusLogLevel(t *testing.T) {
	ctx := context.Background()
	for _, mt := range loadManifest(t) {
		t.Run(mt.Dir, func(t *testing.T) {
			want, known := corpusExpect[mt.Dir]
			if !known {
				t.Fatalf("table %s missing from corpusExpect: add its expectations", mt.Dir)
			}
			tab := corpusTable(t, mt.TableRoot)
			latest, err := tab.LatestVersion(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if latest != mt.LatestVersion {
				t.Errorf("LatestVersion = %d, manifest says %d", latest, mt.LatestVersion)
			}
			snap, err := tab.Snapshot(ctx)
			if reason, ok := corpusReject[mt.Dir]; ok {
				if err == nil {
					t.Fatalf("Snapshot succeeded, want rejection (%s)", reason)
				}
				if !strings.Contains(err.Error(), reason) {
					t.Errorf("error %q does not name the reason %q", err, reason)
				}
				if !errorsIsAny(err, ErrUnsupportedFeature, ErrCorrupt) {
					t.Errorf("error %v is neither ErrUnsupportedFeature nor ErrCorrupt", err)
				}
			} else if err != nil {
				t.Fatalf("Snapshot: %v", err)
			} else {
				if snap.Version != mt.LatestVersion {
					t.Errorf("Version = %d, want %d", snap.Version, mt.LatestVersion)
				}
				if mt.Protocol != nil {
					p := snap.Protocol
					if p.MinReaderVersion != mt.Protocol.MinReaderVersion || p.MinWriterVersion != mt.Protocol.MinWriterVersion ||
						!slices.Equal(p.ReaderFeatures, mt.Protocol.ReaderFeatures) || !slices.Equal(p.WriterFeatures, mt.Protocol.WriterFeatures) {
						t.Errorf("Protocol = %+v, manifest %+v", *p, *mt.Protocol)
					}
				}
				if snap.Schema() == nil || snap.Metadata.ID == "" {
					t.Errorf("schema/metadata missing")
				}
				werr := snap.CanWrite()
				if feat, ok := corpusWriteReject[mt.Dir]; ok {
					if !errors.Is(werr, ErrUnsupportedFeature) || !strings.Contains(werr.Error(), feat) {
						t.Errorf("CanWrite = %v, want ErrUnsupportedFeature naming %q", werr, feat)
					}
				} else if werr != nil {
					t.Errorf("CanWrite = %v, want nil", werr)
				}
			}
			for v, n := range want {
				s, err := tab.SnapshotAt(ctx, int64(v))
				switch n {
				case -1:
					if !errors.Is(err, ErrVersionNotFound) {
						t.Errorf("SnapshotAt(%d) err = %v, want ErrVersionNotFound", v, err)
					}
					continue
				case -2:
					if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "not contiguous") {
						t.Errorf("SnapshotAt(%d) err = %v, want ErrCorrupt (not contiguous)", v, err)
					}
					continue
				case -3:
					if !errors.Is(err, ErrCorrupt) {
						t.Errorf("SnapshotAt(%d) err = %v, want ErrCorrupt", v, err)
					}
					continue
				case -4:
					if !errors.Is(err, ErrUnsupportedFeature) {
						t.Errorf("SnapshotAt(%d) err = %v, want ErrUnsupportedFeature", v, err)
					}
					continue
				}
				if err != nil {
					t.Errorf("SnapshotAt(%d): %v", v, err)
					continue
				}
				if s.Version != int64(v) {
					t.Errorf("SnapshotAt(%d).Version = %d", v, s.Version)
				}
				if got := len(s.Files()); got != n {
					t.Errorf("SnapshotAt(%d): %d live files, want %d", v, got, n)
				}
				if !slices.IsSortedFunc(s.Files(), func(a, b *Add) int { return strings.Compare(a.Path, b.Path) }) {
					t.Errorf("SnapshotAt(%d): files not sorted", v)
				}
			}
			if _, err := tab.SnapshotAt(ctx, latest+1); !errors.Is(err, ErrVersionNotFound) {
				t.Errorf("SnapshotAt(latest+1) err = %v, want ErrVersionNotFound", err)
			}
		})
	}
}

func TestCorpusTxns(t *testing.T) {
	loadManifest(t)
	ctx := context.Background()
	cases := []struct {
		table string
		want  map[string]int64
	}{
		{"kernel-rs/app-txn-checkpoint", map[string]int64{"my-app": 3, "my-app2": 2}},
		{"kernel-rs/app-txn-with-last-updated", map[string]int64{"new_app_0": 1, "new_app_1": 1, "new_app_2": 1, "old_app": 1}},
		{"golden/deltalog-getChanges/delta", map[string]int64{"fakeAppId": 3}},
	}
	for _, c := range cases {
		s, err := corpusTable(t, c.table).Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Txns()) != len(c.want) {
			t.Errorf("%s: %d txns, want %d", c.table, len(s.Txns()), len(c.want))
		}
		for app, v := range c.want {
			if got, ok := s.TxnVersion(app); !ok || got != v {
				t.Errorf("%s: TxnVersion(%s) = %d,%v want %d", c.table, app, got, ok, v)
			}
		}
	}
	// At version 0 of app-txn-checkpoint (before the checkpoint) my-app is 1.
	s, err := corpusTable(t, "kernel-rs/app-txn-checkpoint").SnapshotAt(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s.TxnVersion("my-app"); v != 1 {
		t.Errorf("my-app at v0 = %d, want 1", v)
	}
}

func TestCorpusDetails(t *testing.T) {
	loadManifest(t)
	ctx := context.Background()
	// Partition values and double-encoded paths (dat/multi_partitioned).
	s, err := corpusTable(t, "dat/multi_partitioned/delta").Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, a := range s.Files() {
		p, err := DecodePath(a.Path)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(p, "letter=%2F%2520%25f/") {
			found = true
			if v := a.PartitionValues["letter"]; v == nil || *v != "/%20%f" {
				t.Errorf("letter = %v", v)
			}
		}
	}
	if !found {
		t.Errorf("escaped partition file not found in %v", s.Files())
	}
	// Struct-only stats in a checkpoint become the stats string.
	s, err = corpusTable(t, "delta-rs/delta-1.2.1-only-struct-stats").SnapshotAt(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range s.Files() {
		var st Stats
		if err := json.Unmarshal([]byte(a.Stats), &st); err != nil || st.NumRecords != 1 {
			t.Errorf("%s: stats %q (%v)", a.Path, a.Stats, err)
		}
	}
	// DV files keep their deletion vector through checkpoint + JSON.
	s, err = corpusTable(t, "golden/dv-partitioned-with-checkpoint/delta").Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dvs := 0
	for _, a := range s.Files() {
		if a.DeletionVector != nil {
			dvs++
			if a.DeletionVector.StorageType != "u" || a.DeletionVector.Cardinality <= 0 {
				t.Errorf("bad DV %+v", a.DeletionVector)
			}
		}
	}
	if dvs == 0 {
		t.Errorf("no DVs found")
	}
	// Column mapping mode.
	s, err = corpusTable(t, "golden/table-with-columnmapping-mode-name/delta").Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.ColumnMappingMode() != "name" {
		t.Errorf("ColumnMappingMode = %q", s.ColumnMappingMode())
	}
	// commitInfo of the target version comes from its JSON even when the
	// snapshot starts at a checkpoint of the same version.
	s, err = corpusTable(t, "dat/with_checkpoint/delta").SnapshotAt(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if s.checkpointVersion != 2 || s.CommitInfo == nil {
		t.Errorf("checkpointVersion=%d commitInfo=%v", s.checkpointVersion, s.CommitInfo)
	}
}

func TestCheckpointDiscovery(t *testing.T) {
	loadManifest(t)
	ctx := context.Background()
	t.Run("no _last_checkpoint", func(t *testing.T) {
		tab, dir := copyTable(t, "dat/with_checkpoint/delta")
		os.Remove(filepath.Join(dir, "_delta_log", "_last_checkpoint"))
		s, err := tab.Snapshot(ctx)
		if err != nil || s.checkpointVersion != 2 || len(s.Files()) != 1 {
			t.Fatalf("snap=%+v err=%v", s, err)
		}
	})
	t.Run("corrupt checkpoint falls back to JSON", func(t *testing.T) {
		tab, dir := copyTable(t, "golden/checkpoint/delta")
		os.WriteFile(filepath.Join(dir, "_delta_log", "00000000000000000010.checkpoint.parquet"), []byte("PAR1garbage"), 0o644)
		s, err := tab.Snapshot(ctx)
		if err != nil || s.checkpointVersion != -1 || len(s.Files()) != 1 || s.Version != 14 {
			t.Fatalf("snap=%+v err=%v", s, err)
		}
	})
	t.Run("incomplete multi-part set ignored", func(t *testing.T) {
		tab, dir := copyTable(t, "golden/multi-part-checkpoint/delta")
		os.Remove(filepath.Join(dir, "_delta_log", "00000000000000000001.checkpoint.0000000002.0000000002.parquet"))
		s, err := tab.Snapshot(ctx)
		if err != nil || s.checkpointVersion != -1 || len(s.Files()) != 10 {
			t.Fatalf("snap=%+v err=%v", s, err)
		}
	})
	t.Run("corrupt _last_checkpoint", func(t *testing.T) {
		tab, dir := copyTable(t, "dat/with_checkpoint/delta")
		os.WriteFile(filepath.Join(dir, "_delta_log", "_last_checkpoint"), []byte("{not json"), 0o644)
		s, err := tab.Snapshot(ctx)
		if err != nil || s.checkpointVersion != 2 {
			t.Fatalf("snap=%+v err=%v", s, err)
		}
	})
	t.Run("not a table", func(t *testing.T) {
		st, _ := local.New(t.TempDir())
		if _, err := NewTable(st, "x").Snapshot(ctx); !errors.Is(err, ErrNotATable) {
			t.Fatalf("err = %v", err)
		}
	})
}

func setCommitMtimes(t *testing.T, dir string, ms ...int64) {
	t.Helper()
	for v, m := range ms {
		p := filepath.Join(dir, "_delta_log", jsonName(int64(v)))
		tm := time.UnixMilli(m)
		if err := os.Chtimes(p, tm, tm); err != nil {
			t.Fatal(err)
		}
	}
}

func jsonName(v int64) string {
	return strings.TrimPrefix(NewTable(nil, "").CommitKey(v), "_delta_log/")
}

func TestTimeTravelByTimestamp(t *testing.T) {
	loadManifest(t)
	ctx := context.Background()
	tab, dir := copyTable(t, "golden/time-travel-start-start20-start40/delta")
	const v0, v1, v2 = 1540415658000, 1540416858000, 1540418058000
	setCommitMtimes(t, dir, v0, v1, v2)
	ms := func(m int64) time.Time { return time.UnixMilli(m) }
	cases := []struct {
		at   time.Time
		want int64 // -1: error
	}{
		{ms(v0 - 1), -1},
		{ms(v0), 0},
		{ms(v0 + 10*60*1000), 0},
		{ms(v1 - 1), 0},
		{ms(v1), 1},
		{ms(v1 + 1), 1},
		{ms(v2), 2},
		{ms(v2 + 1), -1},
	}
	for _, c := range cases {
		s, err := tab.SnapshotAsOf(ctx, c.at)
		if c.want < 0 {
			if !errors.Is(err, ErrVersionNotFound) {
				t.Errorf("AsOf(%d): err = %v, want ErrVersionNotFound", c.at.UnixMilli(), err)
			}
			continue
		}
		if err != nil {
			t.Errorf("AsOf(%d): %v", c.at.UnixMilli(), err)
			continue
		}
		if s.Version != c.want || len(s.Files()) != int(2*(c.want+1)) {
			t.Errorf("AsOf(%d) = v%d (%d files), want v%d", c.at.UnixMilli(), s.Version, len(s.Files()), c.want)
		}
	}
	// Monotonic rule: v1's mtime goes back before v0; it is treated as
	// v0+1ms, so a query at v0 yields v0 and at v0+1ms yields v1.
	setCommitMtimes(t, dir, v0, v0-5000, v2)
	s, err := tab.SnapshotAsOf(ctx, ms(v0))
	if err != nil || s.Version != 0 {
		t.Fatalf("AsOf(v0) = %v, %v", s, err)
	}
	s, err = tab.SnapshotAsOf(ctx, ms(v0+1))
	if err != nil || s.Version != 1 {
		t.Fatalf("AsOf(v0+1ms) = %v, %v", s, err)
	}
	h, err := tab.History(ctx, 2)
	if err != nil || len(h) != 2 || h[0].Version != 2 || h[1].Version != 1 || h[0].CommitInfo == nil {
		t.Fatalf("History = %+v, %v", h, err)
	}
	if !h[0].Timestamp.Equal(ms(v2)) {
		t.Errorf("History[0].Timestamp = %v", h[0].Timestamp)
	}
}

func TestTimeTravelInCommitTimestamps(t *testing.T) {
	ctx := context.Background()
	tab := newTestTable(t)
	// silt refuses to write tables with in-commit timestamps, so the whole
	// log is written by hand.
	for v, ict := range map[int64]int64{0: 1_700_000_000_000} {
		data, _ := MarshalActions([]Action{
			{CommitInfo: map[string]any{"inCommitTimestamp": ict, "timestamp": ict, "operation": "CREATE TABLE"}},
			{Protocol: &Protocol{MinReaderVersion: 1, MinWriterVersion: 7, WriterFeatures: []string{"inCommitTimestamp"}}},
			{MetaData: &Metadata{ID: "x", Format: Format{Provider: "parquet"}, SchemaString: testSchema(t).SchemaString(),
				PartitionColumns: []string{}, Configuration: map[string]string{"delta.enableInCommitTimestamps": "true", "delta.inCommitTimestampEnablementVersion": "0"}}},
		})
		if err := tab.Store().PutIfAbsent(ctx, tab.CommitKey(v), data); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := tab.Snapshot(ctx); err != nil || !errors.Is(s.CanWrite(), ErrUnsupportedFeature) {
		t.Fatalf("snapshot %v err %v: want readable, not writable", s, err)
	}
	// Write two commits by hand with inCommitTimestamp; mtimes are "now".
	for v, ict := range map[int64]int64{1: 1_700_000_100_000, 2: 1_700_000_200_000} {
		data, _ := MarshalActions([]Action{
			{CommitInfo: map[string]any{"inCommitTimestamp": ict, "timestamp": ict, "operation": "WRITE"}},
			{Add: &Add{Path: "f" + itoa(v), PartitionValues: map[string]*string{}, Size: 1, DataChange: true}},
		})
		if err := tab.Store().PutIfAbsent(ctx, tab.CommitKey(v), data); err != nil {
			t.Fatal(err)
		}
	}
	s, err := tab.SnapshotAsOf(ctx, time.UnixMilli(1_700_000_150_000))
	if err != nil || s.Version != 1 {
		t.Fatalf("AsOf = %v, %v", s, err)
	}
	if !s.Timestamp().Equal(time.UnixMilli(1_700_000_100_000)) {
		t.Errorf("Timestamp = %v", s.Timestamp())
	}
}

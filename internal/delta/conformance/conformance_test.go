// Package conformance checks silt's Delta reader (delta log layer +
// datafile) against the tables of /work/shared/delta-conformance, written
// by Spark, delta-rs and delta-kernel-rs. One subtest per manifest entry,
// named by its dir. Fixtures are read in place and never written.
package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/testutil/corpus"
)

// corpusDir is found by testutil/corpus ("" when absent: loadManifest skips, or fails in CI).
var corpusDir = corpus.Find()

type manifestTable struct {
	Dir           string  `json:"dir"`
	TableRoot     string  `json:"table_root"`
	Expected      string  `json:"expected"`
	LatestVersion int64   `json:"latest_version"`
	ExpectError   *string `json:"expect_error"`
	Notes         string  `json:"notes"`
	Protocol      struct {
		ReaderFeatures []string `json:"readerFeatures"`
	} `json:"protocol"`
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

// knownFailures lists tables whose row comparison is expected to fail, with
// the reason. The test still runs them and fails if they start passing, so
// the list stays honest.
var knownFailures = map[string]string{}

// partitionTimeZones gives the reader's zone for zone-less timestamp
// partition values (TableInfo.PartitionTimeZone) where the writer's session
// zone was not UTC, per the manifest/README note of the table.
var partitionTimeZones = map[string]string{
	// Partition value "2021-09-08 11:11:11" has no zone; Spark wrote it and
	// the expected rows in America/Los_Angeles (18:11:11Z).
	"golden/data-reader-partition-values": "America/Los_Angeles",
}

// logChecks are the checks for fixtures without expected rows, taken from
// each manifest entry's "expected" text.
var logChecks = map[string]func(t *testing.T, tbl *delta.Table, st blob.Store){
	"golden/checkpoint": func(t *testing.T, tbl *delta.Table, st blob.Store) {
		s := snapshot(t, tbl, -1)
		if s.Version != 14 || len(s.Files()) != 1 {
			t.Fatalf("version %d with %d live files, want 14 and 1", s.Version, len(s.Files()))
		}
	},
	"kernel-rs/app-txn-checkpoint": func(t *testing.T, tbl *delta.Table, st blob.Store) {
		s := snapshot(t, tbl, -1)
		for app, want := range map[string]int64{"my-app": 3, "my-app2": 2} {
			if v, ok := s.TxnVersion(app); !ok || v != want {
				t.Errorf("txn %s = %d (%v), want %d", app, v, ok, want)
			}
		}
		if got := len(s.Files()); got != 4 {
			t.Errorf("%d live files, want 4", got)
		}
		if rows := scanRows(t, st, s); len(rows) != 22 {
			t.Errorf("%d rows, want 22", len(rows))
		}
	},
	"kernel-rs/app-txn-with-last-updated": func(t *testing.T, tbl *delta.Table, st blob.Store) {
		s := snapshot(t, tbl, -1)
		for _, app := range []string{"new_app_0", "new_app_1", "new_app_2", "old_app"} {
			if v, ok := s.TxnVersion(app); !ok || v != 1 {
				t.Errorf("txn %s = %d (%v), want 1", app, v, ok)
			}
		}
	},
	"kernel-rs/table-with-dv-small": func(t *testing.T, tbl *delta.Table, st blob.Store) {
		rows := scanRows(t, st, snapshot(t, tbl, -1))
		var want []string
		for i := 1; i <= 8; i++ {
			want = append(want, fmt.Sprintf("value=%d", i))
		}
		compareRows(t, rows, want)
	},
	"kernel-rs/void-column": func(t *testing.T, tbl *delta.Table, st blob.Store) {
		s := snapshot(t, tbl, -1)
		rows := scanRows(t, st, s)
		if len(s.Files()) != 3 || len(rows) != 3 {
			t.Fatalf("%d files, %d rows, want 3 and 3", len(s.Files()), len(rows))
		}
		for _, r := range rows {
			if !strings.Contains(r, "void_col=null") {
				t.Errorf("row %s: void_col not null", r)
			}
		}
	},
	"delta-rs/delta-0.8.0-special-partition": func(t *testing.T, tbl *delta.Table, st blob.Store) {
		rows := scanRows(t, st, snapshot(t, tbl, -1))
		joined := strings.Join(rows, "\n")
		for _, v := range []string{`x="A/A"`, `x="B B"`} {
			if !strings.Contains(joined, v) {
				t.Errorf("no row with %s in\n%s", v, joined)
			}
		}
	},
	"delta-rs/delta-0.8.0-null-partition": func(t *testing.T, tbl *delta.Table, st blob.Store) {
		rows := scanRows(t, st, snapshot(t, tbl, -1))
		if !strings.Contains(strings.Join(rows, "\n"), "k=null") {
			t.Errorf("no row with a null k in %v", rows)
		}
	},
	"delta-rs/delta-1.2.1-only-struct-stats": func(t *testing.T, tbl *delta.Table, st blob.Store) {
		s := snapshot(t, tbl, -1)
		if rows := scanRows(t, st, s); len(s.Files()) != 12 || len(rows) != 12 {
			t.Fatalf("%d files, %d rows, want 12 and 12", len(s.Files()), len(rows))
		}
	},
	"delta-rs/simple_table_with_cdc": func(t *testing.T, tbl *delta.Table, st blob.Store) {
		s := snapshot(t, tbl, -1)
		if len(s.Files()) != 1 {
			t.Fatalf("%d live files, want 1", len(s.Files()))
		}
		scanRows(t, st, s)
	},
	"delta-rs/table_with_liquid_clustering": func(t *testing.T, tbl *delta.Table, st blob.Store) {
		s := snapshot(t, tbl, -1)
		if rows := scanRows(t, st, s); len(s.Files()) != 10 || len(rows) != 10 {
			t.Fatalf("%d files, %d rows, want 10 and 10", len(s.Files()), len(rows))
		}
	},
	"delta-spark/transaction_log_schema_evolvability": func(t *testing.T, tbl *delta.Table, st blob.Store) {
		s := snapshot(t, tbl, -1)
		if rows := scanRows(t, st, s); s.Version != 5 || len(s.Files()) != 4 || len(rows) != 18 {
			t.Fatalf("v%d: %d files, %d rows, want v5, 4 and 18", s.Version, len(s.Files()), len(rows))
		}
	},
}

// extraChecks run in addition to the row comparison.
var extraChecks = map[string]func(t *testing.T, tbl *delta.Table, st blob.Store){
	// VACUUM removed the files of older versions: reading v0 must fail.
	"golden/snapshot-vacuumed": func(t *testing.T, tbl *delta.Table, st blob.Store) {
		s := snapshot(t, tbl, 0)
		err := datafile.Scan(context.Background(), st, tableInfo(s), s.Files(), func(arrow.Record) error { return nil })
		if !errors.Is(err, blob.ErrNotExist) {
			t.Errorf("scan of vacuumed v0: err = %v, want ErrNotExist", err)
		}
	},
}

// errorReasons maps a manifest expect_error to what the error must say.
func checkRejection(t *testing.T, reason string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("opened the table; want rejection (%s)", reason)
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(reason, "reader version"):
		if !errors.Is(err, delta.ErrUnsupportedFeature) || !strings.Contains(msg, "reader") {
			t.Errorf("error %q does not name an unsupported reader version", err)
		}
	case strings.Contains(reason, "non-contiguous"):
		if !regexp.MustCompile(`contiguous|missing|gap`).MatchString(msg) {
			t.Errorf("error %q does not name the version gap", err)
		}
	case strings.Contains(reason, "reader and writer"):
		if !errors.Is(err, delta.ErrUnsupportedFeature) {
			t.Errorf("error %q is not ErrUnsupportedFeature", err)
		}
	default:
		t.Fatalf("no check for expected error %q", reason)
	}
	t.Logf("rejected as expected: %v", err)
}

func TestConformance(t *testing.T) {
	for _, mt := range loadManifest(t) {
		t.Run(mt.Dir, func(t *testing.T) {
			st, err := local.New(filepath.Join(corpusDir, mt.TableRoot))
			if err != nil {
				t.Fatal(err)
			}
			tbl := delta.NewTable(st, "")
			if mt.ExpectError != nil {
				_, err := tbl.Snapshot(context.Background())
				checkRejection(t, *mt.ExpectError, err)
				return
			}
			exps := expectations(t, mt.Dir)
			check, hasCheck := logChecks[mt.Dir]
			if len(exps) == 0 && !hasCheck {
				t.Fatalf("no expected rows and no log check defined for %s (%s)", mt.Dir, mt.Expected)
			}
			if hasCheck {
				check(t, tbl, st)
			}
			if extra := extraChecks[mt.Dir]; extra != nil {
				extra(t, tbl, st)
			}
			for _, e := range exps {
				s, err := openSnapshot(tbl, e.version)
				if err != nil {
					if errors.Is(err, delta.ErrUnsupportedFeature) && len(mt.Protocol.ReaderFeatures) > 0 {
						t.Logf("%s: log layer refuses the table (allowed: %v)", e.name, err)
						continue
					}
					t.Fatalf("%s: open snapshot: %v", e.name, err)
				}
				got := scanRowsIn(t, st, s, partitionTimeZones[mt.Dir])
				want := readExpected(t, e.files)
				if reason, known := knownFailures[mt.Dir]; known {
					if rowsEqual(got, want) {
						t.Errorf("%s: known failure (%s) now passes; remove it from knownFailures", e.name, reason)
					} else {
						t.Logf("%s: known failure: %s\n%s", e.name, reason, diffRows(got, want))
					}
					continue
				}
				if tz := partitionTimeZones[mt.Dir]; tz != "" {
					if !strings.Contains(mt.Notes, tz) {
						t.Errorf("manifest notes do not name partition time zone %s: %q", tz, mt.Notes)
					}
					t.Logf("%s: zone-less timestamp partition values read in %s", e.name, tz)
				}
				t.Logf("%s: version %d, %d files, %d rows", e.name, s.Version, len(s.Files()), len(got))
				compareRows(t, got, want)
			}
		})
	}
}

type expectation struct {
	name    string
	version int64 // -1 = latest
	files   []string
}

var versionDir = regexp.MustCompile(`^(?:v|expected_v)(\d+)$`)

// expectations finds the expected-row folders of a corpus entry:
// dat: expected/{latest,vN}/table_content/*.parquet; golden:
// expected/*.parquet (latest) and expected_vN/*.parquet.
func expectations(t *testing.T, dir string) []expectation {
	base := filepath.Join(corpusDir, dir)
	var out []expectation
	add := func(name string, version int64, d string) {
		files, _ := filepath.Glob(filepath.Join(d, "*.parquet"))
		if len(files) > 0 {
			out = append(out, expectation{name, version, files})
		}
	}
	if strings.HasPrefix(dir, "dat/") {
		ents, _ := os.ReadDir(filepath.Join(base, "expected"))
		for _, e := range ents {
			d := filepath.Join(base, "expected", e.Name(), "table_content")
			if e.Name() == "latest" {
				add(e.Name(), -1, d)
			} else if m := versionDir.FindStringSubmatch(e.Name()); m != nil {
				v, _ := strconv.ParseInt(m[1], 10, 64)
				add(e.Name(), v, d)
			}
		}
		return out
	}
	ents, _ := os.ReadDir(base)
	for _, e := range ents {
		if e.Name() == "expected" {
			add("expected", -1, filepath.Join(base, e.Name()))
		} else if m := versionDir.FindStringSubmatch(e.Name()); m != nil {
			v, _ := strconv.ParseInt(m[1], 10, 64)
			add(e.Name(), v, filepath.Join(base, e.Name()))
		}
	}
	// An empty expected/ folder (deltalog-getChanges) means "no rows".
	if len(out) == 0 {
		if fi, err := os.Stat(filepath.Join(base, "expected")); err == nil && fi.IsDir() {
			files, _ := filepath.Glob(filepath.Join(base, "expected", "*.parquet"))
			out = append(out, expectation{"expected", -1, files})
		}
	}
	return out
}

func openSnapshot(tbl *delta.Table, version int64) (*delta.Snapshot, error) {
	if version < 0 {
		return tbl.Snapshot(context.Background())
	}
	return tbl.SnapshotAt(context.Background(), version)
}

func snapshot(t *testing.T, tbl *delta.Table, version int64) *delta.Snapshot {
	t.Helper()
	s, err := openSnapshot(tbl, version)
	if err != nil {
		t.Fatalf("open snapshot: %v", err)
	}
	return s
}

func tableInfo(s *delta.Snapshot) datafile.TableInfo {
	return datafile.TableInfo{Schema: s.Schema(), PartitionColumns: s.PartitionColumns(), Config: s.Config()}
}

func scanRows(t *testing.T, st blob.Store, s *delta.Snapshot) []string {
	t.Helper()
	return scanRowsIn(t, st, s, "")
}

// scanRowsIn scans s with zone-less timestamp partition values read in the
// named zone ("" = UTC).
func scanRowsIn(t *testing.T, st blob.Store, s *delta.Snapshot, tz string) []string {
	t.Helper()
	ti := tableInfo(s)
	if tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			t.Fatalf("partition time zone: %v", err)
		}
		ti.PartitionTimeZone = loc
	}
	var rows []string
	err := datafile.Scan(context.Background(), st, ti, s.Files(), func(r arrow.Record) error {
		rows = append(rows, recordRows(r)...)
		return nil
	})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	return rows
}

func readExpected(t *testing.T, files []string) []string {
	t.Helper()
	var rows []string
	for _, f := range files {
		pf, err := file.OpenParquetFile(f, false)
		if err != nil {
			t.Fatalf("open %s: %v", f, err)
		}
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1024}, memory.DefaultAllocator)
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		tbl, err := fr.ReadTable(context.Background())
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		tr := array.NewTableReader(tbl, 1024)
		for tr.Next() {
			rows = append(rows, recordRows(tr.RecordBatch())...)
		}
		tr.Release()
		tbl.Release()
		pf.Close()
	}
	return rows
}

func rowsEqual(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	g := append([]string(nil), got...)
	w := append([]string(nil), want...)
	sort.Strings(g)
	sort.Strings(w)
	for i := range g {
		if g[i] != w[i] {
			return false
		}
	}
	return true
}

// compareRows compares two multisets of normalised rows.
func compareRows(t *testing.T, got, want []string) {
	t.Helper()
	if !rowsEqual(got, want) {
		t.Error(diffRows(got, want))
	}
}

func diffRows(got, want []string) string {
	count := map[string]int{}
	for _, r := range got {
		count[r]++
	}
	for _, r := range want {
		count[r]--
	}
	var extra, missing []string
	for r, c := range count {
		for ; c > 0; c-- {
			extra = append(extra, r)
		}
		for ; c < 0; c++ {
			missing = append(missing, r)
		}
	}
	sort.Strings(extra)
	sort.Strings(missing)
	return fmt.Sprintf("rows differ: got %d, want %d\nunexpected (%d): %s\nmissing (%d): %s",
		len(got), len(want), len(extra), head(extra), len(missing), head(missing))
}

func head(rows []string) string {
	if len(rows) > 5 {
		return strings.Join(rows[:5], "\n  ") + "\n  ..."
	}
	return strings.Join(rows, "\n  ")
}

// recordRows renders each row as "col=value,..." with columns sorted by
// lower-cased name and values normalised: timestamps as UTC microseconds,
// decimals by value, nested values recursively, maps sorted by key.
func recordRows(r arrow.Record) []string {
	type col struct {
		name string
		arr  arrow.Array
	}
	cols := make([]col, r.NumCols())
	for i := range cols {
		cols[i] = col{strings.ToLower(r.ColumnName(i)), r.Column(i)}
	}
	sort.Slice(cols, func(i, j int) bool { return cols[i].name < cols[j].name })
	rows := make([]string, r.NumRows())
	for i := range rows {
		parts := make([]string, len(cols))
		for k, c := range cols {
			parts[k] = c.name + "=" + value(c.arr, i)
		}
		rows[i] = strings.Join(parts, ",")
	}
	return rows
}

func value(a arrow.Array, i int) string {
	if a.DataType().ID() == arrow.NULL || a.IsNull(i) {
		return "null"
	}
	switch x := a.(type) {
	case *array.Timestamp:
		v := int64(x.Value(i))
		switch x.DataType().(*arrow.TimestampType).Unit {
		case arrow.Second:
			v *= 1e6
		case arrow.Millisecond:
			v *= 1e3
		case arrow.Nanosecond:
			v /= 1e3
		}
		return "ts:" + strconv.FormatInt(v, 10)
	case *array.Date32:
		return "d:" + strconv.FormatInt(int64(x.Value(i)), 10)
	case *array.Date64:
		return "d:" + strconv.FormatInt(int64(x.Value(i))/86400000, 10)
	case *array.Decimal128:
		sc := x.DataType().(*arrow.Decimal128Type).Scale
		return decValue(x.Value(i).BigInt(), sc)
	case *array.Decimal256:
		sc := x.DataType().(*arrow.Decimal256Type).Scale
		return decValue(x.Value(i).BigInt(), sc)
	case *array.Float32:
		return strconv.FormatFloat(float64(x.Value(i)), 'g', -1, 32)
	case *array.Float64:
		return strconv.FormatFloat(x.Value(i), 'g', -1, 64)
	case *array.String:
		return strconv.Quote(x.Value(i))
	case *array.LargeString:
		return strconv.Quote(x.Value(i))
	case *array.Binary:
		return "0x" + fmt.Sprintf("%x", x.Value(i))
	case *array.LargeBinary:
		return "0x" + fmt.Sprintf("%x", x.Value(i))
	case *array.Struct:
		st := x.DataType().(*arrow.StructType)
		type kv struct{ k, v string }
		var kvs []kv
		for f := 0; f < x.NumField(); f++ {
			kvs = append(kvs, kv{strings.ToLower(st.Field(f).Name), value(x.Field(f), i)})
		}
		sort.Slice(kvs, func(p, q int) bool { return kvs[p].k < kvs[q].k })
		var parts []string
		for _, e := range kvs {
			parts = append(parts, e.k+":"+e.v)
		}
		return "{" + strings.Join(parts, ",") + "}"
	case *array.Map:
		s, e := x.ValueOffsets(i)
		keys, items := x.Keys(), x.Items()
		var parts []string
		for j := s; j < e; j++ {
			parts = append(parts, value(keys, int(j))+"=>"+value(items, int(j)))
		}
		sort.Strings(parts)
		return "map[" + strings.Join(parts, ",") + "]"
	case array.ListLike:
		s, e := x.ValueOffsets(i)
		vals := x.ListValues()
		var parts []string
		for j := s; j < e; j++ {
			parts = append(parts, value(vals, int(j)))
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return a.ValueStr(i)
}

func decValue(unscaled *big.Int, scale int32) string {
	r := new(big.Rat).SetFrac(unscaled, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil))
	return "dec:" + r.RatString()
}

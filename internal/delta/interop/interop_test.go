package interop

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/delta"
)

// foreignDir is a fixture directory written by other engines
// (interop/test_others_to_silt.py passes it). Without it TestReadForeign
// has nothing to read.
var foreignDir = flag.String("foreign", "", "fixture directory written by delta-rs/Spark (see interop/test_others_to_silt.py)")

// TestReadForeign reads every table of -foreign with silt and compares it
// with what the writing engine read: rows (normalised multiset), schema
// names and types, partition columns, latest version and history length.
// Tables with a feature silt does not support must be refused naming it.
//
// It is driven by pytest (scripts/test.sh runs `pytest interop` after the
// Go tests), which owns the Python engines; under plain `go test ./...` it
// skips, unless CI is set and the Python environment is missing, which
// fails so that a green CI cannot hide a missing install.
func TestReadForeign(t *testing.T) {
	if *foreignDir == "" {
		if os.Getenv("CI") != "" {
			if _, err := os.Stat(filepath.Join(repoRoot(t), ".venv", "bin", "python")); err != nil {
				t.Fatalf("CI is set but the interop Python environment is missing (%v): scripts/setup.sh need_python_deps", err)
			}
		}
		t.Skip("needs -foreign DIR; run by `.venv/bin/python -m pytest interop` (scripts/test.sh)")
	}
	m, err := ReadManifest(*foreignDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tables) == 0 {
		t.Fatal("manifest lists no tables")
	}
	for _, mt := range m.Tables {
		t.Run(mt.Name, func(t *testing.T) { checkForeign(t, *foreignDir, mt) })
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", "..", ".."))
}

func checkForeign(t *testing.T, dir string, mt ManifestTable) {
	ctx := context.Background()
	tbl, st, err := OpenTable(TableDir(dir, mt.Name))
	if err != nil {
		t.Fatal(err)
	}
	if mt.ExpectError != "" {
		_, err := tbl.Snapshot(ctx)
		checkRefusal(t, "read", mt.ExpectError, err)
		return
	}
	latest, err := tbl.Snapshot(ctx)
	if err != nil {
		t.Fatalf("open latest: %v", err)
	}
	if latest.Version != mt.Latest {
		t.Errorf("latest version %d, writer says %d", latest.Version, mt.Latest)
	}
	hist, err := tbl.History(ctx, 0)
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	if len(hist) != mt.History {
		t.Errorf("history has %d commits, writer says %d", len(hist), mt.History)
	}
	if mt.ExpectWriteError != "" {
		checkRefusal(t, "write", mt.ExpectWriteError, latest.CanWrite())
	}
	if mt.Checkpoint {
		if _, err := os.Stat(filepath.Join(TableDir(dir, mt.Name), "_delta_log", "_last_checkpoint")); err != nil {
			t.Errorf("writer claims a checkpoint but: %v", err)
		}
	}
	for _, v := range mt.Versions {
		metaPath, rowsPath := ExpectedPaths(dir, mt.Name, v)
		var want Expectation
		b, err := os.ReadFile(metaPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("%s: %v", metaPath, err)
		}
		rb, err := os.ReadFile(rowsPath)
		if err != nil {
			t.Fatal(err)
		}
		wantRows, err := DecodeRows(rb)
		if err != nil {
			t.Fatalf("%s: %v", rowsPath, err)
		}
		s, err := tbl.SnapshotAt(ctx, v)
		if err != nil {
			t.Errorf("v%d: open: %v", v, err)
			continue
		}
		rows, err := ScanRows(ctx, st, tbl, s)
		if err != nil {
			t.Errorf("v%d: %v", v, err)
			continue
		}
		if d := DiffRows(CanonicalRows(rows), CanonicalRows(wantRows)); d != "" {
			t.Errorf("v%d: %s", v, d)
		}
		var wantSchema any
		if err := json.Unmarshal(want.Schema, &wantSchema); err != nil {
			t.Fatalf("%s: schema: %v", metaPath, err)
		}
		var gotSchema any
		if err := json.Unmarshal([]byte(s.Metadata.SchemaString), &gotSchema); err != nil {
			t.Fatalf("v%d: schemaString: %v", v, err)
		}
		if g, w := schemaShape(gotSchema), schemaShape(wantSchema); !reflect.DeepEqual(g, w) {
			t.Errorf("v%d: schema (names, types) differs:\n  silt:   %s\n  writer: %s", v, Canonical(g), Canonical(w))
		}
		if !equalStrings(s.PartitionColumns(), want.PartitionColumns) {
			t.Errorf("v%d: partition columns %q, writer says %q", v, s.PartitionColumns(), want.PartitionColumns)
		}
		if want.NumFiles >= 0 && len(s.Files()) != want.NumFiles {
			t.Errorf("v%d: %d live files, writer says %d", v, len(s.Files()), want.NumFiles)
		}
		for app, ver := range want.Txns {
			if got, ok := s.TxnVersion(app); !ok || got != ver {
				t.Errorf("v%d: txn %s = %d (%v), writer says %d", v, app, got, ok, ver)
			}
		}
	}
}

// checkRefusal: err must be ErrUnsupportedFeature and name the feature
// (one of "a|b" alternatives).
func checkRefusal(t *testing.T, what, feature string, err error) {
	t.Helper()
	named := false
	if err != nil {
		for _, f := range strings.Split(feature, "|") {
			named = named || strings.Contains(err.Error(), f)
		}
	}
	switch {
	case err == nil:
		t.Errorf("silt accepted to %s the table; want a refusal naming %q", what, feature)
	case !errors.Is(err, delta.ErrUnsupportedFeature):
		t.Errorf("%s: error %v is not ErrUnsupportedFeature (want one naming %q)", what, err, feature)
	case !named:
		t.Errorf("%s: error %q does not name %q", what, err, feature)
	default:
		t.Logf("%s refused as expected: %v", what, err)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// schemaShape keeps the names and types of a JSON schema (Delta and Spark
// spell them alike), dropping nullability and metadata; decimal spacing is
// normalised.
func schemaShape(s any) any {
	switch x := s.(type) {
	case string:
		return strings.ReplaceAll(x, " ", "")
	case map[string]any:
		switch x["type"] {
		case "struct":
			fields, _ := x["fields"].([]any)
			out := make([]any, 0, len(fields))
			for _, f := range fields {
				fm, _ := f.(map[string]any)
				out = append(out, []any{fm["name"], schemaShape(fm["type"])})
			}
			return out
		case "array":
			return []any{"array", schemaShape(x["elementType"])}
		case "map":
			return []any{"map", schemaShape(x["keyType"]), schemaShape(x["valueType"])}
		}
		return schemaShape(x["type"])
	}
	return s
}

// TestFixturesReadBack writes silt's fixtures and checks them with silt
// alone: every dumped version reads back to the dump, the structural
// promises the Python tests rely on hold (checkpoint, txns, escaping,
// remove+add in one commit), and the dumps are deterministic in content.
func TestFixturesReadBack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m, err := WriteFixtures(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, mt := range m.Tables {
		t.Run(mt.Name, func(t *testing.T) { checkForeign(t, dir, mt) })
	}
	byName := map[string]ManifestTable{}
	for _, mt := range m.Tables {
		byName[mt.Name] = mt
	}
	t.Run("checkpoint", func(t *testing.T) {
		mt := byName["checkpointed"]
		if !mt.Checkpoint || mt.Latest < 11 {
			t.Fatalf("checkpointed: checkpoint=%v latest=%d; want a checkpoint and > 10 commits", mt.Checkpoint, mt.Latest)
		}
		if _, err := os.Stat(filepath.Join(TableDir(dir, "checkpointed"), "_delta_log", "00000000000000000010.checkpoint.parquet")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("merge_is_one_commit", func(t *testing.T) {
		tbl, _, err := OpenTable(TableDir(dir, "merge_cow"))
		if err != nil {
			t.Fatal(err)
		}
		acts, err := tbl.ReadCommit(ctx, byName["merge_cow"].Latest)
		if err != nil {
			t.Fatal(err)
		}
		var adds, removes int
		for _, a := range acts {
			if a.Add != nil {
				adds++
			}
			if a.Remove != nil {
				removes++
			}
		}
		if adds == 0 || removes == 0 {
			t.Fatalf("MERGE commit has %d adds and %d removes; want both", adds, removes)
		}
	})
	t.Run("partition_escaping", func(t *testing.T) {
		tbl, _, err := OpenTable(TableDir(dir, "partitioned"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := tbl.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, a := range s.Files() {
			if v := a.PartitionValues["s"]; v != nil && *v == "100%" {
				found = true
				// Directory escapes % as %25; the log URI-encodes that again.
				if !strings.HasPrefix(a.Path, "s=100%2525/") {
					t.Errorf("add.path %q for s=100%%: want prefix s=100%%2525/", a.Path)
				}
				if _, err := os.Stat(filepath.Join(TableDir(dir, "partitioned"), "s=100%25")); err != nil {
					t.Errorf("directory for s=100%%: %v", err)
				}
			}
		}
		if !found {
			t.Error("no file with partition value 100%")
		}
	})
}

// TestValueNormalisation pins the normalisation the Python side mirrors
// (interop/conftest.py norm_value).
func TestValueNormalisation(t *testing.T) {
	schema := &delta.StructType{Fields: []*delta.StructField{
		field("f", delta.Float, true), field("d", delta.Double, true), field("dec", &delta.DecimalType{Precision: 5, Scale: 2}, true),
		field("date", delta.Date, true), field("ts", delta.Timestamp, true), field("bin", delta.Binary, true),
		field("m", &delta.MapType{KeyType: delta.String, ValueType: delta.Integer, ValueContainsNull: true}, true),
	}}
	rec, err := record(schema, [][]any{
		{float32(0), math.Copysign(0, -1), "-1.5", "0001-01-01", int64(-1), []byte{0xde, 0xad}, [][2]any{{"z", int32(1)}, {"a", nil}}},
		{float32(math.NaN()), math.Float64frombits(0x7ff8000000000001), "0", "1969-12-31", int64(1), []byte{}, [][2]any{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	rows, err := RecordRows(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"bin":"hex:dead","d":"f64:8000000000000000","date":"0001-01-01","dec":"-1.50","f":"f32:00000000","m":[["a",null],["z",1]],"ts":-1}`,
		`{"bin":"hex:","d":"NaN","date":"1969-12-31","dec":"0.00","f":"NaN","m":[],"ts":1}`,
	}
	got := CanonicalRows(rows)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	// Decoded JSON re-encodes to the same canonical text, integers exact.
	back, err := DecodeRows([]byte(`{"x":9223372036854775807,"y":"<&>"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c := Canonical(back[0]); c != `{"x":9223372036854775807,"y":"<&>"}` {
		t.Errorf("canonical of decoded row = %s", c)
	}
	if got := Decimal(big.NewInt(-5), 3); got != "-0.005" {
		t.Errorf("Decimal(-5, 3) = %s", got)
	}
	// Nanosecond timestamps floor to microseconds, also before the epoch.
	b := array.NewTimestampBuilder(memory.DefaultAllocator, &arrow.TimestampType{Unit: arrow.Nanosecond})
	b.Append(-1)
	a := b.NewArray()
	defer a.Release()
	b.Release()
	if v, _ := Value(a, 0); v != int64(-1) {
		t.Errorf("-1ns = %v µs, want -1", v)
	}
}

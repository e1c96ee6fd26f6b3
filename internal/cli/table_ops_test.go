package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

// smallTable writes a table of n one-row files partitioned by p.
func smallTable(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	st, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tbl := delta.NewTable(st, "")
	schema := &delta.StructType{Fields: []*delta.StructField{
		{Name: "id", Type: delta.Long, Nullable: true, Metadata: map[string]any{}},
		{Name: "x", Type: delta.Long, Nullable: true, Metadata: map[string]any{}},
		{Name: "p", Type: delta.Integer, Nullable: true, Metadata: map[string]any{}},
	}}
	snap, err := delta.CreateTable(ctx, tbl, schema, []string{"p"}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	as, _ := datafile.ArrowSchema(schema)
	ti := datafile.TableInfo{Schema: schema, PartitionColumns: []string{"p"}}
	for i := 0; i < n; i++ {
		b := array.NewRecordBuilder(memory.DefaultAllocator, as)
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		b.Field(1).(*array.Int64Builder).Append(int64(n - i))
		b.Field(2).(*array.Int32Builder).Append(int32(i % 2))
		rec := b.NewRecordBatch()
		adds, err := datafile.Write(ctx, st, ti, rec, datafile.WriteOptions{DataChange: true})
		rec.Release()
		b.Release()
		if err != nil {
			t.Fatal(err)
		}
		tx := tbl.Begin(snap)
		tx.Add(adds...)
		if _, err := tx.Commit(ctx, "WRITE", nil); err != nil {
			t.Fatal(err)
		}
		if snap, err = tbl.Snapshot(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestTableOptimizeAndVacuum(t *testing.T) {
	dir := smallTable(t, 6)
	code, out, errOut := run(t, "table", "optimize", dir, "--where", "p = 1")
	if code != 0 || !strings.Contains(out, "files removed  3") || !strings.Contains(out, "partitions     1") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(t, "table", "optimize", dir, "--zorder", "x,id")
	if code != 0 || !strings.Contains(out, "z-order by     x, id") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = run(t, "table", "optimize", dir, "--where", "id = 1")
	if code == 0 || !strings.Contains(errOut, "not a partition column") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(t, "table", "vacuum", dir, "--retain", "1h")
	if code == 0 || !strings.Contains(errOut, "retention shorter") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	// Backdate the data files: with a tiny forced retention the six
	// files the OPTIMIZE commits replaced go (partition p=1 had one file
	// left after the first OPTIMIZE, so Z-ordering skipped it).
	old := time.Now().Add(-time.Hour)
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.Contains(p, "_delta_log") {
			os.Chtimes(p, old, old)
		}
		return nil
	})
	// A temp file a crashed writer left two hours ago goes too; a fresh
	// one (a live writer's) stays.
	abandoned := filepath.Join(dir, ".tmp-part-00009.parquet-42")
	fresh := filepath.Join(dir, "_delta_log", ".tmp-00000000000000000009.json-7")
	for _, p := range []string{abandoned, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	twoHours := time.Now().Add(-2 * time.Hour)
	os.Chtimes(abandoned, twoHours, twoHours)
	code, out, errOut = run(t, "table", "vacuum", dir, "--retain", "1ms", "--force", "--dry-run")
	if code != 0 || !strings.Contains(out, "would delete 6 files") || !strings.Contains(out, "would delete 1 abandoned temp files") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(t, "table", "vacuum", dir, "--retain", "1ms", "--force")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("deleted %d files", 6)) {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(abandoned); err == nil {
		t.Errorf("abandoned temp file kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file deleted: %v", err)
	}
	code, out, _ = run(t, "table", "describe", dir)
	if code != 0 {
		t.Fatalf("describe after vacuum: exit %d\n%s", code, out)
	}
}

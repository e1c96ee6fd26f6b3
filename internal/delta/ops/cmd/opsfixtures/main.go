// Command opsfixtures writes Delta tables with silt's MERGE, OPTIMIZE,
// Z-order and VACUUM (package ops) for interop/test_ops_interop.py, with
// what silt reads at each version (the layout of internal/delta/interop:
// tables/<name>, expected/<name>/v<N>.{json,rows.jsonl}) and ops.json:
// per table the versions to check, the latest version, and the operation
// of every commit, oldest first.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/delta/interop"
	"github.com/silt-dev/silt/internal/delta/ops"
)

type tableOut struct {
	Name       string   `json:"name"`
	Versions   []int64  `json:"versions"`
	Latest     int64    `json:"latest"`
	Operations []string `json:"operations"`
	// Vacuumed: files VACUUM deleted (relative paths); none may remain.
	Vacuumed []string `json:"vacuumed,omitempty"`
}

var schema = &delta.StructType{Fields: []*delta.StructField{
	{Name: "id", Type: delta.Long, Nullable: false, Metadata: map[string]any{}},
	{Name: "part", Type: delta.Integer, Nullable: true, Metadata: map[string]any{}},
	{Name: "a", Type: delta.Long, Nullable: true, Metadata: map[string]any{}},
	{Name: "b", Type: delta.Double, Nullable: true, Metadata: map[string]any{}},
	{Name: "s", Type: delta.String, Nullable: true, Metadata: map[string]any{}},
	{Name: "ts", Type: delta.Timestamp, Nullable: true, Metadata: map[string]any{}},
	{Name: "lsn", Type: delta.Long, Nullable: true, Metadata: map[string]any{}},
}}

type gen struct {
	ctx   context.Context
	dir   string
	rng   *rand.Rand
	store *local.Store
	tbl   *delta.Table
	name  string
}

func main() {
	out := flag.String("out", "", "output directory")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "opsfixtures: -out is required")
		os.Exit(2)
	}
	if err := run(context.Background(), *out); err != nil {
		fmt.Fprintln(os.Stderr, "opsfixtures:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out string) error {
	var tables []tableOut
	for _, fn := range []func(*gen) (*tableOut, error){mergeTable, optimizeTable, zorderTable, vacuumTable} {
		g := &gen{ctx: ctx, dir: out, rng: rand.New(rand.NewPCG(7, 11))}
		t, err := fn(g)
		if err != nil {
			return fmt.Errorf("%s: %w", g.name, err)
		}
		hist, err := g.tbl.History(ctx, 0)
		if err != nil {
			return err
		}
		for i := len(hist) - 1; i >= 0; i-- {
			op, _ := hist[i].CommitInfo["operation"].(string)
			t.Operations = append(t.Operations, op)
		}
		t.Latest = hist[0].Version
		if t.Versions == nil {
			for v := int64(0); v <= t.Latest; v++ {
				t.Versions = append(t.Versions, v)
			}
		}
		for _, v := range t.Versions {
			if err := interop.DumpVersion(ctx, out, t.Name, v); err != nil {
				return fmt.Errorf("%s v%d: %w", t.Name, v, err)
			}
		}
		tables = append(tables, *t)
	}
	b, err := json.MarshalIndent(map[string]any{"tables": tables}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "ops.json"), append(b, '\n'), 0o644)
}

func (g *gen) create(name string, parts []string) error {
	g.name = name
	dir := interop.TableDir(g.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	st, err := local.New(dir)
	if err != nil {
		return err
	}
	st.NoSync = true
	g.store, g.tbl = st, delta.NewTable(st, "")
	_, err = delta.CreateTable(g.ctx, g.tbl, schema, parts, nil, name)
	return err
}

// rows builds n rows with ids from lo, lsn 1.
func (g *gen) rows(ids []int64, lsn int64, tag string) arrow.RecordBatch {
	as, _ := datafile.ArrowSchema(schema)
	b := array.NewRecordBuilder(memory.DefaultAllocator, as)
	defer b.Release()
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixMicro()
	for _, id := range ids {
		b.Field(0).(*array.Int64Builder).Append(id)
		b.Field(1).(*array.Int32Builder).Append(int32(id % 3))
		b.Field(2).(*array.Int64Builder).Append(g.rng.Int64N(1_000_000))
		if id%17 == 0 {
			b.Field(3).AppendNull()
		} else {
			b.Field(3).(*array.Float64Builder).Append(g.rng.Float64() * 1000)
		}
		b.Field(4).(*array.StringBuilder).Append(fmt.Sprintf("%s-%d", tag, id))
		b.Field(5).(*array.TimestampBuilder).Append(arrow.Timestamp(base + id*1_000_003))
		b.Field(6).(*array.Int64Builder).Append(lsn)
	}
	return b.NewRecordBatch()
}

func (g *gen) appendIDs(ids []int64, tag string) error {
	s, err := g.tbl.Snapshot(g.ctx)
	if err != nil {
		return err
	}
	rec := g.rows(ids, 1, tag)
	defer rec.Release()
	ti := datafile.TableInfo{Schema: s.Schema(), PartitionColumns: s.PartitionColumns(), Config: s.Config()}
	adds, err := datafile.Write(g.ctx, g.store, ti, rec, datafile.WriteOptions{DataChange: true})
	if err != nil {
		return err
	}
	tx := g.tbl.Begin(s)
	tx.Add(adds...)
	_, err = tx.Commit(g.ctx, "WRITE", map[string]any{"mode": "Append"})
	return err
}

func span(lo, hi int64) []int64 {
	var out []int64
	for i := lo; i < hi; i++ {
		out = append(out, i)
	}
	return out
}

func (g *gen) merge(up []int64, upLSN int64, del []int64, delLSN int64) error {
	ur := g.rows(up, upLSN, "merged")
	defer ur.Release()
	dsch := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "lsn", Type: arrow.PrimitiveTypes.Int64}}, nil)
	db := array.NewRecordBuilder(memory.DefaultAllocator, dsch)
	for _, id := range del {
		db.Field(0).(*array.Int64Builder).Append(id)
		db.Field(1).(*array.Int64Builder).Append(delLSN)
	}
	dr := db.NewRecordBatch()
	db.Release()
	defer dr.Release()
	ch, err := ops.NewChanges(schema, []string{"id"}, []string{"lsn"}, ur, dr)
	if err != nil {
		return err
	}
	defer ch.Release()
	_, err = ops.Merge(g.ctx, g.tbl, ops.MergeSpec{Keys: []string{"id"}, Changed: ch.Keys(), Decider: ch})
	return err
}

// ops_merge: partitioned, three appends, then merges with updates,
// inserts, deletes and stale changes (guarded by lsn).
func mergeTable(g *gen) (*tableOut, error) {
	if err := g.create("ops_merge", []string{"part"}); err != nil {
		return nil, err
	}
	for i := int64(0); i < 3; i++ {
		if err := g.appendIDs(span(i*100, i*100+100), "v1"); err != nil {
			return nil, err
		}
	}
	if err := g.merge([]int64{5, 150, 151, 400, 401}, 5, []int64{7, 250}, 5); err != nil {
		return nil, err
	}
	// Stale update of 5 (lsn 4 < 5) is ignored; 400 deleted; 299 updated.
	if err := g.merge([]int64{5, 299}, 4, []int64{400}, 6); err != nil {
		return nil, err
	}
	if err := g.merge([]int64{299}, 9, nil, 0); err != nil {
		return nil, err
	}
	return &tableOut{Name: g.name}, nil
}

// ops_optimize: 24 small files in 3 partitions, a merge, bin-packing.
func optimizeTable(g *gen) (*tableOut, error) {
	if err := g.create("ops_optimize", []string{"part"}); err != nil {
		return nil, err
	}
	for i := int64(0); i < 8; i++ {
		if err := g.appendIDs(span(i*30, i*30+30), "small"); err != nil {
			return nil, err
		}
	}
	if err := g.merge([]int64{3, 33, 1000}, 2, []int64{63}, 2); err != nil {
		return nil, err
	}
	f, err := ops.ParsePartitionFilter("part = 1")
	if err != nil {
		return nil, err
	}
	if _, err := ops.Optimize(g.ctx, g.tbl, ops.OptimizeOptions{Filter: f}); err != nil {
		return nil, err
	}
	if _, err := ops.Optimize(g.ctx, g.tbl, ops.OptimizeOptions{}); err != nil {
		return nil, err
	}
	return &tableOut{Name: g.name}, nil
}

// ops_zorder: unpartitioned random rows in 8 files, Z-ordered by (a, b).
func zorderTable(g *gen) (*tableOut, error) {
	if err := g.create("ops_zorder", nil); err != nil {
		return nil, err
	}
	for i := int64(0); i < 8; i++ {
		if err := g.appendIDs(span(i*500, i*500+500), "z"); err != nil {
			return nil, err
		}
	}
	if _, err := ops.Optimize(g.ctx, g.tbl, ops.OptimizeOptions{ZOrderBy: []string{"a", "b"}, TargetFileSize: 24 << 10}); err != nil {
		return nil, err
	}
	return &tableOut{Name: g.name}, nil
}

// ops_vacuum: merges and an OPTIMIZE, then VACUUM (forced, 1 ms
// retention, data files backdated) deletes every unreferenced file. Only
// the latest version can be read afterwards.
func vacuumTable(g *gen) (*tableOut, error) {
	if err := g.create("ops_vacuum", []string{"part"}); err != nil {
		return nil, err
	}
	for i := int64(0); i < 4; i++ {
		if err := g.appendIDs(span(i*50, i*50+50), "vac"); err != nil {
			return nil, err
		}
	}
	if err := g.merge([]int64{10, 60, 500}, 3, []int64{110}, 3); err != nil {
		return nil, err
	}
	if _, err := ops.Optimize(g.ctx, g.tbl, ops.OptimizeOptions{}); err != nil {
		return nil, err
	}
	// An orphan left by a failed write.
	if err := g.store.Put(g.ctx, "part=0/part-orphan.zstd.parquet", []byte("not parquet")); err != nil {
		return nil, err
	}
	old := time.Now().Add(-time.Hour)
	err := filepath.WalkDir(interop.TableDir(g.dir, g.name), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(p, "_delta_log") {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		return nil, err
	}
	// Vacuum as of one minute from now: every commit (and tombstone) is then
	// outside the 1 ms window however fast the steps above ran (on an idle
	// machine they take under a millisecond, and VACUUM rightly keeps the
	// files of commits inside the window).
	later := time.Now().Add(time.Minute)
	res, err := ops.Vacuum(g.ctx, g.tbl, ops.VacuumOptions{Retain: time.Millisecond, Force: true, Now: func() time.Time { return later }})
	if err != nil {
		return nil, err
	}
	if len(res.Files) == 0 {
		return nil, fmt.Errorf("vacuum deleted nothing")
	}
	latest, err := g.tbl.LatestVersion(g.ctx)
	if err != nil {
		return nil, err
	}
	return &tableOut{Name: g.name, Versions: []int64{latest}, Vacuumed: res.Files}, nil
}

// Command pipelinelake runs the real pipeline against a private PostgreSQL
// and writes the lake it produced, with what silt reads from it, for other
// engines to check (interop/test_pipeline_lake.py):
//
//	go run ./internal/delta/interop/cmd/pipelinelake -out DIR
//
// The source has three tables: public.types (one column of many types),
// public.docs (TOAST-sized text that updates leave unchanged) and
// public.keyless_log (no key, REPLICA IDENTITY FULL, source.keyless_tables:
// append). Rows filled before the pipeline starts arrive by the initial
// snapshot (bronze.Loader blind appends); inserts, updates (one changing a
// key), deletes, an ADD COLUMN and a TRUNCATE of the keyless table follow
// in many small transactions, then small ones until every Silver table has
// had a checkpoint and an automatic OPTIMIZE. Once Silver equals the source the pipeline stops.
//
// Layout of DIR (package interop's, with the lake as tables/):
//
//	tables/                     the lake (bronze/, silver/, _silt/)
//	expected/<name>/v<N>.json   what silt reads at version N of the Delta
//	expected/<name>/v<N>.rows.jsonl   table at tables/<name> (interop.DumpVersion)
//	source/<schema>.<table>.rows.jsonl  the source rows, read from PostgreSQL
//	                            and normalised as Silver's columns
//	manifest.json               see Manifest
//
// Exit status 3 means PostgreSQL is not installed (pgcluster.ErrNoBinaries).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/delta/interop"
	"github.com/silt-dev/silt/internal/pgcluster"
	"github.com/silt-dev/silt/internal/pipeline"
	"github.com/silt-dev/silt/internal/source/pgsnap"
	"github.com/silt-dev/silt/internal/verify"
)

// Manifest is DIR/manifest.json.
type Manifest struct {
	Tables  []Table           `json:"tables"`
	Sources map[string]Source `json:"sources"` // by "schema.table"
}

// Table is one Delta table of the lake.
type Table struct {
	Name     string  `json:"name"` // path under tables/, e.g. "silver/public/types"
	Latest   int64   `json:"latest"`
	Versions []int64 `json:"versions"` // with an expectation under expected/<name>/
	// Checkpoint: a checkpoint file is in the log.
	Checkpoint bool `json:"checkpoint"`
	// Operations: commitInfo.operation of every commit, oldest first.
	Operations []string `json:"operations"`
	// AppendOnly: an append-only Silver change log (keyless append).
	AppendOnly bool `json:"append_only,omitempty"`
}

// Source is one source table as PostgreSQL holds it at the end.
type Source struct {
	Columns []string `json:"columns"` // Silver column names, in order
	Rows    string   `json:"rows"`    // file under DIR, one normalised row a line
}

var sources = []change.TableID{
	{Schema: "public", Name: "types"},
	{Schema: "public", Name: "docs"},
	{Schema: "public", Name: "keyless_log"},
}

const ddl = `
CREATE TABLE types (
	id int PRIMARY KEY, i2 smallint, i8 bigint, n numeric(12,2), t text, b bool,
	ts timestamptz, d date, f float8, r real, by bytea, j jsonb, u uuid, arr int[],
	tsn timestamp, num numeric, big numeric(38,10), "hour" int, iv interval, "Mixed Name" text);
CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text);
ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE keyless_log (a int, b text);
ALTER TABLE keyless_log REPLICA IDENTITY FULL;
`

// typesRows inserts rows [from, to) of public.types.
func typesRows(from, to int) string {
	return fmt.Sprintf(`INSERT INTO types SELECT g, (g %% 30000 - 15000)::smallint, g::bigint * 1000003 - 5000000000,
		round((g * 7.31 - 5000)::numeric, 2), CASE WHEN g %% 11 = 0 THEN NULL ELSE 'täxt ' || g || E' "q" \\ ' END,
		CASE g %% 3 WHEN 0 THEN NULL ELSE g %% 2 = 0 END,
		timestamptz '2024-02-29 23:59:59.123456+00' + g * interval '37 minutes 1.000001 seconds',
		date '1999-12-31' + g, CASE g %% 97 WHEN 1 THEN 'NaN'::float8 WHEN 2 THEN '-Infinity' WHEN 3 THEN '-0' ELSE g / 3.0 END,
		(g / 7.0)::real, decode(md5(g::text), 'hex'),
		jsonb_build_object('g', g, 'a', jsonb_build_array(g, 'x', null)), md5(g::text)::uuid,
		CASE WHEN g %% 5 = 0 THEN NULL ELSE ARRAY[g, NULL, -g] END,
		timestamp '1970-01-01 00:00:00.000001' + g * interval '1 day 1 second',
		CASE WHEN g %% 9 = 0 THEN 'NaN' ELSE (g::numeric / 7)::numeric(40,30) END,
		(g::numeric * 123456789012.0123456789 - 1e26)::numeric(38,10), g %% 24,
		g * interval '1 hour 1 minute', 'm' || g
		FROM generate_series(%d, %d) g`, from, to-1)
}

func docsRows(from, to int) string {
	return fmt.Sprintf(`INSERT INTO docs SELECT g, 'title ' || g,
		CASE WHEN g %% 4 = 0 THEN NULL ELSE repeat(md5(g::text), 300) END FROM generate_series(%d, %d) g`, from, to-1)
}

func logRows(from, to int) string {
	return fmt.Sprintf(`INSERT INTO keyless_log SELECT g %% 50, 'e' || (g %% 7) FROM generate_series(%d, %d) g`, from, to-1)
}

// workload is the transactions made while the pipeline runs, one a step.
var workload = []string{
	typesRows(3000, 3200) + "; " + docsRows(400, 420) + "; " + logRows(600, 700),
	`UPDATE types SET t = 'upd ' || id, n = -n, arr = ARRAY[id] WHERE id % 10 = 1`,
	`UPDATE docs SET title = 'retitled ' || id WHERE id % 3 = 0`, // body: unchanged TOAST
	`DELETE FROM types WHERE id % 17 = 0`,
	`UPDATE keyless_log SET b = 'changed' WHERE a = 3`,
	`DELETE FROM docs WHERE id % 10 = 5`,
	`UPDATE types SET id = id + 100000 WHERE id % 101 = 7`, // key change: D old key, U new key
	`UPDATE docs SET body = repeat('new body ' || id, 500) WHERE id % 7 = 0`,
	`DELETE FROM keyless_log WHERE a = 4`,
	`UPDATE types SET ts = NULL, j = '{"k": [1, {"z": null}]}', b = NOT b WHERE id % 13 = 2`,
	`UPDATE docs SET title = NULL WHERE id % 11 = 0`,
	typesRows(3200, 3300) + "; " + logRows(700, 750),
	`UPDATE types SET f = f * 2, r = 'Infinity' WHERE id % 19 = 3`,
	`DELETE FROM types WHERE id BETWEEN 3250 AND 3260`,
	`UPDATE docs SET title = 'again ' || id WHERE id % 3 = 0`,
	`INSERT INTO types (id) VALUES (999999)`,
	`ALTER TABLE types ADD COLUMN extra numeric(20,5)`, // a new column mid-stream
	`UPDATE types SET by = '\x'::bytea, t = '', extra = id / 3.0 WHERE id % 23 = 4`,
	`TRUNCATE keyless_log`,
	logRows(800, 830),
	`INSERT INTO types (id, d, ts, tsn, extra) VALUES (999998, '0001-01-01', '1500-06-01 12:00:00.5+00', '1582-10-10 01:02:03', -0.00001)`,
	`UPDATE keyless_log SET a = a + 1000 WHERE b = 'e5'`,
}

func main() {
	out := flag.String("out", "", "directory to write the lake and expectations into (must not hold them already)")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: pipelinelake -out DIR")
		os.Exit(2)
	}
	if err := run(context.Background(), *out); err != nil {
		fmt.Fprintln(os.Stderr, "pipelinelake:", err)
		if errors.Is(err, pgcluster.ErrNoBinaries) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, out string) error {
	out, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	cluster, err := pgcluster.Start(sctx, pgcluster.Options{})
	cancel()
	if err != nil {
		return err
	}
	defer cluster.Stop()
	dsn := cluster.DSN("postgres")
	conn, err := pgx.Connect(ctx, pipeline.SessionDSN(dsn))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	exec := func(sql string) error {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%.80s: %w", sql, err)
		}
		return nil
	}
	for _, s := range []string{ddl, typesRows(1, 2501), docsRows(1, 301), logRows(1, 501)} {
		if err := exec(s); err != nil {
			return err
		}
	}

	cfg := config.Default(filepath.Join(out, "data"))
	cfg.Lake.Path = filepath.Join(out, "tables")
	cfg.Source.DSN = dsn
	cfg.Source.Slot = "silt_lake"
	cfg.Source.Publication = "silt_lake"
	for _, id := range sources {
		cfg.Source.Tables = append(cfg.Source.Tables, id.String())
	}
	cfg.Source.KeylessTables = map[string]string{"public.keyless_log": config.KeylessAppend}
	cfg.Source.StatusInterval.Duration = 300 * time.Millisecond
	cfg.Source.SnapshotChunkRows = 1250 // several snapshot chunks (blind appends) per table, public.types's over 1024 rows (DELTA_BINARY_PACKED ascending columns)
	cfg.Source.SnapshotTablesParallel = 2
	cfg.Source.SnapshotChunksPerTable = 2
	cfg.Stream.Shards = 2
	cfg.Stream.Durability = "none"
	cfg.Bronze.FlushInterval.Duration = 100 * time.Millisecond
	cfg.Silver.Interval.Duration = 100 * time.Millisecond
	cfg.Silver.OptimizeEvery = 4
	cfg.Status.Listen = "off"
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := pipeline.Open(ctx, cfg, logger)
	if err != nil {
		return err
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	stopped := false
	defer func() {
		if !stopped {
			stop()
			<-done
			p.Close()
		}
	}()
	for _, s := range workload {
		if err := exec(s); err != nil {
			return err
		}
		// Apart enough for the steps to land in different Bronze commits,
		// hence different Silver MERGE commits.
		time.Sleep(250 * time.Millisecond)
	}
	// Small transactions until every Silver table and Bronze types has a
	// checkpoint and every Silver table an automatic OPTIMIZE (how the
	// workload's steps batch into commits depends on timing).
	for deadline := time.Now().Add(time.Minute); !ready(ctx, cfg.Lake.Path); {
		if time.Now().After(deadline) {
			return errors.New("no checkpoint or OPTIMIZE in every table within a minute")
		}
		if err := exec(filler); err != nil {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err := waitEqual(ctx, p, conn, done, 2*time.Minute); err != nil {
		return err
	}
	stopped = true
	stop()
	if err := <-done; err != nil {
		return fmt.Errorf("pipeline stopped with error: %w", err)
	}
	if err := p.Close(); err != nil {
		return err
	}

	m := Manifest{Sources: map[string]Source{}}
	for _, id := range sources {
		src, err := dumpSource(ctx, conn, out, id)
		if err != nil {
			return err
		}
		m.Sources[id.String()] = src
	}
	names, err := deltaTables(cfg.Lake.Path)
	if err != nil {
		return err
	}
	for _, name := range names {
		t, err := dumpTable(ctx, out, name)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		m.Tables = append(m.Tables, t)
		fmt.Printf("%-40s versions %v of 0..%d checkpoint=%v\n", name, t.Versions, t.Latest, t.Checkpoint)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "manifest.json"), append(b, '\n'), 0o644)
}

const filler = `UPDATE types SET i8 = i8 + 1 WHERE id = 2; UPDATE docs SET title = title || '.' WHERE id = 1;
	INSERT INTO keyless_log VALUES (-1, 'filler')`

// ready reports whether the Silver tables and Bronze types have a
// checkpoint and the Silver tables an OPTIMIZE commit.
func ready(ctx context.Context, lake string) bool {
	for _, id := range sources {
		dir := filepath.Join(lake, "silver", id.Schema, id.Name)
		if !hasCheckpoint(dir) || !optimized(ctx, dir) {
			return false
		}
	}
	return hasCheckpoint(filepath.Join(lake, "bronze", "public", "types"))
}

// hasCheckpoint reports whether the Delta table at dir has a checkpoint
// file in its log.
func hasCheckpoint(dir string) bool {
	cps, _ := filepath.Glob(filepath.Join(dir, "_delta_log", "*.checkpoint*.parquet"))
	return len(cps) > 0
}

// optimized reports whether the Delta table at dir has an OPTIMIZE commit.
func optimized(ctx context.Context, dir string) bool {
	tbl, _, err := interop.OpenTable(dir)
	if err != nil {
		return false
	}
	hist, err := tbl.History(ctx, 0)
	if err != nil {
		return false
	}
	for _, h := range hist {
		if h.CommitInfo["operation"] == "OPTIMIZE" {
			return true
		}
	}
	return false
}

// waitEqual polls until the snapshot is done and Silver equals the source
// for every table.
func waitEqual(ctx context.Context, p *pipeline.Pipeline, conn *pgx.Conn, done chan error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("pipeline stopped early: %v", err)
		default:
		}
		ok := p.SnapshotProgress().Phase == pgsnap.PhaseDone
		var res []verify.Result
		for _, id := range sources {
			v, err := verify.Table(ctx, conn, p.Store(), id)
			if err != nil {
				ok = false // Silver table not created yet
				continue
			}
			res = append(res, v)
			ok = ok && v.Equal()
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, v := range res {
				b.WriteString("\n" + v.String())
			}
			return fmt.Errorf("silver did not equal the source within %s (snapshot %+v):%s", timeout, p.SnapshotProgress(), b.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deltaTables returns the path under lake of every directory holding a
// _delta_log, sorted.
func deltaTables(lake string) ([]string, error) {
	var names []string
	err := filepath.WalkDir(lake, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "_delta_log" {
			rel, err := filepath.Rel(lake, filepath.Dir(path))
			if err != nil {
				return err
			}
			names = append(names, filepath.ToSlash(rel))
			return filepath.SkipDir
		}
		return nil
	})
	sort.Strings(names)
	return names, err
}

func dumpTable(ctx context.Context, out, name string) (Table, error) {
	t := Table{Name: name}
	tbl, _, err := interop.OpenTable(interop.TableDir(out, name))
	if err != nil {
		return t, err
	}
	snap, err := tbl.Snapshot(ctx)
	if err != nil {
		return t, err
	}
	t.Latest = snap.Version
	t.AppendOnly = snap.Config()["silt.silverMode"] == "append"
	t.Versions = []int64{t.Latest}
	if t.Latest > 0 {
		t.Versions = append(t.Versions, t.Latest/2)
	}
	for _, v := range t.Versions {
		if err := interop.DumpVersion(ctx, out, name, v); err != nil {
			return t, err
		}
	}
	hist, err := tbl.History(ctx, 0)
	if err != nil {
		return t, err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		op, _ := hist[i].CommitInfo["operation"].(string)
		t.Operations = append(t.Operations, op)
	}
	t.Checkpoint = hasCheckpoint(interop.TableDir(out, name))
	return t, nil
}

// dumpSource reads a source table as verify does (PostgreSQL text parsed
// by Bronze's rule) and writes its normalised rows.
func dumpSource(ctx context.Context, conn *pgx.Conn, out string, id change.TableID) (Source, error) {
	var src Source
	rec, cols, err := verify.SourceRecord(ctx, conn, id)
	if err != nil {
		return src, err
	}
	defer rec.Release()
	src.Columns = cols
	norm, err := interop.RecordRows(rec)
	if err != nil {
		return src, err
	}
	lines := interop.CanonicalRows(norm)
	sort.Strings(lines)
	src.Rows = filepath.Join("source", id.String()+".rows.jsonl")
	path := filepath.Join(out, src.Rows)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return src, err
	}
	return src, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// Command snapshot measures silt's initial load against the fastest way to
// read the same table out of PostgreSQL, in the same run on the same table:
//
//   - baseline: parallel `COPY (SELECT * FROM t WHERE ctid range) TO STDOUT
//     (FORMAT binary)` into io.Discard, one connection per block range, as
//     many connections as silt's snapshot uses;
//   - silt: a fresh pipeline (slot with exported snapshot, pgsnap workers,
//     stream, Bronze Parquet) timed from pipeline.Open until every chunk is
//     durable in Bronze (snapshot phase "done").
//
// It prints rows/s for both and the ratio silt/baseline (goal: at least
// 0.5), silt's phases (slot and plan; all rows read and in the stream; all
// rows durable in Bronze), then one JSON line.
//
//	go run ./bench/snapshot -rows 5000000            # private PostgreSQL (pgcluster)
//	go run ./bench/snapshot -rows 200000 -dsn postgres://...
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/pgcluster"
	"github.com/silt-dev/silt/internal/pipeline"
	"github.com/silt-dev/silt/internal/source/pgsnap"
)

var profile string

func main() {
	rows := flag.Int("rows", 5_000_000, "rows in the table")
	dsn := flag.String("dsn", "", "PostgreSQL DSN (wal_level=logical); empty starts a private cluster")
	tablesPar := flag.Int("tables-parallel", 1, "source.snapshot_tables_parallel")
	chunksPer := flag.Int("chunks-per-table", 4, "source.snapshot_chunks_per_table (and baseline COPY connections)")
	chunkRows := flag.Int64("chunk-rows", 100000, "source.snapshot_chunk_rows")
	shards := flag.Int("shards", 4, "stream.shards")
	durability := flag.String("durability", "fsync", "stream.durability (fsync|none)")
	dataDir := flag.String("data", "", "silt data directory (default: a temporary one, removed)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the silt phase")
	flag.Parse()
	profile = *cpuProfile
	if err := run(*rows, *dsn, *tablesPar, *chunksPer, *chunkRows, *shards, *durability, *dataDir); err != nil {
		fmt.Fprintln(os.Stderr, "bench/snapshot:", err)
		os.Exit(1)
	}
}

func run(rows int, dsn string, tablesPar, chunksPer int, chunkRows int64, shards int, durability, dataDir string) error {
	ctx := context.Background()
	if dsn == "" {
		c, err := pgcluster.Start(ctx, pgcluster.Options{})
		if err != nil {
			return err
		}
		defer c.Stop()
		dsn = c.DSN("postgres")
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	table := "bench_snap_" + suffix
	fmt.Printf("filling %s with %d rows...\n", table, rows)
	t0 := time.Now()
	for _, q := range []string{
		"CREATE TABLE " + table + " (id bigint PRIMARY KEY, a int, b text, c timestamptz, d numeric(12,2), e float8)",
		fmt.Sprintf(`INSERT INTO %s SELECT g, g %% 100000, 'name-' || g || '-' || md5(g::text), timestamptz '2024-01-01' + g * interval '1 second',
			(g %% 1000000) / 100.0, g / 7.0 FROM generate_series(1, %d) g`, table, rows),
		"VACUUM ANALYZE " + table,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q[:20], err)
		}
	}
	defer conn.Exec(context.WithoutCancel(ctx), "DROP TABLE "+table)
	var pages int64
	if err := conn.QueryRow(ctx, "SELECT pg_relation_size('"+table+"') / current_setting('block_size')::int").Scan(&pages); err != nil {
		return err
	}
	fmt.Printf("filled in %s: %d blocks\n", time.Since(t0).Round(time.Millisecond), pages)

	conns := tablesPar * chunksPer
	base1, err := copyBaseline(ctx, dsn, table, pages, conns)
	if err != nil {
		return err
	}
	fmt.Printf("baseline COPY binary → /dev/null, %d connections: %s, %.0f rows/s\n", conns, base1.Round(time.Millisecond), float64(rows)/base1.Seconds())

	siltDur, err := siltSnapshot(ctx, rows, dsn, table, suffix, tablesPar, chunksPer, chunkRows, shards, durability, dataDir)
	if err != nil {
		return err
	}
	base2, err := copyBaseline(ctx, dsn, table, pages, conns)
	if err != nil {
		return err
	}
	base := (base1 + base2) / 2
	baseRate, siltRate := float64(rows)/base.Seconds(), float64(rows)/siltDur.Seconds()
	fmt.Printf("baseline again: %s; mean %.0f rows/s\n", base2.Round(time.Millisecond), baseRate)
	fmt.Printf("silt snapshot → Bronze (%d×%d connections, %d shards, durability %s): %s, %.0f rows/s\n",
		tablesPar, chunksPer, shards, durability, siltDur.Round(time.Millisecond), siltRate)
	fmt.Printf("ratio silt/baseline: %.3f (goal >= 0.5); GOMAXPROCS %d, PostgreSQL on the same machine\n", siltRate/baseRate, runtime.GOMAXPROCS(0))
	out, _ := json.Marshal(map[string]any{"rows": rows, "baseline_rows_per_s": baseRate, "silt_rows_per_s": siltRate,
		"ratio": siltRate / baseRate, "connections": conns, "shards": shards, "durability": durability, "cpus": runtime.NumCPU()})
	fmt.Println(string(out))
	return nil
}

// copyBaseline reads the table with n parallel binary COPYs over block ranges.
func copyBaseline(ctx context.Context, dsn, table string, pages int64, n int) (time.Duration, error) {
	ranges := pgsnap.PlanRanges(uint32(pages), 1, (pages+int64(n)-1)/int64(n), n)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(ranges))
	for _, r := range ranges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, dsn)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(ctx)
			q := fmt.Sprintf("COPY (SELECT * FROM %s WHERE ctid >= '(%d,0)'::tid", table, r.Lo)
			if !r.Open {
				q += fmt.Sprintf(" AND ctid < '(%d,0)'::tid", r.Hi)
			}
			q += ") TO STDOUT (FORMAT binary)"
			if _, err := c.PgConn().CopyTo(ctx, io.Discard, q); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return 0, err
	}
	return time.Since(start), nil
}

// siltSnapshot runs a fresh pipeline on the table until its snapshot is
// durable in Bronze.
func siltSnapshot(ctx context.Context, rows int, dsn, table, suffix string, tablesPar, chunksPer int, chunkRows int64, shards int, durability, dataDir string) (time.Duration, error) {
	if dataDir == "" {
		d, err := os.MkdirTemp("", "silt-bench-snapshot-")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(d)
		dataDir = d
	}
	cfg := config.Default(dataDir)
	cfg.Source.DSN = dsn
	cfg.Source.Slot = "bench_" + suffix
	cfg.Source.Publication = "bench_" + suffix
	cfg.Source.Tables = []string{"public." + table}
	cfg.Source.SnapshotTablesParallel = tablesPar
	cfg.Source.SnapshotChunksPerTable = chunksPer
	cfg.Source.SnapshotChunkRows = chunkRows
	cfg.Stream.Shards = shards
	cfg.Stream.Durability = durability
	cfg.Silver.Interval.Duration = time.Hour // Bronze is what is measured
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	p, err := pipeline.Open(ctx, cfg, logger)
	if err != nil {
		return 0, err
	}
	defer func() {
		p.Close()
		if c, err := pgx.Connect(context.Background(), dsn); err == nil {
			c.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", cfg.Source.Slot)
			c.Exec(context.Background(), "DROP PUBLICATION "+cfg.Source.Publication)
			c.Close(context.Background())
		}
	}()
	opened := time.Since(start)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	var emitted time.Time
	for {
		select {
		case err := <-done:
			stop()
			return 0, fmt.Errorf("pipeline stopped: %v", err)
		case <-tick.C:
		}
		pr := p.SnapshotProgress()
		if emitted.IsZero() && pr.Rows >= int64(rows) {
			emitted = time.Now()
		}
		if pr.Phase == pgsnap.PhaseDone {
			fmt.Printf("  open (slot, export, plan) %s; all rows emitted at %s; durable in Bronze at %s\n", opened.Round(time.Millisecond),
				emitted.Sub(start).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
			d := time.Since(start)
			if profile != "" {
				pprof.StopCPUProfile()
			}
			stop()
			<-done
			return d, nil
		}
		if time.Since(last) > 5*time.Second {
			last = time.Now()
			for _, tp := range pr.Tables {
				fmt.Printf("  %s: %d/%d rows, %d/%d chunks durable, %.0f rows/s, ETA %s\n", tp.Table, tp.Rows, tp.EstRows, tp.ChunksDone, tp.Chunks, tp.RowsPerSec, tp.ETA.Round(time.Second))
			}
		}
	}
}

package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/pipeline"
	"github.com/silt-dev/silt/internal/source/pgsnap"
)

// SnapshotResult is silt's initial load against parallel binary COPY.
type SnapshotResult struct {
	Rows        int64     `json:"rows"`
	Blocks      int64     `json:"blocks"`
	Connections int       `json:"connections"`
	CopySecs    []float64 `json:"copy_seconds"`    // before silt's first run and after each
	CopyRate    float64   `json:"copy_rows_per_s"` // rows / median of CopySecs (the lower middle)
	SiltSecs    float64   `json:"silt_seconds"`    // the median run's
	SiltRuns    []float64 `json:"silt_runs_seconds"`
	SiltRate    float64   `json:"silt_rows_per_s"`
	// FirstRowSecs is when the first copied rows were counted (progress is
	// counted every 1,024 rows): the pipeline's start-up before copying.
	FirstRowSecs float64 `json:"silt_first_rows_seconds"`
	Ratio        float64 `json:"ratio"`
	SiltUse      Usage   `json:"silt_usage"`
	Shards       int     `json:"shards"`
	TablesPar    int     `json:"snapshot_tables_parallel"`
	ChunksPer    int     `json:"snapshot_chunks_per_table"`
	ChunkRows    int64   `json:"snapshot_chunk_rows"`
	// PostgreSQL's CPU seconds (the cluster's postmaster and all its
	// children, exited ones included) during the first COPY run and
	// during silt's copy; 0 when /proc could not tell.
	PGCopyCPU float64 `json:"pg_copy_cpu_seconds"`
	PGSiltCPU float64 `json:"pg_silt_cpu_seconds"`
	// SilverSecs is the time from the stop after Bronze until the
	// pipeline ended: its final Silver pass merges the snapshot rows into
	// Silver (silver.ProcessLoad); SilverUse is silt's CPU in that time
	// (nothing else runs then but the shutdown). SilverMerged says the
	// table was marked merged (pgsnap's Merged flag).
	SilverSecs   float64 `json:"silver_load_seconds"`
	SilverUse    Usage   `json:"silver_load_usage"`
	SilverMerged bool    `json:"silver_merged"`
}

// runSnapshot fills a table with rows rows, reads it with `chunks`
// parallel `COPY (SELECT * FROM t WHERE ctid range) TO STDOUT (FORMAT
// binary)` into io.Discard (one connection per block range), then runs a
// fresh silt pipeline whose slot is created with an exported snapshot,
// timed from pipeline.Open until every snapshot chunk is durable in Bronze
// (pgsnap phase "done"), then COPY again, snapshotRuns times; the ratio is
// of the median silt run to the median COPY run.
func (e *env) runSnapshot(ctx context.Context, rows int64, chunks, shards int) (SnapshotResult, error) {
	res := SnapshotResult{Rows: rows, Connections: chunks, Shards: shards, TablesPar: 1, ChunksPer: chunks, ChunkRows: 100_000}
	dsn, err := e.createDB(ctx, "bench_snap")
	if err != nil {
		return res, err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return res, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	fmt.Fprintf(e.out, "snapshot: filling bench.snap with %d rows ...\n", rows)
	t0 := time.Now()
	for _, q := range []string{
		"CREATE SCHEMA bench",
		"CREATE TABLE bench.snap (id bigint PRIMARY KEY, a int, b text, c timestamptz, d numeric(12,2), e float8)",
		fmt.Sprintf(`INSERT INTO bench.snap SELECT g, g %% 100000, 'name-' || g || '-' || md5(g::text), timestamptz '2024-01-01' + g * interval '1 second',
			(g %% 1000000) / 100.0, g / 7.0 FROM generate_series(1, %d) g`, rows),
		"VACUUM ANALYZE bench.snap",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return res, fmt.Errorf("snapshot: %s: %w", q[:20], err)
		}
	}
	if err := conn.QueryRow(ctx, "SELECT pg_relation_size('bench.snap') / current_setting('block_size')::int").Scan(&res.Blocks); err != nil {
		return res, err
	}
	fmt.Fprintf(e.out, "snapshot: filled in %.1fs, %d blocks\n", time.Since(t0).Seconds(), res.Blocks)

	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return res, err
	}
	postmaster := parentPID(backend)
	pg0 := clusterCPU(postmaster)
	c1, err := copyBinary(ctx, dsn, "bench.snap", res.Blocks, chunks)
	if err != nil {
		return res, err
	}
	res.PGCopyCPU = clusterCPU(postmaster) - pg0
	fmt.Fprintf(e.out, "snapshot: COPY binary -> /dev/null, %d connections: %.2fs\n", chunks, c1.Seconds())

	// silt and COPY alternate: COPY, then snapshotRuns times silt and COPY;
	// the ratio is of the medians.
	copies := []time.Duration{c1}
	var runs []snapRun
	for i := 0; i < snapshotRuns; i++ {
		r, err := e.siltSnapshot(ctx, conn, dsn, postmaster, i, res, shards)
		if err != nil {
			return res, err
		}
		runs = append(runs, r)
		c, err := copyBinary(ctx, dsn, "bench.snap", res.Blocks, chunks)
		if err != nil {
			return res, err
		}
		copies = append(copies, c)
		fmt.Fprintf(e.out, "snapshot: run %d: silt -> Bronze %.2fs (first rows counted after %.2fs; %.1f CPU s, peak RSS %.0f MiB; PostgreSQL %.1f CPU s), then COPY %.2fs\n",
			i+1, r.dur.Seconds(), r.first.Seconds(), r.use.CPUSeconds, r.use.PeakRSSMiB, r.pgCPU, c.Seconds())
	}
	for _, c := range copies {
		res.CopySecs = append(res.CopySecs, c.Seconds())
	}
	for _, r := range runs {
		res.SiltRuns = append(res.SiltRuns, r.dur.Seconds())
	}
	med := runs[medianIndex(len(runs), func(i int) float64 { return runs[i].dur.Seconds() })]
	res.CopyRate = float64(rows) / res.CopySecs[medianIndex(len(copies), func(i int) float64 { return res.CopySecs[i] })]
	res.SiltSecs = med.dur.Seconds()
	res.FirstRowSecs = med.first.Seconds()
	res.SiltUse, res.PGSiltCPU = med.use, med.pgCPU
	res.SilverSecs, res.SilverUse, res.SilverMerged = med.silverSecs, med.silverUse, med.merged
	res.SiltRate = float64(rows) / res.SiltSecs
	res.Ratio = res.SiltRate / res.CopyRate
	fmt.Fprintf(e.out, "snapshot: medians: COPY %.0f rows/s, silt -> Bronze %.2fs (%.0f rows/s), ratio %.2f\n", res.CopyRate, res.SiltSecs, res.SiltRate, res.Ratio)
	fmt.Fprintf(e.out, "snapshot: CPU µs per row (median run): silt %.2f + PostgreSQL %.2f during silt's copy; PostgreSQL %.2f during the first COPY\n",
		res.SiltUse.CPUSeconds/float64(rows)*1e6, res.PGSiltCPU/float64(rows)*1e6, res.PGCopyCPU/float64(rows)*1e6)
	fmt.Fprintf(e.out, "snapshot: Bronze -> Silver (final pass at stop, median run): %.2fs, %.1f CPU s (%.2f CPU µs per row), merged %v\n",
		res.SilverSecs, res.SilverUse.CPUSeconds, res.SilverUse.CPUSeconds/float64(rows)*1e6, res.SilverMerged)
	return res, nil
}

// snapshotRuns is how many times silt copies the table (each run next to a
// COPY run).
const snapshotRuns = 3

// medianIndex returns the index of the median of n values (the lower
// middle one for even n).
func medianIndex(n int, v func(int) float64) int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return v(idx[a]) < v(idx[b]) })
	return idx[(n-1)/2]
}

// snapRun is one silt snapshot run.
type snapRun struct {
	dur, first time.Duration
	use        Usage
	pgCPU      float64
	silverSecs float64
	silverUse  Usage
	merged     bool
}

// siltSnapshot runs a fresh silt pipeline (own data directory and slot)
// until every snapshot chunk is durable in Bronze (pgsnap phase "done"),
// timed from pipeline.Open, then stops it; stopping runs a final Silver
// pass that merges the snapshot rows, timed too.
func (e *env) siltSnapshot(ctx context.Context, conn *pgx.Conn, dsn string, postmaster, run int, res SnapshotResult, shards int) (snapRun, error) {
	var r snapRun
	dataDir, err := e.dataDir(fmt.Sprintf("snap%d", run))
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dataDir)
	slot := fmt.Sprintf("silt_snap_%d", run)
	cfg := config.Default(dataDir)
	cfg.Source.DSN = dsn
	cfg.Source.Slot = slot
	cfg.Source.Publication = "silt_snap"
	cfg.Source.Tables = []string{"bench.snap"}
	cfg.Source.SnapshotTablesParallel = res.TablesPar
	cfg.Source.SnapshotChunksPerTable = res.ChunksPer
	cfg.Source.SnapshotChunkRows = res.ChunkRows
	cfg.Stream.Shards = shards
	cfg.Silver.Interval.Duration = time.Hour // Bronze is what is measured
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	pg0 := clusterCPU(postmaster)
	m := startMeter()
	start := time.Now()
	p, err := pipeline.Open(ctx, cfg, logger)
	if err != nil {
		return r, err
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	for r.dur == 0 {
		select {
		case err := <-done:
			stop()
			p.Close()
			return r, fmt.Errorf("snapshot: pipeline stopped: %v", err)
		case <-time.After(2 * time.Millisecond): // the end is seen within 2 ms (COPY is timed exactly)
		}
		pr := p.SnapshotProgress()
		if r.first == 0 && pr.Rows > 0 {
			r.first = time.Since(start)
		}
		if pr.Phase == pgsnap.PhaseDone {
			r.dur = time.Since(start)
		}
	}
	r.use = m.stop()
	r.pgCPU = clusterCPU(postmaster) - pg0
	// Stopping runs a final Silver pass, which merges the table's snapshot
	// rows (Silver's interval is an hour, so none ran before).
	sm := startMeter()
	sstart := time.Now()
	stop()
	runErr := <-done
	r.silverSecs = time.Since(sstart).Seconds()
	r.silverUse = sm.stop()
	for _, t := range p.SnapshotProgress().Tables {
		r.merged = t.Merged
	}
	p.Close()
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return r, fmt.Errorf("snapshot: pipeline: %w", runErr)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot); err != nil {
		return r, fmt.Errorf("snapshot: drop slot %s: %w", slot, err)
	}
	return r, nil
}

// copyBinary reads table with n parallel binary COPYs over heap block ranges.
func copyBinary(ctx context.Context, dsn, table string, blocks int64, n int) (time.Duration, error) {
	ranges := pgsnap.PlanRanges(uint32(blocks), 1, (blocks+int64(n)-1)/int64(n), n)
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
			defer c.Close(context.WithoutCancel(ctx))
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

// parentPID returns pid's parent from /proc (0 if unknown).
func parentPID(pid int) int {
	f := procStat(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// clusterCPU is the CPU seconds of PostgreSQL's postmaster and its
// children: the postmaster's own and reaped children's time (utime,
// stime, cutime, cstime) plus every live child's utime and stime.
func clusterCPU(postmaster int) float64 {
	if postmaster <= 1 {
		return 0
	}
	const hz = 100 // USER_HZ
	ticks := func(f []string, from, to int) float64 {
		var t float64
		for i := from; i <= to && i < len(f); i++ {
			v, _ := strconv.ParseFloat(f[i], 64)
			t += v
		}
		return t
	}
	total := ticks(procStat(postmaster), 11, 14)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := procStat(pid); len(f) > 14 && f[1] == strconv.Itoa(postmaster) {
			total += ticks(f, 11, 12)
		}
	}
	return total / hz
}

// procStat returns the fields of /proc/PID/stat after the command name
// (field 3, state, is index 0).
func procStat(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// Package bench measures silt against baselines run in the same process on
// the same data, and prints ratios. Nothing here is hard-coded: every
// figure is measured in the run that prints it.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/demo"
	"github.com/silt-dev/silt/internal/pgcluster"
	"github.com/silt-dev/silt/internal/pipeline"
)

// E2EOptions size the end-to-end scenario.
type E2EOptions struct {
	// DrainChanges is the size of the backlog drained by pg_recvlogical and by silt.
	DrainChanges int
	// Rates are the offered change rates for the sustained runs; 0 means as fast as possible.
	Rates []int
	// RateDuration is how long each offered rate runs.
	RateDuration time.Duration
	Shards       int
	Out          io.Writer
}

// RateResult is one offered-rate run.
type RateResult struct {
	Offered   int     // target changes/s (0: maximum)
	Achieved  float64 // changes/s the workload actually produced
	Sustained float64 // changes/s that reached Silver over workload + catch-up
	CatchUp   time.Duration
	P50, P99  time.Duration // commit -> Silver
}

// E2EResult holds the figures.
type E2EResult struct {
	DrainChanges    int64
	RecvlogicalSecs float64
	RecvlogicalRate float64
	SiltCaptureSecs float64 // backlog captured into the stream (all changes appended)
	SiltCaptureRate float64
	SiltSilverSecs  float64 // backlog merged into Silver
	SiltSilverRate  float64
	SilverVsRecv    float64
	CaptureVsRecv   float64
	Rates           []RateResult
}

// RunE2E starts a private PostgreSQL, builds a backlog, drains it with
// pg_recvlogical and with silt, then runs silt live at fixed offered rates.
func RunE2E(ctx context.Context, o E2EOptions) (E2EResult, error) {
	var res E2EResult
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Shards == 0 {
		o.Shards = 2
	}
	cl, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		return res, err
	}
	defer cl.Stop()
	admin, err := pgx.Connect(ctx, cl.DSN("postgres"))
	if err != nil {
		return res, err
	}
	_, err = admin.Exec(ctx, "CREATE DATABASE bench")
	admin.Close(ctx)
	if err != nil {
		return res, err
	}
	dsn := cl.DSN("bench")
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return res, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, demo.DDL); err != nil {
		return res, err
	}
	dataDir, err := os.MkdirTemp("", "silt-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dataDir)
	cfg := config.Default(dataDir)
	cfg.Source.DSN = dsn
	cfg.Source.Slot = "silt_bench"
	cfg.Source.Publication = "silt_bench"
	for _, t := range demo.Tables {
		cfg.Source.Tables = append(cfg.Source.Tables, t.String())
	}
	cfg.Stream.Shards = o.Shards
	cfg.Bronze.FlushInterval.Duration = 250 * time.Millisecond
	cfg.Silver.Interval.Duration = 250 * time.Millisecond
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := pipeline.Open(ctx, cfg, logger) // creates the publication and silt's slot
	if err != nil {
		return res, err
	}
	defer p.Close()
	if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot('recv_bench', 'pgoutput')"); err != nil {
		return res, err
	}

	// Backlog.
	fmt.Fprintf(o.Out, "e2e: writing a backlog of %d changes ...\n", o.DrainChanges)
	var made atomic.Int64
	if err := demo.Workload(ctx, dsn, demo.WorkloadOptions{MinChanges: int64(o.DrainChanges), Workers: 2, Seed: 1, Changes: &made}); err != nil {
		return res, err
	}
	res.DrainChanges = made.Load()
	var endLSN string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&endLSN); err != nil {
		return res, err
	}

	// Baseline: pg_recvlogical drains its slot over the same WAL.
	bin, err := pgcluster.FindBinDir()
	if err != nil {
		return res, err
	}
	recv := bin + "/pg_recvlogical"
	if _, err := os.Stat(recv); err != nil {
		if recv, err = exec.LookPath("pg_recvlogical"); err != nil {
			return res, fmt.Errorf("pg_recvlogical not found: install postgresql-client")
		}
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, recv, "-d", dsn, "--slot", "recv_bench", "--start", "--no-loop",
		"-o", "proto_version=1", "-o", "publication_names=silt_bench", "-E", endLSN, "-f", "/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		return res, fmt.Errorf("pg_recvlogical: %v: %s", err, strings.TrimSpace(string(out)))
	}
	res.RecvlogicalSecs = time.Since(start).Seconds()
	res.RecvlogicalRate = float64(res.DrainChanges) / res.RecvlogicalSecs
	fmt.Fprintf(o.Out, "e2e: pg_recvlogical drained %d changes in %.2fs (%.0f/s)\n", res.DrainChanges, res.RecvlogicalSecs, res.RecvlogicalRate)

	// silt drains the same backlog to Silver.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	start = time.Now()
	go func() { runErr <- p.Run(runCtx) }()
	captured, merged := false, false
	for !merged {
		select {
		case err := <-runErr:
			return res, fmt.Errorf("pipeline stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		s := p.Snapshot()
		if !captured && s.Changes >= res.DrainChanges {
			captured = true
			res.SiltCaptureSecs = time.Since(start).Seconds()
		}
		if s.SilverChanges >= res.DrainChanges {
			merged = true
			res.SiltSilverSecs = time.Since(start).Seconds()
		}
		if time.Since(start) > 30*time.Minute {
			return res, fmt.Errorf("silt did not drain the backlog in 30 minutes (%d of %d changes in Silver)", s.SilverChanges, res.DrainChanges)
		}
	}
	res.SiltCaptureRate = float64(res.DrainChanges) / res.SiltCaptureSecs
	res.SiltSilverRate = float64(res.DrainChanges) / res.SiltSilverSecs
	res.CaptureVsRecv = res.SiltCaptureRate / res.RecvlogicalRate
	res.SilverVsRecv = res.SiltSilverRate / res.RecvlogicalRate
	fmt.Fprintf(o.Out, "e2e: silt captured it in %.2fs (%.0f/s, %.2fx pg_recvlogical) and merged it into Silver in %.2fs (%.0f/s, %.2fx)\n",
		res.SiltCaptureSecs, res.SiltCaptureRate, res.CaptureVsRecv, res.SiltSilverSecs, res.SiltSilverRate, res.SilverVsRecv)

	// Live runs at fixed offered rates.
	base := 1
	for _, rate := range o.Rates {
		base++
		before := p.Snapshot()
		p.ResetFreshness()
		var n atomic.Int64
		wstart := time.Now()
		if err := demo.Workload(ctx, dsn, demo.WorkloadOptions{Duration: o.RateDuration, Rate: rate, Workers: 2, Batch: 40, Seed: uint64(base), IDBase: base * 100_000, Changes: &n}); err != nil {
			return res, err
		}
		wdur := time.Since(wstart)
		target := before.SilverChanges + n.Load()
		cstart := time.Now()
		for p.Snapshot().SilverChanges < target {
			select {
			case err := <-runErr:
				return res, fmt.Errorf("pipeline stopped: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
			if time.Since(cstart) > 10*time.Minute {
				return res, fmt.Errorf("silt did not catch up with offered rate %d in 10 minutes", rate)
			}
		}
		catch := time.Since(cstart)
		s := p.Snapshot()
		rr := RateResult{Offered: rate, Achieved: float64(n.Load()) / wdur.Seconds(),
			Sustained: float64(n.Load()) / (wdur + catch).Seconds(), CatchUp: catch, P50: s.FreshnessP50, P99: s.FreshnessP99}
		res.Rates = append(res.Rates, rr)
		label := fmt.Sprint(rate)
		if rate == 0 {
			label = "max"
		}
		fmt.Fprintf(o.Out, "e2e: offered %s/s: workload made %.0f/s, Silver sustained %.0f/s, catch-up %s, commit->Silver p50 %s p99 %s\n",
			label, rr.Achieved, rr.Sustained, catch.Round(time.Millisecond), rr.P50.Round(time.Millisecond), rr.P99.Round(time.Millisecond))
	}
	stop()
	if err := <-runErr; err != nil {
		return res, err
	}
	_ = change.LSN(0)
	return res, nil
}

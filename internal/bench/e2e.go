// Package bench measures silt against baselines run in the same process on
// the same data, and prints ratios. Nothing here is hard-coded: every
// figure is measured in the run that prints it.
package bench

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/silt-dev/silt/internal/demo"
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
	Changes   int64   // changes the workload made
	Achieved  float64 // changes/s the workload actually produced
	Sustained float64 // changes/s that reached Silver over workload + catch-up
	CatchUp   time.Duration
	P50, P99  time.Duration // commit -> Silver
	// Usage is the silt process over workload + catch-up. The workload's
	// client (pgx, in this process) is included in its CPU time.
	Usage Usage
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
	Drain           DrainResult
	Rates           []RateResult
}

// RunE2E starts a private PostgreSQL, builds a backlog, drains it with
// pg_recvlogical and with silt, then runs silt live at fixed offered rates.
func RunE2E(ctx context.Context, o E2EOptions) (E2EResult, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	e, err := startEnv(ctx, o.Out, "")
	if err != nil {
		return E2EResult{}, err
	}
	defer e.close()
	return runE2E(ctx, e, o)
}

// runE2E is the mixed workload: a backlog drained by pg_recvlogical and by
// silt (runDrain), then silt live at fixed offered rates.
func runE2E(ctx context.Context, e *env, o E2EOptions) (E2EResult, error) {
	var res E2EResult
	if o.Shards == 0 {
		o.Shards = 2
	}
	var tables []string
	for _, t := range demo.Tables {
		tables = append(tables, t.String())
	}
	d, l, err := e.runDrain(ctx, drainSpec{
		name: "mixed drain", db: "bench_mixed", ddl: demo.DDL, tables: tables, shards: o.Shards,
		write: func(ctx context.Context, dsn string) (int64, error) {
			var made atomic.Int64
			err := demo.Workload(ctx, dsn, demo.WorkloadOptions{MinChanges: int64(o.DrainChanges), Workers: 2, Seed: 1, Changes: &made})
			return made.Load(), err
		},
	})
	if err != nil {
		return res, err
	}
	defer l.close()
	res.Drain = d
	res.DrainChanges = d.Changes
	res.RecvlogicalSecs, res.RecvlogicalRate = d.RecvlogicalSecs, d.RecvlogicalRate
	res.SiltCaptureSecs, res.SiltCaptureRate = d.SiltCaptureSecs, d.SiltCaptureRate
	res.SiltSilverSecs, res.SiltSilverRate = d.SiltSilverSecs, d.SiltSilverRate
	res.CaptureVsRecv, res.SilverVsRecv = d.CaptureVsRecv, d.SilverVsRecv
	p := l.p

	// Live runs at fixed offered rates.
	base := 1
	for _, rate := range o.Rates {
		base++
		before := p.Snapshot()
		p.ResetFreshness()
		var n atomic.Int64
		m := startMeter()
		wstart := time.Now()
		if err := demo.Workload(ctx, l.dsn, demo.WorkloadOptions{Duration: o.RateDuration, Rate: rate, Workers: 2, Batch: 40, Seed: uint64(base), IDBase: base * 100_000, Changes: &n}); err != nil {
			return res, err
		}
		wdur := time.Since(wstart)
		target := before.SilverChanges + n.Load()
		cstart := time.Now()
		for p.Snapshot().SilverChanges < target {
			select {
			case err := <-l.runErr:
				l.runErr <- err
				return res, fmt.Errorf("pipeline stopped: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
			if time.Since(cstart) > 10*time.Minute {
				return res, fmt.Errorf("silt did not catch up with offered rate %d in 10 minutes", rate)
			}
		}
		catch := time.Since(cstart)
		s := p.Snapshot()
		rr := RateResult{Offered: rate, Changes: n.Load(), Achieved: float64(n.Load()) / wdur.Seconds(),
			Sustained: float64(n.Load()) / (wdur + catch).Seconds(), CatchUp: catch, P50: s.FreshnessP50, P99: s.FreshnessP99,
			Usage: m.stop()}
		res.Rates = append(res.Rates, rr)
		label := fmt.Sprint(rate)
		if rate == 0 {
			label = "max"
		}
		fmt.Fprintf(o.Out, "e2e: offered %s/s: workload made %.0f/s, Silver sustained %.0f/s, catch-up %s, commit->Silver p50 %s p99 %s\n",
			label, rr.Achieved, rr.Sustained, catch.Round(time.Millisecond), rr.P50.Round(time.Millisecond), rr.P99.Round(time.Millisecond))
	}
	return res, l.close()
}

// Package demo runs silt end to end on a throwaway PostgreSQL (or a given
// database): it creates IoT telemetry tables, runs a mixed insert, update and
// delete workload (with TOASTed values), runs the pipeline until Silver has
// caught up, and checks every Silver table against its source table.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/pgcluster"
	"github.com/silt-dev/silt/internal/pipeline"
	"github.com/silt-dev/silt/internal/verify"
)

// Options configure Run.
type Options struct {
	// DSN of an existing database; empty starts a throwaway cluster.
	DSN string
	// Duration of the workload.
	Duration time.Duration
	// Rate is the target changes per second (0: as fast as the database goes).
	Rate int
	// Workers is the number of concurrent workload connections.
	Workers int
	// DataDir holds the stream and the lake; empty = a temp dir, removed after.
	DataDir string
	// Shards of the stream.
	Shards int
	// Seed of the workload; 0 picks one.
	Seed   uint64
	Out    io.Writer
	Logger *slog.Logger
}

// Schema is the schema the demo tables live in.
const Schema = "silt_demo"

// Tables are the demo's source tables.
var Tables = []change.TableID{{Schema: Schema, Name: "devices"}, {Schema: Schema, Name: "readings"}}

// DDL creates the demo tables.
const DDL = `
CREATE SCHEMA IF NOT EXISTS silt_demo;
DROP TABLE IF EXISTS silt_demo.readings, silt_demo.devices;
CREATE TABLE silt_demo.devices (
  device_id   integer PRIMARY KEY,
  plant       text NOT NULL,
  name        text,
  installed   date,
  active      boolean NOT NULL DEFAULT true,
  calibration numeric(10,4),
  firmware    bytea,
  notes       text,            -- large values are TOASTed: updates that leave it alone send "unchanged"
  updated_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE silt_demo.devices ALTER COLUMN notes SET STORAGE EXTERNAL;
CREATE TABLE silt_demo.readings (
  tag_id   integer NOT NULL,
  ts       timestamptz NOT NULL,
  plant    text NOT NULL,
  value    double precision,
  quality  smallint NOT NULL,
  seq      bigint NOT NULL,
  local_ts timestamp,
  PRIMARY KEY (tag_id, ts)
);
`

// Summary is what Run measured.
type Summary struct {
	Changes      int64
	Transactions int64
	Workload     time.Duration
	CatchUp      time.Duration
	Results      []verify.Result
	FreshP50     time.Duration
	FreshP99     time.Duration
}

// Equal reports whether every table matched.
func (s Summary) Equal() bool {
	for _, r := range s.Results {
		if !r.Equal() {
			return false
		}
	}
	return len(s.Results) > 0
}

// ErrMismatch is returned when Silver differs from the source.
var ErrMismatch = errors.New("silver differs from source")

// Run runs the demo and prints a summary to opts.Out.
func Run(ctx context.Context, opts Options) (Summary, error) {
	var sum Summary
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.Duration == 0 {
		opts.Duration = 20 * time.Second
	}
	if opts.Workers == 0 {
		opts.Workers = 2
	}
	if opts.Shards == 0 {
		opts.Shards = 2
	}
	if opts.Seed == 0 {
		opts.Seed = mrand.Uint64()
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	out := opts.Out
	dsn := opts.DSN
	if dsn == "" {
		fmt.Fprintln(out, "starting a throwaway PostgreSQL cluster ...")
		cl, err := pgcluster.Start(ctx, pgcluster.Options{})
		if err != nil {
			return sum, fmt.Errorf("demo: %w", err)
		}
		defer cl.Stop()
		admin, err := pgx.Connect(ctx, cl.DSN("postgres"))
		if err != nil {
			return sum, fmt.Errorf("demo: %w", err)
		}
		_, err = admin.Exec(ctx, "CREATE DATABASE silt_demo")
		admin.Close(ctx)
		if err != nil {
			return sum, fmt.Errorf("demo: create database: %w", err)
		}
		dsn = cl.DSN("silt_demo")
		fmt.Fprintf(out, "PostgreSQL on 127.0.0.1:%d (data in %s)\n", cl.Port, cl.Dir)
	}
	dataDir := opts.DataDir
	if dataDir == "" {
		d, err := os.MkdirTemp("", "silt-demo-")
		if err != nil {
			return sum, err
		}
		defer os.RemoveAll(d)
		dataDir = d
	}
	conn, err := pgx.Connect(ctx, pipeline.SessionDSN(dsn))
	if err != nil {
		return sum, fmt.Errorf("demo: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// A previous demo run's slot would hold WAL and replay old changes.
	_, _ = conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'silt_demo' AND NOT active")
	_, _ = conn.Exec(ctx, "DROP PUBLICATION IF EXISTS silt_demo")
	if _, err := conn.Exec(ctx, DDL); err != nil {
		return sum, fmt.Errorf("demo: create tables: %w", err)
	}

	cfg := config.Default(dataDir)
	cfg.Source.DSN = dsn
	cfg.Source.Slot = "silt_demo"
	cfg.Source.Publication = "silt_demo"
	for _, t := range Tables {
		cfg.Source.Tables = append(cfg.Source.Tables, t.String())
	}
	cfg.Stream.Shards = opts.Shards
	cfg.Bronze.FlushInterval.Duration = 500 * time.Millisecond
	cfg.Silver.Interval.Duration = 500 * time.Millisecond
	p, err := pipeline.Open(ctx, cfg, logger)
	if err != nil {
		return sum, err
	}
	defer p.Close()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(runCtx) }()

	fmt.Fprintf(out, "running workload for %s (workers %d, seed %d, data in %s) ...\n", opts.Duration, opts.Workers, opts.Seed, dataDir)
	start := time.Now()
	var changes atomic.Int64
	if err := Workload(ctx, dsn, WorkloadOptions{Duration: opts.Duration, Rate: opts.Rate, Workers: opts.Workers, Seed: opts.Seed, Changes: &changes}); err != nil {
		return sum, err
	}
	sum.Workload = time.Since(start)
	fmt.Fprintf(out, "workload done: %d changes in %s (%.0f changes/s)\n", changes.Load(), sum.Workload.Round(time.Millisecond), float64(changes.Load())/sum.Workload.Seconds())

	// Wait until Silver equals the source (or time out).
	fmt.Fprintln(out, "waiting for Silver to catch up ...")
	catchStart := time.Now()
	deadline := catchStart.Add(2*time.Minute + opts.Duration)
	for {
		select {
		case err := <-runErr:
			return sum, fmt.Errorf("pipeline stopped: %w", err)
		default:
		}
		sum.Results = sum.Results[:0]
		for _, t := range Tables {
			r, err := verify.Table(ctx, conn, p.Store(), t)
			if err != nil {
				return sum, err
			}
			sum.Results = append(sum.Results, r)
		}
		if sum.Equal() || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	sum.CatchUp = time.Since(catchStart)
	st := p.Snapshot()
	sum.Changes, sum.Transactions = st.Changes, st.Transactions
	sum.FreshP50, sum.FreshP99 = st.FreshnessP50, st.FreshnessP99
	stop()
	if err := <-runErr; err != nil {
		return sum, fmt.Errorf("pipeline: %w", err)
	}

	fmt.Fprintln(out, "")
	fmt.Fprintln(out, "silt demo summary")
	fmt.Fprintf(out, "  changes captured     %d in %d transactions\n", sum.Changes, sum.Transactions)
	fmt.Fprintf(out, "  workload             %s, %.0f changes/s offered\n", sum.Workload.Round(time.Millisecond), float64(changes.Load())/sum.Workload.Seconds())
	fmt.Fprintf(out, "  end-to-end           %.0f changes/s (captured changes / (workload + catch-up))\n", float64(sum.Changes)/(sum.Workload+sum.CatchUp).Seconds())
	fmt.Fprintf(out, "  catch-up after load  %s\n", sum.CatchUp.Round(time.Millisecond))
	fmt.Fprintf(out, "  commit -> Silver     p50 %s, p99 %s\n", sum.FreshP50.Round(time.Millisecond), sum.FreshP99.Round(time.Millisecond))
	for _, r := range sum.Results {
		fmt.Fprintf(out, "  %s\n", r)
	}
	if !sum.Equal() {
		fmt.Fprintln(out, "RESULT: Silver differs from the source")
		return sum, ErrMismatch
	}
	fmt.Fprintln(out, "RESULT: every Silver table equals its source table")
	return sum, nil
}

// WorkloadOptions configure Workload.
type WorkloadOptions struct {
	Duration time.Duration
	// MinChanges keeps the workload running until at least this many changes.
	MinChanges int64
	Rate       int
	Workers    int
	Seed       uint64
	// Batch is the number of readings inserted per transaction (default 10).
	Batch int
	// IDBase offsets device and tag ids so that several workload runs on one
	// database do not collide (use multiples of 100000).
	IDBase  int
	Changes *atomic.Int64
}

// Workload runs the mixed IoT workload against the demo tables.
func Workload(ctx context.Context, dsn string, o WorkloadOptions) error {
	if o.Workers == 0 {
		o.Workers = 2
	}
	if o.Changes == nil {
		o.Changes = new(atomic.Int64)
	}
	var wg sync.WaitGroup
	errc := make(chan error, o.Workers)
	end := time.Now().Add(o.Duration)
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			if err := worker(ctx, dsn, w, o, end); err != nil {
				errc <- err
			}
		}(w)
	}
	wg.Wait()
	close(errc)
	return <-errc
}

func worker(ctx context.Context, dsn string, w int, o WorkloadOptions, end time.Time) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("workload: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rng := mrand.New(mrand.NewPCG(o.Seed, uint64(w)))
	plants := []string{"north", "south", "east", "west"}
	// Each worker owns tag ids and device ids = w mod Workers so that workers never conflict.
	devBase := o.IDBase + w*1_000_000
	tagBase := o.IDBase + w*1_000_000
	nDev := 0
	seq := int64(0)
	var tsBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	start := time.Now()
	var done int64
	for time.Now().Before(end) || done < o.MinChanges/int64(o.Workers) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return fmt.Errorf("workload: %w", err)
		}
		n := 0
		// Devices: grow to 50 per worker, then update (often leaving notes untouched), occasionally delete and re-add.
		if nDev < 50 || rng.IntN(10) == 0 {
			id := devBase + nDev
			nDev++
			notes := ""
			if rng.IntN(3) == 0 {
				notes = bigText(rng, 6000) // TOASTed out of line
			}
			fw := make([]byte, 8)
			for i := range fw {
				fw[i] = byte(rng.IntN(256))
			}
			if _, err := tx.Exec(ctx, `INSERT INTO silt_demo.devices (device_id, plant, name, installed, active, calibration, firmware, notes)
				VALUES ($1,$2,$3,$4,true,$5,$6,NULLIF($7,''))`, id, plants[rng.IntN(len(plants))], fmt.Sprintf("dev-%d", id),
				tsBase.AddDate(0, 0, -rng.IntN(1000)), fmt.Sprintf("%d.%04d", rng.IntN(1000), rng.IntN(10000)), fw, notes); err != nil {
				return fmt.Errorf("workload: insert device: %w", err)
			}
			n++
		}
		if nDev > 0 {
			id := devBase + rng.IntN(nDev)
			switch rng.IntN(10) {
			case 0:
				ct, err := tx.Exec(ctx, `DELETE FROM silt_demo.devices WHERE device_id = $1`, id)
				if err != nil {
					return fmt.Errorf("workload: delete device: %w", err)
				}
				n += int(ct.RowsAffected())
			case 1:
				ct, err := tx.Exec(ctx, `UPDATE silt_demo.devices SET notes = $2, updated_at = now() WHERE device_id = $1`, id, bigText(rng, 5000))
				if err != nil {
					return fmt.Errorf("workload: update device notes: %w", err)
				}
				n += int(ct.RowsAffected())
			default:
				ct, err := tx.Exec(ctx, `UPDATE silt_demo.devices SET active = NOT active, calibration = $2, updated_at = now() WHERE device_id = $1`,
					id, fmt.Sprintf("%d.%04d", rng.IntN(1000), rng.IntN(10000)))
				if err != nil {
					return fmt.Errorf("workload: update device: %w", err)
				}
				n += int(ct.RowsAffected())
			}
		}
		// Readings: a batch of inserts, some updates (quality corrections), some deletes.
		batch := o.Batch
		if batch <= 0 {
			batch = 10
		}
		tag := tagBase + rng.IntN(100)
		tags, tss, pl, vals, qs, seqs, locals := make([]int32, batch), make([]time.Time, batch), make([]string, batch),
			make([]float64, batch), make([]int16, batch), make([]int64, batch), make([]time.Time, batch)
		for i := 0; i < batch; i++ {
			seq++
			ts := tsBase.Add(time.Duration(seq) * time.Second)
			tags[i], tss[i], pl[i], vals[i], qs[i], seqs[i], locals[i] = int32(tag+i%5), ts, plants[tag%len(plants)], rng.NormFloat64()*100, 192, seq, ts.Add(2*time.Hour)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO silt_demo.readings (tag_id, ts, plant, value, quality, seq, local_ts)
			SELECT * FROM unnest($1::int4[], $2::timestamptz[], $3::text[], $4::float8[], $5::int2[], $6::int8[], $7::timestamp[])`,
			tags, tss, pl, vals, qs, seqs, locals); err != nil {
			return fmt.Errorf("workload: insert readings: %w", err)
		}
		n += batch
		ct, err := tx.Exec(ctx, `UPDATE silt_demo.readings SET quality = 0, value = value * 1.5 WHERE tag_id = $1 AND seq > $2`, tag, seq-30)
		if err != nil {
			return fmt.Errorf("workload: update readings: %w", err)
		}
		n += int(ct.RowsAffected())
		if rng.IntN(3) == 0 {
			ct, err := tx.Exec(ctx, `DELETE FROM silt_demo.readings WHERE tag_id = $1 AND seq < $2`, tag+1, seq-60)
			if err != nil {
				return fmt.Errorf("workload: delete readings: %w", err)
			}
			n += int(ct.RowsAffected())
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("workload: commit: %w", err)
		}
		o.Changes.Add(int64(n))
		done += int64(n)
		if o.Rate > 0 {
			// Pace: this worker's share of the rate.
			want := time.Duration(float64(done) / (float64(o.Rate) / float64(o.Workers)) * float64(time.Second))
			if d := want - time.Since(start); d > 0 {
				time.Sleep(d)
			}
		}
	}
	return nil
}

func bigText(rng *mrand.Rand, n int) string {
	b := make([]byte, n/2)
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	_ = rand.Reader
	return hex.EncodeToString(b)
}

package pipeline_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/bronze"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/demo"
	"github.com/silt-dev/silt/internal/pgcluster"
	"github.com/silt-dev/silt/internal/pipeline"
	"github.com/silt-dev/silt/internal/testutil/pgtest"
	"github.com/silt-dev/silt/internal/verify"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func testConfig(t *testing.T, db *pgtest.DB, dataDir string) *config.Config {
	cfg := config.Default(dataDir)
	cfg.Source.DSN = db.DSN
	cfg.Source.Slot = "silt_" + db.Suffix
	cfg.Source.Publication = "silt_" + db.Suffix
	for _, tb := range demo.Tables {
		cfg.Source.Tables = append(cfg.Source.Tables, tb.String())
	}
	cfg.Source.StatusInterval.Duration = time.Second
	cfg.Stream.Shards = 3
	cfg.Stream.Durability = "none"
	cfg.Bronze.FlushInterval.Duration = 200 * time.Millisecond
	cfg.Silver.Interval.Duration = 200 * time.Millisecond
	return cfg
}

type running struct {
	p    *pipeline.Pipeline
	stop context.CancelFunc
	done chan error // Run's result, once
	// finished is closed when Run has returned.
	finished chan struct{}
}

func start(t *testing.T, cfg *config.Config) *running {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := pipeline.Open(context.Background(), cfg, logger)
	if err != nil {
		t.Fatalf("open pipeline: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{p: p, stop: cancel, done: make(chan error, 1), finished: make(chan struct{})}
	go func() { r.done <- p.Run(ctx); close(r.finished) }()
	t.Cleanup(func() {
		cancel()
		<-r.finished // not r.done: a check may have taken Run's result
		p.Close()
	})
	return r
}

// shutdown stops the pipeline cleanly and checks it stopped without error.
func (r *running) shutdown(t *testing.T) {
	t.Helper()
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("pipeline stopped with error: %v", err)
		}
		r.done <- nil // for the cleanup
		if err := r.p.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("pipeline did not stop within 60s")
	}
}

// waitEqual polls until every demo table's Silver equals the source.
func waitEqual(t *testing.T, r *running, db *pgtest.DB, timeout time.Duration) []verify.Result {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pipeline.SessionDSN(db.DSN))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-r.done:
			t.Fatalf("pipeline stopped early: %v", err)
		default:
		}
		var res []verify.Result
		ok := true
		for _, tb := range demo.Tables {
			v, err := verify.Table(ctx, conn, r.p.Store(), tb)
			if err != nil {
				t.Fatal(err)
			}
			res = append(res, v)
			ok = ok && v.Equal()
		}
		if ok {
			return res
		}
		if time.Now().After(deadline) {
			for _, v := range res {
				t.Log(v)
			}
			t.Fatalf("silver did not equal the source within %s", timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestEndToEndMixedWorkload(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, demo.DDL)
	cfg := testConfig(t, db, t.TempDir())
	r := start(t, cfg)
	var n atomic.Int64
	seed := uint64(time.Now().UnixNano())
	t.Logf("workload seed %d", seed)
	if err := demo.Workload(context.Background(), db.DSN, demo.WorkloadOptions{MinChanges: 12000, Workers: 2, Seed: seed, Changes: &n}); err != nil {
		t.Fatal(err)
	}
	if n.Load() < 10000 {
		t.Fatalf("workload made only %d changes", n.Load())
	}
	res := waitEqual(t, r, db, 2*time.Minute)
	for _, v := range res {
		t.Log(v)
		if v.SourceRows == 0 {
			t.Fatalf("%s: no rows; the workload must leave rows behind", v.Table)
		}
	}
	r.shutdown(t)
	checkBronzeNoDuplicates(t, r.p.Store())
	checkSlotNotPastBronze(t, db, cfg)
	t.Logf("%d changes; silver equals source", n.Load())
}

func TestRestartResumesWithoutLossOrDuplicates(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, demo.DDL)
	dataDir := t.TempDir()
	cfg := testConfig(t, db, dataDir)
	seed := uint64(time.Now().UnixNano())
	t.Logf("workload seed %d", seed)

	r := start(t, cfg)
	if err := demo.Workload(context.Background(), db.DSN, demo.WorkloadOptions{MinChanges: 3000, Workers: 2, Seed: seed}); err != nil {
		t.Fatal(err)
	}
	waitEqual(t, r, db, time.Minute)
	r.shutdown(t)

	// Changes made while silt is stopped wait in the slot.
	if err := demo.Workload(context.Background(), db.DSN, demo.WorkloadOptions{MinChanges: 3000, Workers: 2, Seed: seed + 1, IDBase: 100_000}); err != nil {
		t.Fatal(err)
	}
	r2 := start(t, testConfig(t, db, dataDir))
	waitEqual(t, r2, db, time.Minute)
	// And changes made after the restart.
	if err := demo.Workload(context.Background(), db.DSN, demo.WorkloadOptions{MinChanges: 2000, Workers: 2, Seed: seed + 2, IDBase: 200_000}); err != nil {
		t.Fatal(err)
	}
	waitEqual(t, r2, db, time.Minute)
	r2.shutdown(t)
	checkBronzeNoDuplicates(t, r2.p.Store())
	checkSlotNotPastBronze(t, db, cfg)
}

// checkBronzeNoDuplicates: every (table, LSN, pos, op) appears once in Bronze.
func checkBronzeNoDuplicates(t *testing.T, store blob.Store) {
	t.Helper()
	seen := map[string]bool{}
	forEachBronzeRow(t, store, demo.Tables, false, func(tb change.TableID, r bronzeRowView) error {
		if r.op == "L" {
			// Snapshot rows: a chunk cut short by a crash is copied again
			// (at-least-once in Bronze; Silver dedupes them by key and position).
			return nil
		}
		k := fmt.Sprintf("%s/%d/%d/%s", tb, r.lsn, r.pos, r.op)
		if seen[k] {
			return fmt.Errorf("duplicate bronze row (lsn/pos/op) %d/%d/%s", r.lsn, r.pos, r.op)
		}
		seen[k] = true
		return nil
	})
	if len(seen) == 0 {
		t.Fatal("bronze is empty")
	}
}

// bronzeRowView is one Bronze row as the checks see it.
type bronzeRowView struct {
	lsn, pos int64
	op       string
	rec      arrow.RecordBatch
	i        int
}

// forEachBronzeRow calls fn for every row of each table's Bronze table; a
// table not created yet is skipped when missingOK, else it fails the test.
func forEachBronzeRow(t *testing.T, store blob.Store, tables []change.TableID, missingOK bool, fn func(change.TableID, bronzeRowView) error) {
	t.Helper()
	ctx := context.Background()
	for _, tb := range tables {
		dt := delta.NewTable(store, bronze.TablePath(tb))
		snap, err := dt.Snapshot(ctx)
		if err != nil {
			if missingOK {
				continue
			}
			t.Fatalf("bronze %s: %v", tb, err)
		}
		err = datafile.Scan(ctx, store, datafile.Info(dt, snap), snap.Files(), func(r arrow.RecordBatch) error {
			ix := map[string]int{}
			for i, f := range r.Schema().Fields() {
				ix[f.Name] = i
			}
			lsn := r.Column(ix[bronze.ColLSN]).(*array.Int64)
			pos := r.Column(ix[bronze.ColPos]).(*array.Int64)
			op := r.Column(ix[bronze.ColOp]).(*array.String)
			for i := 0; i < int(r.NumRows()); i++ {
				if err := fn(tb, bronzeRowView{lsn.Value(i), pos.Value(i), op.Value(i), r, i}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("bronze %s: %v", tb, err)
		}
	}
}

// checkSlotNotPastBronze: the slot's confirmed LSN is not beyond the newest
// end LSN that Bronze holds (every change at or before it is in Bronze).
func checkSlotNotPastBronze(t *testing.T, db *pgtest.DB, cfg *config.Config) {
	t.Helper()
	var confirmed string
	db.QueryRow(t, []any{&confirmed}, "SELECT coalesce(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots WHERE slot_name = $1", cfg.Source.Slot)
	lsn, err := change.ParseLSN(confirmed)
	if err != nil {
		t.Fatal(err)
	}
	var current string
	db.QueryRow(t, []any{&current}, "SELECT pg_current_wal_lsn()::text")
	cur, _ := change.ParseLSN(current)
	if lsn == 0 {
		t.Fatalf("slot confirmed LSN never advanced (current WAL %s)", current)
	}
	if lsn > cur {
		t.Fatalf("slot confirmed %s beyond current WAL %s", lsn, cur)
	}
	t.Logf("slot confirmed_flush_lsn %s, current WAL %s", lsn, cur)
}

func TestPreflightErrorsAreOneLine(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE public.events (at timestamptz, what text)")
	db.Exec(t, "CREATE TABLE public.ok (id int primary key)")
	check := func(name string, cfg *config.Config, want ...string) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p, err := pipeline.Open(ctx, cfg, nil)
			if err == nil {
				p.Close()
				t.Fatal("Open succeeded; want an error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			for _, w := range want {
				if !strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			t.Log(msg)
		})
	}
	noKey := config.Default(t.TempDir())
	noKey.Source.DSN = db.DSN
	noKey.Source.Slot = "silt_" + db.Suffix
	noKey.Source.Publication = "silt_" + db.Suffix
	noKey.Source.Tables = []string{"public.ok", "public.events"}
	check("table without primary key", noKey, "public.events", "primary key", "replica identity using index", "source.keyless: append")

	unreachable := config.Default(t.TempDir())
	unreachable.Source.DSN = "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=5"
	check("unreachable database", unreachable, "cannot connect", "127.0.0.1:1", "source.dsn")
}

func TestPreflightWalLevelReplica(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := pgcluster.Start(ctx, pgcluster.Options{ExtraSettings: map[string]string{"wal_level": "replica"}})
	if err != nil {
		pgtest.SkipOrFatal(t, err)
		return
	}
	defer cl.Stop()
	cfg := config.Default(t.TempDir())
	cfg.Source.DSN = cl.DSN("postgres")
	p, err := pipeline.Open(ctx, cfg, nil)
	if err == nil {
		p.Close()
		t.Fatal("Open succeeded on wal_level=replica")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "wal_level") || !strings.Contains(msg, "logical") {
		t.Fatalf("want a one-line error about wal_level=logical, got %q", msg)
	}
	t.Log(msg)
}

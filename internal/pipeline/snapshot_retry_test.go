package pipeline_test

import (
	"context"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/pgcluster"
	"github.com/silt-dev/silt/internal/source/pgsnap"
	"github.com/silt-dev/silt/internal/testutil/faultproxy"
	"github.com/silt-dev/silt/internal/testutil/pgtest"
)

// churnRetrying runs churn until ctx ends, reconnecting (with a new seed)
// whenever the database goes away under it.
func churnRetrying(ctx context.Context, dsn string, seed uint64, maxID int, n *atomic.Int64) {
	for i := uint64(0); ctx.Err() == nil; i++ {
		if err := churn(ctx, dsn, seed+i, maxID, n); err != nil {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestSnapshotRetries: PostgreSQL restarts (fast, then immediate shutdown)
// and a network cut, each in the middle of the initial snapshot and under
// concurrent writes. The pipeline does not stop: the snapshot resumes the
// unfinished chunks in a new snapshot, chunks durable before the fault are
// not copied again, and Silver ends equal to the source.
func TestSnapshotRetries(t *testing.T) {
	t.Run("postgres restart", func(t *testing.T) {
		ctx := context.Background()
		cl, err := pgcluster.Start(ctx, pgcluster.Options{})
		if err != nil {
			pgtest.SkipOrFatal(t, err)
			return
		}
		defer cl.Stop()
		dsn := cl.DSN("postgres")
		cfg := cdcConfig(t, dsn, "snapretry", "snap.items", "snap.events")
		faults := []func(){
			func() {
				if err := cl.Restart(ctx, false); err != nil {
					t.Fatal(err)
				}
			},
			func() {
				if err := cl.Restart(ctx, true); err != nil {
					t.Fatal(err)
				}
			},
		}
		snapshotUnderFaults(t, dsn, dsn, cfg, faults)
	})
	t.Run("network cut", func(t *testing.T) {
		db := pgtest.NewDB(t)
		px := faultproxy.Start(t, fmt.Sprintf("127.0.0.1:%d", db.Cluster.Port))
		u, _ := url.Parse(db.DSN)
		u.Host = px.Addr()
		cfg := cdcConfig(t, u.String(), db.Suffix, "snap.items", "snap.events")
		snapshotUnderFaults(t, db.DSN, u.String(), cfg, []func(){px.Cut, px.Cut})
	})
}

// snapshotUnderFaults fills the snap tables through dsn, runs the pipeline
// (cfg, whose source may go through a proxy) under churn, and injects each
// fault once a few more chunks are durable.
func snapshotUnderFaults(t *testing.T, dsn, pipelineDSN string, cfg *config.Config, faults []func()) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	const rows = 100000
	for _, q := range []string{snapDDL,
		fmt.Sprintf(`INSERT INTO snap.items SELECT g, 'v' || g, g %% 1000,
			CASE WHEN g %% 50 = 0 THEN repeat(md5(g::text), 400) END FROM generate_series(1, %d) g`, rows),
		fmt.Sprintf(`INSERT INTO snap.events SELECT g, 'k' || (g %% 7), timestamptz '2024-01-01' + g * interval '1 minute'
			FROM generate_series(1, %d) g`, rows),
		"ANALYZE"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)
	cfg.Source.SnapshotChunkRows = 1000
	cfg.Source.SnapshotTablesParallel, cfg.Source.SnapshotChunksPerTable = 1, 2

	seed := uint64(time.Now().UnixNano())
	t.Logf("workload seed %d", seed)
	wctx, stopWrites := context.WithCancel(ctx)
	defer stopWrites()
	var n atomic.Int64
	wdone := make(chan struct{})
	go func() { defer close(wdone); churnRetrying(wctx, dsn, seed, rows, &n) }()

	r := cdcStart(t, cfg, nil)
	durable := map[chunkID]int64{} // rows of the chunks durable before a fault
	for i, fault := range faults {
		// Copying runs ahead of durability: inject the fault while rows
		// are being read, at an even share of the tables.
		at := int64(i+1) * 2 * rows / int64(len(faults)+1)
		waitCopied(t, r, at)
		st, err := pgsnap.LoadState(ctx, r.p.Store())
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range st.Tables {
			for ci, c := range tb.Chunks {
				if c.Done {
					durable[chunkID{tb.Name, ci}] = c.Rows
				}
			}
		}
		before := r.p.SnapshotProgress().Retries
		fault()
		prog := r.p.SnapshotProgress()
		t.Logf("fault %d injected at %d rows copied, %d chunks durable", i, prog.Rows, len(durable))
		if prog.Phase == pgsnap.PhaseDone {
			t.Fatalf("fault %d: the snapshot finished before the fault (make the tables bigger)", i)
		}
		cdcEventually(t, r, "the snapshot to retry", 2*time.Minute, func() bool { return r.p.SnapshotProgress().Retries > before })
	}
	waitSnapshot(t, r, 3*time.Minute)
	stopWrites()
	<-wdone
	for _, v := range waitTablesEqualDSN(t, r, dsn, snapTables, 2*time.Minute) {
		t.Log(v)
	}
	prog := r.p.SnapshotProgress()
	r.shutdown(t)
	if prog.Retries < int64(len(faults)) {
		t.Fatalf("%d snapshot retries, want at least %d", prog.Retries, len(faults))
	}
	// Chunks durable before a fault were not copied again: Bronze holds
	// exactly their rows once (a snapshot row's pos is its chunk index).
	loads := map[chunkID]int64{}
	forEachBronzeRow(t, r.p.Store(), snapTables, false, func(tb change.TableID, row bronzeRowView) error {
		if row.op == "L" {
			loads[chunkID{tb.Name, int(row.pos)}]++
		}
		return nil
	})
	for k, want := range durable {
		if loads[k] != want {
			t.Errorf("%s chunk %d: %d snapshot rows in Bronze, want %d (it was durable before a fault)", k.table, k.chunk, loads[k], want)
		}
	}
	t.Logf("%d retries, %d changes during the test; silver equals source", prog.Retries, n.Load())
}

type chunkID struct {
	table string
	chunk int
}

// waitCopied polls (every millisecond: copying is fast) until the snapshot
// has read at least n rows.
func waitCopied(t *testing.T, r *running, n int64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for r.p.SnapshotProgress().Rows < n {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("pipeline stopped early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the snapshot did not copy %d rows: %+v", n, r.p.SnapshotProgress())
		}
		time.Sleep(time.Millisecond)
	}
}

package pipeline_test

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/source/pgsnap"
	"github.com/silt-dev/silt/internal/testutil/pgtest"
)

// churnTable runs random transactions on table (id bigint PRIMARY KEY, v
// text, n int, big text) until ctx ends: updates that leave the TOASTed
// column big alone, deletes, inserts of new keys and re-inserts. Errors
// (e.g. a key inserted twice by chance) only end the transaction.
func churnTable(ctx context.Context, dsn, table string, seed uint64, maxID int, n *atomic.Int64) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rng := mrand.New(mrand.NewPCG(seed, 11))
	next := maxID
	for ctx.Err() == nil {
		tx, err := conn.Begin(ctx)
		if err != nil {
			break
		}
		for range 1 + rng.IntN(4) {
			id := 1 + rng.IntN(maxID)
			var sql string
			switch rng.IntN(8) {
			case 0, 1, 2, 3:
				sql = fmt.Sprintf("UPDATE %s SET v = v || '+', n = n + 1 WHERE id = %d", table, id)
			case 4:
				sql = fmt.Sprintf("DELETE FROM %s WHERE id = %d", table, id)
			case 5:
				sql = fmt.Sprintf("INSERT INTO %s VALUES (%d, 'again', 0, repeat('z', 3000)) ON CONFLICT (id) DO UPDATE SET big = excluded.big", table, id)
			default:
				next++
				sql = fmt.Sprintf("INSERT INTO %s VALUES (%d, 'new', 1, NULL)", table, next)
			}
			if _, err := tx.Exec(ctx, sql); err != nil {
				tx.Rollback(context.WithoutCancel(ctx))
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			n.Add(1)
		}
		if err := tx.Commit(ctx); err != nil && ctx.Err() == nil {
			return err
		}
	}
	return nil
}

const addedDDL = `CREATE TABLE snap.%s (id bigint PRIMARY KEY, v text NOT NULL, n int, big text);
INSERT INTO snap.%[1]s SELECT g, 'v' || g, g %% 1000, CASE WHEN g %% 50 = 0 THEN repeat(md5(g::text), 400) END
FROM generate_series(1, %d) g;`

// TestSnapshotTableAddedLater: a table that already holds rows is added to
// the publication while the pipeline runs, under concurrent writes to it
// (updates that leave TOASTed values unchanged, deletes, inserts), and
// another one through source.tables while silt is stopped. Each is copied,
// then streamed: Silver ends equal to the source, with no row missing or
// applied twice.
func TestSnapshotTableAddedLater(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, snapDDL)
	fill(t, db, 1, 2001)
	const rows = 20000
	db.Exec(t, fmt.Sprintf(addedDDL, "added", rows))
	db.Exec(t, fmt.Sprintf(addedDDL, "later", rows))
	dataDir := t.TempDir()
	cfg := snapConfig(t, db, dataDir, "snap.items", "snap.events")
	r := start(t, cfg)
	waitSnapshot(t, r, time.Minute)

	seed := uint64(time.Now().UnixNano())
	t.Logf("workload seed %d", seed)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var n atomic.Int64
	werr := make(chan error, 2)
	go func() { werr <- churnTable(ctx, db.DSN, "snap.added", seed, rows, &n) }() // before, during and after the ALTER
	go func() { werr <- churn(ctx, db.DSN, seed, 2000, &n) }()
	for n.Load() < 200 {
		time.Sleep(5 * time.Millisecond)
	}
	db.Exec(t, fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE snap.added", pgx.Identifier{cfg.Source.Publication}.Sanitize()))
	added := change.TableID{Schema: "snap", Name: "added"}
	deadline := time.Now().Add(time.Minute)
	for !tableDone(r.p.SnapshotProgress(), added) {
		if time.Now().After(deadline) {
			t.Fatalf("the added table was not copied: %+v", r.p.SnapshotProgress())
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := n.Load()
	for n.Load() < before+300 { // and streamed afterwards
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	for range 2 {
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	}
	all := append(append([]change.TableID(nil), snapTables...), added)
	for _, v := range waitTablesEqual(t, r, db, all, 2*time.Minute) {
		t.Log(v)
	}
	r.shutdown(t)
	loads := checkBronzeOnce(t, r.p.Store(), all)

	// While silt is stopped, snap.later joins through source.tables.
	later := change.TableID{Schema: "snap", Name: "later"}
	db.Exec(t, "UPDATE snap.later SET v = v || '!' WHERE id % 7 = 0")
	cfg2 := snapConfig(t, db, dataDir, "snap.items", "snap.events", "snap.later")
	r2 := start(t, cfg2)
	ctx2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	go func() { werr <- churnTable(ctx2, db.DSN, "snap.later", seed+1, rows, &n) }()
	before = n.Load()
	for n.Load() < before+300 {
		time.Sleep(5 * time.Millisecond)
	}
	stop2()
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	all = append(all, later)
	for _, v := range waitTablesEqual(t, r2, db, all, 2*time.Minute) {
		t.Log(v)
	}
	prog := r2.p.SnapshotProgress()
	if !tableDone(prog, later) || !tableDone(prog, added) {
		t.Fatalf("added tables not copied and merged: %+v", prog)
	}
	r2.shutdown(t)
	loads2 := checkBronzeOnce(t, r2.p.Store(), all)
	t.Logf("%d snapshot rows after the first run, %d after the second; %d changes", loads, loads2, n.Load())
	if loads2-loads < rows/2 {
		t.Fatalf("the second run copied %d rows of snap.later, want about %d", loads2-loads, rows)
	}
}

// tableDone reports whether table id is copied and merged into Silver.
func tableDone(p pgsnap.Progress, id change.TableID) bool {
	for _, tp := range p.Tables {
		if tp.Table == id {
			return tp.Done && tp.Merged
		}
	}
	return false
}

// TestSnapshotResumeAfterAddColumn: silt stops mid-snapshot, a column is
// added, silt resumes. The chunks read now carry a column the Bronze
// table (created by the first chunks) lacks: they go through the stream,
// where the Bronze writer adds the column, and the chunks after that are
// written straight to Bronze again. Silver ends equal to the source, and
// Bronze holds every snapshot row once.
func TestSnapshotResumeAfterAddColumn(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, snapDDL)
	const rows = 40000
	fill(t, db, 1, rows+1)
	dataDir := t.TempDir()
	cfg := snapConfig(t, db, dataDir, "snap.items", "snap.events")
	cfg.Source.SnapshotTablesParallel, cfg.Source.SnapshotChunksPerTable = 1, 1
	r := start(t, cfg)
	waitChunks(t, r, 3)
	r.shutdown(t)
	st, err := pgsnap.LoadState(context.Background(), r.p.Store())
	if err != nil || st.Phase == pgsnap.PhaseDone {
		t.Fatalf("stop did not land mid-snapshot: %v %+v", err, st)
	}
	db.Exec(t, "ALTER TABLE snap.items ADD COLUMN extra text; ALTER TABLE snap.events ADD COLUMN extra text")
	db.Exec(t, "UPDATE snap.items SET extra = 'x' || id WHERE id % 97 = 0")

	logs := &syncBuffer{}
	cfg2 := snapConfig(t, db, dataDir, "snap.items", "snap.events")
	r2 := cdcStart(t, cfg2, logs)
	waitSnapshot(t, r2, 2*time.Minute)
	for _, v := range waitTablesEqual(t, r2, db, snapTables, 2*time.Minute) {
		t.Log(v)
	}
	prog := r2.p.SnapshotProgress()
	r2.shutdown(t)
	if !strings.Contains(logs.String(), "goes through the stream") {
		t.Fatalf("no chunk went through the stream after the column was added")
	}
	if loads := checkBronzeOnce(t, r2.p.Store(), snapTables); loads != prog.Rows {
		t.Fatalf("bronze holds %d snapshot rows, the snapshot copied %d", loads, prog.Rows)
	}
}

func waitChunks(t *testing.T, r *running, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		done := 0
		for _, tp := range r.p.SnapshotProgress().Tables {
			done += tp.ChunksDone
		}
		if done >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d chunks durable: %+v", n, r.p.SnapshotProgress())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

package pipeline_test

// CDC robustness tests: reconnects (walsender terminated, network cut and
// stall, PostgreSQL restart), heartbeats on an idle database, schema changes
// through the whole pipeline, secrets kept out of messages and logs.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/pgcluster"
	"github.com/silt-dev/silt/internal/pipeline"
	"github.com/silt-dev/silt/internal/silver"
	"github.com/silt-dev/silt/internal/testutil/faultproxy"
	"github.com/silt-dev/silt/internal/testutil/pgtest"
	"github.com/silt-dev/silt/internal/verify"
)

// cdcConfig is a fast pipeline config for the given tables.
func cdcConfig(t *testing.T, dsn, suffix string, tables ...string) *config.Config {
	t.Helper()
	cfg := config.Default(t.TempDir())
	cfg.Source.DSN = dsn
	cfg.Source.Slot = "silt_" + suffix
	cfg.Source.Publication = "silt_" + suffix
	cfg.Source.Tables = tables
	cfg.Source.StatusInterval.Duration = 300 * time.Millisecond
	cfg.Source.ReceiveTimeout.Duration = 2 * time.Second // the stall test waits for it
	cfg.Source.HeartbeatInterval.Duration = 200 * time.Millisecond
	cfg.Stream.Shards = 2
	cfg.Stream.Durability = "none"
	cfg.Bronze.FlushInterval.Duration = 100 * time.Millisecond
	cfg.Silver.Interval.Duration = 100 * time.Millisecond
	return cfg
}

// cdcStart runs a pipeline until the test ends; logs go to logs (if set).
func cdcStart(t *testing.T, cfg *config.Config, logs *syncBuffer) *running {
	t.Helper()
	level := slog.LevelWarn
	if os.Getenv("SILT_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	var h slog.Handler = slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})
	if logs != nil {
		h = slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	p, err := pipeline.Open(context.Background(), cfg, slog.New(h))
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

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cdcWaitEqual polls until Silver equals the source for every table.
func cdcWaitEqual(t *testing.T, r *running, dsn string, timeout time.Duration, tables ...change.TableID) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pipeline.SessionDSN(dsn))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-r.done:
			r.done <- err // for the cleanup
			t.Fatalf("pipeline stopped early: %v", err)
		default:
		}
		ok := true
		var res []verify.Result
		for _, tb := range tables {
			v, err := verify.Table(ctx, conn, r.p.Store(), tb)
			if err != nil {
				ok = false // Silver table not created yet
				continue
			}
			res = append(res, v)
			ok = ok && v.Equal()
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for _, v := range res {
				t.Log(v)
			}
			t.Fatalf("silver did not equal the source within %s", timeout)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
}

// cdcBronzeNoDuplicates: every (LSN, pos, op) appears once in each table's Bronze.
func cdcBronzeNoDuplicates(t *testing.T, store blob.Store, tables ...change.TableID) {
	t.Helper()
	seen := map[string]bool{}
	forEachBronzeRow(t, store, tables, false, func(tb change.TableID, r bronzeRowView) error {
		k := fmt.Sprintf("%s/%d/%d/%s", tb, r.lsn, r.pos, r.op)
		if seen[k] {
			return fmt.Errorf("duplicate bronze row (lsn/pos/op) %d/%d/%s", r.lsn, r.pos, r.op)
		}
		seen[k] = true
		return nil
	})
}

// cdcEventually polls cond until it holds.
func cdcEventually(t *testing.T, r *running, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case err := <-r.done:
			r.done <- err // for the cleanup
			t.Fatalf("pipeline stopped while waiting for %s: %v", what, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}

// cdcWorkload makes n seeded changes to public.items (id, v) in small transactions.
func cdcWorkload(t *testing.T, conn *pgx.Conn, rng *rand.Rand, base, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i += 10 {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 10; j++ {
			id := base + rng.IntN(200)
			switch rng.IntN(4) {
			case 0:
				_, err = tx.Exec(ctx, "DELETE FROM items WHERE id = $1", id)
			default:
				_, err = tx.Exec(ctx, "INSERT INTO items VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = excluded.v", id, fmt.Sprint(rng.Int()))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

var items = change.TableID{Schema: "public", Name: "items"}

// walsenderPID returns the PID of the slot's walsender, once it is streaming.
func walsenderPID(t *testing.T, r *running, conn *pgx.Conn, slot string) int32 {
	t.Helper()
	var pid int32
	cdcEventually(t, r, "the walsender of "+slot, time.Minute, func() bool {
		err := conn.QueryRow(context.Background(), "SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&pid)
		return err == nil && pid != 0
	})
	return pid
}

// TestReconnectAfterFaults: the walsender is terminated, the network is
// cut, and the link stalls, each while changes are flowing; the pipeline
// reconnects by itself, and Silver ends equal to the source with no
// duplicate in Bronze.
func TestReconnectAfterFaults(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE items (id int PRIMARY KEY, v text)")
	px := faultproxy.Start(t, fmt.Sprintf("127.0.0.1:%d", db.Cluster.Port))
	u, _ := url.Parse(db.DSN)
	u.Host = px.Addr()
	cfg := cdcConfig(t, u.String(), db.Suffix, "public.items")
	seed := time.Now().UnixNano()
	t.Logf("workload seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	r := cdcStart(t, cfg, nil)
	conn := db.Conn(t)

	cdcWorkload(t, conn, rng, 0, 300)
	cdcWaitEqual(t, r, db.DSN, time.Minute, items)

	faults := []struct {
		name   string
		inject func()
	}{
		{"walsender terminated", func() {
			pid := walsenderPID(t, r, conn, cfg.Source.Slot)
			if _, err := conn.Exec(context.Background(), "SELECT pg_terminate_backend($1)", pid); err != nil {
				t.Fatal(err)
			}
		}},
		{"network cut", px.Cut},
		{"network stall", func() {
			// The link goes silent without closing: only the receive timeout
			// can notice. Changes made meanwhile arrive once it heals.
			before := r.p.Reconnects()
			px.Stall()
			cdcWorkload(t, conn, rng, 1000, 100)
			cdcEventually(t, r, "the stalled link to be given up", time.Minute, func() bool { return r.p.Reconnects() > before })
			px.Resume()
		}},
	}
	for i, f := range faults {
		before := r.p.Reconnects()
		cdcWorkload(t, conn, rng, 0, 100)
		f.inject()
		cdcWorkload(t, conn, rng, 500*(i+1), 200)
		cdcEventually(t, r, "a reconnect after "+f.name, time.Minute, func() bool { return r.p.Reconnects() > before })
		cdcWaitEqual(t, r, db.DSN, time.Minute, items)
		t.Logf("%s: reconnected (%d reconnects so far), silver equals source", f.name, r.p.Reconnects())
	}
	r.shutdown(t)
	cdcBronzeNoDuplicates(t, r.p.Store(), items)
}

// TestReconnectAfterPostgresRestart: a fast shutdown and a crash
// (immediate shutdown) of PostgreSQL while the pipeline runs.
func TestReconnectAfterPostgresRestart(t *testing.T) {
	ctx := context.Background()
	cl, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		pgtest.SkipOrFatal(t, err)
		return
	}
	defer cl.Stop()
	dsn := cl.DSN("postgres")
	setup, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Exec(ctx, "CREATE TABLE items (id int PRIMARY KEY, v text)"); err != nil {
		t.Fatal(err)
	}
	setup.Close(ctx)
	cfg := cdcConfig(t, dsn, "restart", "public.items")
	seed := time.Now().UnixNano()
	t.Logf("workload seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 2))
	r := cdcStart(t, cfg, nil)
	// This test is about reconnecting capture: let the initial snapshot (of
	// the empty table) finish first (TestSnapshotRetries restarts during a
	// snapshot).
	waitSnapshot(t, r, time.Minute)
	for i, immediate := range []bool{false, true} {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		cdcWorkload(t, conn, rng, 0, 300)
		conn.Close(ctx)
		before := r.p.Reconnects()
		if err := cl.Restart(ctx, immediate); err != nil {
			t.Fatal(err)
		}
		if conn, err = pgx.Connect(ctx, dsn); err != nil {
			t.Fatal(err)
		}
		cdcWorkload(t, conn, rng, 1000*(i+1), 300)
		conn.Close(ctx)
		cdcEventually(t, r, "a reconnect", time.Minute, func() bool { return r.p.Reconnects() > before })
		cdcWaitEqual(t, r, dsn, time.Minute, items)
		t.Logf("restart (immediate=%v): reconnected, silver equals source", immediate)
	}
	r.shutdown(t)
	cdcBronzeNoDuplicates(t, r.p.Store(), items)
}

// TestHeartbeatAdvancesIdleSlot: the captured database is idle while
// another database of the cluster writes WAL; heartbeats let the slot's
// confirmed_flush_lsn move past that WAL, so it is not retained.
func TestHeartbeatAdvancesIdleSlot(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE items (id int PRIMARY KEY, v text)")
	cfg := cdcConfig(t, db.DSN, db.Suffix, "public.items")
	cfg.Source.LagWarnBytes = 1 << 20 // the other database's 8 MiB of WAL trips it
	logs := &syncBuffer{}
	r := cdcStart(t, cfg, logs)
	other := pgtest.NewDB(t)
	other.Exec(t, "CREATE TABLE filler (id int, pad text)")
	other.Exec(t, "INSERT INTO filler SELECT g, repeat('x', 200) FROM generate_series(1, 30000) g")
	var otherLSN string
	other.QueryRow(t, []any{&otherLSN}, "SELECT pg_current_wal_lsn()::text")
	target, _ := change.ParseLSN(otherLSN)
	var confirmed change.LSN
	cdcEventually(t, r, "confirmed_flush_lsn to pass the other database's WAL "+otherLSN, time.Minute, func() bool {
		var s string
		db.QueryRow(t, []any{&s}, "SELECT coalesce(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots WHERE slot_name = $1", cfg.Source.Slot)
		confirmed, _ = change.ParseLSN(s)
		return confirmed >= target
	})
	st := r.p.SourceStats()
	t.Logf("confirmed_flush_lsn %s >= %s; heartbeats sent %d; slot sample: lag %d B, retained %d B, pid %d",
		confirmed, target, st.HeartbeatsSent, st.Slot.LagBytes, st.Slot.RetainedWALBytes, st.Slot.ActivePID)
	if st.HeartbeatsSent == 0 || st.Slot.ActivePID == 0 || st.Slot.SampledAt.IsZero() {
		t.Fatalf("stats: %+v", st)
	}
	if r.p.Snapshot().Changes != 0 {
		t.Fatalf("heartbeats produced %d changes", r.p.Snapshot().Changes)
	}
	r.shutdown(t)
	if !strings.Contains(logs.String(), "replication slot lag is high") {
		t.Errorf("no lag warning logged; logs:\n%s", logs.String())
	}
}

// TestSchemaChanges: ADD COLUMN, DROP COLUMN, RENAME COLUMN, TRUNCATE and
// a table added to the publication, each while the pipeline runs.
func TestSchemaChanges(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE items (id int PRIMARY KEY, v text)")
	db.Exec(t, "CREATE TABLE extra (id int PRIMARY KEY, note text)")
	cfg := cdcConfig(t, db.DSN, db.Suffix, "public.items")
	r := cdcStart(t, cfg, nil)
	store := r.p.Store()
	silverCols := func(id change.TableID) []string {
		snap, err := delta.NewTable(store, silver.TablePath(id)).Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range snap.Schema().Fields {
			names = append(names, f.Name)
		}
		return names
	}
	has := func(cols []string, name string) bool {
		for _, c := range cols {
			if c == name {
				return true
			}
		}
		return false
	}

	db.Exec(t, "INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 50) g")
	cdcWaitEqual(t, r, db.DSN, time.Minute, items)

	// ADD COLUMN: Bronze and Silver gain a nullable column.
	db.Exec(t, "ALTER TABLE items ADD COLUMN qty int")
	db.Exec(t, "INSERT INTO items VALUES (51, 'v51', 7)")
	db.Exec(t, "UPDATE items SET qty = id WHERE id <= 10")
	cdcWaitEqual(t, r, db.DSN, time.Minute, items)
	if !has(silverCols(items), "qty") {
		t.Fatalf("silver columns %v lack qty", silverCols(items))
	}

	// DROP COLUMN: the column stays in Delta; later rows have it NULL.
	db.Exec(t, "ALTER TABLE items DROP COLUMN v")
	db.Exec(t, "INSERT INTO items VALUES (52, 8)")
	db.Exec(t, "UPDATE items SET qty = 100 WHERE id = 1")
	cdcWaitEqual(t, r, db.DSN, time.Minute, items)
	if !has(silverCols(items), "v") {
		t.Fatalf("dropped column v vanished from silver: %v", silverCols(items))
	}

	// RENAME COLUMN: a new column appears; rows carry it from their next change.
	db.Exec(t, "ALTER TABLE items RENAME COLUMN qty TO quantity")
	db.Exec(t, "UPDATE items SET quantity = quantity") // touch every row
	cdcWaitEqual(t, r, db.DSN, time.Minute, items)
	if cols := silverCols(items); !has(cols, "qty") || !has(cols, "quantity") {
		t.Fatalf("after rename, silver columns %v", cols)
	}

	// TRUNCATE: Silver drops the rows committed before it.
	db.Exec(t, "TRUNCATE items")
	db.Exec(t, "INSERT INTO items VALUES (1000, 1)")
	cdcWaitEqual(t, r, db.DSN, time.Minute, items)

	// A table added to the publication is streamed from then on.
	db.Exec(t, "ALTER PUBLICATION "+cfg.Source.Publication+" ADD TABLE extra")
	db.Exec(t, "INSERT INTO extra VALUES (1, 'added later')")
	extra := change.TableID{Schema: "public", Name: "extra"}
	cdcWaitEqual(t, r, db.DSN, time.Minute, items, extra)
	r.shutdown(t)
	cdcBronzeNoDuplicates(t, store, items, extra)
}

// TestColumnTypeChangeStops: int -> bigint is not applied silently: the
// pipeline stops with an error naming the column and the way out, and the
// slot is not acknowledged past the change.
func TestColumnTypeChangeStops(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE items (id int PRIMARY KEY, n int)")
	cfg := cdcConfig(t, db.DSN, db.Suffix, "public.items")
	r := cdcStart(t, cfg, nil)
	db.Exec(t, "INSERT INTO items VALUES (1, 1)")
	cdcWaitEqual(t, r, db.DSN, time.Minute, items)
	db.Exec(t, "ALTER TABLE items ALTER COLUMN n TYPE bigint")
	var lsn string
	db.QueryRow(t, []any{&lsn}, "SELECT pg_current_wal_lsn()::text")
	before, _ := change.ParseLSN(lsn)
	db.Exec(t, "INSERT INTO items VALUES (2, 5000000000)")
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		if err == nil || !strings.Contains(err.Error(), `column "n" changed type`) {
			t.Fatalf("pipeline stopped with %v", err)
		}
		t.Logf("pipeline stopped: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("pipeline did not stop on a column type change")
	}
	var s string
	db.QueryRow(t, []any{&s}, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", cfg.Source.Slot)
	if confirmed, _ := change.ParseLSN(s); confirmed > before {
		t.Fatalf("slot confirmed %s, past the unapplied change at %s", confirmed, before)
	}
}

// TestSecretsNotInMessages: a password in the DSN, or from
// source.password_file, never shows up in errors or logs.
func TestSecretsNotInMessages(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE items (id int PRIMARY KEY, v text)")
	const secret = "S3cr3t-pa55"
	u, _ := url.Parse(db.DSN)
	u.User = url.UserPassword("postgres", secret)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	// Unreachable server with a password in the DSN.
	bad := cdcConfig(t, "", db.Suffix, "public.items")
	bu := *u
	bu.Host = "127.0.0.1:1"
	bad.Source.DSN = bu.String() + "&connect_timeout=5"
	if _, err := pipeline.Open(context.Background(), bad, logger); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("Open error %v (must exist and not contain the password)", err)
	}
	// Unparseable DSN with a password.
	bad.Source.DSN = "host=127.0.0.1 password=" + secret + " port=notaport"
	if _, err := pipeline.Open(context.Background(), bad, logger); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("Open error %v (must exist and not contain the password)", err)
	}
	// A working pipeline with the password (trust auth accepts it) runs and
	// logs at debug level without it.
	good := cdcConfig(t, u.String(), db.Suffix, "public.items")
	good.Source.Password = secret
	r := cdcStart(t, good, logs)
	db.Exec(t, "INSERT INTO items VALUES (1, 'x')")
	cdcWaitEqual(t, r, db.DSN, time.Minute, items)
	r.shutdown(t)
	if strings.Contains(logs.String(), secret) {
		t.Fatalf("logs contain the password:\n%s", logs.String())
	}
}

package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/pgcluster"
	"github.com/silt-dev/silt/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const waitFor = 30 * time.Second

// txnRec is a copy of one delivered transaction.
type txnRec struct {
	changes   []change.Change
	commit    change.LSN
	end       change.LSN
	delivered time.Time
}

func copyTxn(txn []*change.Change, commit, end change.LSN) txnRec {
	rec := txnRec{commit: commit, end: end, delivered: time.Now()}
	for _, c := range txn {
		cc := *c
		cc.New = copyImage(c.New)
		cc.Old = copyImage(c.Old)
		rec.changes = append(rec.changes, cc)
	}
	return rec
}

func copyImage(img []change.Datum) []change.Datum {
	if img == nil {
		return nil
	}
	out := make([]change.Datum, len(img))
	for i, d := range img {
		out[i] = change.Datum{Kind: d.Kind, Data: append([]byte(nil), d.Data...)}
	}
	return out
}

// running is a Source whose Run goroutine the test owns.
type running struct {
	src  *Source
	txns chan txnRec
	errc chan error
}

func config(db *pgtest.DB) Config {
	return Config{DSN: db.DSN, Slot: "s_" + db.Suffix, Publication: "p_" + db.Suffix, StatusInterval: time.Hour}
}

// start opens a Source and runs it until the test ends (or stop is called).
func start(t *testing.T, cfg Config) *running {
	t.Helper()
	ctx := context.Background()
	src, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &running{src: src, txns: make(chan txnRec, 100), errc: make(chan error, 1)}
	go func() {
		var cur txnRec // batches of the transaction being delivered
		r.errc <- src.Run(ctx, func(ctx context.Context, b *Batch) error {
			if b.Heartbeat {
				return nil
			}
			part := copyTxn(b.Changes, b.CommitLSN, b.EndLSN)
			cur.changes = append(cur.changes, part.changes...)
			cur.commit, cur.end, cur.delivered = part.commit, part.end, part.delivered
			if !b.Last {
				return nil
			}
			rec := cur
			cur = txnRec{}
			select {
			case r.txns <- rec:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop closes the source and waits for Run; idempotent.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.errc == nil {
		return
	}
	if err := r.src.Close(); err != nil {
		t.Error(err)
	}
	select {
	case err := <-r.errc:
		// ErrClosed if Close came before Run started.
		if !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(waitFor):
		t.Error("Run did not return after Close")
	}
	r.errc = nil
}

func (r *running) next(t *testing.T) txnRec {
	t.Helper()
	select {
	case rec := <-r.txns:
		return rec
	case err := <-r.errc:
		r.errc = nil
		t.Fatalf("Run returned %v", err)
	case <-time.After(waitFor):
		t.Fatal("no transaction delivered")
	}
	return txnRec{}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

func walLSN(t *testing.T, db *pgtest.DB) change.LSN {
	t.Helper()
	var s string
	db.QueryRow(t, []any{&s}, "SELECT pg_current_wal_insert_lsn()::text")
	lsn, err := change.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

func confirmedFlush(t *testing.T, db *pgtest.DB, slot string) change.LSN {
	t.Helper()
	var s string
	db.QueryRow(t, []any{&s}, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", slot)
	lsn, err := change.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

func image(ds ...change.Datum) []change.Datum { return ds }

func checkChange(t *testing.T, c change.Change, op change.Op, table string, newImg, oldImg []change.Datum) {
	t.Helper()
	if c.Op != op || c.Rel.Table.Name != table || c.Rel.Table.Schema != "public" {
		t.Errorf("got %v on %s, want %v on public.%s", c.Op, c.Rel.Table, op, table)
	}
	if !equalImage(c.New, newImg) {
		t.Errorf("%v %s: New = %s, want %s", op, table, fmtImage(c.New), fmtImage(newImg))
	}
	if !equalImage(c.Old, oldImg) {
		t.Errorf("%v %s: Old = %s, want %s", op, table, fmtImage(c.Old), fmtImage(oldImg))
	}
}

func fmtImage(img []change.Datum) string {
	if img == nil {
		return "nil"
	}
	s := "["
	for i, d := range img {
		if i > 0 {
			s += " "
		}
		if d.Kind == change.Text {
			if len(d.Data) > 20 {
				s += fmt.Sprintf("%q...", d.Data[:20])
			} else {
				s += fmt.Sprintf("%q", d.Data)
			}
		} else {
			s += string(d.Kind)
		}
	}
	return s + "]"
}

func TestChanges(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE items (id int PRIMARY KEY, name text, big text)")
	db.Exec(t, "ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL")
	db.Exec(t, "CREATE TABLE events (a int, b text)")
	db.Exec(t, "ALTER TABLE events REPLICA IDENTITY FULL")
	db.Exec(t, "CREATE TABLE keyed_full (id int PRIMARY KEY, v text)")
	db.Exec(t, "ALTER TABLE keyed_full REPLICA IDENTITY FULL")
	cfg := config(db)
	cfg.KeylessAppend = func(id change.TableID) bool { return id.Name == "events" } // FULL without a key
	r := start(t, cfg)

	big := strings.Repeat("7", 5000)
	before := walLSN(t, db)
	db.Exec(t, "BEGIN; INSERT INTO items VALUES (1, 'a', repeat('7', 5000)); INSERT INTO items VALUES (2, 'b', NULL); COMMIT")
	after := walLSN(t, db)
	tx1 := r.next(t)
	if len(tx1.changes) != 2 {
		t.Fatalf("txn 1 has %d changes", len(tx1.changes))
	}
	if tx1.commit <= before || tx1.commit >= after || tx1.end <= tx1.commit || tx1.end > after {
		t.Errorf("commit %v end %v not within (%v, %v]", tx1.commit, tx1.end, before, after)
	}
	for i, c := range tx1.changes {
		if c.Pos != uint32(i) || c.LSN != tx1.commit || c.EndLSN != tx1.end || c.XID == 0 || c.CommitTime.IsZero() {
			t.Errorf("change %d: pos %d lsn %v end %v xid %d time %v", i, c.Pos, c.LSN, c.EndLSN, c.XID, c.CommitTime)
		}
	}
	checkChange(t, tx1.changes[0], change.OpInsert, "items", image(text("1"), text("a"), text(big)), nil)
	checkChange(t, tx1.changes[1], change.OpInsert, "items", image(text("2"), text("b"), null), nil)
	rel := tx1.changes[0].Rel
	if len(rel.Columns) != 3 || !rel.Columns[0].Key || rel.Columns[1].Key || rel.Columns[0].Name != "id" || rel.Columns[0].TypeOID != 23 {
		t.Errorf("relation %+v", rel)
	}

	db.Exec(t, "UPDATE items SET name = 'c' WHERE id = 1") // big is unchanged TOAST
	db.Exec(t, "UPDATE items SET id = 3 WHERE id = 2")     // key change
	db.Exec(t, "DELETE FROM items WHERE id = 3")
	db.Exec(t, "INSERT INTO events VALUES (1, 'x')")
	db.Exec(t, "UPDATE events SET b = 'y'")
	db.Exec(t, "DELETE FROM events")
	db.Exec(t, "INSERT INTO keyed_full VALUES (1, 'v')")
	db.Exec(t, "UPDATE keyed_full SET v = 'w'")
	db.Exec(t, "TRUNCATE items, events")

	want := []struct {
		op       change.Op
		table    string
		new, old []change.Datum
	}{
		{change.OpUpdate, "items", image(text("1"), text("c"), unch), nil},
		{change.OpUpdate, "items", image(text("3"), text("b"), null), image(text("2"), absent, absent)},
		{change.OpDelete, "items", nil, image(text("3"), absent, absent)},
		{change.OpInsert, "events", image(text("1"), text("x")), nil},
		{change.OpUpdate, "events", image(text("1"), text("y")), image(text("1"), text("x"))},
		{change.OpDelete, "events", nil, image(text("1"), text("y"))},
		{change.OpInsert, "keyed_full", image(text("1"), text("v")), nil},
		{change.OpUpdate, "keyed_full", image(text("1"), text("w")), image(text("1"), text("v"))},
	}
	last := tx1.commit
	for _, w := range want {
		tx := r.next(t)
		if len(tx.changes) != 1 {
			t.Fatalf("%v %s: %d changes", w.op, w.table, len(tx.changes))
		}
		if tx.commit <= last {
			t.Errorf("commit LSN %v not after %v", tx.commit, last)
		}
		last = tx.commit
		checkChange(t, tx.changes[0], w.op, w.table, w.new, w.old)
		c := tx.changes[0]
		switch c.Rel.Table.Name {
		case "events": // FULL without a primary key: every column is key
			if !c.Rel.Columns[0].Key || !c.Rel.Columns[1].Key {
				t.Errorf("events keys: %+v", c.Rel.Columns)
			}
		case "keyed_full": // FULL with a primary key: the primary key
			if !c.Rel.Columns[0].Key || c.Rel.Columns[1].Key {
				t.Errorf("keyed_full keys: %+v", c.Rel.Columns)
			}
		}
	}
	tx := r.next(t)
	if len(tx.changes) != 2 {
		t.Fatalf("truncate: %d changes", len(tx.changes))
	}
	names := map[string]bool{}
	for i, c := range tx.changes {
		if c.Op != change.OpTruncate || c.New != nil || c.Old != nil || c.Pos != uint32(i) {
			t.Errorf("truncate change %+v", c)
		}
		names[c.Rel.Table.Name] = true
	}
	if !names["items"] || !names["events"] {
		t.Errorf("truncated %v", names)
	}
}

// TestAckAndRedelivery: Ack moves confirmed_flush_lsn promptly; status
// updates never report more than acked; unacked transactions come again
// after a restart.
func TestAckAndRedelivery(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	cfg := config(db)
	cfg.StatusInterval = 50 * time.Millisecond
	r := start(t, cfg)
	initial := confirmedFlush(t, db, cfg.Slot)

	db.Exec(t, "INSERT INTO t VALUES (1)")
	db.Exec(t, "INSERT INTO t VALUES (2)")
	a, b := r.next(t), r.next(t)
	if a.end <= initial || b.commit <= a.commit {
		t.Fatalf("initial %v, a %v/%v, b %v/%v", initial, a.commit, a.end, b.commit, b.end)
	}

	r.src.Ack(a.end)
	eventually(t, "confirmed_flush_lsn to reach the acked LSN", func() bool { return confirmedFlush(t, db, cfg.Slot) == a.end })

	// Several periodic status updates after b was received must still
	// report only a.end.
	replies := func() (n int) {
		db.QueryRow(t, []any{&n}, "SELECT count(*) FROM pg_stat_replication WHERE reply_time > $1", b.delivered.Add(200*time.Millisecond))
		return n
	}
	eventually(t, "status updates after b", func() bool { return replies() > 0 })
	if got := confirmedFlush(t, db, cfg.Slot); got != a.end {
		t.Fatalf("confirmed_flush_lsn = %v after status updates, want the acked %v (b ends at %v)", got, a.end, b.end)
	}

	r.stop(t)
	r2 := start(t, cfg)
	again := r2.next(t)
	if again.commit != b.commit || again.end != b.end || len(again.changes) != 1 || string(again.changes[0].New[0].Data) != "2" {
		t.Fatalf("redelivered %v/%v %+v, want b %v/%v", again.commit, again.end, again.changes, b.commit, b.end)
	}
	r2.src.Ack(again.end)
	eventually(t, "confirmed_flush_lsn to reach b", func() bool { return confirmedFlush(t, db, cfg.Slot) == b.end })
	// An older Ack does not move it back.
	r2.src.Ack(a.end)
	db.Exec(t, "INSERT INTO t VALUES (3)")
	r2.next(t)
	if got := confirmedFlush(t, db, cfg.Slot); got != b.end {
		t.Fatalf("confirmed_flush_lsn = %v, want %v", got, b.end)
	}
}

// TestAckPrompt: with periodic updates and server keepalive requests both
// off, only Ack can move confirmed_flush_lsn, and it does so promptly, both
// from another goroutine and from inside the handler.
func TestAckPrompt(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	cfg := config(db)
	cfg.DSN += "&options=" + strings.ReplaceAll(url.QueryEscape("-c wal_sender_timeout=0"), "+", "%20")
	cfg.StatusInterval = time.Hour
	r := start(t, cfg)
	db.Exec(t, "INSERT INTO t VALUES (1)")
	a := r.next(t)
	r.src.Ack(a.end)
	eventually(t, "confirmed_flush_lsn to reach the acked LSN", func() bool { return confirmedFlush(t, db, cfg.Slot) == a.end })
	r.stop(t)

	src, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	acked := make(chan change.LSN, 1)
	go func() {
		errc <- src.Run(ctx, func(ctx context.Context, b *Batch) error {
			if b.Heartbeat {
				return nil
			}
			src.Ack(b.EndLSN)
			acked <- b.EndLSN
			return nil
		})
	}()
	defer func() {
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()
	db.Exec(t, "INSERT INTO t VALUES (2)")
	var end change.LSN
	select {
	case end = <-acked:
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(waitFor):
		t.Fatal("no transaction")
	}
	eventually(t, "confirmed_flush_lsn to reach the LSN acked in the handler", func() bool { return confirmedFlush(t, db, cfg.Slot) == end })
}

func TestSkipThrough(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	cfg := config(db)
	r := start(t, cfg)
	for i := 1; i <= 3; i++ {
		db.Exec(t, "INSERT INTO t VALUES ($1)", i)
	}
	var got []txnRec
	for range 3 {
		got = append(got, r.next(t))
	}
	r.stop(t) // nothing acked: everything will be sent again

	cfg.SkipThrough = got[1].commit
	r2 := start(t, cfg)
	c := r2.next(t)
	if c.commit != got[2].commit || string(c.changes[0].New[0].Data) != "3" {
		t.Fatalf("first after SkipThrough: %v %s, want %v", c.commit, fmtImage(c.changes[0].New), got[2].commit)
	}
}

// TestKeepaliveReply: with a 1s wal_sender_timeout and no periodic status
// updates, the server asks for replies and the stream survives only if we
// answer them.
func TestKeepaliveReply(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	cfg := config(db)
	cfg.DSN += "&options=" + strings.ReplaceAll(url.QueryEscape("-c wal_sender_timeout=1s"), "+", "%20")
	cfg.StatusInterval = time.Hour
	r := start(t, cfg)
	db.Exec(t, "INSERT INTO t VALUES (1)")
	first := r.next(t)
	// Replies only come from keepalive requests now; wait for several
	// beyond the timeout.
	eventually(t, "replies to keepalives", func() bool {
		var n int
		db.QueryRow(t, []any{&n}, "SELECT count(*) FROM pg_stat_replication WHERE reply_time > $1", first.delivered.Add(3*time.Second))
		return n > 0
	})
	db.Exec(t, "INSERT INTO t VALUES (2)")
	if tx := r.next(t); string(tx.changes[0].New[0].Data) != "2" {
		t.Fatalf("got %s", fmtImage(tx.changes[0].New))
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	_, err = Open(context.Background(), Config{
		DSN:  fmt.Sprintf("postgres://postgres@127.0.0.1:%d/db?sslmode=disable&connect_timeout=5", port),
		Slot: "s", Publication: "p",
	})
	var ce *ConnectError
	if !errors.Is(err, ErrUnreachable) || !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *ConnectError", err)
	}
	want := fmt.Sprintf("cannot connect to PostgreSQL at 127.0.0.1:%d: connection refused; check source.dsn and that the server is running", port)
	if err.Error() != want {
		t.Fatalf("got  %s\nwant %s", err, want)
	}
}

func TestWALLevelReplica(t *testing.T) {
	c, err := pgcluster.Start(context.Background(), pgcluster.Options{ExtraSettings: map[string]string{"wal_level": "replica"}})
	if err != nil {
		pgtest.SkipOrFatal(t, err)
	}
	t.Cleanup(func() { c.Stop() })
	_, err = Open(context.Background(), Config{DSN: c.DSN("postgres"), Slot: "s", Publication: "p"})
	var we *WALLevelError
	if !errors.Is(err, ErrWALLevel) || !errors.As(err, &we) {
		t.Fatalf("err = %v, want *WALLevelError", err)
	}
	const want = "PostgreSQL wal_level is 'replica' but silt needs 'logical': run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL"
	if err.Error() != want {
		t.Fatalf("got  %s\nwant %s", err, want)
	}
}

func TestNoPrimaryKey(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE ok (id int PRIMARY KEY)")
	db.Exec(t, "CREATE TABLE events (id int, payload text)")
	const want = "table public.events has no primary key: add one (ALTER TABLE public.events ADD PRIMARY KEY (...)) or use a unique index (REPLICA IDENTITY USING INDEX), or set source.keyless: append (or source.keyless_tables.public.events: append) to capture it as an append-only change log, or remove it from source.tables"
	for _, tables := range [][]change.TableID{
		{{Schema: "public", Name: "ok"}, {Schema: "public", Name: "events"}},
		nil, // all tables
	} {
		cfg := config(db)
		cfg.Tables = tables
		_, err := Open(context.Background(), cfg)
		var te *TableError
		if !errors.Is(err, ErrNoPrimaryKey) || !errors.As(err, &te) || err.Error() != want {
			t.Fatalf("tables %v: err = %v\nwant %s", tables, err, want)
		}
	}
	// Only the keyed table: fine.
	cfg := config(db)
	cfg.Tables = []change.TableID{{Schema: "public", Name: "ok"}}
	src, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	src.Close()
	// REPLICA IDENTITY FULL alone is no key: still refused, saying why.
	db.Exec(t, "ALTER TABLE events REPLICA IDENTITY FULL")
	cfg.Tables = append(cfg.Tables, change.TableID{Schema: "public", Name: "events"})
	_, err = Open(context.Background(), cfg)
	if !errors.Is(err, ErrNoPrimaryKey) || !strings.Contains(err.Error(), "table public.events has REPLICA IDENTITY FULL but no primary key") || !strings.Contains(err.Error(), "source.keyless: append") {
		t.Fatalf("REPLICA IDENTITY FULL without a key: err = %v", err)
	}
	// source.keyless: append for it: accepted, reported by Keyless, and
	// Open adds it to the existing publication.
	cfg.KeylessAppend = func(id change.TableID) bool { return id.Name == "events" }
	src, err = Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if kl := src.Keyless(); len(kl) != 1 || kl[0] != (change.TableID{Schema: "public", Name: "events"}) {
		t.Errorf("Keyless() = %v, want [public.events]", kl)
	}
	src.Close()
	cfg.KeylessAppend = nil
	// A unique index as replica identity is a key.
	db.Exec(t, "ALTER TABLE events ALTER COLUMN id SET NOT NULL")
	db.Exec(t, "CREATE UNIQUE INDEX events_id ON events (id)")
	db.Exec(t, "ALTER TABLE events REPLICA IDENTITY USING INDEX events_id")
	src, err = Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if kl := src.Keyless(); len(kl) != 0 {
		t.Errorf("Keyless() = %v, want none", kl)
	}
	src.Close()
	var n int
	db.QueryRow(t, []any{&n}, "SELECT count(*) FROM pg_publication_tables WHERE pubname = $1", cfg.Publication)
	if n != 2 {
		t.Errorf("publication has %d tables, want 2", n)
	}
	// REPLICA IDENTITY NOTHING does not, even with a primary key.
	db.Exec(t, "ALTER TABLE ok REPLICA IDENTITY NOTHING")
	if _, err := Open(context.Background(), cfg); !errors.Is(err, ErrNoPrimaryKey) {
		t.Fatalf("REPLICA IDENTITY NOTHING: err = %v", err)
	}
}

func TestMissingTable(t *testing.T) {
	db := pgtest.NewDB(t)
	cfg := config(db)
	cfg.Tables = []change.TableID{{Schema: "public", Name: "nope"}}
	_, err := Open(context.Background(), cfg)
	var te *TableError
	if !errors.Is(err, ErrMissingTable) || !errors.As(err, &te) || te.Table != cfg.Tables[0] {
		t.Fatalf("err = %v, want ErrMissingTable", err)
	}
	if want := "table public.nope does not exist: create it, or remove it from source.tables"; err.Error() != want {
		t.Fatalf("got  %s\nwant %s", err, want)
	}
}

func TestSlotMismatchAndDrop(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	cfg := config(db)
	db.Exec(t, "SELECT pg_create_logical_replication_slot($1, 'test_decoding')", cfg.Slot)
	if _, err := Open(context.Background(), cfg); !errors.Is(err, ErrSlotMismatch) {
		t.Fatalf("err = %v, want ErrSlotMismatch", err)
	}
	ctx := context.Background()
	if err := DropSlot(ctx, db.DSN, "", cfg.Slot); err != nil {
		t.Fatal(err)
	}
	if err := DropSlot(ctx, db.DSN, "", cfg.Slot); !errors.Is(err, ErrSlotNotFound) {
		t.Fatalf("second drop: %v, want ErrSlotNotFound", err)
	}

	// Open creates the slot; DropSlot refuses while Run streams from it.
	r := start(t, cfg)
	db.Exec(t, "INSERT INTO t VALUES (1)")
	r.next(t)
	if err := DropSlot(ctx, db.DSN, "", cfg.Slot); !errors.Is(err, ErrSlotActive) {
		t.Fatalf("drop active: %v, want ErrSlotActive", err)
	}
	r.stop(t)
	eventually(t, "the slot to be dropped", func() bool {
		err := DropSlot(ctx, db.DSN, "", cfg.Slot)
		if err != nil && !errors.Is(err, ErrSlotActive) {
			t.Fatal(err)
		}
		return err == nil
	})

	// Run on a dropped slot fails with ErrSlotNotFound.
	src, err := Open(ctx, cfg) // recreates it
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := DropSlot(ctx, db.DSN, "", cfg.Slot); err != nil {
		t.Fatal(err)
	}
	nop := func(context.Context, *Batch) error { return nil }
	if err := src.Run(ctx, nop); !errors.Is(err, ErrSlotNotFound) {
		t.Fatalf("Run on dropped slot: %v", err)
	}
}

func TestCloseIdleAndRunAfterClose(t *testing.T) {
	db := pgtest.NewDB(t)
	r := start(t, config(db))
	r.stop(t)
	nop := func(context.Context, *Batch) error { return nil }
	if err := r.src.Run(context.Background(), nop); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
	if err := r.src.Close(); err != nil {
		t.Fatal(err)
	}
}

package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/source/pgoutput"
	"github.com/silt-dev/silt/internal/testutil/pgtest"
)

// TestAssembleSpill: beyond memLimit the transaction goes to a spill file
// and comes back in chunks with continuous positions and the same content;
// the file is removed afterwards.
func TestAssembleSpill(t *testing.T) {
	dir := t.TempDir()
	a := assembler{memLimit: 4 << 10, spillDir: dir}
	const n = 1000
	msgs := []pgoutput.Message{&pgoutput.Begin{FinalLSN: 500, XID: 9}, relMsg(1, "a")}
	for i := range n {
		msgs = append(msgs, &pgoutput.Insert{RelationID: 1, New: pgoutput.Tuple{text(fmt.Sprint(i)), text(strings.Repeat("x", i%50)), null}})
	}
	msgs = append(msgs, &pgoutput.Delete{RelationID: 1, OldKind: 'K', Old: pgoutput.Tuple{text("7"), null, null}})
	commit, err := feedAll(t, &a, append(msgs, &pgoutput.Commit{CommitLSN: 500, EndLSN: 530})...)
	if err != nil {
		t.Fatal(err)
	}
	if a.sp == nil {
		t.Fatal("did not spill")
	}
	var got []change.Change
	chunks := 0
	err = a.deliver(commit, 8<<10, func(changes []*change.Change, last bool) error {
		chunks++
		if last != (len(got)+len(changes) == n+1) {
			t.Errorf("chunk %d: last=%v after %d changes", chunks, last, len(got)+len(changes))
		}
		for _, c := range changes {
			cc := *c
			cc.New, cc.Old = copyImage(c.New), copyImage(c.Old)
			got = append(got, cc)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if chunks < 2 || len(got) != n+1 {
		t.Fatalf("%d chunks, %d changes", chunks, len(got))
	}
	for i, c := range got[:n] {
		if c.Pos != uint32(i) || c.LSN != 500 || c.EndLSN != 530 || c.XID != 9 || c.Op != change.OpInsert ||
			string(c.New[0].Data) != fmt.Sprint(i) || len(c.New[1].Data) != i%50 || c.New[2].Kind != change.Null {
			t.Fatalf("change %d: %+v", i, c)
		}
	}
	if d := got[n]; d.Op != change.OpDelete || d.Old[1].Kind != change.Absent || string(d.Old[0].Data) != "7" {
		t.Fatalf("delete: %+v", d)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*")); len(files) != 0 {
		t.Fatalf("spill files left: %v", files)
	}
}

// TestAssembleSkip: a Source resumes after what an earlier Run delivered,
// down to the change within a transaction.
func TestAssembleSkip(t *testing.T) {
	a := assembler{skip: through{lsn: 200, n: 2}}
	txn := func(lsn change.LSN) []pgoutput.Message {
		return []pgoutput.Message{&pgoutput.Begin{FinalLSN: lsn}, relMsg(1, "a"),
			&pgoutput.Insert{RelationID: 1, New: pgoutput.Tuple{text("1"), null, null}},
			&pgoutput.Insert{RelationID: 1, New: pgoutput.Tuple{text("2"), null, null}},
			&pgoutput.Insert{RelationID: 1, New: pgoutput.Tuple{text("3"), null, null}},
			&pgoutput.Commit{CommitLSN: lsn, EndLSN: lsn + 10}}
	}
	for _, c := range []struct {
		lsn      change.LSN
		skipping bool
		first    uint32
		n        int
	}{{100, true, 0, 0}, {200, false, 2, 1}, {300, false, 0, 3}} {
		if _, err := feedAll(t, &a, txn(c.lsn)...); err != nil {
			t.Fatal(err)
		}
		if a.skipping() != c.skipping || len(a.txn) != c.n || (c.n > 0 && a.txn[0].Pos != c.first) {
			t.Errorf("txn %v: skipping %v, %d changes", c.lsn, a.skipping(), len(a.txn))
		}
	}
}

func TestRetryable(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("x: %w", &pgconn.PgError{Code: code}) }
	retry := []error{
		&connLost{io.ErrUnexpectedEOF},
		fmt.Errorf("start: %w", &SlotError{Slot: "s", Err: ErrSlotActive}),
		pg("57P01"), pg("57P03"), pg("08006"), pg("53300"),
		&ConnectError{Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}},
	}
	fatal := []error{
		nil, context.Canceled, ErrClosed,
		&HandlerError{Err: &connLost{io.EOF}}, // the handler's failure, even if network-shaped
		&SlotError{Slot: "s", Err: ErrSlotNotFound},
		&WALLevelError{Level: "replica"},
		fmt.Errorf("%w: x", ErrProtocol), fmt.Errorf("%w: x", ErrTxnTooLarge),
		pg("28P01"), pg("3D000"), pg("42501"),
		&ConnectError{Err: &pgconn.PgError{Code: "28P01"}},
		errors.New("something else"),
	}
	for _, err := range retry {
		if !Retryable(err) {
			t.Errorf("Retryable(%v) = false", err)
		}
	}
	for _, err := range fatal {
		if Retryable(err) {
			t.Errorf("Retryable(%v) = true", err)
		}
	}
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:s3cret@h:5432/db?sslmode=require": "postgres://u:xxxxx@h:5432/db?sslmode=require",
		"postgresql://u@h/db?password=s3cret&x=1":       "postgresql://u@h/db?password=xxxxx&x=1",
		"host=h user=u password=s3cret dbname=d":        "host=h user=u password=xxxxx dbname=d",
		"host=h password = 'se cret\\'x' dbname=d":      "host=h password = xxxxx dbname=d",
		"postgres://u@h/db":                             "postgres://u@h/db",
	} {
		if got := RedactDSN(in); got != want || strings.Contains(got, "s3cret") {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRunAgainSkipsDelivered: after the walsender is terminated, Run on
// the same Source resumes without delivering a transaction twice, although
// nothing was acknowledged (PostgreSQL resends everything).
func TestRunAgainSkipsDelivered(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE t (id int PRIMARY KEY)")
	cfg := config(db)
	cfg.HeartbeatInterval = -1
	src, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	got := make(chan int, 100)
	h := func(ctx context.Context, b *Batch) error {
		for _, c := range b.Changes {
			var n int
			fmt.Sscan(string(c.New[0].Data), &n)
			got <- n
		}
		return nil
	}
	runOnce := func() error { return src.Run(context.Background(), h) }
	errc := make(chan error, 1)
	go func() { errc <- runOnce() }()
	for i := 1; i <= 3; i++ {
		db.Exec(t, "INSERT INTO t VALUES ($1)", i)
	}
	for i := 1; i <= 3; i++ {
		if n := <-got; n != i {
			t.Fatalf("got %d, want %d", n, i)
		}
	}
	db.Exec(t, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1", cfg.Slot)
	select {
	case err := <-errc:
		if !Retryable(err) {
			t.Fatalf("Run after terminate: %v (not retryable)", err)
		}
		t.Logf("Run ended: %v", err)
	case <-time.After(waitFor):
		t.Fatal("Run did not end after its walsender was terminated")
	}
	go func() { errc <- runOnce() }()
	db.Exec(t, "INSERT INTO t VALUES (4)")
	select {
	case n := <-got:
		if n != 4 {
			t.Fatalf("after reconnect got %d first, want 4 (1-3 were delivered already)", n)
		}
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(waitFor):
		t.Fatal("nothing delivered after reconnect")
	}
}

// TestDoctor: findings for a database with a keyless table and the
// default (unlimited) max_slot_wal_keep_size.
func TestDoctor(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE ok (id int PRIMARY KEY)")
	db.Exec(t, "CREATE TABLE events (at timestamptz, what text)")
	cfg := config(db)
	cfg.DSN = strings.Replace(db.DSN, "postgres@", "postgres:hunter2@", 1)
	findings, err := Doctor(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	byCheck := map[string]Finding{}
	for _, f := range findings {
		t.Logf("%-8s %-22s %s | %s", f.Level, f.Check, f.Detail, f.Fix)
		byCheck[f.Check] = f
		if strings.Contains(f.Detail+f.Fix, "hunter2") {
			t.Errorf("finding leaks the password: %+v", f)
		}
	}
	for check, want := range map[string]Level{"connect": LevelOK, "wal_level": LevelOK, "replication privilege": LevelOK,
		"replication slots": LevelOK, "wal senders": LevelOK, "max_slot_wal_keep_size": LevelWarn, "table keys": LevelProblem, "tls": LevelOK} {
		if f, ok := byCheck[check]; !ok || f.Level != want {
			t.Errorf("%s: %+v, want level %v", check, f, want)
		}
	}
	if f := byCheck["table keys"]; !strings.Contains(f.Detail, "public.events") || !strings.Contains(f.Fix, "source.keyless: append") || !strings.Contains(f.Fix, "REPLICA IDENTITY USING INDEX") {
		t.Errorf("table keys finding: %+v", f)
	}
	// With source.keyless: append the keyless table is a warning that names the setting.
	withAppend := cfg
	withAppend.KeylessAppend = func(id change.TableID) bool { return id.Name == "events" }
	if findings, err = Doctor(context.Background(), withAppend); err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		if f.Check == "table keys" && (f.Level != LevelWarn || !strings.Contains(f.Detail, "public.events") || !strings.Contains(f.Detail, "source.keyless: append")) {
			t.Errorf("table keys finding with keyless append: %+v", f)
		}
	}
	bad := cfg
	bad.DSN = "postgres://postgres:hunter2@127.0.0.1:1/x?sslmode=disable&connect_timeout=5"
	findings, err = Doctor(context.Background(), bad)
	if err != nil || len(findings) != 1 || findings[0].Level != LevelProblem || strings.Contains(findings[0].Detail, "hunter2") {
		t.Fatalf("unreachable: %+v %v", findings, err)
	}
}

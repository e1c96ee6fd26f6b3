package pgtest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/silt-dev/silt/internal/pgcluster"
	"github.com/silt-dev/silt/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestNewDB(t *testing.T) {
	db := pgtest.NewDB(t)
	if db.Name != "t_"+db.Suffix || len(db.Suffix) != 8 {
		t.Fatalf("name %q suffix %q", db.Name, db.Suffix)
	}
	db.Exec(t, "CREATE TABLE a (id int PRIMARY KEY, v text)")
	db.Exec(t, "INSERT INTO a VALUES ($1, $2)", 1, "x")
	var got string
	var walLevel string
	db.QueryRow(t, []any{&got, &walLevel}, "SELECT current_database() || ':' || v, current_setting('wal_level') FROM a")
	if got != db.Name+":x" {
		t.Errorf("got %q", got)
	}
	if walLevel != "logical" {
		t.Errorf("wal_level = %q, want logical", walLevel)
	}
	conn := db.Conn(t)
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM a").Scan(&n); err != nil || n != 1 {
		t.Errorf("count = %d, %v", n, err)
	}
}

// TestCleanupDropsSlotsAndDB checks that the cleanup of a DB drops its
// replication slots (even an active one) and the database itself.
func TestCleanupDropsSlotsAndDB(t *testing.T) {
	var name, suffix string
	var repl *pgconn.PgConn
	defer func() {
		if repl != nil {
			repl.Close(context.Background())
		}
	}()
	t.Run("inner", func(t *testing.T) {
		db := pgtest.NewDB(t)
		name, suffix = db.Name, db.Suffix
		slot := "slot_" + suffix
		db.Exec(t, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot)
		// Hold the slot active on a replication connection that stays open
		// through the cleanup, which must terminate its walsender.
		ctx := context.Background()
		var err error
		repl, err = pgconn.Connect(ctx, db.DSN+"&replication=database")
		if err != nil {
			t.Fatal(err)
		}
		err = pglogrepl.StartReplication(ctx, repl, slot, 0, pglogrepl.StartReplicationOptions{
			PluginArgs: []string{"proto_version '1'", "publication_names 'none'"},
		})
		if err != nil {
			t.Fatal(err)
		}
		var active bool
		db.QueryRow(t, []any{&active}, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot)
		if !active {
			t.Fatal("slot not active")
		}
	})
	c := pgtest.Cluster(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var slots, dbs int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE strpos(slot_name, $1) > 0", suffix).Scan(&slots); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&dbs); err != nil {
		t.Fatal(err)
	}
	if slots != 0 || dbs != 0 {
		t.Errorf("after cleanup: %d slots, %d databases remain", slots, dbs)
	}
}

func TestDatabasesAreIsolated(t *testing.T) {
	a, b := pgtest.NewDB(t), pgtest.NewDB(t)
	if a.Name == b.Name {
		t.Fatal("same database twice")
	}
	a.Exec(t, "CREATE TABLE only_in_a (id int)")
	b.Exec(t, "CREATE TABLE only_in_a (id int)") // would fail if shared
}

// recorder stands in for a testing.TB to observe SkipOrFatal's choice.
type recorder struct {
	testing.TB
	skipped, failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Skipf(string, ...any)  { r.skipped = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

func TestSkipOrFatal(t *testing.T) {
	noBins := fmt.Errorf("start: %w", pgcluster.ErrNoBinaries)
	other := errors.New("initdb failed")
	for _, c := range []struct {
		ci    string
		err   error
		skip  bool
		fatal bool
	}{
		{"", noBins, true, false},
		{"true", noBins, false, true},
		{"", other, false, true},
	} {
		t.Setenv("CI", c.ci)
		if c.ci == "" {
			os.Unsetenv("CI")
		}
		r := &recorder{TB: t}
		pgtest.SkipOrFatal(r, c.err)
		if r.skipped != c.skip || r.failed != c.fatal {
			t.Errorf("CI=%q err=%v: skipped=%v failed=%v", c.ci, c.err, r.skipped, r.failed)
		}
	}
}

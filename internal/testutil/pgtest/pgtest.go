// Package pgtest gives tests a real PostgreSQL database on a private
// cluster (internal/pgcluster), without Docker.
//
// One cluster is started per test binary (package), lazily on first use.
// Call Main from TestMain so it is stopped and its directory removed at the
// end; without Main the server is left to die with the process (SIGQUIT via
// the parent-death signal on Linux) and its temp directory remains.
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestX(t *testing.T) {
//		db := pgtest.NewDB(t)               // CREATE DATABASE t_<suffix>
//		db.Exec(t, "CREATE TABLE a (id int PRIMARY KEY)")
//		slot := "slot_" + db.Suffix         // dropped at cleanup: name contains the suffix
//		...
//	}
//
// When PostgreSQL is not installed, tests are skipped, unless the CI
// environment variable is set, in which case they fail: a green CI run must
// not hide a missing install.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/pgcluster"
)

var (
	mu      sync.Mutex
	cluster *pgcluster.Cluster
	err     error
	started bool
	stopped bool
)

// Main runs the tests and then stops the package's cluster (if one was
// started), and exits with the tests' status. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if serr := stop(); serr != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", serr)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func stop() error {
	mu.Lock()
	defer mu.Unlock()
	stopped = true
	if cluster == nil {
		return nil
	}
	return cluster.Stop()
}

// Cluster returns the package's cluster, starting it on first use. It skips
// or fails t when PostgreSQL is not installed (see the package doc).
func Cluster(t testing.TB) *pgcluster.Cluster {
	t.Helper()
	mu.Lock()
	if stopped {
		mu.Unlock()
		t.Fatal("pgtest: cluster used after Main stopped it")
	}
	if !started {
		started = true
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cluster, err = pgcluster.Start(ctx, pgcluster.Options{})
		cancel()
	}
	c, e := cluster, err
	mu.Unlock()
	if e != nil {
		SkipOrFatal(t, e)
	}
	return c
}

// SkipOrFatal ends t because of a cluster start error: it skips when the
// error is pgcluster.ErrNoBinaries and CI is unset, and fails otherwise.
// Tests that start their own pgcluster use it too.
func SkipOrFatal(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, pgcluster.ErrNoBinaries) && os.Getenv("CI") == "" {
		t.Skipf("pgtest: %v (set CI to make this a failure)", err)
		return
	}
	t.Fatalf("pgtest: %v", err)
}

// DB is one test's database.
type DB struct {
	// Name is the database name, "t_" + Suffix.
	Name string
	// DSN connects to the database as the superuser over TCP.
	DSN string
	// Suffix is random (8 lowercase hex digits). Replication slots whose
	// name contains it are dropped at cleanup, so use it in slot (and
	// publication) names.
	Suffix string
	// Cluster is the cluster holding the database.
	Cluster *pgcluster.Cluster

	mu   sync.Mutex // guards conn, and serialises its use
	conn *pgx.Conn  // shared by Exec and QueryRow; opened on first use
}

// NewDB creates a fresh database on the package's cluster. At cleanup its
// pool is closed, the slots named with its suffix or belonging to the
// database are dropped (their walsenders terminated first), and the database
// is dropped.
func NewDB(t testing.TB) *DB {
	t.Helper()
	c := Cluster(t)
	suffix := randomSuffix(t)
	db := &DB{Name: "t_" + suffix, Suffix: suffix, Cluster: c}
	db.DSN = c.DSN(db.Name)
	admin(t, c, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db.Name}.Sanitize())
		return err
	})
	t.Cleanup(func() { db.cleanup(t) })
	return db
}

func (db *DB) cleanup(t testing.TB) {
	t.Helper()
	db.mu.Lock()
	if db.conn != nil {
		db.conn.Close(context.Background())
		db.conn = nil
	}
	db.mu.Unlock()
	admin(t, db.Cluster, func(ctx context.Context, conn *pgx.Conn) error {
		if err := dropSlots(ctx, conn, db.Suffix, db.Name); err != nil {
			return err
		}
		_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db.Name}.Sanitize()+" WITH (FORCE)")
		return err
	})
}

// dropSlots drops every slot whose name contains suffix or that belongs to
// database dbname. An active slot cannot be dropped, so its walsender is
// terminated first and the drop retried until the slot is released.
func dropSlots(ctx context.Context, conn *pgx.Conn, suffix, dbname string) error {
	const q = `SELECT slot_name, coalesce(active_pid, 0) FROM pg_replication_slots
		WHERE strpos(slot_name, $1) > 0 OR database = $2`
	for {
		rows, err := conn.Query(ctx, q, suffix, dbname)
		if err != nil {
			return fmt.Errorf("list slots: %w", err)
		}
		type slot struct {
			name string
			pid  int32
		}
		var slots []slot
		for rows.Next() {
			var s slot
			if err := rows.Scan(&s.name, &s.pid); err != nil {
				return err
			}
			slots = append(slots, s)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(slots) == 0 {
			return nil
		}
		for _, s := range slots {
			if s.pid != 0 {
				if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend($1)", s.pid); err != nil {
					return fmt.Errorf("terminate walsender of slot %s: %w", s.name, err)
				}
				continue
			}
			// Ignore errors: the slot may have become active again or been
			// dropped meanwhile; the loop looks again.
			_, _ = conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.name)
		}
		if err := pause(ctx, 10*time.Millisecond); err != nil {
			return fmt.Errorf("slots still present: %w", err)
		}
	}
}

// Exec runs sql with args on the database and fails t on error. Exec and
// QueryRow share one connection and are safe for concurrent use.
func (db *DB) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db.mu.Lock()
	defer db.mu.Unlock()
	if _, err := db.shared(t).Exec(ctx, sql, args...); err != nil {
		t.Fatalf("pgtest: exec %q: %v", sql, err)
	}
}

// QueryRow runs sql and scans the single result row into dest, failing t on
// error.
func (db *DB) QueryRow(t testing.TB, dest []any, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.shared(t).QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		t.Fatalf("pgtest: query %q: %v", sql, err)
	}
}

// shared returns the shared connection; db.mu must be held.
func (db *DB) shared(t testing.TB) *pgx.Conn {
	t.Helper()
	if db.conn == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, db.DSN)
		if err != nil {
			t.Fatalf("pgtest: connect: %v", err)
		}
		db.conn = conn
	}
	return db.conn
}

// Conn opens a dedicated connection to the database, closed at cleanup
// (before the database is dropped, since cleanups run last-in first-out).
func (db *DB) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.DSN)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// admin runs f on a fresh connection to the cluster's postgres database.
func admin(t testing.TB, c *pgcluster.Cluster, f func(context.Context, *pgx.Conn) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect to cluster: %v", err)
	}
	defer conn.Close(ctx)
	if err := f(ctx, conn); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

func randomSuffix(t testing.TB) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return strings.ToLower(hex.EncodeToString(b[:]))
}

func pause(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

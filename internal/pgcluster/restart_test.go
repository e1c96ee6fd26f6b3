package pgcluster

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestRestart: both restart kinds keep the data, the port and the
// settings; connections from before the restart are broken.
func TestRestart(t *testing.T) {
	c := start(t, Options{ExtraSettings: map[string]string{"work_mem": "7MB"}})
	defer c.Stop()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	port := c.Port
	for _, immediate := range []bool{false, true} {
		if err := c.Restart(ctx, immediate); err != nil {
			t.Fatalf("Restart(immediate=%v): %v", immediate, err)
		}
		if c.Port != port {
			t.Fatalf("port changed from %d to %d", port, c.Port)
		}
		if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
			t.Fatal("a connection from before the restart still works")
		}
		conn.Close(ctx)
		if conn, err = pgx.Connect(ctx, c.DSN("postgres")); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
			t.Fatalf("after restart: %d rows, %v", n, err)
		}
		if v := showSetting(t, c, "work_mem"); v != "7MB" {
			t.Fatalf("work_mem = %s after restart", v)
		}
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
}

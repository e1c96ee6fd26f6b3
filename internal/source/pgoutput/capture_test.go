package pgoutput

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/silt-dev/silt/internal/testutil/pgtest"
)

var capture = flag.Bool("capture", false, "capture real pgoutput messages from a pgtest cluster into testdata/"+captureFile)

const captureFile = "pg15-messages.txt"

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestCapture records the XLogData payloads of a scripted workload, one hex
// line per message, as seeds for the unit, golden and fuzz tests. It runs
// only with -capture; the result is committed.
func TestCapture(t *testing.T) {
	if !*capture {
		t.Skip("run with -capture to re-record " + captureFile)
	}
	db := pgtest.NewDB(t)
	slot := "cap_" + db.Suffix
	db.Exec(t, `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`)
	db.Exec(t, `CREATE TABLE items (id int PRIMARY KEY, name text, big text, m mood, n numeric(10,2), ts timestamptz)`)
	db.Exec(t, `ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL`)
	db.Exec(t, `CREATE TABLE full_rows (a int, b text)`)
	db.Exec(t, `ALTER TABLE full_rows REPLICA IDENTITY FULL`)
	db.Exec(t, `CREATE TABLE two (k1 int, k2 text, v text, PRIMARY KEY (k1, k2))`)
	db.Exec(t, `CREATE PUBLICATION pub FOR ALL TABLES`)
	db.Exec(t, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)

	workload := []string{
		`INSERT INTO items VALUES (1, 'one', repeat('x', 10000), 'ok', 12.5, '2024-01-02 03:04:05+00')`,
		`INSERT INTO items (id, name) VALUES (2, NULL)`,
		`UPDATE items SET name = 'uno' WHERE id = 1`,       // unchanged TOAST: big is 'u'
		`UPDATE items SET id = 10 WHERE id = 2`,            // key change: old key 'K'
		`DELETE FROM items WHERE id = 10`,                  // old key 'K'
		`INSERT INTO full_rows VALUES (1, 'a'), (2, NULL)`, // two inserts, one txn
		`UPDATE full_rows SET b = 'b' WHERE a = 1`,         // old full 'O'
		`DELETE FROM full_rows WHERE a = 2`,                // old full 'O'
		`INSERT INTO two VALUES (1, 'k', 'v')`,
		`SELECT pg_logical_emit_message(true, 'silt', 'hello')`, // transactional message
		`SELECT pg_logical_emit_message(false, 'silt', 'hi')`,   // non-transactional
		`TRUNCATE items, two`,
		`TRUNCATE full_rows RESTART IDENTITY CASCADE`,
		`ALTER TABLE two ADD COLUMN extra int`,
		`INSERT INTO two VALUES (2, 'k', NULL, 7)`,
	}
	for _, q := range workload {
		db.Exec(t, q)
	}
	// A transaction with a replication origin produces an Origin message.
	conn := db.Conn(t)
	ctx := context.Background()
	for _, q := range []string{
		`SELECT pg_replication_origin_create('upstream_` + db.Suffix + `')`,
		`SELECT pg_replication_origin_session_setup('upstream_` + db.Suffix + `')`,
		`BEGIN`,
		`SELECT pg_replication_origin_xact_setup('0/1234', now())`,
		`INSERT INTO two VALUES (3, 'o', 'from origin', NULL)`,
		`COMMIT`,
		`SELECT pg_replication_origin_session_reset()`,
		`SELECT pg_replication_origin_drop('upstream_` + db.Suffix + `')`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// The stream ends with a non-transactional message we stop at.
	db.Exec(t, `SELECT pg_logical_emit_message(false, 'end', '')`)

	repl, err := pgconn.Connect(ctx, db.DSN+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(ctx)
	err = pglogrepl.StartReplication(ctx, repl, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'pub'", "messages 'true'"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	fmt.Fprintf(&out, "# pgoutput protocol 1 messages captured from PostgreSQL by TestCapture (go test -capture).\n")
	fmt.Fprintf(&out, "# One XLogData payload per line, hex.\n")
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		msg, err := repl.ReceiveMessage(rctx)
		if err != nil {
			t.Fatal(err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok {
			t.Fatalf("unexpected %T", msg)
		}
		f, err := ParseFrame(cd.Data)
		if err != nil {
			t.Fatal(err)
		}
		x, ok := f.(*XLogData)
		if !ok {
			continue
		}
		fmt.Fprintf(&out, "%s\n", hex.EncodeToString(x.Data))
		if m, err := Decode(x.Data); err != nil {
			t.Fatal(err)
		} else if lm, ok := m.(*LogicalMessage); ok && lm.Prefix == "end" {
			break
		}
	}
	if err := os.WriteFile("testdata/"+captureFile, []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

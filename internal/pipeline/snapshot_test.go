package pipeline_test

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/bronze"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/pipeline"
	"github.com/silt-dev/silt/internal/silver"
	"github.com/silt-dev/silt/internal/source/pgsnap"
	"github.com/silt-dev/silt/internal/testutil/pgtest"
	"github.com/silt-dev/silt/internal/verify"
)

// snapConfig is testConfig for tables of schema snap: small chunks so that
// even small tables are copied in many parallel, resumable pieces.
func snapConfig(t *testing.T, db *pgtest.DB, dataDir string, tables ...string) *config.Config {
	cfg := testConfig(t, db, dataDir)
	cfg.Source.Tables = tables
	cfg.Source.SnapshotChunkRows = 1000
	cfg.Source.SnapshotTablesParallel = 2
	cfg.Source.SnapshotChunksPerTable = 3
	cfg.Bronze.FlushInterval.Duration = 100 * time.Millisecond
	cfg.Silver.Interval.Duration = 100 * time.Millisecond
	return cfg
}

// waitTablesEqual polls until Silver equals the source for every table.
func waitTablesEqual(t *testing.T, r *running, db *pgtest.DB, tables []change.TableID, timeout time.Duration) []verify.Result {
	t.Helper()
	return waitTablesEqualDSN(t, r, db.DSN, tables, timeout)
}

func waitTablesEqualDSN(t *testing.T, r *running, dsn string, tables []change.TableID, timeout time.Duration) []verify.Result {
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
		var res []verify.Result
		ok := true
		for _, tb := range tables {
			v, err := verify.Table(ctx, conn, r.p.Store(), tb)
			if err != nil {
				t.Fatal(err)
			}
			res = append(res, v)
			ok = ok && v.Equal()
		}
		if ok && r.p.SnapshotProgress().Phase == pgsnap.PhaseDone {
			return res
		}
		if time.Now().After(deadline) {
			for _, v := range res {
				t.Log(v)
			}
			t.Fatalf("silver did not equal the source within %s (snapshot %+v)", timeout, r.p.SnapshotProgress())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const snapDDL = `
CREATE SCHEMA snap;
CREATE TABLE snap.items (id bigint PRIMARY KEY, v text NOT NULL, n int, big text);
CREATE TABLE snap.events (id bigint PRIMARY KEY, kind text, at timestamptz);
`

// fill inserts rows [from, to) into both tables; every 50th item carries a
// TOASTed value (so later updates that leave it alone send it as unchanged).
func fill(t *testing.T, db *pgtest.DB, from, to int) {
	t.Helper()
	db.Exec(t, fmt.Sprintf(`INSERT INTO snap.items SELECT g, 'v' || g, g %% 1000,
		CASE WHEN g %% 50 = 0 THEN repeat(md5(g::text), 400) END FROM generate_series(%d, %d) g`, from, to-1))
	db.Exec(t, fmt.Sprintf(`INSERT INTO snap.events SELECT g, 'k' || (g %% 7), timestamptz '2024-01-01' + g * interval '1 minute'
		FROM generate_series(%d, %d) g`, from, to-1))
}

// churn runs random single-row and multi-row transactions on both tables
// until ctx ends: updates that leave the TOASTed column alone, deletes,
// inserts of new keys, and re-inserts of deleted ones.
func churn(ctx context.Context, dsn string, seed uint64, maxID int, n *atomic.Int64) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rng := mrand.New(mrand.NewPCG(seed, 7))
	next := maxID + int(seed%1000)*1_000_000 // new keys: a range of their own per seed
	for ctx.Err() == nil {
		tx, err := conn.Begin(ctx)
		if err != nil {
			break
		}
		for range 1 + rng.IntN(5) {
			id := 1 + rng.IntN(maxID)
			var sql string
			switch rng.IntN(10) {
			case 0, 1, 2, 3:
				sql = fmt.Sprintf("UPDATE snap.items SET v = v || '+', n = n + 1 WHERE id = %d", id)
			case 4:
				sql = fmt.Sprintf("DELETE FROM snap.items WHERE id = %d", id)
			case 5:
				sql = fmt.Sprintf("INSERT INTO snap.items VALUES (%d, 'again', 0, repeat('z', 3000)) ON CONFLICT (id) DO UPDATE SET big = excluded.big", id)
			case 6, 7:
				next++
				sql = fmt.Sprintf("INSERT INTO snap.items VALUES (%d, 'new', 1, NULL)", next)
			case 8:
				sql = fmt.Sprintf("UPDATE snap.events SET kind = 'moved', at = at + interval '1 day' WHERE id = %d", id)
			default:
				sql = fmt.Sprintf("DELETE FROM snap.events WHERE id = %d", id)
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

var snapTables = []change.TableID{{Schema: "snap", Name: "items"}, {Schema: "snap", Name: "events"}}

// TestSnapshotUnderConcurrentWrites copies two tables while a workload
// updates, deletes and inserts rows (and leaves TOASTed values unchanged)
// from before the slot exists until after the snapshot is done: at the end
// Silver equals the source, with no row lost or duplicated across the
// snapshot/CDC boundary.
func TestSnapshotUnderConcurrentWrites(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, snapDDL)
	const rows = 30000
	fill(t, db, 1, rows+1)
	seed := uint64(time.Now().UnixNano())
	t.Logf("workload seed %d", seed)

	ctx, stop := context.WithCancel(context.Background())
	var n atomic.Int64
	werr := make(chan error, 1)
	go func() { werr <- churn(ctx, db.DSN, seed, rows, &n) }() // already running when the slot is created

	cfg := snapConfig(t, db, t.TempDir(), "snap.items", "snap.events")
	started := time.Now()
	r := start(t, cfg)
	waitSnapshot(t, r, 2*time.Minute)
	t.Logf("snapshot done in %s: %+v", time.Since(started), r.p.SnapshotProgress())
	for n.Load() < 500 { // keep changing rows after the snapshot too
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	res := waitTablesEqual(t, r, db, snapTables, 2*time.Minute)
	for _, v := range res {
		t.Log(v)
	}
	st := r.p.SnapshotProgress()
	if len(st.Tables) != 2 || st.Tables[0].Chunks < 10 {
		t.Fatalf("expected two tables in many chunks: %+v", st)
	}
	r.shutdown(t)
	loads := checkBronzeOnce(t, r.p.Store(), snapTables)
	if loads != st.Rows {
		t.Fatalf("bronze holds %d snapshot rows, the snapshot copied %d", loads, st.Rows)
	}
	t.Logf("%d changes during and after the snapshot; silver equals source", n.Load())
}

// checkBronzeOnce checks that Bronze holds every change once (by LSN, pos,
// op and id: snapshot rows of one chunk share (LSN, pos)) and returns the
// number of snapshot rows.
func checkBronzeOnce(t *testing.T, store blob.Store, tables []change.TableID) int64 {
	t.Helper()
	var loads int64
	seen := map[string]bool{}
	forEachBronzeRow(t, store, tables, false, func(tb change.TableID, r bronzeRowView) error {
		id := r.rec.Column(r.rec.Schema().FieldIndices("id")[0])
		k := fmt.Sprintf("%s/%d/%d/%s/%s", tb, r.lsn, r.pos, r.op, id.ValueStr(r.i))
		if seen[k] {
			return fmt.Errorf("duplicate bronze row (lsn/pos/op/id) %d/%d/%s/%s", r.lsn, r.pos, r.op, id.ValueStr(r.i))
		}
		seen[k] = true
		if r.op == "L" {
			loads++
		}
		return nil
	})
	return loads
}

func waitSnapshot(t *testing.T, r *running, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for r.p.SnapshotProgress().Phase != pgsnap.PhaseDone {
		select {
		case err := <-r.done:
			r.done <- err // for the cleanup
			t.Fatalf("pipeline stopped early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot not done within %s: %+v", timeout, r.p.SnapshotProgress())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSnapshotResumeAfterStop stops the pipeline in the middle of the
// snapshot (some chunks durable, others not), restarts it on the same data
// and checks that only unfinished chunks are copied again (in a new
// snapshot) and that Silver ends equal to the source, under writes.
func TestSnapshotResumeAfterStop(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, snapDDL)
	const rows = 60000
	fill(t, db, 1, rows+1)
	seed := uint64(time.Now().UnixNano())
	t.Logf("workload seed %d", seed)
	dataDir := t.TempDir()
	cfg := snapConfig(t, db, dataDir, "snap.items", "snap.events")
	cfg.Source.SnapshotTablesParallel, cfg.Source.SnapshotChunksPerTable = 1, 1 // slow enough to stop halfway

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var n atomic.Int64
	werr := make(chan error, 1)
	go func() { werr <- churn(ctx, db.DSN, seed, rows, &n) }()

	r := start(t, cfg)
	deadline := time.Now().Add(time.Minute)
	for {
		done := 0
		for _, tp := range r.p.SnapshotProgress().Tables {
			done += tp.ChunksDone
		}
		if done >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress: %+v", r.p.SnapshotProgress())
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.shutdown(t)
	st, err := pgsnap.LoadState(context.Background(), r.p.Store())
	if err != nil {
		t.Fatal(err)
	}
	doneBefore, total := 0, 0
	for _, tb := range st.Tables {
		for _, c := range tb.Chunks {
			total++
			if c.Done {
				doneBefore++
			}
		}
	}
	t.Logf("stopped with %d of %d chunks durable", doneBefore, total)
	if st.Phase == pgsnap.PhaseDone || doneBefore == 0 {
		t.Fatalf("stop did not land mid-snapshot: phase %s, %d/%d chunks", st.Phase, doneBefore, total)
	}

	cfg2 := snapConfig(t, db, dataDir, "snap.items", "snap.events")
	r2 := start(t, cfg2)
	waitSnapshot(t, r2, 2*time.Minute)
	stop()
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	for _, v := range waitTablesEqual(t, r2, db, snapTables, 2*time.Minute) {
		t.Log(v)
	}
	st2, _ := pgsnap.LoadState(context.Background(), r2.p.Store())
	if st2.Resumes != 1 || st2.ConsistentLSN != st.ConsistentLSN {
		t.Fatalf("resumed state: resumes %d, consistent LSN %s (was %s)", st2.Resumes, st2.ConsistentLSN, st.ConsistentLSN)
	}
	r2.shutdown(t)
	t.Logf("%d changes during the test", n.Load())
}

// typeColumns is one column per type family; typeRows are literal values
// (SQL) for them, including special values.
const typeDDL = `
CREATE SCHEMA snap;
CREATE DOMAIN snap.posint AS int CHECK (VALUE > 0);
CREATE DOMAIN snap.price AS numeric(12,2);
CREATE DOMAIN snap.price2 AS snap.price;
CREATE TYPE snap.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE snap.types (
  id int PRIMARY KEY,
  b bool, i2 int2, i4 int4, i8 int8, o oid,
  f4 float4, f8 float8, n numeric, n102 numeric(10,2), n38 numeric(38,6), n40 numeric(40,5), nneg numeric(5,-2), nbig numeric(3,5),
  t text, vc varchar(10), c char(5), ch "char", nm name, bt bytea,
  d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
  u uuid, j json, jb jsonb, ia int[], ta text[], e snap.mood, dm snap.posint, dp snap.price, dp2 snap.price2,
  ip inet, cd cidr, mac macaddr, mac8 macaddr8, m money, bits bit(4), vb varbit, r int4range, tr tstzrange,
  x xml, pt point, tsv tsvector, l pg_lsn
);`

var typeRows = []string{
	`true, 1, 2, 3, 4, 1.5, 2.25, 12345.6789, 12.34, 123456789012.123456, 123456789012345678901234567890123.12345, 12300, 0.00123,
	 'hello', 'short', 'ab', 'x', 'nm', '\x00ff10',
	 '2024-02-29', '12:34:56.789', '12:34:56+05:30', '2024-02-29 12:34:56.123456', '2024-02-29 12:34:56.123456+02', '1 year 2 mons 3 days 04:05:06.5',
	 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2]}', '{"b": {"c": null}}', '{1,2,3}', '{"x y","z,\"w"}', 'happy', 7, 19.99, 5.5,
	 '192.168.1.5/24', '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05', 12.5, B'1010', B'101', '[1,10)', '[2024-01-01 00:00+00,2024-02-01 00:00+00)',
	 '<a>b</a>', '(1.5,2)', 'a fat cat', '16/B374D848'`,
	`false, -32768, -2147483648, -9223372036854775808, 0, 'NaN', 'NaN', 'NaN', 'NaN', -0.000001, -1, -12300, -0.00999,
	 '', '', '', '', '', '\x',
	 '0044-03-15 BC', '00:00:00', '23:59:59.999999-12', '0044-03-15 12:00:00 BC', '0001-01-01 00:00:00+00 BC', '-178956970 years -8 mons',
	 '00000000-0000-0000-0000-000000000000', '[]', '[]', '{}', '{NULL,"NULL"}', 'sad', 1, -0.01, 0,
	 '::1', '::/0', '00:00:00:00:00:00', '00:00:00:00:00:00:00:00', -92233720368547758.08, B'0000', B'', 'empty', '(,)',
	 '<!-- c -->', '(-0,0)', '', '0/0'`,
	`NULL, 32767, 2147483647, 9223372036854775807, 4294967295, 'Infinity', '-Infinity', '-Infinity', 99999999.99, 99999999999999999999999999999999.999999, NULL, NULL, NULL,
	 E'tab\there\nnewline \\ backslash ünïcødé 🚀', 'ten chars!', 'abcde', NULL, NULL, NULL,
	 'infinity', '24:00:00', NULL, 'infinity', '-infinity', '-1 days +00:00:01',
	 NULL, 'null', '"str"', '{{1,2},{3,4}}', NULL, NULL, 2147483647, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, '(,5]', NULL,
	 NULL, NULL, NULL, 'FFFFFFFF/FFFFFFFF'`,
	`NULL, NULL, NULL, NULL, NULL, '1e-45', '4.9e-324', '1e-1000', 0, 0, 0, 0, 0,
	 NULL, NULL, NULL, NULL, NULL, NULL,
	 '-infinity', NULL, NULL, '-infinity', '294276-12-31 00:00:00+00', NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL`,
	// Edges of the types the snapshot reads in binary (bronze.BinaryOIDs):
	// -0, largest floats, extreme and BC dates, sub-second times before
	// 1970 and BC, the last timestamp, a seconds zone offset.
	`true, -1, -1, -1, NULL, '-0', '-0', NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL,
	 '5874897-12-31', NULL, NULL, '1969-12-31 23:59:59.5', '4713-01-01 00:00:00.25+00 BC', NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL`,
	`false, 0, 0, 0, NULL, '3.4028235e38', '1.7976931348623157e308', NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL,
	 '4713-01-01 BC', NULL, NULL, '294276-12-31 23:59:59.999999', '1900-06-15 12:00:00.000001+00:53:28', NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL`,
	`NULL, NULL, NULL, NULL, NULL, '-1.17549435e-38', '-2.2250738585072014e-308', NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL,
	 '1970-01-01', NULL, NULL, '0001-01-01 00:00:00.999999 BC', '1999-12-31 23:59:59.999999+00', NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL`,
}

// TestSnapshotTypesRoundTrip writes one row of each value set before the
// slot exists (copied by the snapshot) and the same values again after
// (captured by CDC, id + 1000): Silver equals the source, and each pair of
// rows is identical in Silver, column for column. Every Bronze column type
// has a flat form, so the snapshot's chunks skip Arrow (bronze.FlatChunks).
func TestSnapshotTypesRoundTrip(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, typeDDL)
	for i, vals := range typeRows {
		db.Exec(t, fmt.Sprintf("INSERT INTO snap.types VALUES (%d, %s)", i+1, vals))
	}
	flat0 := bronze.FlatChunks()
	_, sflat0 := silver.LoadAppendedRows()
	cfg := snapConfig(t, db, t.TempDir(), "snap.types")
	r := start(t, cfg)
	waitSnapshot(t, r, time.Minute)
	if got := bronze.FlatChunks() - flat0; got == 0 {
		t.Errorf("no snapshot chunk took the flat path")
	}
	for i, vals := range typeRows {
		db.Exec(t, fmt.Sprintf("INSERT INTO snap.types VALUES (%d, %s)", 1000+i+1, vals))
	}
	tid := change.TableID{Schema: "snap", Name: "types"}
	for _, v := range waitTablesEqual(t, r, db, []change.TableID{tid}, time.Minute) {
		t.Log(v)
	}
	if _, sflat := silver.LoadAppendedRows(); sflat-sflat0 < int64(len(typeRows)) {
		t.Errorf("%d snapshot rows reached Silver as flat appends, want %d", sflat-sflat0, len(typeRows))
	}
	rows := silverByID(t, r.p.Store(), tid)
	if len(rows) != 2*len(typeRows) {
		t.Fatalf("silver has %d rows, want %d", len(rows), 2*len(typeRows))
	}
	for i := range typeRows {
		snapRow, cdcRow := rows[int64(i+1)], rows[int64(1000+i+1)]
		if snapRow != cdcRow {
			t.Errorf("value set %d differs between snapshot and CDC:\n snapshot %s\n cdc      %s", i, snapRow, cdcRow)
		}
	}
	t.Logf("silver row of value set 0: %s", rows[1])
	t.Logf("silver row of value set 2: %s", rows[3])
	schema := silverSchema(t, r.p.Store(), tid)
	for _, want := range []string{"dp decimal(12,2)", "dp2 decimal(12,2)", "dm integer", "n102 decimal(10,2)", "nneg decimal(7,0)", "nbig decimal(5,5)", "n40 string", "d date", "ts timestamp", "bt binary", "f4 float"} {
		if !strings.Contains(schema, want) {
			t.Errorf("silver schema lacks %q: %s", want, schema)
		}
	}
	r.shutdown(t)
}

// silverByID renders each Silver row (all source columns but id, in schema
// order) keyed by id.
func silverByID(t *testing.T, store blob.Store, id change.TableID) map[int64]string {
	t.Helper()
	ctx := context.Background()
	tbl := delta.NewTable(store, silver.TablePath(id))
	snap, err := tbl.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ti := datafile.Info(tbl, snap)
	out := map[int64]string{}
	err = datafile.Scan(ctx, store, ti, snap.Files(), func(rec arrow.RecordBatch) error {
		for row := 0; row < int(rec.NumRows()); row++ {
			var parts []string
			var key int64
			for ci, f := range rec.Schema().Fields() {
				col := rec.Column(ci)
				switch {
				case f.Name == "id":
					fmt.Sscan(col.ValueStr(row), &key)
					continue
				case strings.HasPrefix(f.Name, "_silt_"):
					continue
				case col.IsNull(row):
					parts = append(parts, f.Name+"=NULL")
				default:
					parts = append(parts, fmt.Sprintf("%s=%q", f.Name, col.ValueStr(row)))
				}
			}
			out[key] = strings.Join(parts, " ")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func silverSchema(t *testing.T, store blob.Store, id change.TableID) string {
	t.Helper()
	snap, err := delta.NewTable(store, silver.TablePath(id)).Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, f := range snap.Schema().Fields {
		parts = append(parts, f.Name+" "+f.Type.TypeName())
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

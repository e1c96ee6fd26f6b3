package pgrepl

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/source/pgoutput"
)

func text(s string) change.Datum { return change.Datum{Kind: change.Text, Data: []byte(s)} }

var (
	null   = change.Datum{Kind: change.Null}
	absent = change.Datum{Kind: change.Absent}
	unch   = change.Datum{Kind: change.Unchanged}
)

func relMsg(id uint32, name string) *pgoutput.Relation {
	return &pgoutput.Relation{ID: id, Namespace: "public", Name: name, ReplicaIdentity: pgoutput.IdentityDefault,
		Columns: []pgoutput.RelationColumn{{Flags: 1, Name: "id", TypeOID: 23}, {Name: "v", TypeOID: 25}, {Name: "w", TypeOID: 25}}}
}

func feedAll(t *testing.T, a *assembler, msgs ...pgoutput.Message) (*pgoutput.Commit, error) {
	t.Helper()
	var last *pgoutput.Commit
	for _, m := range msgs {
		c, err := a.feed(m, 10)
		if err != nil {
			return nil, err
		}
		if c != nil {
			last = c
		}
	}
	return last, nil
}

func TestAssemble(t *testing.T) {
	ts := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	var a assembler
	commit, err := feedAll(t, &a,
		&pgoutput.Begin{FinalLSN: 100, XID: 7, CommitTime: ts},
		relMsg(1, "a"),
		&pgoutput.Insert{RelationID: 1, New: pgoutput.Tuple{text("1"), text("x"), null}},
		&pgoutput.Update{RelationID: 1, New: pgoutput.Tuple{text("1"), text("y"), unch}},
		&pgoutput.Update{RelationID: 1, OldKind: 'K', Old: pgoutput.Tuple{text("1"), null, null}, New: pgoutput.Tuple{text("2"), text("y"), unch}},
		&pgoutput.Delete{RelationID: 1, OldKind: 'K', Old: pgoutput.Tuple{text("2"), null, null}},
		relMsg(2, "b"),
		&pgoutput.Truncate{RelationIDs: []uint32{1, 2}},
		&pgoutput.Commit{CommitLSN: 100, EndLSN: 130, CommitTime: ts},
	)
	if err != nil {
		t.Fatal(err)
	}
	if commit == nil || commit.EndLSN != 130 {
		t.Fatalf("commit = %+v", commit)
	}
	want := []struct {
		op       change.Op
		table    string
		new, old []change.Datum
	}{
		{change.OpInsert, "a", []change.Datum{text("1"), text("x"), null}, nil},
		{change.OpUpdate, "a", []change.Datum{text("1"), text("y"), unch}, nil},
		{change.OpUpdate, "a", []change.Datum{text("2"), text("y"), unch}, []change.Datum{text("1"), absent, absent}},
		{change.OpDelete, "a", nil, []change.Datum{text("2"), absent, absent}},
		{change.OpTruncate, "a", nil, nil},
		{change.OpTruncate, "b", nil, nil},
	}
	if len(a.txn) != len(want) {
		t.Fatalf("%d changes, want %d", len(a.txn), len(want))
	}
	for i, c := range a.txn {
		w := want[i]
		if c.Op != w.op || c.Rel.Table.Name != w.table || c.Pos != uint32(i) || c.LSN != 100 || c.EndLSN != 130 || c.XID != 7 || !c.CommitTime.Equal(ts) {
			t.Errorf("change %d: %+v", i, c)
		}
		if !equalImage(c.New, w.new) || !equalImage(c.Old, w.old) {
			t.Errorf("change %d: new %v old %v, want %v %v", i, c.New, c.Old, w.new, w.old)
		}
	}
	if !a.txn[0].Rel.Columns[0].Key || a.txn[0].Rel.Columns[1].Key {
		t.Errorf("keys: %+v", a.txn[0].Rel.Columns)
	}

	// The next transaction starts empty and reuses nothing visible.
	if _, err := feedAll(t, &a, &pgoutput.Begin{FinalLSN: 200, XID: 8}, &pgoutput.Commit{CommitLSN: 200, EndLSN: 230}); err != nil {
		t.Fatal(err)
	}
	if len(a.txn) != 0 {
		t.Errorf("empty transaction has %d changes", len(a.txn))
	}
}

func equalImage(a, b []change.Datum) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Kind != b[i].Kind || string(a[i].Data) != string(b[i].Data) {
			return false
		}
	}
	return true
}

func TestAssembleProtocolErrors(t *testing.T) {
	begin := &pgoutput.Begin{FinalLSN: 100, XID: 1}
	cases := []struct {
		name string
		msgs []pgoutput.Message
		want error
	}{
		{"row outside txn", []pgoutput.Message{relMsg(1, "a"), &pgoutput.Insert{RelationID: 1, New: pgoutput.Tuple{null, null, null}}}, ErrProtocol},
		{"unknown relation", []pgoutput.Message{begin, &pgoutput.Insert{RelationID: 9, New: pgoutput.Tuple{null}}}, pgoutput.ErrUnknownRelation},
		{"truncate unknown relation", []pgoutput.Message{begin, &pgoutput.Truncate{RelationIDs: []uint32{9}}}, ErrProtocol},
		{"column count", []pgoutput.Message{begin, relMsg(1, "a"), &pgoutput.Insert{RelationID: 1, New: pgoutput.Tuple{null}}}, ErrProtocol},
		{"old column count", []pgoutput.Message{begin, relMsg(1, "a"), &pgoutput.Delete{RelationID: 1, OldKind: 'K', Old: pgoutput.Tuple{null}}}, ErrProtocol},
		{"nested begin", []pgoutput.Message{begin, begin}, ErrProtocol},
		{"commit without begin", []pgoutput.Message{&pgoutput.Commit{CommitLSN: 100}}, ErrProtocol},
		{"commit LSN mismatch", []pgoutput.Message{begin, &pgoutput.Commit{CommitLSN: 101}}, ErrProtocol},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var a assembler
			if _, err := feedAll(t, &a, c.msgs...); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestAssembleTooLarge(t *testing.T) {
	a := assembler{maxBytes: 1000}
	msgs := []pgoutput.Message{&pgoutput.Begin{FinalLSN: 1}, relMsg(1, "a")}
	for range 10 {
		msgs = append(msgs, &pgoutput.Insert{RelationID: 1, New: pgoutput.Tuple{null, null, null}})
	}
	if _, err := feedAll(t, &a, msgs...); !errors.Is(err, ErrTxnTooLarge) {
		t.Fatalf("err = %v, want ErrTxnTooLarge", err)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := Config{DSN: "", Slot: "Bad-Name", Publication: "", Tables: []change.TableID{{Name: "x"}}, StatusInterval: -1}
	err := bad.Validate()
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"source.dsn", "source.slot", "source.publication", "source.tables", "status_interval"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
	good := Config{DSN: "postgres://u@h/db", Slot: "silt_1", Publication: "silt"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestErrorMessages(t *testing.T) {
	events := change.TableID{Schema: "public", Name: "events"}
	cases := []struct {
		err      error
		sentinel error
		want     string
	}{
		{&ConnectError{Addr: "127.0.0.1:5999", Cause: "connection refused"}, ErrUnreachable,
			"cannot connect to PostgreSQL at 127.0.0.1:5999: connection refused; check source.dsn and that the server is running"},
		{&WALLevelError{Level: "replica"}, ErrWALLevel,
			"PostgreSQL wal_level is 'replica' but silt needs 'logical': run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL"},
		{&TableError{Table: events, Err: ErrNoPrimaryKey}, ErrNoPrimaryKey,
			"table public.events has no primary key: add one (ALTER TABLE public.events ADD PRIMARY KEY (...)) or use a unique index (REPLICA IDENTITY USING INDEX), or set source.keyless: append (or source.keyless_tables.public.events: append) to capture it as an append-only change log, or remove it from source.tables"},
		{&TableError{Table: events, Err: ErrNoPrimaryKey, IdentityFull: true, More: 1}, ErrNoPrimaryKey,
			"table public.events has REPLICA IDENTITY FULL but no primary key (identical rows cannot be told apart, so it cannot be mirrored): add one (ALTER TABLE public.events ADD PRIMARY KEY (...)) or use a unique index (REPLICA IDENTITY USING INDEX), or set source.keyless: append (or source.keyless_tables.public.events: append) to capture it as an append-only change log, or remove it from source.tables (and 1 more tables like it)"},
		{&TableError{Table: events, Err: ErrMissingTable, More: 2}, ErrMissingTable,
			"table public.events does not exist: create it, or remove it from source.tables (and 2 more tables like it)"},
	}
	for _, c := range cases {
		if got := c.err.Error(); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
		if !errors.Is(c.err, c.sentinel) {
			t.Errorf("%T does not wrap %v", c.err, c.sentinel)
		}
	}
}

// insertBytes encodes a pgoutput Insert of (id, v, NULL) for relation 1.
func insertBytes(id, v string) []byte {
	b := []byte{'I', 0, 0, 0, 1, 'N', 0, 3}
	for _, s := range []string{id, v} {
		b = append(b, 't', 0, 0, byte(len(s)>>8), byte(len(s)))
		b = append(b, s...)
	}
	return append(b, 'n')
}

// TestAssembleReusesMemory: row messages decoded through the assembler's
// arena, slabs and Decoder stay intact until their transaction is
// delivered, over more than one arena block, tuple slab and Change chunk;
// the next transaction (which reuses that memory) is delivered intact too;
// and once warm the assembler allocates almost nothing per change.
func TestAssembleReusesMemory(t *testing.T) {
	var a assembler
	const n = 3000 // > slabChanges, > one 64 KiB arena block, > one tuple slab
	msgs := make([][][]byte, 4)
	for txn := range msgs {
		for i := range n {
			msgs[txn] = append(msgs[txn], insertBytes(fmt.Sprint(i), strings.Repeat("v", 40)+fmt.Sprint(txn, "-", i)))
		}
	}
	buf := make([]byte, 0, 256)
	begin, rel, commitMsg := &pgoutput.Begin{}, relMsg(1, "a"), &pgoutput.Commit{}
	var bad error
	run := func(txn int) {
		*begin = pgoutput.Begin{FinalLSN: change.LSN(100 * txn), XID: uint32(txn)}
		*commitMsg = pgoutput.Commit{CommitLSN: begin.FinalLSN, EndLSN: begin.FinalLSN + 10}
		if _, err := a.feed(begin, 10); err != nil {
			t.Fatal(err)
		}
		if _, err := a.feed(rel, 10); err != nil {
			t.Fatal(err)
		}
		for _, msg := range msgs[txn] {
			// One receive buffer overwritten by every message, as pgconn's.
			buf = append(buf[:0], msg...)
			m, err := a.decode(buf)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.feed(m, len(buf)); err != nil {
				t.Fatal(err)
			}
		}
		commit, err := a.feed(commitMsg, 10)
		if err != nil || commit == nil {
			t.Fatalf("commit: %v", err)
		}
		err = a.deliver(commit, 1<<20, func(changes []*change.Change, last bool) error {
			if len(changes) != n || !last {
				return fmt.Errorf("txn %d: %d changes (last %v), want %d", txn, len(changes), last, n)
			}
			for i, c := range changes {
				want := msgs[txn][i]
				got := insertBytes(string(c.New[0].Data), string(c.New[1].Data))
				if c.Pos != uint32(i) || c.New[2].Kind != change.Null || string(got) != string(want) {
					return fmt.Errorf("txn %d change %d: pos %d, new %s %s %c", txn, i, c.Pos, c.New[0].Data, c.New[1].Data, c.New[2].Kind)
				}
			}
			return nil
		})
		if err != nil && bad == nil {
			bad = err
		}
	}
	run(0)
	run(1)
	if bad != nil {
		t.Fatal(bad)
	}
	// Delivery checks allocate (insertBytes, strings); count the assembler
	// alone: feed and decode of a warm transaction.
	allocs := testing.AllocsPerRun(2, func() {
		*begin = pgoutput.Begin{FinalLSN: 300, XID: 3}
		a.feed(begin, 10)
		a.feed(rel, 10)
		for _, msg := range msgs[3] {
			buf = append(buf[:0], msg...)
			m, _ := a.decode(buf)
			a.feed(m, len(buf))
		}
		*commitMsg = pgoutput.Commit{CommitLSN: 300, EndLSN: 310}
		a.feed(commitMsg, 10)
	})
	if perChange := allocs / n; perChange > 0.05 {
		t.Errorf("%.3f allocations per change in a warm transaction (%v per transaction), want about 0", perChange, allocs)
	}
	run(2)
	if bad != nil {
		t.Fatal(bad)
	}
}

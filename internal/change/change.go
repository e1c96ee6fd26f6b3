// Package change is silt's shared vocabulary: LSNs, operations, row images
// and the change event that flows from capture through the stream to Bronze.
//
// It imports only the standard library so every stage can depend on it.
package change

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// LSN is a PostgreSQL log sequence number.
type LSN uint64

// String formats the LSN the way PostgreSQL does: "16/B374D848".
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l))
}

// ParseLSN parses the "XXX/XXX" text form.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("parse LSN %q: missing '/'", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parse LSN %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parse LSN %q: %w", s, err)
	}
	return LSN(h<<32 | l), nil
}

// Op is the kind of a change.
type Op uint8

const (
	OpInsert Op = 'I'
	OpUpdate Op = 'U'
	OpDelete Op = 'D'
	// OpTruncate removes every row of the table (no row image).
	OpTruncate Op = 'T'
	// OpLoad is a row read by the initial snapshot (full load), not a
	// logged change. It carries New only and acts as an insert that is older
	// than every logged change of its table: its LSN is the slot's
	// consistent point minus one, which sorts before every commit LSN the
	// slot can deliver (see internal/source/pgsnap).
	OpLoad Op = 'L'
)

func (o Op) String() string {
	switch o {
	case OpInsert:
		return "insert"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	case OpTruncate:
		return "truncate"
	case OpLoad:
		return "load"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Valid reports whether o is one of the known operations.
func (o Op) Valid() bool {
	switch o {
	case OpInsert, OpUpdate, OpDelete, OpTruncate, OpLoad:
		return true
	}
	return false
}

// TableID names a source table.
type TableID struct {
	Schema string
	Name   string
}

// String is "schema.name".
func (t TableID) String() string { return t.Schema + "." + t.Name }

// Column describes one column of a source relation.
type Column struct {
	Name    string
	TypeOID uint32
	TypeMod int32
	// Key is true for columns of the replica identity (normally the primary key).
	Key bool
}

// Relation is the shape of a source table as announced by the source
// (pgoutput Relation message). Relations are immutable once built; a schema
// change produces a new *Relation.
type Relation struct {
	ID      uint32 // source relation OID
	Table   TableID
	Columns []Column
}

// KeyIndexes returns the positions of the key columns.
func (r *Relation) KeyIndexes() []int {
	var idx []int
	for i, c := range r.Columns {
		if c.Key {
			idx = append(idx, i)
		}
	}
	return idx
}

// DatumKind says what a Datum holds.
type DatumKind uint8

const (
	// Null is SQL NULL.
	Null DatumKind = 'n'
	// Text is a value in PostgreSQL's text output format.
	Text DatumKind = 't'
	// Unchanged is an unchanged TOASTed value that the source did not send;
	// the previous value of the column still holds.
	Unchanged DatumKind = 'u'
	// Absent means the column is not part of this image (for example a
	// non-key column of a DEFAULT replica identity old image).
	Absent DatumKind = 'a'
	// Binary is a value in PostgreSQL's binary send format, only of the
	// types bronze.AppendBinary reads (bool, int2/4/8, float4/8, date,
	// timestamp, timestamptz). Only the initial snapshot produces it, for
	// rows it writes straight to Bronze; it never enters the stream.
	Binary DatumKind = 'b'
)

// Datum is one column value in PostgreSQL text format. Data may alias a
// buffer owned by the producer; see the owner's documentation.
type Datum struct {
	Kind DatumKind
	Data []byte
}

// Change is one row-level change event.
type Change struct {
	Rel *Relation
	Op  Op
	// LSN is the commit LSN of the source transaction. Together with Pos it
	// totally orders changes: later (LSN, Pos) means later change.
	LSN LSN
	// Pos is the position of this change within its transaction, from 0.
	Pos uint32
	// EndLSN is the end of the transaction's commit record; the source may be
	// acknowledged up to it once this transaction is durable downstream.
	EndLSN LSN
	// XID is the source transaction id.
	XID uint32
	// CommitTime is the source commit timestamp.
	CommitTime time.Time
	// New is the row after the change (insert, update). Same length as Rel.Columns.
	New []Datum
	// Old is the row before the change (delete; update when the key changed
	// or REPLICA IDENTITY FULL). Nil when not sent.
	Old []Datum
}

// Less reports whether change position (l1,p1) is before (l2,p2).
func Less(l1 LSN, p1 uint32, l2 LSN, p2 uint32) bool {
	if l1 != l2 {
		return l1 < l2
	}
	return p1 < p2
}

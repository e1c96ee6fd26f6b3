package pgrepl

import (
	"fmt"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/source/pgoutput"
)

// changeOverhead approximates the memory of one buffered change beyond its
// message bytes (the Change struct, its pointer and the datum slices).
const changeOverhead = 128

// assembler turns the decoded message sequence of one replication session
// into committed transactions. It is pure (no I/O) so it can be tested
// without a server.
type assembler struct {
	rels     pgoutput.RelationCache
	maxBytes int64

	inTxn bool
	begin pgoutput.Begin
	txn   []*change.Change
	bytes int64
}

// feed processes one message whose encoded size is size bytes. When m is a
// Commit it returns it, and a.txn then holds the transaction's changes with
// LSN, Pos, EndLSN, XID and CommitTime set, until the next call to feed.
func (a *assembler) feed(m pgoutput.Message, size int) (*pgoutput.Commit, error) {
	switch m := m.(type) {
	case *pgoutput.Begin:
		if a.inTxn {
			return nil, fmt.Errorf("%w: Begin (xid %d) inside transaction %d", ErrProtocol, m.XID, a.begin.XID)
		}
		a.inTxn = true
		a.begin = *m
		// Drop references to the previous transaction; shrink a slice that
		// one huge transaction grew far beyond the usual.
		clear(a.txn)
		if cap(a.txn) > 4096 {
			a.txn = nil
		}
		a.txn = a.txn[:0]
		a.bytes = 0
	case *pgoutput.Commit:
		if !a.inTxn {
			return nil, fmt.Errorf("%w: Commit at %v without Begin", ErrProtocol, m.CommitLSN)
		}
		if m.CommitLSN != a.begin.FinalLSN {
			return nil, fmt.Errorf("%w: Commit LSN %v differs from Begin's final LSN %v", ErrProtocol, m.CommitLSN, a.begin.FinalLSN)
		}
		a.inTxn = false
		for i, c := range a.txn {
			c.LSN = m.CommitLSN
			c.Pos = uint32(i)
			c.EndLSN = m.EndLSN
			c.XID = a.begin.XID
			c.CommitTime = m.CommitTime
		}
		return m, nil
	case *pgoutput.Relation:
		a.rels.Apply(m)
	case *pgoutput.Insert:
		rel, err := a.row(m.RelationID, m.New, size)
		if err != nil {
			return nil, err
		}
		a.txn = append(a.txn, &change.Change{Rel: rel, Op: change.OpInsert, New: m.New})
	case *pgoutput.Update:
		rel, err := a.row(m.RelationID, m.New, size)
		if err != nil {
			return nil, err
		}
		c := &change.Change{Rel: rel, Op: change.OpUpdate, New: m.New}
		if m.OldKind != 0 {
			if c.Old, err = oldImage(rel, m.OldKind, m.Old); err != nil {
				return nil, err
			}
		}
		a.txn = append(a.txn, c)
	case *pgoutput.Delete:
		rel, err := a.row(m.RelationID, nil, size)
		if err != nil {
			return nil, err
		}
		c := &change.Change{Rel: rel, Op: change.OpDelete}
		if c.Old, err = oldImage(rel, m.OldKind, m.Old); err != nil {
			return nil, err
		}
		a.txn = append(a.txn, c)
	case *pgoutput.Truncate:
		if !a.inTxn {
			return nil, fmt.Errorf("%w: Truncate outside a transaction", ErrProtocol)
		}
		for _, id := range m.RelationIDs {
			rel, err := a.rels.Lookup(id)
			if err != nil {
				return nil, fmt.Errorf("%w: truncate: %w", ErrProtocol, err)
			}
			if err := a.grow(changeOverhead); err != nil {
				return nil, err
			}
			a.txn = append(a.txn, &change.Change{Rel: rel, Op: change.OpTruncate})
		}
	case *pgoutput.Origin, *pgoutput.Type, *pgoutput.LogicalMessage:
		// Origin: silt does not filter by origin. Type: the type OID in the
		// Relation suffices. Messages are not requested.
	default:
		return nil, fmt.Errorf("%w: %T", ErrProtocol, m)
	}
	return nil, nil
}

// row checks a row message and returns its relation.
func (a *assembler) row(relID uint32, tuple pgoutput.Tuple, size int) (*change.Relation, error) {
	if !a.inTxn {
		return nil, fmt.Errorf("%w: row change outside a transaction", ErrProtocol)
	}
	rel, err := a.rels.Lookup(relID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	if tuple != nil && len(tuple) != len(rel.Columns) {
		return nil, fmt.Errorf("%w: row of %s has %d columns, relation has %d", ErrProtocol, rel.Table, len(tuple), len(rel.Columns))
	}
	if err := a.grow(int64(size) + changeOverhead); err != nil {
		return nil, err
	}
	return rel, nil
}

func (a *assembler) grow(n int64) error {
	a.bytes += n
	if a.maxBytes > 0 && a.bytes > a.maxBytes {
		return fmt.Errorf("%w: transaction %d exceeds %d bytes (source.max_txn_bytes)", ErrTxnTooLarge, a.begin.XID, a.maxBytes)
	}
	return nil
}

// oldImage returns the old row image of an update or delete. A 'K' image
// carries only the replica identity columns; PostgreSQL sends the others as
// NULL, which would be indistinguishable from a real NULL, so they become
// change.Absent.
func oldImage(rel *change.Relation, kind byte, t pgoutput.Tuple) ([]change.Datum, error) {
	if len(t) != len(rel.Columns) {
		return nil, fmt.Errorf("%w: old row of %s has %d columns, relation has %d", ErrProtocol, rel.Table, len(t), len(rel.Columns))
	}
	if kind == 'K' {
		for i := range t {
			if !rel.Columns[i].Key {
				t[i] = change.Datum{Kind: change.Absent}
			}
		}
	}
	return t, nil
}

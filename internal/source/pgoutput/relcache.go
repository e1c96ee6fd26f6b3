package pgoutput

import (
	"fmt"

	"github.com/silt-dev/silt/internal/change"
)

// RelationCache turns Relation messages into *change.Relation values and
// remembers them by relation OID, so row messages (which carry only the OID)
// can be resolved. A Relation message with the same shape as the cached one
// keeps the cached pointer; a changed shape (DDL) replaces it with a new
// *change.Relation, leaving earlier ones untouched.
//
// A column is a key column when its Relation flag is 1. Note that for
// REPLICA IDENTITY FULL PostgreSQL flags every column; set Keys to supply
// the real key (the primary key) for such tables.
//
// The zero value is ready to use. Not safe for concurrent use.
type RelationCache struct {
	// Keys, if set, is asked for the key column names of a table whose
	// replica identity is FULL. A non-empty answer replaces the flags.
	Keys func(change.TableID) []string

	m map[uint32]*change.Relation
}

// Apply records rel and returns the relation now current for its OID.
func (c *RelationCache) Apply(rel *Relation) *change.Relation {
	r := &change.Relation{
		ID:      rel.ID,
		Table:   change.TableID{Schema: rel.Namespace, Name: rel.Name},
		Columns: make([]change.Column, len(rel.Columns)),
	}
	var keys map[string]bool
	if rel.ReplicaIdentity == IdentityFull && c.Keys != nil {
		if names := c.Keys(r.Table); len(names) > 0 {
			keys = make(map[string]bool, len(names))
			for _, n := range names {
				keys[n] = true
			}
		}
	}
	for i, col := range rel.Columns {
		key := col.Key()
		if keys != nil {
			key = keys[col.Name]
		}
		r.Columns[i] = change.Column{Name: col.Name, TypeOID: col.TypeOID, TypeMod: col.TypeMod, Key: key}
	}
	if have, ok := c.m[rel.ID]; ok && sameRelation(have, r) {
		return have
	}
	if c.m == nil {
		c.m = make(map[uint32]*change.Relation)
	}
	c.m[rel.ID] = r
	return r
}

// Get returns the current relation for OID id.
func (c *RelationCache) Get(id uint32) (*change.Relation, bool) {
	r, ok := c.m[id]
	return r, ok
}

// Reset forgets every relation. PostgreSQL sends Relation messages again on
// a new replication session, so call Reset when reconnecting.
func (c *RelationCache) Reset() { clear(c.m) }

// ErrUnknownRelation is returned (wrapped) when a row message names a
// relation that no Relation message announced.
var ErrUnknownRelation = fmt.Errorf("%w: row for a relation not announced by a Relation message", ErrMalformed)

// Lookup is Get returning an error wrapping ErrUnknownRelation.
func (c *RelationCache) Lookup(id uint32) (*change.Relation, error) {
	r, ok := c.m[id]
	if !ok {
		return nil, fmt.Errorf("relation OID %d: %w", id, ErrUnknownRelation)
	}
	return r, nil
}

func sameRelation(a, b *change.Relation) bool {
	if a.ID != b.ID || a.Table != b.Table || len(a.Columns) != len(b.Columns) {
		return false
	}
	for i := range a.Columns {
		if a.Columns[i] != b.Columns[i] {
			return false
		}
	}
	return true
}

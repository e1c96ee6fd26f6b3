package pgsnap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/change"
)

// StateKey is the lake key of the snapshot state document.
const StateKey = "_silt/snapshot/state.json"

// Phases of a snapshot.
const (
	// PhaseCreating is written before the slot is created. Found at start,
	// it means silt stopped between creating the slot and recording its
	// snapshot: the slot (which nothing has consumed) must be dropped and
	// created again.
	PhaseCreating = "creating"
	// PhaseRunning: the plan is recorded; chunks not marked done are still
	// to be copied.
	PhaseRunning = "running"
	// PhaseDone: every chunk of every table is durable in Bronze.
	PhaseDone = "done"
)

// State is the durable record of a snapshot: its identity, the plan, and
// which chunks are durable downstream. It is one JSON document in the lake
// (StateKey), replaced atomically (blob.Store.Put) after each change; one
// pipeline owns it.
type State struct {
	Version int    `json:"version"`
	Slot    string `json:"slot"`
	Phase   string `json:"phase"`
	// ConsistentLSN is the slot's consistent point. Snapshot rows carry
	// LSN = ConsistentLSN - 1 (LoadLSN).
	ConsistentLSN string `json:"consistent_lsn,omitempty"`
	// SnapshotName is the exported snapshot of the first run (informational;
	// a resumed run copies the rest in a newer snapshot).
	SnapshotName string `json:"snapshot_name,omitempty"`
	// CommitTime is the commit time given to snapshot rows (the slot's
	// creation), so that a redone chunk lands in the same Bronze partition.
	CommitTime time.Time     `json:"commit_time"`
	Tables     []*TableState `json:"tables,omitempty"`
	// Resumes counts how many runs resumed an unfinished snapshot.
	Resumes int `json:"resumes,omitempty"`
}

// TableState is one table's plan and progress.
type TableState struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
	OID    uint32 `json:"oid"`
	// RelFileNode identifies the table's heap file when the plan was made;
	// block ranges are only meaningful for that file. A resumed run that
	// finds another file (VACUUM FULL, CLUSTER, TRUNCATE, a rewriting ALTER)
	// plans the table again and copies it whole.
	RelFileNode uint32  `json:"relfilenode"`
	Pages       uint32  `json:"pages"`
	EstRows     int64   `json:"est_rows"`
	Chunks      []Chunk `json:"chunks"`
	// Done: every chunk is durable in Bronze.
	Done bool `json:"done,omitempty"`
	// Merged: Silver has merged the table's snapshot rows (set by the
	// pipeline after silver.ProcessLoad caught up).
	Merged bool `json:"merged,omitempty"`
	// Gen is the plan's generation: 1 for a first plan, one more each time
	// the table is planned again (a rewritten heap). With the chunk index
	// it identifies a chunk written straight to its destination
	// (ChunkSink: txn appId ChunkAppID(i), version Gen).
	Gen int64 `json:"gen,omitempty"`
	// Added: the table joined the publication after the initial snapshot
	// (Snapshot.AddTable); it is planned (Chunks) by the run that copies it.
	Added bool `json:"added,omitempty"`
}

// Chunk is one unit of copying and of resumption.
type Chunk struct {
	Range
	// Done: the chunk's rows are durable downstream.
	Done bool  `json:"done,omitempty"`
	Rows int64 `json:"rows,omitempty"`
}

// ChunkAppID is the txn appId of chunk i in its Bronze table.
func ChunkAppID(i int) string { return "silt-snap-" + strconv.Itoa(i) }

// ID returns the table's id.
func (t *TableState) ID() change.TableID { return change.TableID{Schema: t.Schema, Name: t.Name} }

// LoadLSN is the LSN snapshot rows carry: one below the consistent point.
// Every transaction the slot delivers commits at or after the consistent
// point (a commit record may start exactly there), so (LoadLSN, pos) sorts
// before every logged change of the slot, whatever pos is.
func (s *State) LoadLSN() (change.LSN, error) {
	c, err := change.ParseLSN(s.ConsistentLSN)
	if err != nil {
		return 0, fmt.Errorf("snapshot state: %w", err)
	}
	if c == 0 {
		return 0, errors.New("snapshot state: consistent LSN is 0")
	}
	return c - 1, nil
}

// Complete reports whether every table is done.
func (s *State) Complete() bool {
	if s.Phase == PhaseDone {
		return true
	}
	for _, t := range s.Tables {
		if !t.Done {
			return false
		}
	}
	return s.Phase == PhaseRunning
}

// Table returns the state of table id, or nil.
func (s *State) Table(id change.TableID) *TableState {
	for _, t := range s.Tables {
		if t.Schema == id.Schema && t.Name == id.Name {
			return t
		}
	}
	return nil
}

// LoadState reads the state; it returns (nil, nil) when there is none.
func LoadState(ctx context.Context, store blob.Store) (*State, error) {
	raw, err := store.Get(ctx, StateKey)
	if errors.Is(err, blob.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot state: %w", err)
	}
	var s State
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("snapshot state %s is corrupt: %w", StateKey, err)
	}
	if s.Version != 1 {
		return nil, fmt.Errorf("snapshot state %s has version %d; this silt reads version 1", StateKey, s.Version)
	}
	return &s, nil
}

// SaveState replaces the state document atomically.
func SaveState(ctx context.Context, store blob.Store, s *State) error {
	s.Version = 1
	raw, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return err
	}
	if err := store.Put(ctx, StateKey, raw); err != nil {
		return fmt.Errorf("write snapshot state: %w", err)
	}
	return nil
}

package pipeline

// Initial load (snapshot) wiring. The design is in internal/source/pgsnap's
// package doc; in short:
//
//   - Open: when silt creates the slot (source.snapshot: initial), it does
//     so with an exported snapshot, and pgsnap imports it into its worker
//     connections and records the plan before capture ever starts. A
//     snapshot state left unfinished by an earlier run is resumed.
//   - Run: pgsnap copies chunks alongside capture; each chunk worker writes
//     its chunk straight to the table's Bronze Delta table, one blind-append
//     commit per chunk with txn(silt-snap-<chunk>, plan generation)
//     (BeginChunk, bronze.Loader), beside the Bronze writer. A chunk whose
//     Bronze table needs a schema change first goes through the stream
//     (Emit: no dedup, no ack) and is done once the Bronze watermark covers
//     it (WaitDurable).
//   - Tables added to the publication are found at start (discoverTables)
//     or by their first change (noteTableForSnapshot), then copied the same
//     way.
//   - Silver: a table whose snapshot is being copied is not merged
//     (GateWait); once all its chunks are in Bronze, its snapshot rows are
//     merged first (silver.ProcessLoad), then its logged changes as usual.
//   - Dedup after a restart looks through snapshot rows for the last
//     logged change of each shard (lastLogged).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/silt-dev/silt/internal/bronze"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/silver"
	"github.com/silt-dev/silt/internal/source/pgrepl"
	"github.com/silt-dev/silt/internal/source/pgsnap"
	"github.com/silt-dev/silt/internal/stream"
)

func (p *Pipeline) snapConfig() pgsnap.Config {
	s := p.cfg.Source
	return pgsnap.Config{
		DSN:            SessionDSN(s.DSN),
		Password:       s.Password,
		Publication:    s.Publication,
		TablesParallel: s.SnapshotTablesParallel,
		ChunksPerTable: s.SnapshotChunksPerTable,
		ChunkRows:      s.SnapshotChunkRows,
		// A restart or a network cut while copying: resume the unfinished
		// chunks in a new snapshot (backoff as for capture).
		Retryable: func(err error) bool { return errors.Is(err, pgsnap.ErrConnLost) || pgrepl.Retryable(err) },
		RetryMin:  captureBackoffMin,
		RetryMax:  captureBackoffMax,
		Logger:    p.logger,
	}
}

// openSnapshot runs before pgrepl.Open. It loads the snapshot state, or,
// with source.snapshot initial and no slot yet, creates the slot with an
// exported snapshot and starts a snapshot in it. It also loads the domain
// types Bronze resolves.
func (p *Pipeline) openSnapshot(ctx context.Context, tables []change.TableID) error {
	src := p.cfg.Source
	if src.Snapshot == "never" {
		return nil
	}
	cfg := p.snapConfig()
	snap, err := pgsnap.Open(ctx, cfg, p.store)
	if err != nil {
		return err
	}
	if snap != nil && snap.State().Phase != pgsnap.PhaseCreating {
		p.snap = snap // unfinished (resumed by Run) or finished (Silver may still have to merge it)
		return nil
	}
	if snap != nil {
		// A previous run stopped after recording PhaseCreating: if it got as
		// far as creating the slot, nothing has consumed it (capture starts
		// only after the plan is recorded), so drop it and start over.
		err := pgrepl.DropSlot(ctx, SessionDSN(src.DSN), src.Password, src.Slot)
		var se *pgrepl.SlotError
		if err != nil && !(errors.As(err, &se) && errors.Is(se.Err, pgrepl.ErrSlotNotFound)) {
			return fmt.Errorf("snapshot: drop the slot of an unfinished snapshot setup: %w", err)
		}
	}
	if err := pgsnap.WriteCreating(ctx, p.store, src.Slot); err != nil {
		return err
	}
	created, err := pgrepl.CreateSlotWithSnapshot(ctx, pgrepl.Config{
		DSN: SessionDSN(src.DSN), Password: src.Password, Slot: src.Slot, Publication: src.Publication, Tables: tables,
	}, func(ctx context.Context, es pgrepl.ExportedSnapshot) error {
		s, err := pgsnap.Create(ctx, cfg, p.store, es.Slot, pgsnap.Export{Name: es.Name, ConsistentLSN: es.ConsistentLSN, Created: es.Created})
		p.snap = s
		return err
	})
	if err != nil {
		return err
	}
	if !created {
		// The slot was there before: it did not start with a snapshot silt
		// could import, so there is no initial load.
		p.logger.Info("replication slot exists; no initial snapshot", "slot", src.Slot)
		return pgsnap.DeleteState(ctx, p.store)
	}
	st := p.snap.State()
	p.logger.Info("created replication slot with an exported snapshot", "slot", src.Slot, "consistent_lsn", st.ConsistentLSN, "tables", len(st.Tables))
	return nil
}

// typeResolver is Bronze's resolver of domain types.
func (p *Pipeline) typeResolver() bronze.TypeResolver {
	if p.domains == nil {
		return nil
	}
	return p.domains
}

// closeSnapshot releases the snapshot's connections (idempotent).
func (p *Pipeline) closeSnapshot() {
	if p.snap != nil {
		p.snap.Close()
	}
}

// startSnapshot starts copying an unfinished snapshot alongside capture. The
// returned channel is closed when copying has stopped; a failure is sent on
// errc first.
func (p *Pipeline) startSnapshot(ctx context.Context) (done <-chan struct{}, errc <-chan error) {
	d := make(chan struct{})
	ec := make(chan error, 1)
	if p.snap == nil {
		close(d)
		return d, ec
	}
	go func() {
		stage(ctx, "snapshot")
		defer close(d)
		for {
			if err := p.snap.Run(ctx, p); err != nil {
				if ctx.Err() == nil {
					ec <- fmt.Errorf("snapshot: %w", err)
				}
				return
			}
			select { // a table added to the publication (noteTableForSnapshot)
			case <-p.snap.Wake():
			case <-ctx.Done():
				return
			}
		}
	}()
	return d, ec
}

// discoverTables adds to the snapshot every published table it does not
// know (added to the publication while silt was stopped, or through
// source.tables by pgrepl.Open), so that they are copied, then streamed.
// It runs after pgrepl.Open and before capture starts.
func (p *Pipeline) discoverTables(ctx context.Context) error {
	if p.snap == nil {
		return nil
	}
	added, err := p.snap.Discover(ctx)
	if err != nil {
		return err
	}
	for _, t := range added {
		p.logger.Info("table in the publication without a snapshot: copying it, then streaming", "table", t.String())
	}
	return nil
}

// noteTableForSnapshot is called by capture for every change before it is
// appended: the first change of a table the snapshot does not know (added
// to the publication while silt runs) records the table in the snapshot
// state (durably, GateWait) before anything of it reaches the stream, so
// Silver merges its snapshot rows before any of its changes.
func (p *Pipeline) noteTableForSnapshot(ctx context.Context, c *change.Change) error {
	if p.snap == nil || p.snapKnown[c.Rel.Table] {
		return nil
	}
	if !p.snap.Knows(c.Rel.Table) {
		if _, err := p.snap.AddTable(ctx, c.Rel.Table, c.Rel.ID); err != nil {
			return err
		}
	}
	if p.snapKnown == nil {
		p.snapKnown = map[change.TableID]bool{}
	}
	p.snapKnown[c.Rel.Table] = true
	return nil
}

// SnapshotProgress returns the initial load's progress (rows, rows/s and
// ETA per table); the zero value when there is no snapshot.
func (p *Pipeline) SnapshotProgress() pgsnap.Progress { return p.snap.Stats() }

// Emit implements pgsnap.Sink: snapshot rows go to the stream like logged
// changes (same partition keys, so a key's snapshot row and its changes
// share a shard) but without dedup and without acknowledgement. The mark
// is the per-shard stream end after the append.
func (p *Pipeline) Emit(ctx context.Context, rows []*change.Change) (pgsnap.Mark, error) {
	if len(rows) > 0 {
		entries := make([]stream.Entry, len(rows))
		var buf []byte
		type span struct{ ks, ds, end int }
		spans := make([]span, len(rows))
		for i, c := range rows {
			ks := len(buf)
			buf = append(buf, p.part.Key(c)...)
			ds := len(buf)
			buf = change.AppendEncode(buf, c)
			spans[i] = span{ks, ds, len(buf)}
		}
		for i, sp := range spans {
			entries[i] = stream.Entry{PartitionKey: buf[sp.ks:sp.ds:sp.ds], Data: buf[sp.ds:sp.end:sp.end]}
		}
		if err := p.log.Append(ctx, entries); err != nil {
			return nil, fmt.Errorf("append to stream: %w", err)
		}
	}
	ends := make([]int64, p.log.Shards())
	for s := range ends {
		e, err := p.log.End(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("stream end of shard %d: %w", s, err)
		}
		ends[s] = e
	}
	return ends, nil
}

// BeginChunk implements pgsnap.ChunkSink: a snapshot chunk is written
// straight to its table's Bronze Delta table by the chunk's worker, as one
// blind-append commit carrying txn(appID, version) (bronze.Loader), not
// through the stream and the single Bronze writer. A chunk whose table
// needs a schema change first goes through the stream (Emit).
func (p *Pipeline) BeginChunk(ctx context.Context, rel *change.Relation, appID string, version int64) (pgsnap.ChunkWriter, bool, error) {
	p.loaderOnce.Do(func() {
		p.loader = bronze.NewLoader(p.store, bronze.Options{
			PartitionBy:       p.cfg.Bronze.PartitionBy,
			TargetFileSize:    int64(p.cfg.Bronze.TargetFileSize),
			SnapshotZstdLevel: p.cfg.Bronze.SnapshotZstdLevel,
			Types:             p.typeResolver(),
		})
	})
	c, done, err := p.loader.Begin(ctx, rel, appID, version)
	if errors.Is(err, bronze.ErrSchemaBehind) {
		p.logger.Info("snapshot chunk goes through the stream: its Bronze table needs a schema change first", "table", rel.Table.String(), "chunk", appID)
		return nil, false, nil
	}
	if err != nil || done {
		return nil, done, err
	}
	return &chunkWriter{p: p, c: c}, false, nil
}

type chunkWriter struct {
	p *Pipeline
	c *bronze.LoadChunk
}

func (w *chunkWriter) Append(rows []*change.Change) error { return w.c.Append(rows) }

func (w *chunkWriter) Commit(ctx context.Context) error {
	v, err := w.c.Commit(ctx)
	if err != nil || v < 0 {
		return err
	}
	w.p.stats.BronzeCommits.Add(1)
	w.p.stats.BronzeRows.Add(int64(w.c.Rows()))
	w.p.noteTable(w.c.Table()) // Silver learns tables from Bronze commits
	return nil
}

func (w *chunkWriter) Release() { w.c.Release() }

// ReadsBinary implements pgsnap.BinaryChunkWriter.
func (w *chunkWriter) ReadsBinary(c change.Column) bool { return bronze.ReadsBinary(c) }

// WaitDurable implements pgsnap.Sink: it waits until the Bronze watermark
// covers the mark.
func (p *Pipeline) WaitDurable(ctx context.Context, m pgsnap.Mark) error {
	ends, ok := m.([]int64)
	if !ok {
		return fmt.Errorf("snapshot: mark of type %T", m)
	}
	t := time.NewTicker(25 * time.Millisecond) // Bronze commits every flush_interval; polling is cheap
	defer t.Stop()
	for {
		if pos := p.watermark(); pos != nil && below(ends, pos) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// snapshotGate applies the snapshot's Silver rule to table t: skip it while
// its snapshot is copied; merge its snapshot rows once they are all in
// Bronze. skip reports that Silver must leave the table alone this pass.
func (p *Pipeline) snapshotGate(ctx context.Context, proc *silver.Processor, t change.TableID) (skip bool, err error) {
	switch p.snap.Gate(t) {
	case pgsnap.GateWait:
		return true, nil
	case pgsnap.GateMerge:
		for {
			res, err := proc.ProcessLoad(ctx, t)
			if err != nil {
				return false, err
			}
			if res.ToVersion < 0 {
				break
			}
			p.stats.SilverBatches.Add(1)
			p.logger.Debug("silver snapshot batch", "table", t.String(), "bronze_to", res.ToVersion, "rows", res.Changes, "upserts", res.Upserts)
		}
		if err := p.snap.MarkMerged(ctx, t); err != nil {
			return false, err
		}
		p.logger.Info("snapshot merged into Silver", "table", t.String())
	}
	return false, nil
}

// lastLogged returns the last logged change (not a snapshot row) of shard s
// whose end offset is end, scanning back over snapshot rows; nil if the
// shard holds none in what retention kept. Missing it only costs
// duplicates: transactions the slot resends are appended again, in order,
// which Silver's (LSN, pos) rule absorbs.
func lastLogged(ctx context.Context, log stream.Log, s int, end int64, cache *change.RelationCache) (*change.Change, error) {
	const window = 512
	for hi := end; hi > 0; {
		lo := max(hi-window, 0)
		var last *change.Change
		for from := lo; from < hi; {
			recs, err := log.Read(ctx, s, from, int(hi-from))
			if errors.Is(err, stream.ErrTrimmed) {
				return last, nil
			}
			if err != nil {
				return nil, fmt.Errorf("stream: read shard %d at %d: %w", s, from, err)
			}
			if len(recs) == 0 {
				break
			}
			for _, r := range recs {
				if r.Offset >= hi {
					break
				}
				c, err := change.Decode(r.Data, cache)
				if err != nil {
					return nil, fmt.Errorf("stream: shard %d offset %d: %w", s, r.Offset, err)
				}
				if c.Op != change.OpLoad {
					last = &change.Change{LSN: c.LSN, Pos: c.Pos, Op: c.Op}
				}
			}
			from = recs[len(recs)-1].Offset + 1
		}
		if last != nil {
			return last, nil
		}
		hi = lo
	}
	return nil, nil
}

// Package pgsnap is the initial load (snapshot) of a PostgreSQL source: it
// copies every table of the publication, in parallel across tables and
// within a table, into the same stream as CDC, without gap or overlap with
// the changes the slot delivers, and resumes after a crash at chunk
// granularity.
//
// # Boundary between snapshot and CDC
//
// The slot is created on a replication connection with
// CREATE_REPLICATION_SLOT ... LOGICAL pgoutput (SNAPSHOT 'export')
// (pgrepl.CreateSlotWithSnapshot; EXPORT_SNAPSHOT before PostgreSQL 15).
// PostgreSQL returns the slot's consistent point C and the name of a
// snapshot that sees exactly the transactions committed before C; the slot
// delivers exactly the transactions that commit at or after C. While the
// exporting connection stays idle, Create opens TablesParallel ×
// ChunksPerTable connections and imports the snapshot into each
// (BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION
// SNAPSHOT), lists the publication's tables and plans them in the
// snapshot, and records the plan (PhaseRunning). Only then does capture
// start streaming from the slot, so every committed row is either in the
// snapshot or in the slot's changes, never both and never neither.
//
// Snapshot rows are change.Changes with Op OpLoad ('L'), LSN = C - 1, Pos =
// the chunk's index, XID 0, CommitTime = the slot's creation time. A commit
// record can start exactly at C, so a delivered change may have LSN = C and
// Pos 0; C - 1 sorts before all of them, whatever Pos is. The relation
// (columns, types, key flags) is built from the catalog the way pgoutput
// announces it, so a key's snapshot row and its later changes share a
// partition key (hence a stream shard) and a Bronze schema.
//
// Values are read in text format through a connection with the session
// settings of pipeline.SessionDSN, so they are printed by the same output
// functions with the same settings as pgoutput's, and parsed by the same
// rule (bronze.AppendText): a value copied by the snapshot and the same
// value captured by CDC land identically.
//
// # Chunks
//
// A table is split into heap block ranges (PlanRanges: about ChunkRows rows
// each, from the planner's rows-per-block or a count of the first blocks;
// the last range is open-ended), read with `ctid >= '(lo,0)' AND ctid <
// '(hi,0)'` (a TID range scan since PostgreSQL 14). At most TablesParallel
// tables and ChunksPerTable chunks of one table are read at once (DMS's
// MaxFullLoadSubTasks and ParallelLoadThreads).
//
// # Durability and resumption
//
// A chunk's rows go straight to their destination when the Sink is a
// ChunkSink (the pipeline: the table's Bronze Delta table, written by the
// chunk's worker, like DMS full load writing to the target): one Parquet
// file set and one blind-append commit per chunk, carrying txn(appId
// ChunkAppID(chunk), version = the table's plan generation Gen) in the same
// atomic commit, so a chunk redone after a crash finds itself committed
// and is skipped, never doubled; a new plan (rewritten heap) gets a new
// Gen. Otherwise (or for a chunk whose Bronze table needs a schema change
// first) the rows are appended to the stream (Emit) and the chunk is
// durable once the Bronze watermark covers them (WaitDurable). A chunk is
// marked done in the state only once it is durable. The state is one JSON document
// in the lake (StateKey), replaced atomically after each change; it records
// C, the plan, each chunk's done flag and row count, and per table whether
// Silver merged its snapshot rows. (A Delta table with txn actions would
// work as well; a document is simpler to read back, and one pipeline owns
// it.)
//
// After a crash (or a clean stop) Run copies the chunks not marked done, in
// a new snapshot: the first worker exports one (pg_export_snapshot) and the
// others import it. Within one process the same happens after a retryable
// error (Config.Retryable: PostgreSQL restarted, a connection was cut, the
// server refused connections while starting): an exported snapshot dies
// with the session that exported it, so Run closes every connection, waits
// (backoff), and copies the unfinished chunks in a new snapshot; chunks
// that finished before the error are still marked done once durable and
// are never copied again.
//
// Why a newer snapshot S (> C) is still correct, for any mix of chunks read
// at C and at newer snapshots:
//
//   - Every snapshot row carries (LoadLSN = C - 1, chunk) and so sorts
//     before every logged change of the slot (LSN >= C), whatever snapshot
//     it was read in.
//   - Every change committed after C reaches Bronze from the slot (its
//     confirmed position only advances once Bronze holds the change).
//   - Silver merges all snapshot rows of a table (ProcessLoad) before any
//     of its logged changes (the pipeline's snapshotGate), then applies the
//     logged changes in (LSN, pos) order. A key's fold is thus: its
//     snapshot rows (none, one, or several: a row an update moved between
//     chunks read at different snapshots, or rows of a chunk redone after
//     a partial copy), then all its changes after C in order.
//   - A key with no change after C did not change since C: every snapshot
//     at or after C saw the same row, so any snapshot row is its value.
//   - A key with changes after C ends at its last change: an insert or
//     update carries the full row except unchanged TOAST columns, which
//     keep the fold's previous value: the last value an earlier change
//     after C sent, or, if none sent it, the value at C, which no change
//     modified since, so every snapshot row holds it too. A row read "too
//     late" (at S, already showing changes between C and S) is overwritten
//     by those same changes and all later ones.
//   - A delete after C removes the row whatever snapshot rows preceded it;
//     its tombstone is at an LSN >= C, and no snapshot row is merged after
//     the table's logged changes start, so none can resurrect the key. A
//     TRUNCATE after C removes every snapshot row (all sort before it), and
//     rows inserted after it arrive as changes.
//
// Block ranges
// only mean something for one heap file: a table whose relfilenode changed
// (VACUUM FULL, CLUSTER, TRUNCATE, a rewriting ALTER TABLE) is planned and
// copied again whole. Rows of a redone chunk that reached Bronze before the
// crash are duplicates with the same (LSN, Pos) and values, or older copies
// that a change supersedes.
//
// A crash between creating the slot and recording the plan leaves the
// state in PhaseCreating: the pipeline then drops the (never consumed) slot
// and starts over.
//
// # Silver
//
// Changes can reach the stream before the snapshot row of the same key
// (the snapshot is still copying its chunk), and Silver merges in
// micro-batches, so merging as rows arrive could resurrect a row deleted
// after C, or lose a TOASTed value an update left unchanged. Hence the
// pipeline keeps Silver away from a table while its snapshot is copied
// (GateWait), then merges the table's snapshot rows alone
// (silver.ProcessLoad, its own progress appId), then its changes as usual
// (silver.Process skips snapshot rows), and records Merged.
//
// # Progress
//
// Stats reports rows, rows/s and ETA per table (ETA from the planner's row
// estimate); the CLI and status output read it through
// pipeline.SnapshotProgress.
//
// # Tables added later
//
// A table T that joins the publication after the snapshot was planned is
// copied, then streamed. The pipeline calls AddTable (a) at start, for
// every published table the state does not know (Discover, after
// pgrepl.Open has added source.tables to the publication), and (b) in
// capture, on the first change of a table the state does not know, before
// that change is appended to the stream. AddTable saves T in the state
// (GateWait) and wakes the runner, which plans and copies T in a new
// snapshot S with the same rows' identity as the initial load: LSN =
// LoadLSN (C - 1), Pos = chunk index.
//
// No gap, no overlap: let A be the commit of the first transaction whose
// changes to T the slot delivers. Every change to T committed from then on
// is delivered (pgoutput decides per change with the catalog as of that
// change; PostgreSQL versions with the 2025 fix distribute the
// publication's invalidation to transactions in progress). S is taken after
// T was found published, i.e. after the ALTER PUBLICATION committed, so it
// sees every transaction committed before A, including T's undelivered
// changes. T's snapshot rows sort before all its logged changes (LoadLSN <
// C <= A), Silver merges them first (GateWait holds T back: in case (b)
// nothing of T is in the stream before AddTable returned; in case (a)
// capture has not started), and its logged changes are then applied in
// order: the argument of "Durability and resumption" applies with A in the
// place of C. Changes between A and S are both in S and logged: a row read
// "too late" is overwritten by them. A crash after AddTable finds T in the
// state; a crash before it has appended nothing of T.
//
// A Bronze table of T that already holds changes merged into Silver (silt
// before this rule, or a state lost) still converges for rows never
// changed since: their snapshot rows are older than any Silver row and
// tombstone, so they fill only what is missing.
//
// # Limits
//
//   - Without a snapshot state (source.snapshot: never, or a slot that
//     existed before silt created it) added tables stream from then on.
//   - A table added while silt runs but never written to afterwards is
//     found at the next start (Discover), not before.
//   - The worker transactions hold back VACUUM's horizon, as pg_dump does.
package pgsnap

// Package ops implements the Delta table operations built on the log layer
// (package delta: snapshots, Txn, conflict rules) and the data-file layer
// (package datafile): MERGE, OPTIMIZE (bin-packing and Z-order) and VACUUM.
//
// # MERGE
//
// Merge is copy-on-write and split in three steps:
//
//  1. plan: the changed keys (MergeSpec.Changed) are indexed; every live
//     file whose partition values and per-file min/max stats (protocol §7)
//     could hold one of them is a candidate. For multi-column keys each
//     column's range is checked on its own. Missing stats never skip a file.
//  2. decide: candidates are read (MergeSpec.Concurrency at a time); each
//     changed key found gets Decider.Decide(key, current row), each key not
//     found gets Decide(key, nil). The outcome is Keep, Upsert (a row) or
//     Delete. Changes (NewChanges) is the plain decider: upserts and deletes
//     reduced to one change per key, with an optional guard (for example
//     the source LSN) so stale changes never overwrite newer rows. Silver
//     supplies its own decider (per-key fold, TOAST, TRUNCATE).
//  3. write and commit: a candidate holding a key whose outcome is not Keep
//     is rewritten without those rows; upserted rows go to new files. The
//     commit removes the rewritten files, records every candidate as read
//     and depends on the whole table (WriteSerializable): a concurrent
//     OPTIMIZE that removed a candidate, or a concurrent non-blind data
//     change, conflicts and the merge is planned again on the latest
//     snapshot (MaxAttempts); concurrent blind appends do not conflict.
//
// Each candidate file is read, folded and written as a pipeline: a
// goroutine decodes up to two records ahead of the fold and another
// encodes up to two behind it (pipeline.go), so even a table of one large
// file keeps two cores busy.
//
// Deletion vectors are not written: silt's log layer refuses to write to
// tables that enable them, so every merge is copy-on-write.
//
// # OPTIMIZE
//
// Optimize bin-packs, per partition, the files smaller than MinFileSize into
// bins of up to TargetFileSize and rewrites each bin of two or more files
// as one (or more) files. With ZOrderBy every selected partition with more
// than one file is rewritten with its rows sorted by the Z-order of the
// given columns (see zorder.go). Removes and adds carry dataChange=false;
// only the removed files are recorded as read, so blind appends never
// conflict; a concurrent removal of one of them makes Optimize plan again.
//
// # VACUUM
//
// Vacuum deletes files under the table root that no version inside the
// retention window needs and that are older than the window (see Vacuum).
// The retention is delta.deletedFileRetentionDuration (default 7 days); a
// shorter one needs Force. DryRun only lists.
//
// Memory: Merge holds a few records and the open output file per worker
// (not the candidate file) plus the upserted rows;
// Optimize holds one bin (about TargetFileSize of Parquet, decoded) per
// worker, and a whole partition when Z-ordering.
package ops

// Package kinesis is a stream.Log over Amazon Kinesis Data Streams. It also
// implements stream.Waiter, stream.Trimmer and stream.StatsReporter.
//
// # Logical shards and offsets
//
// stream.Log promises dense int64 offsets per shard, and the Bronze writer
// stores them as Delta txn versions. Kinesis has neither: its sequence
// numbers are decimal strings of up to 128 bits, sparse, and a shard can be
// split or merged into new shards. So the log keeps its own numbering:
//
//   - Logical shards. Options.Shards (stream.shards) fixes n logical shards
//     for the life of the lake; logical shard i holds the keys that
//     stream.ShardFor maps to i. Each record is sent with ExplicitHashKey =
//     MD5 of its key, so in a stream created with n shards logical shard i
//     is exactly Kinesis shard i (a key in the few hash values where
//     Kinesis's split, at multiples of floor(2^128/n), differs from
//     ShardFor's is moved down into its logical shard). The Kinesis stream
//     may be resharded later: a logical shard is read from every Kinesis
//     shard whose hash range overlaps it, parents before children.
//   - Offsets assigned by the writer. Append numbers each logical shard's
//     records 0, 1, 2, ... and writes the offset and a writer epoch into the
//     Kinesis partition key, "<offset>:<epoch>:<escaped key>" (see
//     encodeKey). Data stays the caller's bytes, so consumers of the DMS
//     format see plain DMS JSON. A reader therefore needs no mapping table:
//     it merges the logical shard's Kinesis shards by offset.
//   - Positions. To start reading at offset o the reader needs, for each
//     Kinesis shard, the sequence number after which the records at or
//     above o lie. Reads record such positions (a small in-memory index);
//     Trim persists the one at or below the trim point to
//     <StateDir>/kinesis-<stream>.json (temp file, fsync, rename, fsync
//     dir), with the writer epoch. With no position at or below o, the
//     reader starts at TRIM_HORIZON and skips to o. Bronze stores offsets
//     in Delta as before; the position file only saves re-reading.
//
// # Writes
//
// One sender goroutine sends PutRecords requests of at most 500 records
// and 5 MiB, one at a time; a record (data plus Kinesis partition key)
// over 1 MiB is refused by Append with stream.ErrTooLarge. Within a logical
// shard records are sent in offset order. When some entries of a request
// fail (ProvisionedThroughputExceeded, InternalFailure), the shard's
// records before its first failure are done and that record and every
// later one of the shard are sent again, even those that succeeded, after
// a per-shard backoff with full jitter: a failed record is never overtaken
// by a later record of the same key, and the other shards keep going. The
// duplicates this leaves in Kinesis carry the same offset and bytes; the
// reader keeps the first copy of each offset and drops the rest. Append
// returns once its records and every earlier record of their shards are
// acknowledged by Kinesis, so End(shard) is exact. A non-retryable error
// (stream missing, access denied) fails the log for good.
//
// Single writer: one process writes a stream at a time (like locallog's
// LOCK, but not enforced). Each Open takes a new epoch above any seen.
// After a crash the writer may have left records past a hole (a later
// record acknowledged, an earlier one never); Open finds End as the end of
// the dense prefix, and the new epoch's first record at End voids every
// record of an older epoch after it.
//
// # Reads
//
// Read(shard, from, max) serves from the logical shard's cursor: per
// Kinesis shard an iterator and a buffer of fetched records. It returns
// the records from `from` on in offset order, at least one when from <
// End, blocking until they arrive. GetRecords is paced per Kinesis shard
// at Options.GetRecordsPerSecond (default 5, the Kinesis limit), shared by
// every logical shard that reads it; a throttled or expired iterator is
// retried after backoff. A Kinesis shard whose parent is still being read
// waits: parents are drained before children. Kinesis retention decides
// how far back reads can go: an offset it has dropped reads as
// stream.ErrTrimmed.
//
// # Goroutines
//
// Open starts the sender and a saver (persists positions once a second when
// Trim moved them). Close stops accepting appends, lets the sender drain
// for at most Options.CloseTimeout, saves positions and waits for both.
package kinesis

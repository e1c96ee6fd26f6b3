// Package locallog is silt's embedded stream.Log: a sharded, segmented,
// append-only log on local disk with Kinesis semantics (see package stream).
// It also implements stream.Trimmer and stream.Waiter.
//
// # Directory layout
//
//	<dir>/LOCK                          advisory lock: one process per log
//	<dir>/META                          {"format":1,"shards":N}, written once (temp, fsync, rename, fsync dir);
//	                                    format 2 after a reshard: also the physical shards (reshard.go)
//	<dir>/shard-0000/
//	    00000000000000000000.seg        segment; the name is the offset of its first record,
//	    00000000000000052113.seg        20 decimal digits so names sort in offset order
//	<dir>/shard-0001/...
//	<dir>/shard-0002/                   a physical shard made by a reshard (ids from N on):
//	    00000000000000000000-00000000000000001234.seg
//	                                    physical offset of its first record, then its
//	                                    low-water mark (a logical offset)
//
// # Shards and resharding
//
// Shards() logical shards are fixed for the life of the log; stream.ShardFor
// picks one. Each is at first one physical shard (the directory above with
// its number). SplitShard and MergeShards change the physical shards under a
// logical shard over hash key ranges, as Kinesis SplitShard and MergeShards
// do, while readers keep seeing one dense offset sequence per logical shard
// with parents drained before children: see reshard.go for the model,
// recovery and retention. `silt stream shards|split|merge` runs them.
//
// A shard's segments cover contiguous offset ranges: segment i holds the
// records [base(i), base(i+1)); the last ("active") segment holds [base,
// End). Segments other than the last are closed and never written again.
//
// # Record frame
//
// A segment is a sequence of frames with nothing before, between or after
// them. All integers are little-endian.
//
//	 0      4      8   9      11         11+k
//	 +------+------+---+------+----------+--------------------+
//	 | len  | crc  | v | klen | key      | data               |
//	 +------+------+---+------+----------+--------------------+
//	   u32    u32   u8   u16    k bytes    len-3-k bytes
//
//	len   bytes after the crc field: 1 + 2 + k + len(data); 3 <= len <= 2^28
//	crc   CRC-32C (Castagnoli) of those len bytes (v, klen, key, data)
//	v     frame version, 1
//	klen  k, the partition key length (<= 65535)
//
// Physical shards made by a reshard write version 2 frames: v = 2 and,
// between v and klen, the record's logical offset (u64), since a logical
// shard's records are then spread over several files.
//
// A frame's offset is not stored: it is the segment's base plus the number
// of frames before it. A zero len (for example a zero-filled tail after a
// crash) is invalid, as is any frame whose CRC does not match.
//
// # Durability and group commit
//
// Each shard has one flusher goroutine, the only writer of its segments,
// and one syncer goroutine. Append encodes its entries' frames straight
// into the shard's queue buffer (under the shard lock, so the caller's
// memory is free once Append returns) and waits until the shard's durable
// End reaches its last record. The flusher swaps the queue buffer for its
// own, writes it with one write call (no copy, no per-Append request) and
// hands the written chunk to the syncer; the syncer takes every chunk
// handed over since its last fsync, covers them with one fdatasync
// (DurabilityFsync), then publishes the new End, which completes their
// Appends. So writing the next batch overlaps the fsync of the previous
// one, N concurrent Appends cost one fsync, not N, and Append returns only
// once its entries are durable. At most MaxPendingBytes are queued and at
// most MaxPendingBytes written but not yet fsynced; a segment roll first
// waits until everything in the old segment is fsynced and published.
// Readers and End never see records that are not yet durable. A new
// segment's directory entry is fsynced before any record in it is
// acknowledged. A failed write or fsync fails the shard for good (no retry
// of fsync: after a failed fsync the page cache can no longer be trusted);
// reopening recovers from what reached the disk. Records of one Append that
// go to different shards are not atomic across shards.
//
// A large Append (the pipeline makes them up to 8 MiB) is a pipeline of its
// own: it is routed and framed in pieces of appendPiece (1 MiB) bytes, a
// helper goroutine hashing the next piece's partition keys (eight at a
// time, stream.ShardsFor) while the current one is framed, and each piece
// is queued at once, so the flushers write piece k while piece k+1 is
// framed. The flusher writes in pieces of
// at most 1 MiB and starts write-back of every whole MiB of pages as soon
// as it is written (sync_file_range SYNC_FILE_RANGE_WRITE on Linux, a
// hint; fdatasync stays the only durability point), so the device works
// during the Append instead of only in its fsync. The syncers hold their
// fsync while an Append is between pieces and until its last piece is
// written (shard.holdBegin), so such an Append still costs one fsync per
// shard; the flusher overrides a hold when it must wait for the syncer, a
// reshard's drain overrides it (the holder cannot queue its next piece
// while the reshard holds the append lock), and Close's last pass ignores
// it. The flusher picks index entries among frame positions the enqueuer
// records every 4 KiB (frameMark) instead of walking every frame header.
//
// With DurabilityFsync the active segment's disk space is reserved ahead of
// the writer (File.Allocate, fallocate on Linux, allocStep at a time up to
// SegmentBytes), so a group commit's fdatasync has no file size to commit;
// a segment is cut back to its frames when it is closed (roll, Close), and
// recovery cuts a reserved tail of zeros like a torn one, silently.
//
// BenchmarkAppendVsDisk and `silt bench --only log` (internal/bench)
// compare the append rate (fsync on) with raw sequential write + fsync in
// the same run.
//
// With DurabilityNone nothing is fsynced: a process crash loses nothing the
// OS accepted, a machine crash may lose acknowledged records, and closed
// segments may then be torn (reads of them report ErrCorrupt).
//
// # Recovery
//
// Open scans only the last segment of each shard, keeps the longest prefix
// of whole frames with valid length, version and CRC, truncates the rest
// (logging how many bytes it cut and why) and continues offsets from
// there. A corrupt frame in the middle of the last segment cuts everything
// after it, even whole frames, because offsets must stay dense. Closed
// segments are trusted at Open (each was fsynced before its successor was
// created) and are checked when first read: a closed segment that does not
// decode to exactly base(i+1)-base(i) records is reported as ErrCorrupt.
//
// # Reads and memory
//
// Read finds the segment by name (binary search over bases), then the last
// sparse-index entry at or before the offset (one entry per 64 KiB of
// segment), skips frame headers to the offset and decodes from one read
// window. Returned PartitionKey and Data slices alias that window: they are
// valid until the next Read of the same shard. A Read returns at most
// min(max, MaxReadRecords) records and MaxReadBytes of frames (one larger
// record comes alone), and never crosses a segment boundary. The index
// and read handle are kept for the active segment and at most one closed
// segment per shard. Appends queue at most MaxPendingBytes per shard before
// blocking.
//
// # Retention
//
// Retention deletes whole segment files from the head of a shard, never
// from the middle, and never a segment holding a record at or above the
// shard's trim point (set by Trim from a consumer's durable position): we
// never drop unconsumed data. Precisely, segment i may be deleted only if
// it is closed and base(i+1) <= trim point, i.e. every record in it is
// below the trim point. Such a segment is deleted
//
//   - at once, when Retention.MaxAge and Retention.MaxBytes are both 0;
//   - when it was last written more than MaxAge ago (MaxAge > 0), or
//   - while the shard's segments total more than MaxBytes (MaxBytes > 0).
//
// So the limits only decide how much consumed data is kept for replay; a
// consumer that never calls Trim makes the log grow without bound, however
// small the limits. Retention runs every RetentionInterval, after a Trim
// moves the trim point and after a segment roll. The trim point is kept in
// memory; after a reopen it is the first stored offset until the consumer
// trims again. Reading a deleted offset returns stream.ErrTrimmed.
//
// # Goroutines
//
// Open starts one flusher per shard (which owns its shard's syncer) and one
// retention goroutine; Close stops them and waits. Close lets the flushers
// write and sync what is already queued, then closes every file; it is
// idempotent.
package locallog

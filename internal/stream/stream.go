// Package stream defines silt's sharded log with Kinesis semantics: the MD5
// of a record's partition key picks a shard over the 128-bit hash key space;
// records of one partition key keep their order within their shard.
//
// Implementations: locallog (embedded, on local disk; the default) and
// kinesis (Amazon Kinesis Data Streams). Partitioner computes partition keys
// by strategy; ShardStats and StatsReporter carry per-shard figures.
package stream

import (
	"context"
	"crypto/md5"
	"errors"
)

// ErrClosed is returned after Close.
var ErrClosed = errors.New("stream closed")

// Entry is a record to append.
type Entry struct {
	PartitionKey []byte
	Data         []byte
}

// Record is a record read back from a shard. Offsets are dense per shard,
// starting at 0: the record after offset o has offset o+1.
type Record struct {
	Shard        int
	Offset       int64
	PartitionKey []byte
	Data         []byte
}

// Log is a sharded, durable, append-only log.
type Log interface {
	// Shards is the number of shards.
	Shards() int
	// Append appends entries, each to the shard its partition key hashes to,
	// preserving order per partition key. When Append returns nil the entries
	// are durable according to the log's durability setting.
	Append(ctx context.Context, entries []Entry) error
	// Read returns up to max records of shard starting at offset from. It
	// returns an empty slice, not an error, when nothing is available yet.
	// Record data may alias internal buffers valid until the next Read on the
	// same shard.
	Read(ctx context.Context, shard int, from int64, max int) ([]Record, error)
	// End returns the offset one past the last record of shard.
	End(ctx context.Context, shard int) (int64, error)
	// Close releases resources. It is safe to call more than once.
	Close() error
}

// ShardFor returns the shard that the partition key maps to when the 128-bit
// MD5 hash key space is split into n equal ranges, as Kinesis does for a
// stream created with n shards: shard = floor(hash * n / 2^128), computed
// exactly in 192-bit arithmetic without allocating.
func ShardFor(partitionKey []byte, n int) int {
	if n <= 1 {
		return 0
	}
	sum := md5.Sum(partitionKey)
	return shardOfSum(&sum, n)
}

// ErrTooLarge is returned by Append for an entry larger than the log
// accepts (Kinesis: 1 MiB of data plus partition key).
var ErrTooLarge = errors.New("stream: record too large")

// ErrOutOfRange is returned for an offset past the end of a shard, or for a
// shard number outside [0, Shards()).
var ErrOutOfRange = errors.New("stream: offset or shard out of range")

// ErrTrimmed is returned by Read for an offset whose record retention has
// already deleted. Only offsets below a trim point set through Trimmer can be
// deleted; a consumer restarting from its durable position never sees it.
var ErrTrimmed = errors.New("stream: offset trimmed")

// Trimmer is implemented by logs that can release storage once a consumer no
// longer needs it.
type Trimmer interface {
	// Trim declares that every record of shard below offset before is durably
	// consumed, so retention may delete it. Records at or above the highest
	// trim point are never deleted. The trim point only moves forward: a
	// smaller before is ignored. before > End(shard) is ErrOutOfRange.
	// Records below the trim point may stay readable for a while; once they
	// are gone Read returns ErrTrimmed.
	Trim(ctx context.Context, shard int, before int64) error
}

// Waiter is implemented by logs that let a consumer block until new data
// arrives instead of polling.
type Waiter interface {
	// Wait returns nil once End(shard) > offset, ctx.Err() when ctx is done
	// first, and ErrClosed when the log is closed first.
	Wait(ctx context.Context, shard int, offset int64) error
}

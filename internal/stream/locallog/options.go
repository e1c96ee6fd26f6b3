package locallog

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Durability says when Append may return.
type Durability string

const (
	// DurabilityFsync: Append returns once its records are written and
	// fsynced (group commit: one write and one fsync per shard covers every
	// Append waiting at that moment). A new segment's directory entry is
	// fsynced before any record in it is acknowledged. The default.
	DurabilityFsync Durability = "fsync"
	// DurabilityNone: Append returns once its records are handed to the OS.
	// Survives a process crash, not a machine crash. For tests and demos.
	DurabilityNone Durability = "none"
)

// Retention bounds how much consumed data a shard keeps. It never deletes
// unconsumed data; see the package doc for the exact rule.
type Retention struct {
	// MaxAge deletes consumed segments last written longer ago than this.
	// 0: no age limit.
	MaxAge time.Duration
	// MaxBytes deletes the oldest consumed segments while the shard's
	// segments total more than this. 0: no size limit.
	MaxBytes int64
}

// Options configures Open. The zero value is usable: one shard, fsync
// durability, 64 MiB segments, consumed segments deleted at once.
type Options struct {
	// Shards is the number of shards. A new log stores it; reopening with a
	// different non-zero count fails. 0 means the stored count, or 1 for a
	// new log.
	Shards int
	// Durability: DurabilityFsync (default) or DurabilityNone.
	Durability Durability
	// SegmentBytes is the size at which a shard starts a new segment
	// (default 64 MiB, at least 4 KiB). A record larger than this gets a
	// segment of its own.
	SegmentBytes int64
	// Retention: see the type. With both limits 0, a segment is deleted as
	// soon as it is consumed.
	Retention Retention
	// RetentionInterval is how often age-based retention runs (default 1
	// minute). Trim and segment rolls also trigger a run.
	RetentionInterval time.Duration
	// MaxRecordBytes caps the partition key plus data of one entry (default
	// 10 MiB, at most 256 MiB). Append rejects larger entries.
	MaxRecordBytes int
	// MaxPendingBytes caps the encoded bytes queued for one shard's flusher
	// (default 16 MiB); Append blocks while the queue is full. A shard holds
	// at most about twice this: the queue plus the batch being written.
	MaxPendingBytes int
	// MaxReadBytes caps the record bytes one Read returns (default 4 MiB).
	// A single record larger than this is still returned, alone.
	MaxReadBytes int
	// MaxReadRecords caps the records one Read returns, whatever max the
	// caller passes (default 10,000, as Kinesis GetRecords).
	MaxReadRecords int
	// Limits optionally enforces per-shard throughput limits (see Limits;
	// KinesisLimits has Kinesis's). The zero value is unlimited.
	Limits Limits
	// FS is the file layer (default OSFS). Tests inject crashes through it.
	FS FS
	// Logger receives recovery and retention events (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock for age-based retention (default time.Now).
	Now func() time.Time
}

const (
	defaultSegmentBytes   = 64 << 20
	minSegmentBytes       = 4 << 10
	defaultMaxRecordBytes = 10 << 20
	defaultMaxPending     = 16 << 20
	defaultMaxReadBytes   = 4 << 20
	defaultMaxReadRecords = 10_000
	defaultRetentionEvery = time.Minute
)

// ensureDefaults fills zero fields. Shards is left alone: Open resolves it
// against the metadata file.
func (o *Options) ensureDefaults() {
	if o.Durability == "" {
		o.Durability = DurabilityFsync
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = defaultSegmentBytes
	}
	if o.RetentionInterval == 0 {
		o.RetentionInterval = defaultRetentionEvery
	}
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = defaultMaxRecordBytes
	}
	if o.MaxPendingBytes == 0 {
		o.MaxPendingBytes = defaultMaxPending
	}
	if o.MaxReadBytes == 0 {
		o.MaxReadBytes = defaultMaxReadBytes
	}
	if o.MaxReadRecords == 0 {
		o.MaxReadRecords = defaultMaxReadRecords
	}
	if o.FS == nil {
		o.FS = OSFS{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// validate reports every problem at once.
func (o *Options) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if o.Shards < 0 {
		bad("Shards %d is negative", o.Shards)
	}
	if o.Durability != DurabilityFsync && o.Durability != DurabilityNone {
		bad("Durability %q: want %q or %q", o.Durability, DurabilityFsync, DurabilityNone)
	}
	if o.SegmentBytes < minSegmentBytes {
		bad("SegmentBytes %d is below %d", o.SegmentBytes, minSegmentBytes)
	}
	if o.Retention.MaxAge < 0 {
		bad("Retention.MaxAge %v is negative", o.Retention.MaxAge)
	}
	if o.Retention.MaxBytes < 0 {
		bad("Retention.MaxBytes %d is negative", o.Retention.MaxBytes)
	}
	if o.RetentionInterval < 0 {
		bad("RetentionInterval %v is negative", o.RetentionInterval)
	}
	if o.MaxRecordBytes < 0 || o.MaxRecordBytes > maxFrameBody-minFrameBody {
		bad("MaxRecordBytes %d outside [1, %d]", o.MaxRecordBytes, maxFrameBody-minFrameBody)
	}
	if o.MaxPendingBytes < 0 {
		bad("MaxPendingBytes %d is negative", o.MaxPendingBytes)
	}
	if o.MaxReadBytes < 0 {
		bad("MaxReadBytes %d is negative", o.MaxReadBytes)
	}
	if o.Limits.WriteBytesPerSec < 0 || o.Limits.WriteRecordsPerSec < 0 || o.Limits.ReadBytesPerSec < 0 {
		bad("Limits %+v: a limit is negative", o.Limits)
	}
	if o.MaxReadRecords < 0 {
		bad("MaxReadRecords %d is negative", o.MaxReadRecords)
	}
	if len(errs) > 0 {
		return fmt.Errorf("locallog: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

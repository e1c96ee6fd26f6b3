package stream

import (
	"sync"
	"time"
)

// ShardStats are the figures of one shard since the log was opened. Counters
// are cumulative, so a metrics system derives rates from them; gauges say
// how things stand now.
type ShardStats struct {
	Shard int
	// IncomingBytes and IncomingRecords count what Append accepted for the
	// shard (partition key plus data).
	IncomingBytes   int64
	IncomingRecords int64
	// ThrottledWrites counts records whose write was held back by the
	// shard's write limit: for Kinesis, records refused with
	// ProvisionedThroughputExceeded (and then retried); for the embedded
	// log with limits on, records that had to wait for the limit.
	ThrottledWrites int64
	// OutgoingBytes and OutgoingRecords count what Read returned.
	OutgoingBytes   int64
	OutgoingRecords int64
	// ThrottledReads counts reads delayed by the shard's read limit.
	ThrottledReads int64
	// IteratorAgeMillis is how far the reader is behind the tip: the age of
	// the oldest record not yet read, 0 when the reader is caught up.
	IteratorAgeMillis int64
	// End is the shard's end offset.
	End int64
}

// StatsReporter is implemented by logs that report per-shard figures.
type StatsReporter interface {
	// Stats returns one entry per shard, in shard order. It is cheap
	// enough to call on every metrics scrape.
	Stats() []ShardStats
}

// HotShardRatio returns the busiest shard's load divided by the mean load:
// 1 for a perfectly even spread, n when one of n shards takes everything,
// 0 when there is no load. Feed it per-shard rates or counts.
func HotShardRatio[T int | int64 | float64](load []T) float64 {
	var sum, top float64
	for _, v := range load {
		f := float64(v)
		sum += f
		top = max(top, f)
	}
	if sum == 0 || len(load) == 0 {
		return 0
	}
	return top / (sum / float64(len(load)))
}

// AgeTracker remembers when offsets of one shard became durable, so a log
// can tell how far, in time, a reader is behind the tip. It keeps at most
// 256 marks; merging marks only ever makes an age larger, never smaller.
// Safe for concurrent use.
type AgeTracker struct {
	mu    sync.Mutex
	marks []ageMark
}

type ageMark struct {
	end int64 // records below end were durable at
	at  time.Time
}

const maxAgeMarks = 256

// Appended records that every offset below end was durable at time at.
func (a *AgeTracker) Appended(end int64, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := len(a.marks); n > 0 && a.marks[n-1].end >= end {
		return
	}
	if len(a.marks) == maxAgeMarks {
		// Merge pairs, keeping each pair's later end and earlier time.
		k := 0
		for i := 0; i+1 < len(a.marks); i += 2 {
			a.marks[k] = ageMark{end: a.marks[i+1].end, at: a.marks[i].at}
			k++
		}
		a.marks = a.marks[:k]
	}
	a.marks = append(a.marks, ageMark{end: end, at: at})
}

// Age returns how long the record at readPos (the reader's next offset)
// has been durable: 0 when the reader has everything. It drops marks the
// reader has passed.
func (a *AgeTracker) Age(readPos int64, now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := 0
	for i < len(a.marks) && a.marks[i].end <= readPos {
		i++
	}
	a.marks = a.marks[i:]
	if len(a.marks) == 0 {
		return 0
	}
	return max(now.Sub(a.marks[0].at), 0)
}

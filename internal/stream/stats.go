package stream

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

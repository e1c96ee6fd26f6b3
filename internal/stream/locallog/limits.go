package locallog

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/silt-dev/silt/internal/stream"
)

// Limits are optional per-shard throughput limits, to try a shard count
// locally before paying for it in Kinesis. Zero fields are unlimited.
// KinesisLimits holds the Kinesis values.
//
// An Append over a write limit waits before its records are queued (back
// pressure, never an error) and its records count as throttled writes; a
// Read over the read limit waits before it reads and counts as a throttled
// read. Each limit is a token bucket holding one second of its rate; a
// request larger than the bucket is let through and paid off by later ones.
type Limits struct {
	WriteBytesPerSec   int64
	WriteRecordsPerSec int64
	ReadBytesPerSec    int64
}

// KinesisLimits are Kinesis Data Streams' per-shard limits: 1 MB/s or
// 1,000 records/s of writes, 2 MB/s of reads.
var KinesisLimits = Limits{WriteBytesPerSec: 1_000_000, WriteRecordsPerSec: 1000, ReadBytesPerSec: 2_000_000}

// bucket is a token bucket that may go into debt: reserve always books the
// request and says how long to wait before acting on it, so waiters are
// served in the order they reserved.
type bucket struct {
	rate   float64 // tokens per second; 0 = unlimited
	tokens float64
	last   time.Time
}

func newBucket(rate int64, now time.Time) bucket {
	return bucket{rate: float64(rate), tokens: float64(rate), last: now}
}

func (b *bucket) reserve(n float64, now time.Time) time.Duration {
	if b.rate == 0 {
		return 0
	}
	b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens -= n
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// shardMeter holds a shard's limits and figures.
type shardMeter struct {
	mu                     sync.Mutex
	wbytes, wrecs, rbytes  bucket
	inBytes, inRecs        atomic.Int64
	throttledW, throttledR atomic.Int64
	outBytes, outRecs      atomic.Int64
	readPos                atomic.Int64 // one past the highest offset Read returned
	ages                   stream.AgeTracker
}

func newMeter(lim Limits, now time.Time) *shardMeter {
	return &shardMeter{
		wbytes: newBucket(lim.WriteBytesPerSec, now),
		wrecs:  newBucket(lim.WriteRecordsPerSec, now),
		rbytes: newBucket(lim.ReadBytesPerSec, now),
	}
}

// admitWrite books a write of n records and size bytes and waits out the
// limit. It counts the records as throttled when it had to wait.
func (m *shardMeter) admitWrite(ctx context.Context, n, size int, now func() time.Time) error {
	m.mu.Lock()
	t := now()
	wait := max(m.wbytes.reserve(float64(size), t), m.wrecs.reserve(float64(n), t))
	m.mu.Unlock()
	m.inBytes.Add(int64(size))
	m.inRecs.Add(int64(n))
	if wait <= 0 {
		return nil
	}
	m.throttledW.Add(int64(n))
	return sleepCtx(ctx, wait)
}

// admitRead waits while earlier reads are over the read limit.
func (m *shardMeter) admitRead(ctx context.Context, now func() time.Time) error {
	m.mu.Lock()
	wait := m.rbytes.reserve(0, now())
	m.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	m.throttledR.Add(1)
	return sleepCtx(ctx, wait)
}

// readDone books what a Read returned against the read limit.
func (m *shardMeter) readDone(recs []stream.Record, now func() time.Time) {
	var size int64
	for _, r := range recs {
		size += int64(len(r.PartitionKey) + len(r.Data))
	}
	m.mu.Lock()
	m.rbytes.reserve(float64(size), now())
	m.mu.Unlock()
	m.outBytes.Add(size)
	m.outRecs.Add(int64(len(recs)))
	if n := len(recs); n > 0 {
		next := recs[n-1].Offset + 1
		for {
			cur := m.readPos.Load()
			if next <= cur || m.readPos.CompareAndSwap(cur, next) {
				break
			}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Stats implements stream.StatsReporter: what Append accepted and Read
// returned per shard since Open, throttling under Limits, and the reader's
// lag: the age of the oldest record above the highest offset Read has
// returned.
func (l *Log) Stats() []stream.ShardStats {
	now := l.opts.Now()
	out := make([]stream.ShardStats, len(l.logical))
	for i, ls := range l.logical {
		t := ls.topo.Load()
		root := t.all[0]
		m := root.meter
		st := stream.ShardStats{
			Shard:             i,
			OutgoingBytes:     m.outBytes.Load(),
			OutgoingRecords:   m.outRecs.Load(),
			ThrottledReads:    m.throttledR.Load(),
			IteratorAgeMillis: m.ages.Age(max(m.readPos.Load(), root.startOffset()), now).Milliseconds(),
			End:               ls.end(),
		}
		// Writes are counted where they went: every physical shard.
		for _, s := range t.all {
			st.IncomingBytes += s.meter.inBytes.Load()
			st.IncomingRecords += s.meter.inRecs.Load()
			st.ThrottledWrites += s.meter.throttledW.Load()
		}
		out[i] = st
	}
	return out
}

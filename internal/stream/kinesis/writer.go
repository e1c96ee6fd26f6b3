package kinesis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/silt-dev/silt/internal/stream"
)

// keyPrefixMax is the longest "<offset>:<epoch>:" prefix encodeKey writes;
// size checks count it in full so they never depend on the offset.
const keyPrefixMax = 19 + 1 + 10 + 1

// outRec is one record waiting for Kinesis to acknowledge it.
type outRec struct {
	off  int64
	pk   string // Kinesis partition key (offset, epoch, escaped key)
	hash string // ExplicitHashKey
	data []byte // a copy: the caller's memory is free once Append returns
}

func (r *outRec) size() int { return len(r.pk) + len(r.data) }

// writer numbers records per logical shard and sends them. Lock order:
// Log.stateMu is never held with writer.mu.
//
// The sender goroutine is the only one that calls PutRecords, one request
// at a time; Append goroutines only queue (mu) and wait on notify. A
// shard's queue is in offset order and its acknowledged records are always
// a prefix of it, which the sender pops: durable[s] is then the offset of
// queue[s][0], and End is exact.
type writer struct {
	l   *Log
	rng *rand.Rand // sender only

	ctx    context.Context // cancelled when Close gives up draining
	cancel context.CancelFunc
	kick   chan struct{} // buffered(1)
	done   chan struct{} // closed when the sender exits

	mu      sync.Mutex
	queues  [][]*outRec
	next    []int64 // next offset to assign
	durable []int64 // acknowledged prefix: End
	retryAt []time.Time
	attempt []int
	pending int           // bytes queued
	space   chan struct{} // closed (and replaced) when pending drops
	notify  chan struct{} // closed (and replaced) when durable moves, on failure and on close
	err     error         // sticky: the log refuses appends once set
	closing bool
	start   int // round-robin start of the next batch

	inBytes, inRecs, throttled []atomic.Int64
	ages                       []stream.AgeTracker // when offsets were acknowledged
}

func (w *writer) init(l *Log, ends []int64) {
	n := len(ends)
	w.l = l
	w.rng = rand.New(rand.NewPCG(l.opts.Seed, 0x5eed))
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.kick = make(chan struct{}, 1)
	w.done = make(chan struct{})
	w.queues = make([][]*outRec, n)
	w.next = append([]int64(nil), ends...)
	w.durable = append([]int64(nil), ends...)
	w.retryAt = make([]time.Time, n)
	w.attempt = make([]int, n)
	w.space = make(chan struct{})
	w.notify = make(chan struct{})
	w.inBytes = make([]atomic.Int64, n)
	w.inRecs = make([]atomic.Int64, n)
	w.throttled = make([]atomic.Int64, n)
	w.ages = make([]stream.AgeTracker, n)
}

func (w *writer) end(shard int) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.durable[shard]
}

func (w *writer) stats(shard int) stream.ShardStats {
	return stream.ShardStats{
		Shard:           shard,
		IncomingBytes:   w.inBytes[shard].Load(),
		IncomingRecords: w.inRecs[shard].Load(),
		ThrottledWrites: w.throttled[shard].Load(),
		End:             w.end(shard),
	}
}

// wakeLocked wakes everyone waiting on notify. Caller holds mu.
func (w *writer) wakeLocked() {
	close(w.notify)
	w.notify = make(chan struct{})
}

// Append sends entries to the logical shards stream.ShardFor picks and
// returns once Kinesis has acknowledged each of them and every earlier
// record of their shards. Entries are copied, so the caller may reuse their
// memory when Append returns. An entry larger than MaxRecordBytes (data
// plus Kinesis partition key, counting the longest offset prefix) fails
// the whole call with stream.ErrTooLarge before anything is queued.
//
// Any other error leaves the outcome open, as with locallog: some of the
// entries, a prefix per shard, may be in Kinesis. ctx ending while Append
// waits does not withdraw queued entries.
func (l *Log) Append(ctx context.Context, entries []stream.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if l.closed.Load() {
		return stream.ErrClosed
	}
	if len(entries) == 0 {
		return nil
	}
	n := l.opts.Shards
	shardOf := make([]int, len(entries))
	var esc []byte
	size := 0
	for i, e := range entries {
		esc = encodeKey(esc[:0], 0, 0, e.PartitionKey)
		keyLen := len(esc) - 4 + keyPrefixMax // 4: the "0:0:" encodeKey wrote
		if keyLen > maxPartitionKeyChars {
			return fmt.Errorf("kinesis: append: entry %d: partition key %.40q is %d characters escaped with silt's offset prefix, Kinesis allows %d: %w",
				i, e.PartitionKey, keyLen, maxPartitionKeyChars, stream.ErrTooLarge)
		}
		if sz := keyLen + len(e.Data); sz > l.opts.MaxRecordBytes {
			return fmt.Errorf("kinesis: append: entry %d: %d bytes of data and partition key, the record limit is %d: %w",
				i, sz, l.opts.MaxRecordBytes, stream.ErrTooLarge)
		}
		shardOf[i] = stream.ShardFor(e.PartitionKey, n)
		size += keyLen + len(e.Data)
	}
	hashes := make([]string, len(entries))
	for i, e := range entries {
		hashes[i] = l.lay.explicitHashKey(shardOf[i], e.PartitionKey)
	}
	w := &l.w
	w.mu.Lock()
	for {
		if w.err != nil {
			err := w.err
			w.mu.Unlock()
			return err
		}
		if w.closing {
			w.mu.Unlock()
			return stream.ErrClosed
		}
		// A call larger than the whole queue is let in alone.
		if w.pending == 0 || w.pending+size <= l.opts.MaxPendingBytes {
			break
		}
		space := w.space
		w.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
		w.mu.Lock()
	}
	last := map[int]int64{}
	for i, e := range entries {
		s := shardOf[i]
		off := w.next[s]
		w.next[s]++
		r := &outRec{off: off, pk: string(encodeKey(esc[:0], off, l.epoch, e.PartitionKey)), hash: hashes[i],
			data: append(make([]byte, 0, len(e.Data)), e.Data...)} // never nil: Kinesis requires Data
		w.queues[s] = append(w.queues[s], r)
		w.pending += r.size()
		last[s] = off
		w.inBytes[s].Add(int64(len(e.PartitionKey) + len(e.Data)))
		w.inRecs[s].Add(1)
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	for {
		w.mu.Lock()
		ok := true
		for s, off := range last {
			if w.durable[s] <= off {
				ok = false
				break
			}
		}
		err, ch := w.err, w.notify
		w.mu.Unlock()
		switch {
		case ok:
			return nil
		case err != nil:
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// wait blocks until End(shard) > offset.
func (w *writer) wait(ctx context.Context, shard int, offset int64) error {
	for {
		w.mu.Lock()
		end, closing, ch := w.durable[shard], w.closing, w.notify
		w.mu.Unlock()
		if end > offset {
			return nil
		}
		if closing {
			return stream.ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// close refuses new appends and lets the sender drain what is queued for
// at most CloseTimeout; waiters of records still queued then get ErrClosed.
func (w *writer) close() {
	w.mu.Lock()
	w.closing = true
	close(w.space)
	w.space = make(chan struct{})
	w.wakeLocked()
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	t := time.NewTimer(w.l.opts.CloseTimeout)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
		w.l.log.Warn("kinesis: close: records still unacknowledged after the close timeout; giving up on them")
		w.cancel()
		<-w.done
	}
	w.cancel()
}

// run is the sender goroutine.
func (w *writer) run() {
	defer w.l.wg.Done()
	defer close(w.done)
	defer func() {
		w.mu.Lock()
		if w.err == nil {
			w.err = stream.ErrClosed
		}
		w.wakeLocked()
		w.mu.Unlock()
	}()
	var timer *time.Timer
	for {
		batch, shardOf, wake, idle := w.build()
		if len(batch) > 0 {
			w.send(batch, shardOf)
			continue
		}
		if idle && w.isClosing() {
			return
		}
		var tc <-chan time.Time
		if wake > 0 {
			if timer == nil {
				timer = time.NewTimer(wake)
			} else {
				timer.Reset(wake)
			}
			tc = timer.C
		}
		select {
		case <-w.kick:
		case <-tc:
		case <-w.ctx.Done():
			return
		}
		if timer != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func (w *writer) isClosing() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closing || w.err != nil
}

// build takes the next request: from each shard not backing off, its
// queue from the front, round-robin across shards, within the PutRecords
// limits. It returns how long until a backing-off shard may send again,
// and whether nothing at all is queued.
func (w *writer) build() (batch []*outRec, shardOf []int, wake time.Duration, idle bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return nil, nil, 0, true
	}
	now := time.Now()
	n := len(w.queues)
	bytes := 0
	idle = true
	for k := range n {
		s := (w.start + k) % n
		q := w.queues[s]
		if len(q) == 0 {
			continue
		}
		idle = false
		if d := w.retryAt[s].Sub(now); d > 0 {
			if wake == 0 || d < wake {
				wake = d
			}
			continue
		}
		for _, r := range q {
			if len(batch) == maxBatchRecords || bytes+r.size() > maxBatchBytes {
				break
			}
			batch = append(batch, r)
			shardOf = append(shardOf, s)
			bytes += r.size()
		}
	}
	w.start = (w.start + 1) % n
	return batch, shardOf, wake, idle
}

// send makes one PutRecords call and settles its outcome per shard.
func (w *writer) send(batch []*outRec, shardOf []int) {
	in := &kinesis.PutRecordsInput{StreamName: aws.String(w.l.opts.Stream), Records: make([]types.PutRecordsRequestEntry, len(batch))}
	for i, r := range batch {
		in.Records[i] = types.PutRecordsRequestEntry{Data: r.data, PartitionKey: aws.String(r.pk), ExplicitHashKey: aws.String(r.hash)}
	}
	ctx, cancel := context.WithTimeout(w.ctx, time.Minute)
	out, err := w.l.api.PutRecords(ctx, in)
	cancel()
	if err == nil && len(out.Records) != len(batch) {
		err = fmt.Errorf("PutRecords returned %d results for %d records", len(out.Records), len(batch))
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		if w.ctx.Err() != nil {
			return // Close gave up; run exits
		}
		if !retryable(w.ctx, err) {
			w.fail(fmt.Errorf("kinesis: put records to %s: %w", w.l.opts.Stream, err))
			return
		}
		// The whole request failed: back off every shard in it.
		seen := map[int]bool{}
		for i, s := range shardOf {
			if errorCode(err) == codeThroughput {
				w.throttled[s].Add(1)
			}
			if !seen[s] {
				seen[s] = true
				w.backoffLocked(s, now, err.Error(), batch[i].off)
			}
		}
		return
	}
	// Per shard: the records before the first failure are done; the first
	// failed one and all after it go again, in order.
	firstFail := map[int]int{} // shard -> index in batch
	for i, res := range out.Records {
		s := shardOf[i]
		if res.ErrorCode == nil || *res.ErrorCode == "" {
			continue
		}
		code := *res.ErrorCode
		if code == codeThroughput {
			w.throttled[s].Add(1)
		}
		if !retryableCode(code) {
			w.fail(fmt.Errorf("kinesis: put record at offset %d of shard %d: %s: %s", batch[i].off, s, code, aws.ToString(res.ErrorMessage)))
			return
		}
		if _, ok := firstFail[s]; !ok {
			firstFail[s] = i
			w.backoffLocked(s, now, code+": "+aws.ToString(res.ErrorMessage), batch[i].off)
		}
	}
	moved := false
	for i, r := range batch {
		s := shardOf[i]
		if f, ok := firstFail[s]; ok && i >= f {
			continue
		}
		// Acknowledged and not overtaken: batch holds each shard's queue
		// front in order, so r is queues[s][0].
		w.queues[s][0] = nil
		w.queues[s] = w.queues[s][1:]
		w.durable[s] = r.off + 1
		w.ages[s].Appended(r.off+1, now)
		w.pending -= r.size()
		moved = true
		if _, ok := firstFail[s]; !ok {
			w.attempt[s] = 0
		}
	}
	if moved {
		close(w.space)
		w.space = make(chan struct{})
		w.wakeLocked()
	}
}

func (w *writer) backoffLocked(s int, now time.Time, why string, off int64) {
	d := backoff(w.rng, w.l.opts.BackoffMin, w.l.opts.BackoffMax, w.attempt[s])
	w.attempt[s]++
	w.retryAt[s] = now.Add(d)
	if w.attempt[s] == 5 || w.attempt[s]%50 == 0 {
		w.l.log.Warn("kinesis: writes to shard keep failing; retrying", "shard", s, "offset", off, "attempt", w.attempt[s], "reason", why)
	}
}

// fail makes the writer refuse every later append. Caller holds mu.
func (w *writer) fail(err error) {
	if w.err == nil {
		w.err = err
		w.l.log.Error("kinesis: writes failed; the log refuses appends until reopened", "err", err)
	}
	w.wakeLocked()
}

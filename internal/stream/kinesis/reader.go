package kinesis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/silt-dev/silt/internal/stream"
)

// position is where a logical shard's reader can start so that the next
// record it returns is offset Next.
type position struct {
	Next     int64  `json:"next"`
	MinEpoch uint32 `json:"min_epoch"`
	// Seqs: per Kinesis shard, the sequence number of the last record
	// consumed (or skipped); "" means none: start at TRIM_HORIZON. Kinesis
	// shards that overlap the logical shard but are not listed are newer
	// (children) and are read from TRIM_HORIZON.
	Seqs map[string]string `json:"seqs"`
	// Done lists Kinesis shards read to their end.
	Done []string `json:"done,omitempty"`
}

// krec is a fetched Kinesis record.
type krec struct {
	off     int64
	epoch   uint32
	seq     string
	key     []byte
	data    []byte
	skip    bool // not ours: another logical shard's key or not silt's format
	used    bool // consumed out of order (behind a resent record)
	arrival time.Time
}

// kcur is the reader's state in one Kinesis shard.
type kcur struct {
	info    kshardInfo
	iter    string // "" = get a new iterator after readSeq
	readSeq string // last sequence number fetched ("" = none: TRIM_HORIZON)
	lowSeq  string // every record up to it is consumed or skipped
	buf     []krec // fetched, not yet consumed, in sequence order
	closed  bool   // every record fetched (NextShardIterator was nil)
	fetched bool   // at least one GetRecords returned
	atTip   bool   // the last GetRecords was empty with MillisBehindLatest 0
	behind  int64  // MillisBehindLatest of the last call
}

// cursor is a logical shard's read state.
type cursor struct {
	next     int64
	minEpoch uint32
	ks       map[string]*kcur
	order    []string // ks ids, sorted: deterministic iteration
	buffered int
	origin   bool // started at TRIM_HORIZON without a position
	listedAt time.Time
}

// reader is one logical shard's reader. mu serializes its reads.
type reader struct {
	l     *Log
	shard int

	mu    sync.Mutex
	cur   *cursor
	index []*position // recent positions, ascending Next

	outBytes, outRecs, throttled atomic.Int64
	readPos                      atomic.Int64 // next offset the consumer asked for
}

const maxIndex = 256

func newReader(l *Log, shard int) *reader { return &reader{l: l, shard: shard} }

func (r *reader) stats(st *stream.ShardStats) {
	st.OutgoingBytes = r.outBytes.Load()
	st.OutgoingRecords = r.outRecs.Load()
	st.ThrottledReads = r.throttled.Load()
	st.IteratorAgeMillis = r.l.w.ages[r.shard].Age(r.readPos.Load(), time.Now()).Milliseconds()
}

// Read returns up to max records of the logical shard from offset from
// on, in offset order: at least one when from < End (blocking until
// Kinesis returns it), none when from == End. Records are fresh copies the
// caller owns.
func (l *Log) Read(ctx context.Context, shard int, from int64, max int) ([]stream.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := l.check(shard); err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, fmt.Errorf("kinesis: read shard %d: max %d must be positive", shard, max)
	}
	end := l.w.end(shard)
	if from < 0 || from > end {
		return nil, fmt.Errorf("kinesis: read shard %d from %d, end is %d: %w", shard, from, end, stream.ErrOutOfRange)
	}
	r := l.readers[shard]
	r.readPos.Store(from)
	if from == end {
		return []stream.Record{}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.seek(from); err != nil {
		return nil, err
	}
	max = min(max, l.opts.ReadLimit)
	for {
		if l.closed.Load() {
			return nil, stream.ErrClosed
		}
		recs := r.take(max, end, true)
		if len(recs) > 0 {
			r.remember()
			var b int64
			for _, rec := range recs {
				b += int64(len(rec.PartitionKey) + len(rec.Data))
			}
			r.outBytes.Add(b)
			r.outRecs.Add(int64(len(recs)))
			r.readPos.Store(r.cur.next)
			return recs, nil
		}
		if err := r.fetch(ctx); err != nil {
			if errors.Is(err, stream.ErrClosed) || ctx.Err() != nil {
				return nil, err
			}
			return nil, fmt.Errorf("kinesis: read shard %d from %d: %w", shard, from, err)
		}
	}
}

// seek makes the cursor's next offset from: it keeps the current cursor if
// it is at or before from and no saved position is closer, else it starts
// from the best position at or below from, else from TRIM_HORIZON.
func (r *reader) seek(from int64) error {
	if r.cur != nil && r.cur.next == from {
		return nil
	}
	best := r.positionAtOrBelow(from)
	if best == nil {
		if p := r.savedPosition(); p != nil && p.Next <= from {
			best = p
		}
	}
	switch {
	case r.cur != nil && r.cur.next <= from && (best == nil || best.Next <= r.cur.next):
	case best != nil:
		r.cur = r.fromPosition(best)
	default:
		r.cur = &cursor{next: from, ks: map[string]*kcur{}, origin: true}
	}
	// Skip forward: records below from are dropped as they come.
	r.cur.next = from
	return nil
}

func (r *reader) savedPosition() *position {
	r.l.stateMu.Lock()
	defer r.l.stateMu.Unlock()
	if r.shard < len(r.l.state.Positions) {
		return r.l.state.Positions[r.shard]
	}
	return nil
}

func (r *reader) fromPosition(p *position) *cursor {
	c := &cursor{next: p.Next, minEpoch: p.MinEpoch, ks: map[string]*kcur{}}
	for id, seq := range p.Seqs {
		c.ks[id] = &kcur{info: kshardInfo{id: id}, readSeq: seq, lowSeq: seq}
	}
	for _, id := range p.Done {
		c.ks[id] = &kcur{info: kshardInfo{id: id}, closed: true, fetched: true}
	}
	c.sortOrder()
	return c
}

func (c *cursor) sortOrder() {
	c.order = c.order[:0]
	for id := range c.ks {
		c.order = append(c.order, id)
	}
	sort.Strings(c.order)
}

// snapshot returns the cursor's position.
func (c *cursor) snapshot() *position {
	p := &position{Next: c.next, MinEpoch: c.minEpoch, Seqs: map[string]string{}}
	for _, id := range c.order {
		k := c.ks[id]
		if k.closed && len(k.buf) == 0 {
			p.Done = append(p.Done, id)
			continue
		}
		p.Seqs[id] = k.lowSeq
	}
	return p
}

// remember adds the cursor's position to the index.
func (r *reader) remember() {
	p := r.cur.snapshot()
	if n := len(r.index); n > 0 && r.index[n-1].Next >= p.Next {
		// A seek went back: keep the index ascending.
		i := sort.Search(n, func(i int) bool { return r.index[i].Next >= p.Next })
		r.index = r.index[:i]
	}
	if len(r.index) == maxIndex {
		copy(r.index, r.index[1:])
		r.index = r.index[:maxIndex-1]
	}
	r.index = append(r.index, p)
}

// positionAtOrBelow returns the newest indexed position with Next <= off.
// Caller holds r.mu.
func (r *reader) positionAtOrBelow(off int64) *position {
	i := sort.Search(len(r.index), func(i int) bool { return r.index[i].Next > off }) - 1
	if i < 0 {
		return nil
	}
	return r.index[i]
}

// savedAtOrBelow is positionAtOrBelow for the saver goroutine.
func (r *reader) savedAtOrBelow(off int64) *position {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.positionAtOrBelow(off)
}

// take emits up to max records from the buffers in offset order, stopping
// at end. With keep false it only counts (recovery).
func (r *reader) take(max int, end int64, keep bool) []stream.Record {
	c := r.cur
	var out []stream.Record
	for len(out) < max && c.next < end {
		c.popHeads()
		var best *krec
		for _, id := range c.order {
			k := c.ks[id]
			for i := range k.buf {
				x := &k.buf[i]
				if x.skip || x.used || x.off != c.next || x.epoch < c.minEpoch {
					continue
				}
				if best == nil || x.epoch > best.epoch {
					best = x
				}
				break // later copies in this Kinesis shard are resends
			}
		}
		if best == nil {
			break
		}
		c.minEpoch = max32(c.minEpoch, best.epoch)
		if keep {
			out = append(out, stream.Record{Shard: r.shard, Offset: best.off, PartitionKey: best.key, Data: best.data})
		} else {
			out = append(out, stream.Record{Offset: best.off})
		}
		best.used = true
		best.key, best.data = nil, nil
		c.next++
	}
	c.popHeads()
	return out
}

func max32(a, b uint32) uint32 {
	if a > b {
		return a
	}
	return b
}

// popHeads drops, from the front of each buffer, records that are used,
// skipped, below next (duplicates) or of a voided epoch, and advances the
// Kinesis shard's consumed position past them.
func (c *cursor) popHeads() {
	for _, id := range c.order {
		k := c.ks[id]
		i := 0
		for i < len(k.buf) {
			x := &k.buf[i]
			if !(x.used || x.skip || x.off < c.next || x.epoch < c.minEpoch) {
				break
			}
			k.lowSeq = x.seq
			i++
		}
		if i > 0 {
			clear(k.buf[:i])
			k.buf = k.buf[i:]
			c.buffered -= i
		}
	}
}

// relevant reports whether a Kinesis shard carries keys of the logical
// shard.
func (r *reader) relevant(k kshardInfo) bool { return k.rng.overlaps(r.l.lay.used[r.shard]) }

// refresh adds newly listed relevant Kinesis shards to the cursor and
// fills in the hash ranges and parents of those known from a position.
func (r *reader) refresh(ctx context.Context, maxAge time.Duration) error {
	c := r.cur
	list, err := r.l.listShards(ctx, maxAge)
	if err != nil {
		return err
	}
	c.listedAt = time.Now()
	for _, info := range list {
		if !r.relevant(info) {
			continue
		}
		if k, ok := c.ks[info.id]; ok {
			k.info = info
			continue
		}
		// Not in the position: a newer shard (or any shard, when starting
		// from TRIM_HORIZON): read it from its start.
		c.ks[info.id] = &kcur{info: info}
	}
	c.sortOrder()
	return nil
}

// fetch makes one GetRecords call on a ready Kinesis shard, waiting for
// the pace of the shard if it has to. A shard is ready when it has more to
// fetch and none of its parents in the cursor still has.
func (r *reader) fetch(ctx context.Context) error {
	c := r.cur
	if c.listedAt.IsZero() {
		if err := r.refresh(ctx, 30*time.Second); err != nil {
			return err
		}
	}
	if c.buffered >= r.l.opts.MaxBufferedRecords {
		return fmt.Errorf("%d records buffered waiting for offset %d: a record is missing or resharding left too much to reorder", c.buffered, c.next)
	}
	now := time.Now()
	var (
		pick     *kcur
		wait     = time.Duration(math.MaxInt64)
		allTip   = true
		anyReady = false
	)
	for _, id := range c.order {
		k := c.ks[id]
		if k.closed || !r.parentsDone(k) {
			if !k.closed {
				allTip = false
			}
			continue
		}
		anyReady = true
		if !k.fetched || !k.atTip {
			allTip = false
		}
		if d := r.l.pace.peek(k.info.id, now); d < wait {
			wait, pick = d, k
		}
	}
	if !anyReady || allTip {
		// Everything is read to the tip and the record we need is not
		// there: look for new shards (a reshard), then decide.
		if time.Since(c.listedAt) >= time.Second {
			if err := r.refresh(ctx, 0); err != nil {
				return err
			}
		}
		if c.origin && c.lowestBuffered() > c.next {
			return fmt.Errorf("offset %d is no longer in Kinesis (retention), first stored is %d: %w", c.next, c.lowestBuffered(), stream.ErrTrimmed)
		}
		for _, id := range c.order {
			c.ks[id].atTip = false // poll them again after the pause
		}
		if pick == nil {
			return r.l.sleep(ctx, 200*time.Millisecond)
		}
	}
	if pick == nil {
		return r.l.sleep(ctx, 50*time.Millisecond)
	}
	if err := r.l.sleep(ctx, r.l.pace.reserve(pick.info.id, time.Now())); err != nil {
		return err
	}
	return r.getRecords(ctx, pick)
}

func (c *cursor) lowestBuffered() int64 {
	low := int64(math.MaxInt64)
	for _, k := range c.ks {
		for i := range k.buf {
			if x := &k.buf[i]; !x.skip && !x.used && x.off < low {
				low = x.off
			}
		}
	}
	return low
}

func (r *reader) parentsDone(k *kcur) bool {
	for _, p := range k.info.parents {
		if pk, ok := r.cur.ks[p]; ok && !pk.closed {
			return false
		}
	}
	return true
}

// getRecords fetches the next records of one Kinesis shard into its buffer.
func (r *reader) getRecords(ctx context.Context, k *kcur) error {
	l := r.l
	if k.iter == "" {
		in := &kinesis.GetShardIteratorInput{StreamName: aws.String(l.opts.Stream), ShardId: aws.String(k.info.id)}
		if k.readSeq == "" {
			in.ShardIteratorType = types.ShardIteratorTypeTrimHorizon
		} else {
			in.ShardIteratorType = types.ShardIteratorTypeAfterSequenceNumber
			in.StartingSequenceNumber = aws.String(k.readSeq)
		}
		out, err := l.api.GetShardIterator(ctx, in)
		if err != nil {
			return r.readError(ctx, k, "get shard iterator", err)
		}
		if out.ShardIterator == nil {
			k.closed = true
			return nil
		}
		k.iter = *out.ShardIterator
	}
	out, err := l.api.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: aws.String(k.iter), Limit: aws.Int32(int32(l.opts.ReadLimit))})
	if err != nil {
		return r.readError(ctx, k, "get records", err)
	}
	k.fetched = true
	k.behind = aws.ToInt64(out.MillisBehindLatest)
	k.atTip = len(out.Records) == 0 && k.behind == 0
	for _, rec := range out.Records {
		x := krec{seq: aws.ToString(rec.SequenceNumber), arrival: aws.ToTime(rec.ApproximateArrivalTimestamp)}
		off, epoch, key, err := decodeKey(aws.ToString(rec.PartitionKey))
		switch {
		case err != nil:
			x.skip = true
			l.log.Warn("kinesis: skipping a record silt did not write", "kinesis_shard", k.info.id, "seq", x.seq, "err", err)
		case stream.ShardFor(key, l.opts.Shards) != r.shard:
			x.skip = true // another logical shard's key in a merged Kinesis shard
		case off < r.cur.next:
			x.skip = true // a duplicate from a resend, or before where we start
			r.cur.minEpoch = max32(r.cur.minEpoch, epoch)
		default:
			x.off, x.epoch, x.key, x.data = off, epoch, key, rec.Data
		}
		k.buf = append(k.buf, x)
		r.cur.buffered++
		k.readSeq = x.seq
	}
	if out.NextShardIterator == nil {
		k.closed = true
		k.iter = ""
	} else {
		k.iter = *out.NextShardIterator
	}
	r.cur.popHeads()
	return nil
}

// readError decides what a failed read call means for one Kinesis shard.
func (r *reader) readError(ctx context.Context, k *kcur, op string, err error) error {
	switch code := errorCode(err); {
	case ctx.Err() != nil:
		return ctx.Err()
	case code == codeExpiredIt:
		k.iter = "" // take a new one after the last record fetched
		return nil
	case code == codeNotFound:
		// The shard aged out of retention: nothing more to read in it.
		k.closed, k.iter = true, ""
		return nil
	case code == codeThroughput:
		r.throttled.Add(1)
		fallthrough
	case retryable(ctx, err):
		// Push the shard's next call out; the caller's loop retries.
		r.l.pace.reserve(k.info.id, time.Now())
		return nil
	default:
		return fmt.Errorf("%s %s: %w", op, k.info.id, err)
	}
}

// recover reads the logical shard from start (or TRIM_HORIZON) to the tip
// and returns End (the end of the dense run of offsets) and the highest
// writer epoch seen. The cursor it leaves is positioned at End.
func (r *reader) recover(ctx context.Context, start *position) (int64, uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if start != nil {
		r.cur = r.fromPosition(start)
	} else {
		r.cur = &cursor{ks: map[string]*kcur{}, origin: true}
	}
	c := r.cur
	var (
		maxEpoch uint32
		emitted  int
	)
	for {
		n := len(r.take(math.MaxInt, math.MaxInt64, false))
		emitted += n
		for _, k := range c.ks {
			for i := range k.buf {
				maxEpoch = max32(maxEpoch, k.buf[i].epoch)
			}
		}
		maxEpoch = max32(maxEpoch, c.minEpoch)
		if n > 0 {
			continue
		}
		if c.listedAt.IsZero() {
			if err := r.refresh(ctx, 0); err != nil {
				return 0, 0, err
			}
		}
		done := true
		for _, id := range c.order {
			k := c.ks[id]
			if !k.closed && (!k.fetched || !k.atTip) {
				done = false
			}
		}
		if done {
			low := c.lowestBuffered()
			if c.origin && emitted == 0 && low != math.MaxInt64 && low > c.next {
				// Retention removed the start: the stored offsets begin
				// later. (After the first record, a gap is a crash's hole.)
				c.next = low
				continue
			}
			break
		}
		picked, err := r.fetchForRecovery(ctx)
		if err != nil {
			return 0, 0, err
		}
		if !picked {
			// Only shards waiting for parents that looked finished: a
			// reshard is under way. Poll the parents again after a pause.
			for _, k := range c.ks {
				k.atTip = false
			}
			if err := r.l.sleep(ctx, 100*time.Millisecond); err != nil {
				return 0, 0, err
			}
		}
	}
	c.origin = false
	r.remember()
	return c.next, maxEpoch, nil
}

// fetchForRecovery is fetch without the "missing record" handling: during
// recovery a hole is expected, it is where End is.
func (r *reader) fetchForRecovery(ctx context.Context) (bool, error) {
	c := r.cur
	now := time.Now()
	var pick *kcur
	wait := time.Duration(math.MaxInt64)
	for _, id := range c.order {
		k := c.ks[id]
		if k.closed || (k.fetched && k.atTip) || !r.parentsDone(k) {
			continue
		}
		if d := r.l.pace.peek(k.info.id, now); d < wait {
			wait, pick = d, k
		}
	}
	if pick == nil {
		return false, nil
	}
	if err := r.l.sleep(ctx, r.l.pace.reserve(pick.info.id, time.Now())); err != nil {
		return false, err
	}
	return true, r.getRecords(ctx, pick)
}

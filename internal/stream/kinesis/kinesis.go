package kinesis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/silt-dev/silt/internal/stream"
)

// Kinesis limits (service-sizes-and-limits).
const (
	maxRecordBytes   = 1 << 20 // data + partition key, default record limit
	maxBatchRecords  = 500     // PutRecords entries
	maxBatchBytes    = 5 << 20 // PutRecords request
	getRecordsPerSec = 5       // per shard
	maxGetRecords    = 10_000  // records per GetRecords
)

// Options configures Open.
type Options struct {
	// Client is the Kinesis API (see NewClient). Required.
	Client API
	// Stream is the Kinesis data stream name. Required.
	Stream string
	// Shards is the number of logical shards (see the package doc).
	// Required; reopening with another count fails.
	Shards int
	// StateDir holds the position file. Required.
	StateDir string
	// Create creates the stream with Shards Kinesis shards when it does
	// not exist, and waits until it is ACTIVE.
	Create bool
	// MaxRecordBytes caps data plus Kinesis partition key of one record
	// (default and maximum 1 MiB; streams opted in to larger records may
	// raise it to 10 MiB).
	MaxRecordBytes int
	// MaxPendingBytes caps the bytes queued for sending (default 16 MiB);
	// Append blocks while the queue is full.
	MaxPendingBytes int
	// GetRecordsPerSecond paces GetRecords per Kinesis shard (default 5).
	GetRecordsPerSecond float64
	// ReadLimit is the Limit of one GetRecords call (default 10,000).
	ReadLimit int
	// MaxBufferedRecords caps records a logical shard's reader holds
	// ahead of the offset it needs (default 50,000).
	MaxBufferedRecords int
	// BackoffMin and BackoffMax bound retry delays (defaults 50ms, 5s);
	// each delay is drawn uniformly from [0, min(max, min*2^attempt)].
	BackoffMin, BackoffMax time.Duration
	// CloseTimeout bounds how long Close lets queued records drain
	// (default 10s).
	CloseTimeout time.Duration
	// Seed seeds the backoff jitter (default: random). Tests log theirs.
	Seed uint64
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

func (o *Options) ensureDefaults() {
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = maxRecordBytes
	}
	if o.MaxPendingBytes == 0 {
		o.MaxPendingBytes = 16 << 20
	}
	if o.GetRecordsPerSecond == 0 {
		o.GetRecordsPerSecond = getRecordsPerSec
	}
	if o.ReadLimit == 0 {
		o.ReadLimit = maxGetRecords
	}
	if o.MaxBufferedRecords == 0 {
		o.MaxBufferedRecords = 50_000
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = 50 * time.Millisecond
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = 5 * time.Second
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = 10 * time.Second
	}
	if o.Seed == 0 {
		o.Seed = rand.Uint64()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func (o *Options) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if o.Client == nil {
		bad("Client is nil")
	}
	if o.Stream == "" {
		bad("Stream is empty")
	}
	if o.Shards < 1 || o.Shards > 1<<16 {
		bad("Shards %d outside [1, 65536]", o.Shards)
	}
	if o.StateDir == "" {
		bad("StateDir is empty")
	}
	if o.MaxRecordBytes < 1<<10 || o.MaxRecordBytes > 10<<20 {
		bad("MaxRecordBytes %d outside [1 KiB, 10 MiB]", o.MaxRecordBytes)
	}
	if o.GetRecordsPerSecond < 0 || o.GetRecordsPerSecond > getRecordsPerSec {
		bad("GetRecordsPerSecond %v outside (0, %d] (the Kinesis limit per shard)", o.GetRecordsPerSecond, getRecordsPerSec)
	}
	if o.ReadLimit < 1 || o.ReadLimit > maxGetRecords {
		bad("ReadLimit %d outside [1, %d]", o.ReadLimit, maxGetRecords)
	}
	if o.BackoffMin <= 0 || o.BackoffMax < o.BackoffMin {
		bad("BackoffMin %v and BackoffMax %v: want 0 < min <= max", o.BackoffMin, o.BackoffMax)
	}
	if len(errs) > 0 {
		return fmt.Errorf("kinesis: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

// Log is a stream.Log over a Kinesis data stream. Safe for concurrent use.
type Log struct {
	opts   Options
	api    API
	lay    *layout
	epoch  uint32
	log    *slog.Logger
	closed atomic.Bool

	w       writer
	readers []*reader
	pace    pacer

	shardsMu   sync.Mutex
	shardList  []kshardInfo // last ListShards result
	shardsAt   time.Time
	listFailed error

	saveMu    sync.Mutex
	recovered []*position // per logical shard: position at End found by Open
	stateMu   sync.Mutex
	state     stateFile // last saved
	trimAt    []int64   // per logical shard: trim point (positions at or below are saved)
	dirty     bool

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var (
	_ stream.Log           = (*Log)(nil)
	_ stream.Waiter        = (*Log)(nil)
	_ stream.Trimmer       = (*Log)(nil)
	_ stream.StatsReporter = (*Log)(nil)
)

// kshardInfo is one Kinesis shard from ListShards.
type kshardInfo struct {
	id      string
	parents []string
	rng     hashRange
}

// Open opens the log over an existing stream (or creates it with
// Options.Create), loads the position file and recovers each logical
// shard's End by reading from its saved position to the tip.
func Open(ctx context.Context, opts Options) (*Log, error) {
	opts.ensureDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	l := &Log{
		opts:   opts,
		api:    opts.Client,
		lay:    newLayout(opts.Shards),
		log:    opts.Logger.With("stream", opts.Stream),
		stop:   make(chan struct{}),
		trimAt: make([]int64, opts.Shards),
	}
	l.pace.every = time.Duration(float64(time.Second) / opts.GetRecordsPerSecond)
	if err := l.ensureStream(ctx); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("kinesis: state dir: %w", err)
	}
	if err := l.loadState(); err != nil {
		return nil, err
	}
	// Recover every logical shard: End, the highest epoch written.
	maxEpoch := l.state.Epoch
	l.readers = make([]*reader, opts.Shards)
	ends := make([]int64, opts.Shards)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 16)
	)
	for i := range opts.Shards {
		l.readers[i] = newReader(l, i)
		// Scan from the newest saved position: the End of the last Open,
		// else the consumer's.
		var start *position
		if i < len(l.state.Positions) {
			start = l.state.Positions[i]
		}
		if i < len(l.state.Ends) && l.state.Ends[i] != nil && (start == nil || l.state.Ends[i].Next > start.Next) {
			start = l.state.Ends[i]
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			end, ep, err := l.readers[i].recover(ctx, start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("shard %d: %w", i, err))
				return
			}
			ends[i] = end
			maxEpoch = max(maxEpoch, ep)
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("kinesis: open %s: recover: %w", opts.Stream, errors.Join(errs...))
	}
	l.epoch = maxEpoch + 1
	l.recovered = make([]*position, opts.Shards)
	for i, r := range l.readers {
		l.recovered[i] = r.savedAtOrBelow(ends[i])
	}
	l.w.init(l, ends)
	// The new epoch is durable before any record carries it.
	if err := l.saveState(); err != nil {
		return nil, err
	}
	l.wg.Add(2)
	go l.w.run()
	go l.runSaver()
	return l, nil
}

// ensureStream checks that the stream exists and is usable, creating it if
// asked.
func (l *Log) ensureStream(ctx context.Context) error {
	for created := false; ; {
		out, err := l.api.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(l.opts.Stream)})
		if errorCode(err) == codeNotFound && l.opts.Create && !created {
			_, err = l.api.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(l.opts.Stream), ShardCount: aws.Int32(int32(l.opts.Shards))})
			if err != nil && errorCode(err) != codeInUse {
				return fmt.Errorf("kinesis: create stream %s: %w", l.opts.Stream, err)
			}
			created = true
			continue
		}
		if err != nil {
			return fmt.Errorf("kinesis: describe stream %s: %w", l.opts.Stream, err)
		}
		switch out.StreamDescriptionSummary.StreamStatus {
		case types.StreamStatusActive, types.StreamStatusUpdating:
			return nil
		case types.StreamStatusCreating:
		default:
			return fmt.Errorf("kinesis: stream %s is %s", l.opts.Stream, out.StreamDescriptionSummary.StreamStatus)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// listShards returns the stream's shards (open and closed, within
// retention), refreshing them when older than maxAge.
func (l *Log) listShards(ctx context.Context, maxAge time.Duration) ([]kshardInfo, error) {
	l.shardsMu.Lock()
	defer l.shardsMu.Unlock()
	if l.shardList != nil && time.Since(l.shardsAt) < maxAge {
		return l.shardList, nil
	}
	var all []kshardInfo
	in := &kinesis.ListShardsInput{StreamName: aws.String(l.opts.Stream)}
	for {
		out, err := l.api.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list shards: %w", err)
		}
		for _, s := range out.Shards {
			rng, err := parseRange(s.HashKeyRange.StartingHashKey, s.HashKeyRange.EndingHashKey)
			if err != nil {
				return nil, fmt.Errorf("shard %s: %w", aws.ToString(s.ShardId), err)
			}
			k := kshardInfo{id: aws.ToString(s.ShardId), rng: rng}
			for _, p := range []*string{s.ParentShardId, s.AdjacentParentShardId} {
				if p != nil && *p != "" {
					k.parents = append(k.parents, *p)
				}
			}
			all = append(all, k)
		}
		if out.NextToken == nil || *out.NextToken == "" {
			break
		}
		// With NextToken the stream name must not be sent again.
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
	l.shardList, l.shardsAt = all, time.Now()
	return all, nil
}

// Shards returns the number of logical shards.
func (l *Log) Shards() int { return l.opts.Shards }

func (l *Log) check(shard int) error {
	if l.closed.Load() {
		return stream.ErrClosed
	}
	if shard < 0 || shard >= l.opts.Shards {
		return fmt.Errorf("kinesis: shard %d of %d: %w", shard, l.opts.Shards, stream.ErrOutOfRange)
	}
	return nil
}

// End returns the offset one past the last record of the logical shard
// that Kinesis has acknowledged, with every record before it.
func (l *Log) End(ctx context.Context, shard int) (int64, error) {
	if err := l.check(shard); err != nil {
		return 0, err
	}
	return l.w.end(shard), nil
}

// Wait implements stream.Waiter.
func (l *Log) Wait(ctx context.Context, shard int, offset int64) error {
	if err := l.check(shard); err != nil {
		return err
	}
	return l.w.wait(ctx, shard, offset)
}

// Trim implements stream.Trimmer. Kinesis deletes by retention time, not
// on demand; Trim tells the log which positions are worth saving: the
// newest read position at or below before is persisted within a second.
func (l *Log) Trim(ctx context.Context, shard int, before int64) error {
	if err := l.check(shard); err != nil {
		return err
	}
	if end := l.w.end(shard); before > end {
		return fmt.Errorf("kinesis: trim shard %d before %d, end is %d: %w", shard, before, end, stream.ErrOutOfRange)
	}
	l.stateMu.Lock()
	if before > l.trimAt[shard] {
		l.trimAt[shard] = before
		l.dirty = true
	}
	l.stateMu.Unlock()
	return nil
}

// Stats implements stream.StatsReporter.
func (l *Log) Stats() []stream.ShardStats {
	out := make([]stream.ShardStats, l.opts.Shards)
	for i := range out {
		out[i] = l.w.stats(i)
		l.readers[i].stats(&out[i])
	}
	return out
}

// Close stops appends, lets queued records drain (at most CloseTimeout),
// saves positions and waits for the log's goroutines. Idempotent.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		l.w.close()
		close(l.stop)
		l.wg.Wait()
		l.closeErr = l.saveState()
	})
	return l.closeErr
}

// runSaver persists moved positions once a second.
func (l *Log) runSaver() {
	defer l.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.stateMu.Lock()
			dirty := l.dirty
			l.stateMu.Unlock()
			if dirty {
				if err := l.saveState(); err != nil {
					l.log.Warn("kinesis: save positions failed; a restart re-reads more", "err", err)
				}
			}
		}
	}
}

// stateFile is the JSON position file.
type stateFile struct {
	Format    int         `json:"format"`
	Stream    string      `json:"stream"`
	Shards    int         `json:"shards"`
	Epoch     uint32      `json:"epoch"`
	Positions []*position `json:"positions"` // per logical shard, at or below the trim point; nil: none
	Ends      []*position `json:"ends"`      // per logical shard, at End when last opened
}

const stateFormat = 1

func (l *Log) statePath() string {
	return filepath.Join(l.opts.StateDir, "kinesis-"+l.opts.Stream+".json")
}

func (l *Log) loadState() error {
	b, err := os.ReadFile(l.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		l.state = stateFile{Format: stateFormat, Stream: l.opts.Stream, Shards: l.opts.Shards}
		return nil
	}
	if err != nil {
		return fmt.Errorf("kinesis: read positions: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("kinesis: parse %s: %w", l.statePath(), err)
	}
	if st.Format != stateFormat || st.Stream != l.opts.Stream {
		return fmt.Errorf("kinesis: %s is format %d of stream %q, want format %d of %q", l.statePath(), st.Format, st.Stream, stateFormat, l.opts.Stream)
	}
	if st.Shards != l.opts.Shards {
		return fmt.Errorf("kinesis: stream %s was used with %d logical shards, Options.Shards is %d (the logical shard count cannot change)", l.opts.Stream, st.Shards, l.opts.Shards)
	}
	l.state = st
	return nil
}

// saveState writes the epoch and, per logical shard, the newest read
// position at or below its trim point and the position at End found by
// recovery (where the next Open starts scanning).
//
// Lock order: saveMu, then stateMu or a reader's mu, never both of the
// last two (Read holds reader.mu and takes stateMu).
func (l *Log) saveState() error {
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	l.stateMu.Lock()
	prev := l.state
	trims := append([]int64(nil), l.trimAt...)
	l.dirty = false
	l.stateMu.Unlock()
	st := stateFile{Format: stateFormat, Stream: l.opts.Stream, Shards: l.opts.Shards, Epoch: l.epoch,
		Positions: make([]*position, l.opts.Shards), Ends: make([]*position, l.opts.Shards)}
	for i := range st.Positions {
		if i < len(prev.Positions) {
			st.Positions[i] = prev.Positions[i]
		}
		if i < len(prev.Ends) {
			st.Ends[i] = prev.Ends[i]
		}
		if i < len(l.recovered) && l.recovered[i] != nil {
			st.Ends[i] = l.recovered[i]
		}
		if l.readers != nil && l.readers[i] != nil {
			if p := l.readers[i].savedAtOrBelow(trims[i]); p != nil && (st.Positions[i] == nil || p.Next > st.Positions[i].Next) {
				st.Positions[i] = p
			}
		}
	}
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(l.statePath(), append(b, '\n')); err != nil {
		return fmt.Errorf("kinesis: save positions: %w", err)
	}
	l.stateMu.Lock()
	l.state = st
	l.stateMu.Unlock()
	return nil
}

// writeFileAtomic writes name whole or not at all: temp file, fsync,
// rename, fsync of the directory.
func writeFileAtomic(name string, b []byte) error {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// pacer spaces GetRecords calls per Kinesis shard, shared by every reader
// of the log.
type pacer struct {
	every time.Duration
	mu    sync.Mutex
	next  map[string]time.Time
}

// reserve books the next call slot of a Kinesis shard and returns how long
// to wait for it.
func (p *pacer) reserve(id string, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next == nil {
		p.next = map[string]time.Time{}
	}
	at := p.next[id]
	if at.Before(now) {
		at = now
	}
	p.next[id] = at.Add(p.every)
	return at.Sub(now)
}

// peek returns how long until the shard's next free slot, without booking.
func (p *pacer) peek(id string, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if at := p.next[id]; at.After(now) {
		return at.Sub(now)
	}
	return 0
}

// sleep waits d or until ctx ends or the log closes.
func (l *Log) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-l.stop:
		return stream.ErrClosed
	case <-t.C:
		return nil
	}
}

// backoff returns a full-jitter delay for the given attempt (0-based).
func backoff(rng *rand.Rand, lo, hi time.Duration, attempt int) time.Duration {
	d := lo << min(attempt, 30)
	if d <= 0 || d > hi {
		d = hi
	}
	return time.Duration(rng.Int64N(int64(d) + 1))
}

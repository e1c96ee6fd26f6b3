package locallog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/silt-dev/silt/internal/stream"
)

const (
	metaName   = "META"
	lockName   = "LOCK"
	metaFormat = 1
)

// meta is the content of the META file.
type meta struct {
	Format int `json:"format"`
	Shards int `json:"shards"`
}

// Log is a stream.Log on local disk. It also implements stream.Trimmer and
// stream.Waiter. All methods are safe for concurrent use.
type Log struct {
	dir  string
	opts Options
	fs   FS
	lock io.Closer

	shards []*shard

	closed    atomic.Bool
	stop      chan struct{} // closed by Close: goroutines drain and exit
	retention chan struct{} // buffered(1): wakes the retention goroutine
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var (
	_ stream.Log     = (*Log)(nil)
	_ stream.Trimmer = (*Log)(nil)
	_ stream.Waiter  = (*Log)(nil)

	_ stream.StatsReporter = (*Log)(nil)
)

// Open opens the log in dir, creating it if needed, and recovers each
// shard: the last segment is scanned, and a torn or corrupt tail is cut off
// (and logged) so that offsets continue after the last whole record.
func Open(dir string, opts Options) (*Log, error) {
	opts.ensureDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	l := &Log{
		dir:       dir,
		opts:      opts,
		fs:        opts.FS,
		stop:      make(chan struct{}),
		retention: make(chan struct{}, 1),
	}
	if err := l.fs.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("locallog: open %s: %w", dir, err)
	}
	if opts.Durability == DurabilityFsync {
		if err := l.fs.SyncDir(filepath.Dir(filepath.Clean(dir))); err != nil {
			return nil, fmt.Errorf("locallog: open %s: sync parent directory: %w", dir, err)
		}
	}
	lock, err := l.fs.Lock(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("locallog: open %s: lock: %w", dir, err)
	}
	l.lock = lock
	n, err := l.loadMeta()
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("locallog: open %s: %w", dir, err)
	}
	for i := range n {
		s, err := l.openShard(i)
		if err != nil {
			for _, s := range l.shards {
				s.closeFiles()
			}
			lock.Close()
			return nil, fmt.Errorf("locallog: open %s: shard %d: %w", dir, i, err)
		}
		l.shards = append(l.shards, s)
	}
	for _, s := range l.shards {
		l.wg.Add(1)
		go s.runFlusher(l.stop, &l.wg)
	}
	l.wg.Add(1)
	go l.runRetention()
	return l, nil
}

// loadMeta reads the shard count from META, or writes META for a new log.
func (l *Log) loadMeta() (int, error) {
	name := filepath.Join(l.dir, metaName)
	b, err := readFile(l.fs, name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		n := max(l.opts.Shards, 1)
		b, _ := json.Marshal(meta{Format: metaFormat, Shards: n})
		if err := writeFileAtomic(l.fs, name, append(b, '\n')); err != nil {
			return 0, fmt.Errorf("write %s: %w", metaName, err)
		}
		return n, nil
	case err != nil:
		return 0, fmt.Errorf("read %s: %w", metaName, err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, fmt.Errorf("parse %s: %w", metaName, err)
	}
	if m.Format != metaFormat {
		return 0, fmt.Errorf("%s: format %d, this build reads format %d", metaName, m.Format, metaFormat)
	}
	if m.Shards < 1 {
		return 0, fmt.Errorf("%s: invalid shard count %d", metaName, m.Shards)
	}
	if l.opts.Shards != 0 && l.opts.Shards != m.Shards {
		return 0, fmt.Errorf("log has %d shards but Options.Shards is %d (changing the shard count is not supported)", m.Shards, l.opts.Shards)
	}
	return m.Shards, nil
}

// Dir returns the directory of the log.
func (l *Log) Dir() string { return l.dir }

// Shards returns the number of shards.
func (l *Log) Shards() int { return len(l.shards) }

func (l *Log) shard(i int) (*shard, error) {
	if l.closed.Load() {
		return nil, stream.ErrClosed
	}
	if i < 0 || i >= len(l.shards) {
		return nil, fmt.Errorf("locallog: shard %d of %d: %w", i, len(l.shards), stream.ErrOutOfRange)
	}
	return l.shards[i], nil
}

// Append appends entries, each to shard stream.ShardFor(PartitionKey,
// Shards()). Entries are encoded before Append queues them, so the caller
// may reuse their memory as soon as Append returns, even with an error.
//
// With DurabilityFsync, nil means every entry is written and fsynced. An
// error means the outcome is unknown: any subset of the entries, in order
// per shard, may be durable (ctx ending while waiting does not withdraw
// queued entries). A write or fsync failure is sticky: every later Append
// to that shard fails with it, and the shard needs a reopen, which recovers
// from what is on disk.
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
	n := len(l.shards)
	type part struct{ recs, frames, payload int }
	parts := make([]part, n) // per shard; payload (key + data) is what limits count
	var target []int         // shard of each entry; nil with one shard
	if n > 1 {
		target = make([]int, len(entries))
	}
	for i, e := range entries {
		if len(e.PartitionKey) > maxKeyLen {
			return fmt.Errorf("locallog: append: entry %d: partition key is %d bytes, limit %d", i, len(e.PartitionKey), maxKeyLen)
		}
		if size := len(e.PartitionKey) + len(e.Data); size > l.opts.MaxRecordBytes {
			return fmt.Errorf("locallog: append: entry %d: %d bytes, MaxRecordBytes is %d", i, size, l.opts.MaxRecordBytes)
		}
		sh := 0
		if target != nil {
			sh = stream.ShardFor(e.PartitionKey, n)
			target[i] = sh
		}
		p := &parts[sh]
		p.recs++
		p.frames += frameLen(e.PartitionKey, e.Data)
		p.payload += len(e.PartitionKey) + len(e.Data)
	}
	tails := make([]int64, n)
	for sh, p := range parts {
		if p.recs == 0 {
			continue
		}
		s := l.shards[sh]
		if err := s.meter.admitWrite(ctx, p.recs, p.payload, l.opts.Now); err != nil {
			return fmt.Errorf("locallog: append to shard %d: %w", sh, err)
		}
		tail, err := s.enqueue(ctx, entries, target, p.recs, p.frames)
		if err != nil {
			return fmt.Errorf("locallog: append to shard %d: %w", sh, err)
		}
		tails[sh] = tail
	}
	for sh, p := range parts {
		if p.recs == 0 {
			continue
		}
		if err := l.shards[sh].waitDurable(ctx, tails[sh]); err != nil {
			if ctx.Err() != nil {
				return err
			}
			return fmt.Errorf("locallog: append to shard %d: %w", sh, err)
		}
	}
	return nil
}

// Read returns up to max records of shard from offset from on, capped by
// Options.MaxReadRecords and MaxReadBytes (a record larger than
// MaxReadBytes comes alone). It returns an empty slice when from ==
// End(shard), an error wrapping stream.ErrOutOfRange when from > End, and
// one wrapping stream.ErrTrimmed when retention has deleted from.
//
// Buffer ownership: the PartitionKey and Data of every returned record
// alias one buffer of the shard, valid until the next Read of the same
// shard. Copy what must live longer. Reads of one shard are serialized;
// reads of different shards run in parallel. Every record is checked
// against its CRC; a mismatch is an error wrapping ErrCorrupt.
func (l *Log) Read(ctx context.Context, shard int, from int64, max int) ([]stream.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := l.shard(shard)
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, fmt.Errorf("locallog: read shard %d: max %d must be positive", shard, max)
	}
	if err := s.meter.admitRead(ctx, l.opts.Now); err != nil {
		return nil, err
	}
	recs, err := s.read(from, min(max, l.opts.MaxReadRecords))
	if err != nil {
		return nil, fmt.Errorf("locallog: read shard %d from %d: %w", shard, from, err)
	}
	s.meter.readDone(recs, l.opts.Now)
	return recs, nil
}

// End returns the offset one past the last durable record of shard.
func (l *Log) End(ctx context.Context, shard int) (int64, error) {
	s, err := l.shard(shard)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end, nil
}

// Start returns the first offset of shard that is still stored; reading
// below it returns stream.ErrTrimmed.
func (l *Log) Start(ctx context.Context, shard int) (int64, error) {
	s, err := l.shard(shard)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.segs[0].base, nil
}

// Trim implements stream.Trimmer. The trim point lives in memory only:
// after a reopen it starts at Start(shard), so until the consumer trims
// again nothing more is deleted. Losing it can only keep data longer.
func (l *Log) Trim(ctx context.Context, shard int, before int64) error {
	s, err := l.shard(shard)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if before > s.end {
		end := s.end
		s.mu.Unlock()
		return fmt.Errorf("locallog: trim shard %d before %d, end is %d: %w", shard, before, end, stream.ErrOutOfRange)
	}
	moved := before > s.trim
	if moved {
		s.trim = before
	}
	s.mu.Unlock()
	if moved {
		l.kickRetention()
	}
	return nil
}

// Wait implements stream.Waiter.
func (l *Log) Wait(ctx context.Context, shard int, offset int64) error {
	s, err := l.shard(shard)
	if err != nil {
		return err
	}
	for {
		s.mu.Lock()
		end, closed, ch := s.end, s.closed, s.notify
		s.mu.Unlock()
		if end > offset {
			return nil
		}
		if closed {
			return stream.ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close stops accepting appends, lets each shard's flusher write and sync
// what is already queued (at most MaxPendingBytes per shard), stops the
// retention goroutine, waits for all of them and closes every file. Waiters
// return stream.ErrClosed. Close is idempotent; it returns the first error
// of the first call. Close is bounded by one flush per shard, so a disk
// that hangs in fsync also hangs Close.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		for _, s := range l.shards {
			s.markClosed()
		}
		close(l.stop)
		l.wg.Wait()
		var errs []error
		for _, s := range l.shards {
			if err := s.closeFiles(); err != nil {
				errs = append(errs, fmt.Errorf("shard %d: %w", s.id, err))
			}
		}
		if err := l.lock.Close(); err != nil {
			errs = append(errs, fmt.Errorf("unlock: %w", err))
		}
		if len(errs) > 0 {
			l.closeErr = fmt.Errorf("locallog: close %s: %w", l.dir, errors.Join(errs...))
		}
	})
	return l.closeErr
}

func (l *Log) kickRetention() {
	select {
	case l.retention <- struct{}{}:
	default:
	}
}

// runRetention applies retention on every tick, Trim and segment roll. It
// is owned by the Log and exits when Close closes l.stop.
func (l *Log) runRetention() {
	defer l.wg.Done()
	var tick <-chan time.Time
	if l.opts.RetentionInterval > 0 {
		t := time.NewTicker(l.opts.RetentionInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-l.stop:
			return
		case <-tick:
		case <-l.retention:
		}
		for _, s := range l.shards {
			s.applyRetention()
		}
	}
}

package locallog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/silt-dev/silt/internal/stream"
)

const (
	metaName   = "META"
	lockName   = "LOCK"
	metaFormat = 1
	// metaFormat2 adds the physical shards of a resharded log (reshard.go).
	metaFormat2 = 2
)

// meta is the content of the META file.
type meta struct {
	Format   int        `json:"format"`
	Shards   int        `json:"shards"`
	Physical []physMeta `json:"physical,omitempty"` // format 2
	NextID   int        `json:"next_id,omitempty"`  // format 2: id of the next physical shard
}

// Log is a stream.Log on local disk. It also implements stream.Trimmer and
// stream.Waiter. All methods are safe for concurrent use.
type Log struct {
	dir  string
	opts Options
	fs   FS
	lock io.Closer

	// shards holds every physical shard; the first Shards() are the
	// original ones, shard i of logical shard i. physMu guards it.
	shards  []*shard
	physMu  sync.RWMutex
	logical []*lshard
	metaMu  sync.Mutex // serializes reshards' META writes
	nextID  int        // next physical shard id

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
	n, metas, err := l.loadMeta()
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("locallog: open %s: %w", dir, err)
	}
	fail := func(err error) (*Log, error) {
		for _, s := range l.shards {
			s.closeFiles()
		}
		lock.Close()
		return nil, fmt.Errorf("locallog: open %s: %w", dir, err)
	}
	for i := range n {
		l.logical = append(l.logical, &lshard{id: i, l: l, notify: make(chan struct{})})
	}
	tops := make([]*topo, n)
	for i := range tops {
		tops[i] = &topo{}
	}
	for _, m := range metas {
		s, err := l.openPhys(m.ID, m.V2, m.Opened)
		if err != nil {
			return fail(fmt.Errorf("shard %d: %w", m.ID, err))
		}
		s.owner = l.logical[m.Logical] // wakes waiters on the logical End
		l.shards = append(l.shards, s)
		t := tops[m.Logical]
		t.all, t.metas = append(t.all, s), append(t.metas, m)
	}
	for i, ls := range l.logical {
		tops[i].build()
		ls.topo.Store(tops[i])
		if !tops[i].simple {
			if err := ls.recoverResharded(); err != nil {
				return fail(fmt.Errorf("logical shard %d: %w", i, err))
			}
		}
	}
	for _, s := range l.shards {
		l.wg.Add(1)
		go s.runFlusher(l.stop, &l.wg)
	}
	l.wg.Add(1)
	go l.runRetention()
	return l, nil
}

// loadMeta reads the shard count and physical shards from META, or writes
// META for a new log. The physical shards come ordered by id (parents
// before children).
func (l *Log) loadMeta() (int, []physMeta, error) {
	name := filepath.Join(l.dir, metaName)
	b, err := readFile(l.fs, name)
	var m meta
	switch {
	case errors.Is(err, fs.ErrNotExist):
		m = meta{Format: metaFormat, Shards: max(l.opts.Shards, 1)}
		b, _ := json.Marshal(m)
		if err := writeFileAtomic(l.fs, name, append(b, '\n')); err != nil {
			return 0, nil, fmt.Errorf("write %s: %w", metaName, err)
		}
	case err != nil:
		return 0, nil, fmt.Errorf("read %s: %w", metaName, err)
	default:
		if err := json.Unmarshal(b, &m); err != nil {
			return 0, nil, fmt.Errorf("parse %s: %w", metaName, err)
		}
	}
	if m.Format != metaFormat && m.Format != metaFormat2 {
		return 0, nil, fmt.Errorf("%s: format %d, this build reads formats %d and %d", metaName, m.Format, metaFormat, metaFormat2)
	}
	if m.Shards < 1 {
		return 0, nil, fmt.Errorf("%s: invalid shard count %d", metaName, m.Shards)
	}
	if l.opts.Shards != 0 && l.opts.Shards != m.Shards {
		return 0, nil, fmt.Errorf("log has %d shards but Options.Shards is %d (the number of shards is fixed; SplitShard and MergeShards change the physical shards under them)", m.Shards, l.opts.Shards)
	}
	if m.Format == metaFormat {
		for i := range m.Shards {
			lo, hi := logicalRange(i, m.Shards)
			m.Physical = append(m.Physical, physMeta{ID: i, Logical: i, Lo: lo.String(), Hi: hi.String()})
		}
		m.NextID = m.Shards
	}
	sort.Slice(m.Physical, func(i, j int) bool { return m.Physical[i].ID < m.Physical[j].ID })
	open := make([]int, m.Shards)
	for i, p := range m.Physical {
		_, e1 := parseHash(p.Lo)
		_, e2 := parseHash(p.Hi)
		switch {
		case p.Logical < 0 || p.Logical >= m.Shards:
			return 0, nil, fmt.Errorf("%s: physical shard %d belongs to logical shard %d of %d", metaName, p.ID, p.Logical, m.Shards)
		case i > 0 && m.Physical[i-1].ID == p.ID || p.ID < 0 || p.ID >= m.NextID:
			return 0, nil, fmt.Errorf("%s: physical shard id %d repeated or not below next_id %d", metaName, p.ID, m.NextID)
		case e1 != nil || e2 != nil:
			return 0, nil, fmt.Errorf("%s: physical shard %d: %w", metaName, p.ID, errors.Join(e1, e2))
		case !p.V2 && p.ID != p.Logical:
			return 0, nil, fmt.Errorf("%s: physical shard %d has version 1 frames but is not logical shard %d's original", metaName, p.ID, p.Logical)
		}
		if p.Closed == nil {
			open[p.Logical]++
		}
	}
	for i, n := range open {
		if n == 0 {
			return 0, nil, fmt.Errorf("%s: logical shard %d has no open physical shard", metaName, i)
		}
	}
	l.nextID = m.NextID
	return m.Shards, m.Physical, nil
}

// writeMeta commits META (format 2) with logical shard changed's physical
// shards replaced by metas. Caller holds metaMu.
func (l *Log) writeMeta(changed int, metas []physMeta) error {
	var all []physMeta
	for _, ls := range l.logical {
		if ls.id == changed {
			all = append(all, metas...)
		} else {
			all = append(all, ls.topo.Load().metas...)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	b, err := json.Marshal(meta{Format: metaFormat2, Shards: len(l.logical), Physical: all, NextID: l.nextID})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(l.fs, filepath.Join(l.dir, metaName), append(b, '\n')); err != nil {
		return fmt.Errorf("write %s: %w", metaName, err)
	}
	return nil
}

// physical returns every physical shard.
func (l *Log) physical() []*shard {
	l.physMu.RLock()
	defer l.physMu.RUnlock()
	return slices.Clone(l.shards)
}

// Dir returns the directory of the log.
func (l *Log) Dir() string { return l.dir }

// Shards returns the number of (logical) shards.
func (l *Log) Shards() int { return len(l.logical) }

// shard returns logical shard i, and its physical shard when it was never
// resharded (nil otherwise).
func (l *Log) shard(i int) (*lshard, *shard, error) {
	if l.closed.Load() {
		return nil, nil, stream.ErrClosed
	}
	if i < 0 || i >= len(l.logical) {
		return nil, nil, fmt.Errorf("locallog: shard %d of %d: %w", i, len(l.logical), stream.ErrOutOfRange)
	}
	ls := l.logical[i]
	if t := ls.topo.Load(); t.simple {
		return ls, t.all[0], nil
	}
	return ls, nil, nil
}

// appendPiece is how many bytes (partition keys and data) of a larger
// Append are routed and framed at a time. Each piece is queued as soon as
// it is framed, so the flushers write piece k (and the device takes it)
// while piece k+1 is hashed and framed; the syncers hold their fsync until
// the last piece is written (shard.holdBegin), so one Append is still one
// fsync per shard. A variable only so that tests can make every Append
// span many pieces.
var appendPiece = 1 << 20

// afterPiece, when set (tests only), runs after each piece of a
// multi-piece Append is queued.
var afterPiece func(*Log)

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
	// Check every entry before anything is queued: a bad entry fails the
	// whole Append.
	total := 0
	for i, e := range entries {
		if len(e.PartitionKey) > maxKeyLen {
			return fmt.Errorf("locallog: append: entry %d: partition key is %d bytes, limit %d", i, len(e.PartitionKey), maxKeyLen)
		}
		size := len(e.PartitionKey) + len(e.Data)
		if size > l.opts.MaxRecordBytes {
			return fmt.Errorf("locallog: append: entry %d: %d bytes, MaxRecordBytes is %d", i, size, l.opts.MaxRecordBytes)
		}
		total += size
	}
	n := len(l.logical)
	a := appendState{
		l:      l,
		pieces: total > appendPiece,
		tails:  make([]int64, n),
		simple: make([]*shard, n),
	}
	err := a.run(ctx, entries)
	for sh, s := range a.simple {
		if s != nil && a.pieces {
			s.holdEnd(a.tails[sh])
		}
	}
	if err != nil {
		return err
	}
	for sh, s := range a.simple {
		if s == nil {
			continue
		}
		if err := s.waitDurable(ctx, a.tails[sh]); err != nil {
			if ctx.Err() != nil {
				return err
			}
			return fmt.Errorf("locallog: append to shard %d: %w", sh, err)
		}
	}
	return nil
}

// appendState is one Append queuing its pieces.
type appendState struct {
	l      *Log
	pieces bool     // more than one piece: hold the syncers (shard.holdBegin)
	tails  []int64  // per logical shard: offset after this Append's last queued record
	simple []*shard // per logical shard: the physical shard it queued to, if never resharded
	target []int    // scratch: shard of each entry of a piece
}

// pieceLen is how many entries from the start of entries make a piece.
func pieceLen(entries []stream.Entry) int {
	k, size := 0, 0
	for k < len(entries) && (k == 0 || size < appendPiece) {
		size += len(entries[k].PartitionKey) + len(entries[k].Data)
		k++
	}
	return k
}

// run routes, frames and queues entries one piece (appendPiece bytes) at
// a time, in order, so each shard's records stay in order. With several
// pieces and shards, a helper goroutine routes (hashes the partition keys
// of) the next piece while this one frames the current one.
func (a *appendState) run(ctx context.Context, entries []stream.Entry) error {
	n := len(a.l.logical)
	if !a.pieces || n == 1 {
		for len(entries) > 0 {
			k := pieceLen(entries)
			if err := a.piece(ctx, entries[:k], nil); err != nil {
				return err
			}
			entries = entries[k:]
		}
		return nil
	}
	type routed struct {
		entries []stream.Entry
		target  []int
	}
	next := make(chan routed)
	free := make(chan []int, 2) // target buffers going back to the router
	free <- nil
	free <- nil
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(next)
		for len(entries) > 0 {
			var t []int
			select {
			case t = <-free:
			case <-stop:
				return
			}
			k := pieceLen(entries)
			t = slices.Grow(t[:0], k)[:k]
			stream.ShardsFor(entries[:k], n, t)
			select {
			case next <- routed{entries[:k], t}:
			case <-stop:
				return
			}
			entries = entries[k:]
		}
	}()
	for r := range next {
		if err := a.piece(ctx, r.entries, r.target); err != nil {
			return err
		}
		free <- r.target
	}
	return nil
}

// piece queues entries to their shards. target holds each entry's shard,
// or is nil: then piece routes them itself. With one shard target stays
// nil.
func (a *appendState) piece(ctx context.Context, entries []stream.Entry, target []int) error {
	l := a.l
	n := len(l.logical)
	type part struct{ recs, frames, payload int }
	parts := make([]part, n) // per shard; payload (key + data) is what limits count
	if target == nil && n > 1 {
		if cap(a.target) < len(entries) {
			a.target = make([]int, len(entries))
		}
		target = a.target[:len(entries)]
		stream.ShardsFor(entries, n, target)
	}
	for i, e := range entries {
		sh := 0
		if target != nil {
			sh = target[i]
		}
		p := &parts[sh]
		p.recs++
		p.frames += frameLen(e.PartitionKey, e.Data)
		p.payload += len(e.PartitionKey) + len(e.Data)
	}
	var resharded []int
	for sh, p := range parts {
		if p.recs == 0 {
			continue
		}
		ls := l.logical[sh]
		ls.mu.Lock() // a reshard waits for what is queued before it
		t := ls.topo.Load()
		if !t.simple {
			ls.mu.Unlock()
			resharded = append(resharded, sh)
			continue
		}
		s := t.all[0]
		if err := s.meter.admitWrite(ctx, p.recs, p.payload, l.opts.Now); err != nil {
			ls.mu.Unlock()
			return fmt.Errorf("locallog: append to shard %d: %w", sh, err)
		}
		if a.pieces && a.simple[sh] == nil {
			s.holdBegin()
			a.simple[sh] = s
		}
		tail, err := s.enqueue(ctx, entries, target, p.recs, p.frames)
		ls.mu.Unlock()
		if err != nil {
			return fmt.Errorf("locallog: append to shard %d: %w", sh, err)
		}
		a.tails[sh], a.simple[sh] = tail, s
	}
	for _, sh := range resharded {
		if err := l.logical[sh].appendResharded(ctx, entries, target); err != nil {
			if ctx.Err() != nil {
				return err
			}
			return fmt.Errorf("locallog: append to shard %d: %w", sh, err)
		}
	}
	if a.pieces && afterPiece != nil {
		afterPiece(l)
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
	ls, s, err := l.shard(shard)
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, fmt.Errorf("locallog: read shard %d: max %d must be positive", shard, max)
	}
	m := ls.topo.Load().all[0].meter // a resharded shard's reads are counted on its original
	if err := m.admitRead(ctx, l.opts.Now); err != nil {
		return nil, err
	}
	var recs []stream.Record
	if s != nil {
		recs, err = s.read(from, min(max, l.opts.MaxReadRecords))
	} else {
		recs, err = ls.readResharded(from, min(max, l.opts.MaxReadRecords))
	}
	if err != nil {
		return nil, fmt.Errorf("locallog: read shard %d from %d: %w", shard, from, err)
	}
	m.readDone(recs, l.opts.Now)
	return recs, nil
}

// End returns the offset one past the last durable record of shard.
func (l *Log) End(ctx context.Context, shard int) (int64, error) {
	ls, _, err := l.shard(shard)
	if err != nil {
		return 0, err
	}
	return ls.end(), nil
}

// Start returns the first offset of shard that is still stored; reading
// below it returns stream.ErrTrimmed.
func (l *Log) Start(ctx context.Context, shard int) (int64, error) {
	ls, _, err := l.shard(shard)
	if err != nil {
		return 0, err
	}
	return ls.topo.Load().all[0].startOffset(), nil
}

// Trim implements stream.Trimmer. The trim point lives in memory only:
// after a reopen it starts at Start(shard), so until the consumer trims
// again nothing more is deleted. Losing it can only keep data longer.
func (l *Log) Trim(ctx context.Context, shard int, before int64) error {
	ls, s, err := l.shard(shard)
	if err != nil {
		return err
	}
	if s == nil {
		if end := ls.end(); before > end {
			return fmt.Errorf("locallog: trim shard %d before %d, end is %d: %w", shard, before, end, stream.ErrOutOfRange)
		}
		t := ls.topo.Load()
		moved := false
		for i, p := range t.all {
			moved = p.trimLogical(before, t.closedAt(i)) || moved
		}
		if moved {
			l.kickRetention()
		}
		return nil
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
	ls, _, err := l.shard(shard)
	if err != nil {
		return err
	}
	for {
		ch := ls.waitCh()
		if ls.end() > offset {
			return nil
		}
		if l.closed.Load() {
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
		for _, s := range l.physical() {
			s.markClosed()
		}
		// A reshard under way finishes (or sees closed) before the
		// goroutines stop; then mark the shards it may have added.
		for _, ls := range l.logical {
			ls.mu.Lock()
			ls.mu.Unlock() //nolint:staticcheck // barrier
		}
		for _, s := range l.physical() {
			s.markClosed()
		}
		close(l.stop)
		l.wg.Wait()
		var errs []error
		for _, s := range l.physical() {
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
		for _, s := range l.physical() {
			s.applyRetention()
		}
	}
}

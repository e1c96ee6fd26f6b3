package locallog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/silt-dev/silt/internal/stream"
)

// indexInterval is the spacing, in segment bytes, of the sparse index: a
// Read skips at most this many bytes of headers to reach its offset. An
// index costs 16 bytes per interval: 16 KiB for a 64 MiB segment.
const indexInterval = 64 << 10

const segSuffix = ".seg"

// allocStep is how far ahead of the write position the active segment's
// disk space is reserved (never past SegmentBytes) with DurabilityFsync:
// writes inside reserved space do not grow the file, so the fsync after
// them commits no size change (see File.Allocate).
const allocStep = 16 << 20

// writePiece is the largest write the flusher issues with DurabilityFsync;
// after each it starts the piece's write-back (writebackStarter).
const writePiece = 1 << 20

// pageSize is the page size write-back ranges are aligned to; the common
// 4 KiB also works, merely less exactly, where pages are larger.
const pageSize = 4 << 10

func shardDir(root string, i int) string { return filepath.Join(root, fmt.Sprintf("shard-%04d", i)) }

func segName(base int64) string { return fmt.Sprintf("%020d%s", base, segSuffix) }

// segName2 is the name of a segment of a physical shard made by a reshard
// (version 2 frames): its base, then its low-water mark, the logical offset
// below which every record of the logical shard was durable when the
// segment was created (see reshard.go).
func segName2(base, low int64) string {
	if low < 0 {
		return segName(base)
	}
	return fmt.Sprintf("%020d-%020d%s", base, low, segSuffix)
}

// parseSegName returns the base offset of a segment file name.
func parseSegName(name string) (int64, bool) {
	base, _, ok := parseSegName2(name)
	return base, ok
}

// parseSegName2 returns the base offset and low-water mark (-1 for a
// version 1 name) of a segment file name.
func parseSegName2(name string) (base, low int64, ok bool) {
	digits, ok := strings.CutSuffix(name, segSuffix)
	if !ok {
		return 0, 0, false
	}
	low = -1
	if b, l, two := strings.Cut(digits, "-"); two {
		if len(l) != 20 {
			return 0, 0, false
		}
		v, err := strconv.ParseInt(l, 10, 64)
		if err != nil || v < 0 {
			return 0, 0, false
		}
		digits, low = b, v
	}
	if len(digits) != 20 {
		return 0, 0, false
	}
	base, err := strconv.ParseInt(digits, 10, 64)
	return base, low, err == nil && base >= 0
}

// shard is one shard's segments, append queue and flusher.
//
// Lock order: readMu before mu. mu is held only for short bookkeeping, never
// across a write or fsync; it may be held across opening a segment file
// for reading.
//
// Who writes what:
//   - Append goroutines push to queue (mu).
//   - The flusher goroutine owns w, wpos, wend, lastIdx and wbuf outright,
//     and is the only writer of end, the active segment's size/next/index
//     and the segment list's tail (all under mu), which it updates only
//     after the bytes are written (and fsynced): readers never see a
//     record that is not durable.
//   - The retention goroutine removes segments from the head of segs (mu).
//   - Read holds readMu for its whole duration, so rbuf and lazily built
//     indexes of closed segments have one user at a time.
type shard struct {
	id   int
	dir  string
	opts *Options
	fs   FS
	log  *slog.Logger
	// kick wakes the flusher (buffered 1; a full buffer means it is awake).
	kick chan struct{}
	// retention asks the Log's retention goroutine for a pass.
	retention func()

	readMu   sync.Mutex
	rbuf     []byte
	lastRead *segment // closed segment whose index and handle Read keeps

	mu      sync.Mutex
	segs    []*segment // ascending base; the last is the active segment
	end     int64      // one past the last durable record
	trim    int64      // records below may be deleted
	closed  bool
	flushed bool          // the flusher has exited: nothing more will be written
	err     error         // sticky write failure
	qbuf    []byte        // frames waiting for the flusher
	qrecs   int64         // records in qbuf
	qmarks  []frameMark   // v1: frame starts in qbuf, markInterval apart
	tail    int64         // offset after the last queued record
	space   chan struct{} // closed (and replaced) when the flusher takes the queue
	notify  chan struct{} // closed (and replaced) when end advances, on failure and on close

	// Flusher-owned.
	w       File         // active segment, for writing
	wbase   int64        // base offset of the active segment
	wlow    int64        // its low-water mark (v2; -1 otherwise)
	wpos    int64        // bytes written to w
	wend    int64        // offset of the next record to write
	walloc  int64        // bytes of w reserved by Allocate (its file size); >= wpos
	wbFrom  int64        // write-back of w is started below this (writebackStarter)
	lastIdx int64        // position of the active segment's last index entry; -1: none
	fbuf    []byte       // frames taken from qbuf, being written
	fmarks  []frameMark  // qmarks taken with them
	idxBuf  []indexEntry // scratch for writeFrames
	syncs   atomic.Int64 // fsyncs of segment data, for benchmarks
	syncNs  atomic.Int64 // time spent in them

	// Flusher-to-syncer handoff (syncMu; lock order: syncMu is never held
	// with mu).
	syncMu   sync.Mutex
	syncQ    []*handoff
	syncBusy bool          // the syncer holds chunks it has not settled
	unsynced int           // bytes written and not yet settled
	syncKick chan struct{} // buffered(1)
	syncIdle chan struct{} // closed (and replaced) whenever the syncer settles chunks
	syncStop chan struct{} // closed by the flusher when it exits
	// An Append larger than appendPiece queues its frames piece by piece
	// (Log.Append), so they are written while later pieces are framed;
	// the syncer holds its fsync until the last piece is handed over, so
	// the whole Append still costs one fsync (see holdBegin).
	holdPieces int   // Appends queuing pieces into this shard now
	holdUpto   int64 // fsync once handed-over chunks reach this offset
	syncForce  bool  // the flusher waits in waitSynced: fsync now
	drains     int   // reshards draining this shard: holds do not apply
	syncedTo   int64 // next offset of the last chunk the syncer took

	meter *shardMeter // limits and figures (limits.go)

	// Set by a reshard (reshard.go); zero values for an original shard.
	v2       bool    // version 2 frames (logical offsets), segment names with low-water marks
	owner    *lshard // the logical shard it belongs to
	openedAt int64   // logical offset at which it was opened (0 for an original)
	pendL    []int64 // v2: logical offsets of queued records not yet durable (mu)
	lastLoff int64   // v2, flusher-owned: logical offset of the last record written
	activeL  []lpos  // v2, set by recovery: the active segment's frames
	rloffs   []int64 // readMu: logical offsets of the records the last read returned
	rnextL   int64   // readMu: the last read ended before logical offset rnextL...
	rnextP   int64   // ...which is at physical offset rnextP; -1: nothing cached
}

// lpos is a frame's logical offset and byte position in its segment.
type lpos struct{ loff, pos int64 }

// segment is one segment file. All fields except base are guarded by
// shard.mu.
type segment struct {
	base    int64
	low     int64 // low-water mark of a v2 shard's segment (see segName2); -1 otherwise
	size    int64 // bytes of whole, durable frames
	next    int64 // offset after its last record
	modTime time.Time
	indexed bool         // index is complete for [0, size)
	index   []indexEntry // ascending; first entry at position 0
	h       *handle      // read handle, opened on demand
}

type indexEntry struct{ off, pos int64 }

// lookup returns the last index entry at or before offset off.
func (g *segment) lookup(off int64) indexEntry {
	i := sort.Search(len(g.index), func(i int) bool { return g.index[i].off > off }) - 1
	if i < 0 {
		return indexEntry{off: g.base}
	}
	return g.index[i]
}

// handle is a refcounted read-only file: the segment holds one reference
// while it caches the handle, and each Read one while it reads. The file
// closes when the last reference goes, so dropping a handle (eviction,
// retention, Close) never pulls a file out from under a Read.
type handle struct {
	f    File
	refs atomic.Int32
}

func (h *handle) release() error {
	if h.refs.Add(-1) == 0 {
		return h.f.Close()
	}
	return nil
}

// dropHandle releases the segment's own reference. Caller holds mu.
func (g *segment) dropHandle() error {
	if g.h == nil {
		return nil
	}
	h := g.h
	g.h = nil
	return h.release()
}

func (s *shard) segPath(base, low int64) string { return filepath.Join(s.dir, segName2(base, low)) }

func (g *segment) name() string { return segName2(g.base, g.low) }

// openShard opens an original shard.
func (l *Log) openShard(i int) (*shard, error) { return l.openPhys(i, false, 0) }

// openPhys lists a physical shard's segments and recovers the last one.
// v2 and openedAt describe a shard made by a reshard.
func (l *Log) openPhys(i int, v2 bool, openedAt int64) (*shard, error) {
	s := &shard{
		v2:        v2,
		openedAt:  openedAt,
		rnextP:    -1,
		id:        i,
		dir:       shardDir(l.dir, i),
		opts:      &l.opts,
		fs:        l.fs,
		log:       l.opts.Logger.With("shard", i),
		kick:      make(chan struct{}, 1),
		retention: l.kickRetention,
		space:     make(chan struct{}),
		notify:    make(chan struct{}),
		lastIdx:   -1,
		meter:     newMeter(l.opts.Limits, l.opts.Now()),
		syncKick:  make(chan struct{}, 1),
		syncIdle:  make(chan struct{}),
		syncStop:  make(chan struct{}),
	}
	if err := s.fs.MkdirAll(s.dir); err != nil {
		return nil, err
	}
	if l.opts.Durability == DurabilityFsync {
		// The shard directory's own entry must be durable before anything
		// in it is acknowledged.
		if err := s.fs.SyncDir(l.dir); err != nil {
			return nil, err
		}
	}
	names, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var bases []int64
	lows := map[int64]int64{}
	for _, name := range names {
		if base, low, ok := parseSegName2(name); ok && (low >= 0) == v2 {
			bases = append(bases, base)
			lows[base] = low
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	if len(bases) == 0 {
		low := int64(-1)
		if v2 {
			low = openedAt
		}
		f, err := s.fs.Create(s.segPath(0, low))
		if err != nil {
			return nil, err
		}
		if err := s.fs.SyncDir(s.dir); err != nil {
			f.Close()
			return nil, err
		}
		s.w, s.wlow = f, low
		s.segs = []*segment{{low: low, indexed: true, modTime: l.opts.Now()}}
		s.lastLoff = openedAt - 1
		return s, nil
	}
	// Closed segments are trusted as written: each was fsynced before the
	// next one was created. Their indexes are built when first read, which
	// also checks that each holds exactly next-base records.
	for k, base := range bases[:len(bases)-1] {
		f, err := s.fs.Open(s.segPath(base, lows[base]))
		if err != nil {
			return nil, err
		}
		fi, err := f.Stat()
		f.Close()
		if err != nil {
			return nil, err
		}
		s.segs = append(s.segs, &segment{base: base, low: lows[base], size: fi.Size(), next: bases[k+1], modTime: fi.ModTime()})
	}
	lastBase := bases[len(bases)-1]
	last := &segment{base: lastBase, low: lows[lastBase], indexed: true}
	s.lastLoff = max(openedAt, last.low) - 1
	if err := s.recoverActive(last); err != nil {
		return nil, fmt.Errorf("recover %s: %w", last.name(), err)
	}
	s.segs = append(s.segs, last)
	s.meter.ages.Appended(s.end, last.modTime)
	return s, nil
}

// recoverActive scans the last segment, keeps the longest valid prefix,
// cuts the rest and sets the flusher up to append after it.
func (s *shard) recoverActive(g *segment) error {
	f, err := s.fs.OpenRW(s.segPath(g.base, g.low))
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	size := fi.Size()
	sr := newSegmentReader(f, size)
	n := int64(0)
	var cause error
	for {
		_, _, pos, err := sr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, io.ErrUnexpectedEOF) {
				f.Close()
				return err
			}
			cause = err
			break
		}
		if s.v2 {
			if sr.loff < 0 {
				cause = fmt.Errorf("%w: version 1 frame in a resharded shard", ErrCorrupt)
				sr.pos = pos
				break
			}
			s.activeL = append(s.activeL, lpos{sr.loff, pos})
			s.lastLoff = sr.loff
		}
		if len(g.index) == 0 || pos-g.index[len(g.index)-1].pos >= indexInterval {
			g.index = append(g.index, indexEntry{off: g.base + n, pos: pos})
		}
		n++
	}
	valid := sr.pos
	if valid < size {
		// Only the tail of the last segment can be torn by a crash; we cut
		// from the first bad frame, even if whole frames follow it, because
		// offsets after a hole would no longer be dense. A tail of zeros is
		// the space reserved ahead of the writer (allocStep), not damage;
		// it is cut too, so that what is written next never lands in front
		// of stale frames a torn write may have left further on.
		zeros, err := allZero(f, valid, size)
		if err != nil {
			f.Close()
			return err
		}
		if !zeros {
			s.log.Warn("locallog: cut invalid tail of last segment",
				"segment", g.name(), "kept_bytes", valid, "cut_bytes", size-valid,
				"kept_records", n, "cause", cause)
		}
		if err := f.Truncate(valid); err != nil {
			f.Close()
			return fmt.Errorf("truncate to %d: %w", valid, err)
		}
		if s.opts.Durability == DurabilityFsync {
			if err := f.Sync(); err != nil {
				f.Close()
				return fmt.Errorf("sync after truncate: %w", err)
			}
		}
	}
	g.size = valid
	g.next = g.base + n
	g.modTime = fi.ModTime()
	s.w = f
	s.wbase = g.base
	s.wlow = g.low
	s.wpos = valid
	s.walloc = valid
	s.wbFrom = valid &^ (pageSize - 1)
	s.wend = g.next
	s.end = g.next
	s.tail = g.next
	if len(g.index) > 0 {
		s.lastIdx = g.index[len(g.index)-1].pos
	}
	return nil
}

// enqueue encodes the entries that go to this shard (target[i] == s.id, or
// all of them when target is nil; n records, size frame bytes) straight
// into the shard's queue buffer, blocking while the queue is full, and
// returns the offset one past the last of them: they are durable once
// End reaches it (waitDurable). All Appends waiting at the moment the
// flusher takes the buffer share one write and one fsync.
func (s *shard) enqueue(ctx context.Context, entries []stream.Entry, target []int, n, size int) (int64, error) {
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return 0, stream.ErrClosed
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return 0, err
		}
		// A request larger than the whole queue is let in alone.
		if len(s.qbuf) == 0 || len(s.qbuf)+size <= s.opts.MaxPendingBytes {
			break
		}
		space := s.space
		s.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		s.mu.Lock()
	}
	s.qbuf = slices.Grow(s.qbuf, size)
	k := s.qrecs
	for i, e := range entries {
		if target == nil || target[i] == s.id {
			if m := len(s.qmarks); m == 0 || len(s.qbuf)-s.qmarks[m-1].pos >= markInterval {
				s.qmarks = append(s.qmarks, frameMark{recs: k, pos: len(s.qbuf)})
			}
			s.qbuf = appendFrame(s.qbuf, e.PartitionKey, e.Data)
			k++
		}
	}
	s.qrecs += int64(n)
	s.tail += int64(n)
	tail := s.tail
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return tail, nil
}

// enqueue2 is enqueue for a v2 shard: the entries idx of entries, the
// k-th with logical offset loffs[k]. Caller holds the logical shard's
// append lock, so logical offsets enter every queue in order.
func (s *shard) enqueue2(ctx context.Context, entries []stream.Entry, idx []int, loffs []int64, size int) error {
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return stream.ErrClosed
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return err
		}
		if len(s.qbuf) == 0 || len(s.qbuf)+size <= s.opts.MaxPendingBytes {
			break
		}
		space := s.space
		s.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
	}
	s.qbuf = slices.Grow(s.qbuf, size)
	for k, i := range idx {
		s.qbuf = appendFrame2(s.qbuf, loffs[k], entries[i].PartitionKey, entries[i].Data)
	}
	s.pendL = append(s.pendL, loffs...)
	s.qrecs += int64(len(idx))
	s.tail += int64(len(idx))
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

// waitDurable blocks until the records below offset upto are durable
// (nil), the shard has failed before that (its sticky error), or the log
// closed without writing them (stream.ErrClosed).
func (s *shard) waitDurable(ctx context.Context, upto int64) error {
	for {
		s.mu.Lock()
		end, err, flushed, ch := s.end, s.err, s.flushed, s.notify
		s.mu.Unlock()
		switch {
		case end >= upto:
			return nil
		case err != nil:
			return err
		case flushed:
			return stream.ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// fail makes err the shard's sticky error (unless it has one) and wakes
// every waiter. It returns the sticky error.
func (s *shard) fail(err error) error {
	s.mu.Lock()
	first := s.err == nil
	if first {
		s.err = err
	}
	err = s.err
	s.broadcast()
	s.mu.Unlock()
	if first {
		s.log.Error("locallog: write failed; shard refuses appends until reopened", "err", err)
	}
	return err
}

// broadcast wakes everyone waiting on notify, and on the logical shard's
// End for a v2 shard. Caller holds mu.
func (s *shard) broadcast() {
	close(s.notify)
	s.notify = make(chan struct{})
	if s.owner != nil {
		s.owner.wake()
	}
}

// runFlusher is the shard's single writer. It exits after Close, once the
// queue is drained.
func (s *shard) runFlusher(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	syncDone := make(chan struct{})
	go func() {
		defer close(syncDone)
		s.runSyncer()
	}()
	// The syncer is the flusher's: it stops only after the last handoff.
	// Then Appends still waiting learn that nothing more will be written.
	defer func() {
		close(s.syncStop)
		<-syncDone
		s.mu.Lock()
		s.flushed = true
		s.broadcast()
		s.mu.Unlock()
	}()
	for {
		select {
		case <-s.kick:
			s.flushQueued()
		case <-stop:
			// markClosed ran before stop was closed, so nothing can be
			// queued after this final drain.
			s.flushQueued()
			return
		}
	}
}

// flushQueued writes the queue until it is empty. The flusher swaps the
// queue buffer for its own (emptied) one, so the frames are written from
// the buffer Append encoded them into, without copying; everything queued
// at that moment shares one write and one fsync: the group commit.
func (s *shard) flushQueued() {
	for {
		s.mu.Lock()
		if len(s.qbuf) == 0 {
			s.mu.Unlock()
			return
		}
		s.fbuf, s.qbuf = s.qbuf, s.fbuf[:0]
		s.fmarks, s.qmarks = s.qmarks, s.fmarks[:0]
		recs := s.qrecs
		s.qrecs = 0
		close(s.space)
		s.space = make(chan struct{})
		failed := s.err
		s.mu.Unlock()

		// After a failure queued frames are dropped: their Appends get
		// the sticky error.
		if failed == nil {
			if err := s.writeFrames(s.fbuf, s.fmarks, recs); err != nil {
				s.fail(fmt.Errorf("shard failed: %w", err))
			}
		}
		// Drop a buffer that one huge batch grew far beyond the queue
		// bound, rather than hold it forever.
		if cap(s.fbuf) > 2*s.opts.MaxPendingBytes {
			s.fbuf = nil
		}
	}
}

// frameMark is a frame start in a queue buffer: its byte position and the
// number of records before it in the buffer.
type frameMark struct {
	recs int64
	pos  int
}

// markInterval is the spacing of frameMarks: index entries (indexInterval
// apart) are picked among them, so the flusher need not walk every frame
// header of a batch, a chain of dependent loads through memory another
// core just wrote.
const markInterval = 4 << 10

// writeFrames appends frames (recs records; marks, when not empty, their
// frameMarks) to the active segment, rolling to a new segment where the
// size limit says so, and hands them to the syncer.
func (s *shard) writeFrames(buf []byte, marks []frameMark, recs int64) error {
	idx := s.idxBuf[:0]
	defer func() { s.idxBuf = idx[:0] }()
	if len(marks) > 0 && !s.v2 && s.wpos+int64(len(buf)) <= s.opts.SegmentBytes {
		// No roll inside buf: the records and index entries are known
		// without looking at the frames. An index entry may land up to
		// markInterval after indexInterval; Read copes with any spacing.
		for _, m := range marks {
			if at := s.wpos + int64(m.pos); s.lastIdx < 0 || at-s.lastIdx >= indexInterval {
				idx = append(idx, indexEntry{off: s.wend + m.recs, pos: at})
				s.lastIdx = at
			}
		}
		return s.writeChunk(buf, recs, idx)
	}
	var count int64 // records in buf[start:p]
	start := 0
	for p := 0; p < len(buf); {
		n := frameHeaderLen + int(binary.LittleEndian.Uint32(buf[p:]))
		at := s.wpos + int64(p-start)
		if at > 0 && at+int64(n) > s.opts.SegmentBytes {
			if err := s.writeChunk(buf[start:p], count, idx); err != nil {
				return err
			}
			count, idx, start = 0, idx[:0], p
			if err := s.roll(); err != nil {
				return err
			}
			at = 0
		}
		if s.lastIdx < 0 || at-s.lastIdx >= indexInterval {
			idx = append(idx, indexEntry{off: s.wend + count, pos: at})
			s.lastIdx = at
		}
		if s.v2 {
			s.lastLoff = frameLoff(buf[p:])
		}
		count++
		p += n
	}
	return s.writeChunk(buf[start:], count, idx)
}

// writeChunk writes data (count frames) at the end of the active segment
// and hands it to the syncer, which fsyncs and only then makes its records
// visible, completing the Appends waiting for them. Writing the next batch
// overlaps the fsync of this one, and a syncer that is busy covers every
// chunk handed to it meanwhile with one fsync: larger group commits.
func (s *shard) writeChunk(data []byte, count int64, idx []indexEntry) error {
	if len(data) == 0 {
		return nil
	}
	if err := s.reserve(s.wpos + int64(len(data))); err != nil {
		return err
	}
	// With fsync durability, write in pieces and start write-back of each
	// writePiece of whole pages as soon as it is written, so the device
	// works while the next piece is copied into the page cache and the
	// fsync only waits for the tail. The page the writer is still filling
	// is left alone: a write into a page under write-back may have to wait
	// for it, which costs small group commits more than the hint gains.
	wb, _ := s.w.(writebackStarter)
	if s.opts.Durability != DurabilityFsync {
		wb = nil
	}
	for p := 0; p < len(data); {
		n := len(data) - p
		if wb != nil {
			n = min(n, writePiece)
		}
		at := s.wpos + int64(p)
		if _, err := s.w.WriteAt(data[p:p+n], at); err != nil {
			return fmt.Errorf("write %s at %d: %w", segName2(s.wbase, s.wlow), at, err)
		}
		p += n
		if done := (at + int64(n)) &^ (pageSize - 1); wb != nil && done-s.wbFrom >= writePiece {
			wb.StartWriteback(s.wbFrom, done-s.wbFrom)
			s.wbFrom = done
		}
	}
	s.wpos += int64(len(data))
	s.walloc = max(s.walloc, s.wpos)
	s.wend += count
	h := &handoff{size: s.wpos, next: s.wend, idx: slices.Clone(idx), bytes: len(data)}
	s.syncMu.Lock()
	s.syncQ = append(s.syncQ, h)
	s.unsynced += h.bytes
	s.syncMu.Unlock()
	s.kickSyncer()
	// Bound what is written but not yet fsynced. A failure found here is
	// sticky: the next batch sees it.
	return s.waitSynced(s.opts.MaxPendingBytes)
}

// reserve makes sure the active segment has disk space reserved up to end,
// reserving allocStep more at a time, up to SegmentBytes (a larger record
// simply grows the file). Only with DurabilityFsync: without fsync a
// growing file costs nothing.
func (s *shard) reserve(end int64) error {
	if s.opts.Durability != DurabilityFsync || end <= s.walloc || s.walloc >= s.opts.SegmentBytes {
		return nil
	}
	want := min(max(end, s.walloc)+allocStep, s.opts.SegmentBytes)
	if err := s.w.Allocate(want); err != nil {
		return fmt.Errorf("reserve %d bytes for %s: %w", want, segName2(s.wbase, s.wlow), err)
	}
	s.walloc = max(want, end)
	return nil
}

// trimReserved cuts the active segment's reserved but unwritten tail, so
// that a closed segment is exactly its frames. Flusher-owned state; the
// caller has waited until everything written is fsynced.
func (s *shard) trimReserved() error {
	if s.walloc <= s.wpos {
		return nil
	}
	if err := s.w.Truncate(s.wpos); err != nil {
		return fmt.Errorf("truncate %s to %d: %w", segName2(s.wbase, s.wlow), s.wpos, err)
	}
	if err := s.w.Sync(); err != nil {
		return fmt.Errorf("sync %s after truncate: %w", segName2(s.wbase, s.wlow), err)
	}
	s.walloc = s.wpos
	return nil
}

// allZero reports whether f holds only zero bytes in [from, to).
func allZero(f io.ReaderAt, from, to int64) (bool, error) {
	buf := make([]byte, min(to-from, 1<<20))
	for pos := from; pos < to; {
		n := min(int64(len(buf)), to-pos)
		got, err := f.ReadAt(buf[:n], pos)
		if int64(got) < n {
			if err == nil || errors.Is(err, io.EOF) {
				return false, nil
			}
			return false, err
		}
		for _, b := range buf[:n] {
			if b != 0 {
				return false, nil
			}
		}
		pos += n
	}
	return true, nil
}

// handoff is a chunk written to the active segment, waiting for fsync.
type handoff struct {
	size, next int64        // segment size and next offset once it is durable
	idx        []indexEntry // its index entries
	bytes      int
}

// waitSynced blocks the flusher until at most limit bytes are written but
// not fsynced (0: until the syncer has published everything), and returns
// the shard's sticky error.
func (s *shard) waitSynced(limit int) error {
	for {
		s.syncMu.Lock()
		done := s.unsynced <= limit && (limit > 0 || len(s.syncQ) == 0 && !s.syncBusy)
		idle := s.syncIdle
		if !done {
			s.syncForce = true // a held fsync must not keep the flusher waiting
		}
		s.syncMu.Unlock()
		if done {
			break
		}
		s.kickSyncer()
		<-idle
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// runSyncer fsyncs what the flusher handed over and publishes it. It runs
// until the flusher closes syncStop, after a last pass.
func (s *shard) runSyncer() {
	for {
		select {
		case <-s.syncKick:
			s.syncQueued(false)
		case <-s.syncStop:
			s.syncQueued(true)
			return
		}
	}
}

func (s *shard) kickSyncer() {
	select {
	case s.syncKick <- struct{}{}:
	default:
	}
}

// holdBegin tells the syncer that an Append is queuing its frames for this
// shard piece by piece: fsyncing a piece now would only make the Append
// pay for another fsync, since it waits for its last piece anyway. The
// syncer holds until holdEnd, and then until the chunks handed over reach
// upto. Nothing waits longer than that Append's own queuing; the flusher
// overrides a hold whenever it must wait for the syncer (waitSynced), and
// Close's last pass and a failed shard ignore it.
func (s *shard) holdBegin() {
	s.syncMu.Lock()
	s.holdPieces++
	s.syncMu.Unlock()
}

// holdEnd ends holdBegin, the Append's frames queued up to offset upto.
// It is called on every path, errors included.
func (s *shard) holdEnd(upto int64) {
	s.syncMu.Lock()
	s.holdPieces--
	s.holdUpto = max(s.holdUpto, upto)
	s.syncMu.Unlock()
	s.kickSyncer()
}

// drain makes the syncer ignore holds until the returned func is called:
// a reshard waits, holding the logical shard's append lock, for what is
// queued to become durable, and an Append holding the syncer cannot queue
// its last piece before the reshard is done.
func (s *shard) drain() func() {
	s.syncMu.Lock()
	s.drains++
	s.syncMu.Unlock()
	s.kickSyncer()
	return func() {
		s.syncMu.Lock()
		s.drains--
		s.syncMu.Unlock()
	}
}

func (s *shard) syncQueued(final bool) {
	for {
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		s.syncMu.Lock()
		q := s.syncQ
		// An Append that finished queuing (holdUpto) is fsynced as soon as
		// its last chunk is handed over, even while a later one is still
		// queuing pieces: the later one's pieces written so far come along.
		finished := s.holdUpto > s.syncedTo
		if len(q) > 0 && !final && err == nil && !s.syncForce && s.drains == 0 &&
			(q[len(q)-1].next < s.holdUpto || s.holdPieces > 0 && !finished) {
			// Held (holdBegin): holdEnd or the next handoff kicks again.
			s.syncMu.Unlock()
			return
		}
		s.syncForce = false
		s.syncQ = nil
		if len(q) > 0 {
			s.syncedTo = q[len(q)-1].next
		}
		s.syncBusy = len(q) > 0
		s.syncMu.Unlock()
		if len(q) == 0 {
			s.signalSynced()
			return
		}
		if err == nil && s.opts.Durability == DurabilityFsync {
			// One fsync covers every chunk in q: each was written before
			// it was handed over.
			t0 := time.Now()
			serr := s.w.Sync()
			s.syncNs.Add(int64(time.Since(t0)))
			if serr != nil {
				err = s.fail(fmt.Errorf("shard failed: fsync: %w", serr))
			} else {
				s.syncs.Add(1)
			}
		}
		if err == nil {
			s.publish(q[len(q)-1], q)
		}
		bytes := 0
		for _, h := range q {
			bytes += h.bytes
		}
		s.syncMu.Lock()
		s.unsynced -= bytes
		s.syncBusy = false
		s.syncMu.Unlock()
		s.signalSynced()
	}
}

// signalSynced wakes a flusher waiting in waitSynced.
func (s *shard) signalSynced() {
	s.syncMu.Lock()
	close(s.syncIdle)
	s.syncIdle = make(chan struct{})
	s.syncMu.Unlock()
}

// publish makes the records of the fsynced chunks visible.
func (s *shard) publish(last *handoff, q []*handoff) {
	now := s.opts.Now()
	s.mu.Lock()
	g := s.segs[len(s.segs)-1]
	g.size = last.size
	g.next = last.next
	g.modTime = now
	for _, h := range q {
		g.index = append(g.index, h.idx...)
	}
	if s.v2 {
		s.pendL = s.pendL[min(last.next-s.end, int64(len(s.pendL))):]
	}
	s.end = last.next
	s.meter.ages.Appended(last.next, now)
	s.broadcast()
	s.mu.Unlock()
}

// roll closes the active segment for writing and starts a new one whose
// name is the next offset. The new directory entry is fsynced before any
// record in it can be acknowledged.
func (s *shard) roll() error {
	// Everything in the old segment is fsynced and published before the
	// new segment exists: the syncer only ever touches the active one.
	if err := s.waitSynced(0); err != nil {
		return err
	}
	// A closed segment is trusted to be exactly its frames (Open takes
	// its file size), so the reserved tail goes before its successor
	// exists.
	if err := s.trimReserved(); err != nil {
		return fmt.Errorf("roll: %w", err)
	}
	low := int64(-1)
	if s.v2 {
		// Every record of this shard is durable; wait until the logical
		// shard's End covers them too, and name the new segment after
		// it: a closed segment then never holds a record that a crash
		// could leave behind a hole (recovery looks at active segments
		// only, from the highest low-water mark).
		end, err := s.owner.waitEnd(context.Background(), s.lastLoff+1)
		if err != nil {
			return fmt.Errorf("roll: %w", err)
		}
		low = end
	}
	f, err := s.fs.Create(s.segPath(s.wend, low))
	if err != nil {
		return fmt.Errorf("roll: %w", err)
	}
	if s.opts.Durability == DurabilityFsync {
		if err := s.fs.SyncDir(s.dir); err != nil {
			f.Close()
			return fmt.Errorf("roll: sync dir: %w", err)
		}
	}
	if err := s.w.Close(); err != nil {
		f.Close()
		return fmt.Errorf("roll: close %s: %w", segName2(s.wbase, s.wlow), err)
	}
	s.w, s.wbase, s.wlow, s.wpos, s.walloc, s.lastIdx, s.wbFrom = f, s.wend, low, 0, 0, -1, 0
	s.mu.Lock()
	s.segs = append(s.segs, &segment{base: s.wend, low: low, next: s.wend, indexed: true, modTime: s.opts.Now()})
	s.mu.Unlock()
	s.retention()
	return nil
}

// markClosed refuses new appends and wakes every waiter.
func (s *shard) markClosed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	close(s.space)
	s.space = make(chan struct{})
	s.broadcast()
}

// closeFiles closes the write handle and drops every read handle. Called
// once the flusher has exited (or never started).
func (s *shard) closeFiles() error {
	var errs []error
	if s.w != nil {
		s.mu.Lock()
		failed := s.err != nil
		s.mu.Unlock()
		if !failed {
			// Leave the active segment exactly its frames; after a crash
			// recovery cuts the reserved tail instead.
			errs = append(errs, s.trimReserved())
		}
		errs = append(errs, s.w.Close())
		s.w = nil
	}
	s.mu.Lock()
	for _, g := range s.segs {
		errs = append(errs, g.dropHandle())
	}
	s.mu.Unlock()
	return errors.Join(errs...)
}

// read implements Log.Read for one shard; max is already capped.
func (s *shard) read(from int64, max int) ([]stream.Record, error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()

	s.mu.Lock()
	if s.closed {
		// Close may already have dropped the handles; do not open new ones.
		s.mu.Unlock()
		return nil, stream.ErrClosed
	}
	if from < 0 || from > s.end {
		end := s.end
		s.mu.Unlock()
		return nil, fmt.Errorf("end is %d: %w", end, stream.ErrOutOfRange)
	}
	if from == s.end {
		s.mu.Unlock()
		return []stream.Record{}, nil
	}
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].base > from }) - 1
	if i < 0 {
		start := s.segs[0].base
		s.mu.Unlock()
		return nil, fmt.Errorf("first stored offset is %d: %w", start, stream.ErrTrimmed)
	}
	g := s.segs[i]
	// Keep the index and handle of at most one closed segment besides the
	// active one, so memory and open files stay bounded however long the
	// log gets.
	if s.lastRead != nil && s.lastRead != g && s.lastRead != s.segs[len(s.segs)-1] {
		s.lastRead.index, s.lastRead.indexed = nil, false
		_ = s.lastRead.dropHandle() // a read-only close has nothing to report
	}
	s.lastRead = g
	if g.h == nil {
		f, err := s.fs.Open(s.segPath(g.base, g.low))
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		g.h = &handle{f: f}
		g.h.refs.Store(1)
	}
	h := g.h
	h.refs.Add(1)
	size, next, indexed := g.size, g.next, g.indexed
	var at indexEntry
	if indexed {
		at = g.lookup(from)
	}
	s.mu.Unlock()
	defer h.release()

	if !indexed {
		idx, err := buildIndex(h.f, g.base, size, next)
		if err != nil {
			return nil, fmt.Errorf("segment %s: %w", g.name(), err)
		}
		s.mu.Lock()
		if !g.indexed { // retention may have dropped g meanwhile; harmless
			g.index, g.indexed = idx, true
		}
		at = g.lookup(from)
		s.mu.Unlock()
	}
	recs, err := s.decodeFrom(h.f, at, from, size, min(int64(max), next-from))
	if err != nil {
		return nil, fmt.Errorf("segment %s: %w", g.name(), err)
	}
	return recs, nil
}

// buildIndex scans a closed segment and checks that it holds exactly the
// records [base, next).
func buildIndex(f io.ReaderAt, base, size, next int64) ([]indexEntry, error) {
	sr := newSegmentReader(f, size)
	var idx []indexEntry
	n := int64(0)
	for {
		_, _, pos, err := sr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("at byte %d: %w", pos, corrupt(err))
		}
		if len(idx) == 0 || pos-idx[len(idx)-1].pos >= indexInterval {
			idx = append(idx, indexEntry{off: base + n, pos: pos})
		}
		n++
	}
	if base+n != next {
		return nil, fmt.Errorf("%w: holds %d records, the next segment starts at offset %d", ErrCorrupt, n, next)
	}
	return idx, nil
}

// corrupt turns a torn frame inside a closed segment into ErrCorrupt:
// only the last segment may legitimately end early.
func corrupt(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// decodeFrom reads up to max records starting at offset from, given the
// index entry at at, from a segment of size bytes. Caller holds readMu:
// the records alias s.rbuf.
func (s *shard) decodeFrom(f io.ReaderAt, at indexEntry, from, size int64, max int64) ([]stream.Record, error) {
	capBytes := int64(s.opts.MaxReadBytes)
	var wstart int64
	win := s.rbuf[:0]
	load := func(pos, n int64) error {
		if n > size-pos {
			n = size - pos
		}
		// Reuse the buffer unless it is too small, or far larger than a
		// normal window because one huge record grew it.
		if int64(cap(s.rbuf)) < n || int64(cap(s.rbuf)) > 2*(capBytes+indexInterval) && n <= capBytes+indexInterval {
			s.rbuf = make([]byte, n)
		}
		win = s.rbuf[:n]
		wstart = pos
		got, err := f.ReadAt(win, pos)
		if int64(got) < n {
			if err == nil || errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: segment shorter than %d bytes", ErrCorrupt, pos+n)
			}
			return err
		}
		return nil
	}
	// have reports whether the window holds n bytes at pos.
	have := func(pos, n int64) bool { return pos >= wstart && pos+n <= wstart+int64(len(win)) }

	pos, off := at.pos, at.off
	if err := load(pos, indexInterval+capBytes); err != nil {
		return nil, err
	}
	// Skip the frames between the index entry and from by their headers.
	for off < from {
		if size-pos < frameHeaderLen {
			return nil, fmt.Errorf("%w: segment ends at byte %d before offset %d", ErrCorrupt, pos, from)
		}
		if !have(pos, frameHeaderLen) {
			if err := load(pos, indexInterval+capBytes); err != nil {
				return nil, err
			}
		}
		body := int64(binary.LittleEndian.Uint32(win[pos-wstart:]))
		if body < minFrameBody || body > maxFrameBody {
			return nil, fmt.Errorf("%w: frame length %d at byte %d", ErrCorrupt, body, pos)
		}
		pos += frameHeaderLen + body
		off++
	}
	if size-pos < frameHeaderLen {
		return nil, fmt.Errorf("%w: segment ends at byte %d before offset %d", ErrCorrupt, pos, from)
	}
	if !have(pos, frameHeaderLen) {
		if err := load(pos, capBytes); err != nil {
			return nil, err
		}
	}
	first := frameHeaderLen + int64(binary.LittleEndian.Uint32(win[pos-wstart:]))
	if first > size-pos {
		return nil, fmt.Errorf("%w: frame of %d bytes at byte %d overruns the segment", ErrCorrupt, first, pos)
	}
	if !have(pos, first) {
		if err := load(pos, max64(first, capBytes)); err != nil {
			return nil, err
		}
	}
	recs := make([]stream.Record, 0, min(max, 256))
	s.rloffs = s.rloffs[:0]
	var taken int64
	for int64(len(recs)) < max {
		key, data, n, err := decodeFrame(win[pos-wstart:])
		if errors.Is(err, io.ErrUnexpectedEOF) && len(recs) > 0 {
			break // the window ends here; the next Read continues
		}
		if err != nil {
			return nil, fmt.Errorf("offset %d at byte %d: %w", off, pos, corrupt(err))
		}
		if len(recs) > 0 && taken+int64(n) > capBytes {
			break
		}
		recs = append(recs, stream.Record{Shard: s.id, Offset: off, PartitionKey: key, Data: data})
		if s.v2 {
			s.rloffs = append(s.rloffs, frameLoff(win[pos-wstart:]))
		}
		taken += int64(n)
		pos += int64(n)
		off++
	}
	return recs, nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// applyRetention deletes segments from the head of the shard. The rule
// (also in the package doc): a segment may go only if it is closed and all
// its records are below the trim point; such a segment goes if no limit is
// set, or it is older than MaxAge, or the shard is over MaxBytes. Deletion
// always takes a prefix, so the stored offsets stay contiguous.
func (s *shard) applyRetention() {
	ret := s.opts.Retention
	now := s.opts.Now()
	s.mu.Lock()
	var total int64
	for _, g := range s.segs {
		total += g.size
	}
	var del []*segment
	for _, g := range s.segs[:len(s.segs)-1] {
		if g.next > s.trim {
			break // holds unconsumed records: never deleted
		}
		over := ret.MaxAge == 0 && ret.MaxBytes == 0 ||
			ret.MaxAge > 0 && now.Sub(g.modTime) > ret.MaxAge ||
			ret.MaxBytes > 0 && total > ret.MaxBytes
		if !over {
			break
		}
		del = append(del, g)
		total -= g.size
	}
	if len(del) == 0 {
		s.mu.Unlock()
		return
	}
	s.segs = append([]*segment(nil), s.segs[len(del):]...)
	for _, g := range del {
		if s.lastRead == g {
			s.lastRead = nil
		}
		_ = g.dropHandle() // read-only; a Read still using it keeps its own reference
	}
	s.mu.Unlock()
	// Oldest first, syncing the directory after each removal, so a crash
	// can leave fewer segments deleted but never a hole between segments.
	for _, g := range del {
		if err := s.fs.Remove(s.segPath(g.base, g.low)); err != nil {
			// The segment is already out of the log; the file is only
			// wasted space until a later Open lists it again.
			s.log.Warn("locallog: retention could not delete segment", "segment", g.name(), "err", err)
			return
		}
		if s.opts.Durability == DurabilityFsync {
			if err := s.fs.SyncDir(s.dir); err != nil {
				s.log.Warn("locallog: retention could not sync directory", "err", err)
				return
			}
		}
		s.log.Info("locallog: retention deleted segment", "segment", g.name(), "bytes", g.size, "next", g.next)
	}
}

// startOffset is the first stored offset.
func (s *shard) startOffset() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.segs[0].base
}

package locallog

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/silt-dev/silt/internal/stream"
)

// Resharding (SplitShard, MergeShards) follows the Kinesis backend's model
// (package kinesis, "Logical shards and offsets"): the shards stream.Log
// shows are logical, fixed for the life of the log, logical shard i holding
// the keys stream.ShardFor maps to i, with dense offsets. What a reshard
// changes is the physical layout under a logical shard:
//
//   - A physical shard is a directory of segments with its own flusher and
//     fsync. At first logical shard i is physical shard i (shard-000i),
//     version 1 frames, physical offset = logical offset.
//   - SplitShard closes an open physical shard and opens two children over
//     the two halves of its hash key range; MergeShards closes two open
//     physical shards with adjacent ranges of one logical shard and opens
//     one child over both. A child never spans two logical shards. Children
//     get new ids (META's next_id) and write version 2 frames, which carry
//     the record's logical offset.
//   - Append assigns a logical shard's offsets in order under its append
//     lock and queues each record to the open child whose range holds the
//     MD5 of its key, so a key's records stay in one child and in order.
//     The logical End is the first offset not yet durable in any open
//     child (each child keeps the logical offsets of its queued records);
//     Append returns once End covers its records.
//   - A reshard takes the logical shard's append lock and waits until
//     everything appended is durable, then commits the new layout by
//     rewriting META atomically (temp, fsync, rename, fsync dir), then
//     creates the children. Parents are therefore complete before any
//     child holds a record: every record of a parent has a smaller logical
//     offset than every record of its children, and a crash during the
//     reshard leaves either the old layout or the new one.
//   - Read merges the logical shard's physical shards by logical offset,
//     so parents are drained before children and consumers (Bronze's txn
//     appIds "shard-N", the pipeline's per-shard dedup) see one dense
//     sequence per logical shard as before. Each physical shard remembers
//     where the last read stopped (logical and physical offset), so a
//     sequential reader does not search.
//   - Crash recovery: open children are written in parallel, so a crash
//     may leave a hole (a record lost in one child while a later one
//     survived in another). Before a child starts a new segment it waits
//     until the logical End covers all its records and names the segment
//     with that End (its low-water mark), so closed segments never hold a
//     record beyond a hole. Open cuts every child's active segment at the
//     first logical offset missing after the highest low-water mark. None
//     of the cut records was acknowledged.
//   - Trim maps the logical trim point to each physical shard (a v2
//     segment may go once the next segment's low-water mark is at or below
//     it); each physical shard keeps its last segment, so the logical
//     shard's last record, which the pipeline's dedup reads, is never
//     deleted.

// hash128 is an MD5 hash key as a 128-bit number (big-endian halves).
type hash128 struct{ hi, lo uint64 }

func hashOf(key []byte) hash128 {
	sum := md5.Sum(key)
	return hash128{binary.BigEndian.Uint64(sum[:8]), binary.BigEndian.Uint64(sum[8:])}
}

func (h hash128) less(o hash128) bool { return h.hi < o.hi || h.hi == o.hi && h.lo < o.lo }

func (h hash128) big() *big.Int {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], h.hi)
	binary.BigEndian.PutUint64(b[8:], h.lo)
	return new(big.Int).SetBytes(b[:])
}

func hashFromBig(b *big.Int) hash128 {
	var buf [16]byte
	b.FillBytes(buf[:])
	return hash128{binary.BigEndian.Uint64(buf[:8]), binary.BigEndian.Uint64(buf[8:])}
}

func (h hash128) String() string { return fmt.Sprintf("%016x%016x", h.hi, h.lo) }

func parseHash(s string) (hash128, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return hash128{}, fmt.Errorf("hash key %q: want 32 hex digits", s)
	}
	return hash128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}, nil
}

// logicalRange is the hash key range [lo, hi] stream.ShardFor maps to
// shard i of n: lo = ceil(i*2^128/n).
func logicalRange(i, n int) (lo, hi hash128) {
	space := new(big.Int).Lsh(big.NewInt(1), 128)
	at := func(k int) *big.Int {
		v := new(big.Int).Mul(space, big.NewInt(int64(k)))
		v.Add(v, big.NewInt(int64(n-1)))
		return v.Div(v, big.NewInt(int64(n)))
	}
	top := at(i + 1)
	top.Sub(top, big.NewInt(1))
	return hashFromBig(at(i)), hashFromBig(top)
}

// physMeta is one physical shard in META (format 2).
type physMeta struct {
	ID      int    `json:"id"`
	Logical int    `json:"logical"`
	Lo      string `json:"lo"` // hash key range, inclusive, 32 hex digits
	Hi      string `json:"hi"`
	V2      bool   `json:"v2,omitempty"`
	Opened  int64  `json:"opened"`           // logical offset of its first record
	Closed  *int64 `json:"closed,omitempty"` // logical offset it was closed at
	Parents []int  `json:"parents,omitempty"`
}

// Shard describes a physical shard of the embedded log (Log.Topology).
type Shard struct {
	ID      int    // physical id; directory shard-<ID>
	Logical int    // the stream.Log shard it belongs to
	Lo, Hi  string // MD5 hash key range, inclusive, 32 hex digits
	Open    bool   // receives appends
	Opened  int64  // logical offset of its first record
	Closed  int64  // logical offset it was closed at (-1: open)
	Parents []int
	End     int64 // physical records stored
}

// topo is a logical shard's physical layout; replaced whole by a reshard.
type topo struct {
	all    []*shard // parents before children
	metas  []physMeta
	open   []*shard // ascending hash range
	los    []hash128
	his    []hash128
	simple bool // never resharded: all[0] is the original shard and the only one
}

func (t *topo) closedAt(i int) int64 {
	if c := t.metas[i].Closed; c != nil {
		return *c
	}
	return -1
}

// route returns the open shard whose range holds h.
func (t *topo) route(h hash128) int {
	i := sort.Search(len(t.los), func(i int) bool { return h.less(t.los[i]) }) - 1
	return max(i, 0)
}

// lshard is a logical shard.
type lshard struct {
	id int
	l  *Log
	// mu is the append lock: appends take it to assign offsets and queue,
	// reshards to drain and swap the layout.
	mu   sync.Mutex
	topo atomic.Pointer[topo]
	tail atomic.Int64 // resharded: the next logical offset to assign
	rmu  sync.Mutex   // serializes resharded reads (they share physical read state)

	nmu    sync.Mutex
	notify chan struct{}
}

func (ls *lshard) wake() {
	ls.nmu.Lock()
	close(ls.notify)
	ls.notify = make(chan struct{})
	ls.nmu.Unlock()
}

func (ls *lshard) waitCh() chan struct{} {
	ls.nmu.Lock()
	defer ls.nmu.Unlock()
	return ls.notify
}

// end is the logical End: one past the last offset below which every
// record is durable.
func (ls *lshard) end() int64 {
	t := ls.topo.Load()
	if t.simple {
		s := t.all[0]
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.end
	}
	e := ls.tail.Load() // before the queues: Append queues, then moves tail
	for _, c := range t.open {
		c.mu.Lock()
		if len(c.pendL) > 0 && c.pendL[0] < e {
			e = c.pendL[0]
		}
		c.mu.Unlock()
	}
	return e
}

// failure returns the sticky error of an open physical shard, and whether
// every open one has stopped writing (the log closed).
func (ls *lshard) failure() (error, bool) {
	t := ls.topo.Load()
	flushed := true
	for _, c := range t.open {
		c.mu.Lock()
		err, f := c.err, c.flushed
		c.mu.Unlock()
		if err != nil {
			return err, false
		}
		flushed = flushed && f
	}
	return nil, flushed
}

// waitEnd blocks until End >= upto and returns End; or returns the error
// of a failed physical shard, stream.ErrClosed once the log has stopped
// writing, or ctx's error.
func (ls *lshard) waitEnd(ctx context.Context, upto int64) (int64, error) {
	for {
		ch := ls.waitCh()
		if e := ls.end(); e >= upto {
			return e, nil
		}
		if err, flushed := ls.failure(); err != nil {
			return 0, err
		} else if flushed {
			return 0, stream.ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// appendResharded appends the entries of this logical shard (target[i] ==
// ls.id, or all when target is nil) and waits until they are durable.
func (ls *lshard) appendResharded(ctx context.Context, entries []stream.Entry, target []int) error {
	ls.mu.Lock()
	t := ls.topo.Load()
	n := len(t.open)
	idx := make([][]int, n)
	loffs := make([][]int64, n)
	sizes := make([]int, n)
	payload := make([]int, n)
	base := ls.tail.Load()
	next := base
	for i, e := range entries {
		if target != nil && target[i] != ls.id {
			continue
		}
		c := 0
		if n > 1 {
			c = t.route(hashOf(e.PartitionKey))
		}
		idx[c] = append(idx[c], i)
		loffs[c] = append(loffs[c], next)
		next++
		sizes[c] += frameLen2(e.PartitionKey, e.Data)
		payload[c] += len(e.PartitionKey) + len(e.Data)
	}
	// Wait for room in every queue first: once queuing starts it must
	// finish, or offsets below tail would be in no queue.
	for c, s := range t.open {
		if len(idx[c]) == 0 {
			continue
		}
		if err := s.meter.admitWrite(ctx, len(idx[c]), payload[c], ls.l.opts.Now); err != nil {
			ls.mu.Unlock()
			return err
		}
		if err := s.waitSpace(ctx, sizes[c]); err != nil {
			ls.mu.Unlock()
			return err
		}
	}
	for c, s := range t.open {
		if len(idx[c]) == 0 {
			continue
		}
		// Only appenders holding ls.mu fill these queues, so there is
		// room; a failure here is the log closing or the shard failing,
		// and then no End moves past base any more.
		if err := s.enqueue2(ctx, entries, idx[c], loffs[c], sizes[c]); err != nil {
			ls.mu.Unlock()
			return err
		}
	}
	ls.tail.Store(next)
	ls.mu.Unlock()
	_, err := ls.waitEnd(ctx, next)
	return err
}

// waitSpace blocks until the queue has room for size bytes (or is empty).
func (s *shard) waitSpace(ctx context.Context, size int) error {
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
			s.mu.Unlock()
			return nil
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
}

// readResharded is Log.Read for a resharded logical shard: the physical
// shards' records from `from` on, merged by logical offset.
func (ls *lshard) readResharded(from int64, max int) ([]stream.Record, error) {
	end := ls.end()
	if from < 0 || from > end {
		return nil, fmt.Errorf("end is %d: %w", end, stream.ErrOutOfRange)
	}
	if from == end {
		return []stream.Record{}, nil
	}
	max = int(min(int64(max), end-from))
	ls.rmu.Lock()
	defer ls.rmu.Unlock()
	t := ls.topo.Load()
	type run struct {
		s      *shard
		recs   []stream.Record
		loffs  []int64
		startP int64
		k      int
	}
	var runs []*run
	for i, s := range t.all {
		if c := t.closedAt(i); c >= 0 && c <= from || s.openedAt >= end {
			continue // all its records are below from, or none is durable yet
		}
		recs, loffs, p, err := s.readLogical(from, max)
		if err != nil {
			return nil, fmt.Errorf("physical shard %d: %w", s.id, err)
		}
		if len(recs) > 0 {
			runs = append(runs, &run{s: s, recs: recs, loffs: loffs, startP: p})
		}
	}
	out := make([]stream.Record, 0, max)
	next := from
	for len(out) < max && next < end {
		var pick *run
		for _, r := range runs {
			if r.k < len(r.recs) && r.loffs[r.k] == next {
				pick = r
				break
			}
		}
		if pick == nil {
			break // the record is in a run that stopped early; the next Read goes on
		}
		rec := pick.recs[pick.k]
		rec.Shard, rec.Offset = ls.id, next
		out = append(out, rec)
		pick.k++
		next++
	}
	for _, r := range runs {
		r.s.rnextL, r.s.rnextP = next, r.startP+int64(r.k)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: logical offset %d is in no physical shard", ErrCorrupt, from)
	}
	return out, nil
}

// readLogical reads up to max records of a physical shard starting at its
// first record with logical offset >= from, and returns them with their
// logical offsets and the physical offset of the first.
func (s *shard) readLogical(from int64, max int) ([]stream.Record, []int64, int64, error) {
	p, err := s.seekLogical(from)
	if err != nil {
		return nil, nil, 0, err
	}
	for {
		recs, err := s.read(p, max)
		if err != nil || len(recs) == 0 {
			return nil, nil, p, err
		}
		loffs := s.rloffs
		if !s.v2 {
			loffs = make([]int64, len(recs))
			for i, r := range recs {
				loffs[i] = r.Offset
			}
		}
		k, _ := slices.BinarySearch(loffs, from)
		if k < len(recs) {
			return recs[k:], loffs[k:], p + int64(k), nil
		}
		p += int64(len(recs))
	}
}

// seekLogical returns the physical offset at or before the first record
// with logical offset >= from: the cached position of the last read, or
// the start of the last segment whose low-water mark is at or below from.
func (s *shard) seekLogical(from int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := s.segs[0]
	bound := first.base // the first stored offset: physical = logical in v1
	if s.v2 {
		bound = first.low
	}
	if first.base > 0 && from < bound {
		return 0, fmt.Errorf("retention deleted logical offsets below about %d: %w", bound, stream.ErrTrimmed)
	}
	if !s.v2 {
		return min(from, s.end), nil
	}
	if s.rnextP >= 0 && s.rnextL == from {
		return s.rnextP, nil
	}
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].low > from }) - 1
	return s.segs[max(i, 0)].base, nil
}

// trimLogical sets the physical trim point for logical trim point before.
func (s *shard) trimLogical(before, closedAt int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var p int64
	switch {
	case closedAt >= 0 && closedAt <= before:
		p = s.end
	case !s.v2:
		p = min(before, s.end)
	default:
		i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].low > before }) - 1
		if i >= 0 {
			p = s.segs[i].base
		}
	}
	if p > s.trim {
		s.trim = p
		return true
	}
	return false
}

// recoverResharded cuts the open children's active segments at the first
// logical offset missing after the highest low-water mark (see the comment
// at the top of this file) and sets the logical tail.
func (ls *lshard) recoverResharded() error {
	t := ls.topo.Load()
	e0 := int64(0)
	for i := range t.all {
		if c := t.closedAt(i); c >= 0 {
			e0 = max(e0, c)
		}
	}
	for _, s := range t.open {
		e0 = max(e0, s.openedAt, s.segs[len(s.segs)-1].low)
	}
	present := map[int64]bool{}
	for _, s := range t.open {
		for _, a := range s.activeL {
			if a.loff >= e0 {
				present[a.loff] = true
			}
		}
	}
	e := e0
	for present[e] {
		e++
	}
	for _, s := range t.open {
		k := sort.Search(len(s.activeL), func(i int) bool { return s.activeL[i].loff >= e })
		if k < len(s.activeL) {
			if err := s.cutActive(s.activeL[k].pos, int64(len(s.activeL)-k), e); err != nil {
				return fmt.Errorf("physical shard %d: %w", s.id, err)
			}
			if k > 0 {
				s.lastLoff = s.activeL[k-1].loff
			} else {
				s.lastLoff = max(s.openedAt, s.segs[len(s.segs)-1].low) - 1
			}
		}
	}
	for _, s := range t.all {
		s.activeL = nil
	}
	ls.tail.Store(e)
	return nil
}

// cutActive truncates the active segment at byte pos, dropping its last
// n records, which lie beyond the logical shard's recovered End.
func (s *shard) cutActive(pos, n, end int64) error {
	g := s.segs[len(s.segs)-1]
	s.log.Warn("locallog: cut records after a hole in the logical shard", "segment", g.name(),
		"records", n, "bytes", g.size-pos, "logical_end", end)
	if err := s.w.Truncate(pos); err != nil {
		return err
	}
	if s.opts.Durability == DurabilityFsync {
		if err := s.w.Sync(); err != nil {
			return err
		}
	}
	g.size = pos
	g.next -= n
	s.end, s.wend, s.tail = g.next, g.next, g.next
	s.wpos, s.walloc = pos, pos
	s.wbFrom = min(s.wbFrom, pos&^(pageSize-1))
	for len(g.index) > 0 && g.index[len(g.index)-1].pos >= pos {
		g.index = g.index[:len(g.index)-1]
	}
	s.lastIdx = -1
	if len(g.index) > 0 {
		s.lastIdx = g.index[len(g.index)-1].pos
	}
	return nil
}

// Topology returns every physical shard, ordered by id.
func (l *Log) Topology() []Shard {
	var out []Shard
	for _, ls := range l.logical {
		t := ls.topo.Load()
		for i, s := range t.all {
			m := t.metas[i]
			s.mu.Lock()
			end := s.end
			s.mu.Unlock()
			out = append(out, Shard{ID: s.id, Logical: ls.id, Lo: m.Lo, Hi: m.Hi, Open: m.Closed == nil,
				Opened: m.Opened, Closed: t.closedAt(i), Parents: m.Parents, End: end})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// SplitShard closes the open physical shard id and opens two children:
// one over its hash keys below at (32 hex digits; "" for the middle of
// its range), one over the rest. Appends to the logical shard wait while
// everything already appended to it is made durable. It returns the
// children's ids.
func (l *Log) SplitShard(ctx context.Context, id int, at string) ([]int, error) {
	ls, pm, err := l.openPhysMeta(id)
	if err != nil {
		return nil, err
	}
	lo, _ := parseHash(pm.Lo)
	hi, _ := parseHash(pm.Hi)
	var mid hash128
	if at == "" {
		m := new(big.Int).Add(lo.big(), hi.big())
		mid = hashFromBig(m.Add(m, big.NewInt(1)).Rsh(m, 1))
	} else if mid, err = parseHash(at); err != nil {
		return nil, fmt.Errorf("locallog: split physical shard %d: %w", id, err)
	}
	if !lo.less(mid) || hi.less(mid) {
		return nil, fmt.Errorf("locallog: split physical shard %d at %s: the split point must be above %s and at most %s", id, mid, lo, hi)
	}
	below := hashFromBig(new(big.Int).Sub(mid.big(), big.NewInt(1)))
	return l.reshape(ctx, ls, []int{id}, [][2]hash128{{lo, below}, {mid, hi}})
}

// MergeShards closes the open physical shards a and b, whose hash ranges
// must be adjacent within one logical shard, and opens one child over
// both. It returns the child's id.
func (l *Log) MergeShards(ctx context.Context, a, b int) (int, error) {
	lsA, ma, err := l.openPhysMeta(a)
	if err != nil {
		return 0, err
	}
	lsB, mb, err := l.openPhysMeta(b)
	if err != nil {
		return 0, err
	}
	if lsA != lsB {
		return 0, fmt.Errorf("locallog: merge physical shards %d and %d: they belong to logical shards %d and %d; a physical shard never spans two logical shards", a, b, ma.Logical, mb.Logical)
	}
	if ma.Lo > mb.Lo {
		ma, mb = mb, ma
	}
	aHi, _ := parseHash(ma.Hi)
	bLo, _ := parseHash(mb.Lo)
	if hashFromBig(new(big.Int).Add(aHi.big(), big.NewInt(1))) != bLo {
		return 0, fmt.Errorf("locallog: merge physical shards %d and %d: hash ranges %s-%s and %s-%s are not adjacent", a, b, ma.Lo, ma.Hi, mb.Lo, mb.Hi)
	}
	lo, _ := parseHash(ma.Lo)
	hi, _ := parseHash(mb.Hi)
	ids, err := l.reshape(ctx, lsA, []int{ma.ID, mb.ID}, [][2]hash128{{lo, hi}})
	if err != nil {
		return 0, err
	}
	return ids[0], nil
}

func (l *Log) openPhysMeta(id int) (*lshard, physMeta, error) {
	if l.closed.Load() {
		return nil, physMeta{}, stream.ErrClosed
	}
	for _, ls := range l.logical {
		t := ls.topo.Load()
		for i, s := range t.all {
			if s.id == id {
				if t.metas[i].Closed != nil {
					return nil, physMeta{}, fmt.Errorf("locallog: physical shard %d is closed (resharded at logical offset %d)", id, *t.metas[i].Closed)
				}
				return ls, t.metas[i], nil
			}
		}
	}
	return nil, physMeta{}, fmt.Errorf("locallog: no physical shard %d (see Topology): %w", id, stream.ErrOutOfRange)
}

// reshape closes the open physical shards close of ls and opens children
// over ranges: drain, commit META, create.
func (l *Log) reshape(ctx context.Context, ls *lshard, close []int, ranges [][2]hash128) ([]int, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	t := ls.topo.Load()
	for _, id := range close {
		if !slices.ContainsFunc(t.open, func(s *shard) bool { return s.id == id }) {
			return nil, fmt.Errorf("locallog: physical shard %d is no longer open", id)
		}
	}
	// Drain: with the append lock held nothing new is queued.
	upto := ls.tail.Load()
	if t.simple {
		s := t.all[0]
		s.mu.Lock()
		upto = s.tail
		s.mu.Unlock()
		defer s.drain()()
	}
	end, err := ls.waitEnd(ctx, upto)
	if err != nil {
		return nil, fmt.Errorf("locallog: reshard logical shard %d: drain: %w", ls.id, err)
	}
	l.metaMu.Lock()
	defer l.metaMu.Unlock()
	if l.closed.Load() {
		return nil, stream.ErrClosed
	}
	nt := &topo{all: slices.Clone(t.all), metas: slices.Clone(t.metas)}
	for i := range nt.metas {
		if slices.Contains(close, nt.metas[i].ID) {
			c := end
			nt.metas[i].Closed = &c
		}
	}
	var ids []int
	for _, r := range ranges {
		id := l.nextID
		l.nextID++
		ids = append(ids, id)
		nt.metas = append(nt.metas, physMeta{ID: id, Logical: ls.id, Lo: r[0].String(), Hi: r[1].String(), V2: true, Opened: end, Parents: close})
	}
	// From here on a failure may leave META on disk with the new layout
	// while memory has the old one; appending to a parent the disk calls
	// closed would lose records at the next Open. So the logical shard
	// fails (like a failed fsync) and a reopen recovers from the disk.
	var created []*shard
	failAll := func(err error) ([]int, error) {
		err = fmt.Errorf("locallog: reshard logical shard %d: %w", ls.id, err)
		for _, s := range t.open {
			s.fail(err)
		}
		for _, s := range created {
			s.closeFiles()
		}
		return nil, err
	}
	if err := l.writeMeta(ls.id, nt.metas); err != nil {
		return failAll(err)
	}
	// The new layout is committed; the children are created now or, after
	// a crash, by the next Open.
	for _, m := range nt.metas[len(t.metas):] {
		s, err := l.openPhys(m.ID, true, end)
		if err != nil {
			return failAll(fmt.Errorf("create physical shard %d: %w", m.ID, err))
		}
		s.owner = ls
		created = append(created, s)
		nt.all = append(nt.all, s)
	}
	for _, s := range created {
		l.wg.Add(1)
		go s.runFlusher(l.stop, &l.wg)
	}
	nt.build()
	ls.tail.Store(end)
	ls.topo.Store(nt)
	l.physMu.Lock()
	l.shards = append(l.shards, nt.all[len(t.all):]...)
	l.physMu.Unlock()
	ls.wake()
	l.opts.Logger.Info("locallog: resharded", "logical", ls.id, "closed", close, "opened", ids, "at_offset", end)
	return ids, nil
}

// build fills the open list and routing table from metas.
func (t *topo) build() {
	t.open, t.los, t.his = nil, nil, nil
	type o struct {
		s      *shard
		lo, hi hash128
	}
	var os []o
	for i, m := range t.metas {
		if m.Closed == nil {
			lo, _ := parseHash(m.Lo)
			hi, _ := parseHash(m.Hi)
			os = append(os, o{t.all[i], lo, hi})
		}
	}
	sort.Slice(os, func(i, j int) bool { return os[i].lo.less(os[j].lo) })
	for _, x := range os {
		t.open, t.los, t.his = append(t.open, x.s), append(t.los, x.lo), append(t.his, x.hi)
	}
	t.simple = len(t.all) == 1 && !t.all[0].v2
}

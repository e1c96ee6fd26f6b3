package delta

import (
	"container/list"
	"context"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Snapshot cache.
//
// Every Table shares, with every other Table of the same (store, root) in
// the process, one cache entry holding the newest snapshot read so far and
// the replay state behind it (live adds and tombstones by file key). A
// Snapshot call then costs one listing of the log from the cached state's
// checkpoint (or from its version when that checkpoint is more than
// listWindow versions back), plus one GET per new commit:
//
//   - Idle: nothing new is listed and the cached snapshot is returned.
//   - New commits, contiguous, no newer checkpoint: they are applied on top
//     of the cached state. Snapshots are immutable: the maps behind the
//     state belong to the cache, and each new snapshot gets new sorted
//     slices (old ones are never written), so earlier snapshots keep their
//     content. Add and Remove values are shared between snapshots, which is
//     why callers must not modify them (see Snapshot.Files).
//   - A newer checkpoint at or below the target: replay from it, exactly
//     as a full replay would (it drops expired tombstones and may
//     represent adds differently from the JSON commits).
//   - Anything else (a version gap, the target beyond the listing, a log
//     file the state rests on changed or vanished, an unreadable commit, a
//     cache miss): the full path, which lists from the checkpoint named by
//     _last_checkpoint, or the whole log.
//
// The state rests on its checkpoint's files and the commits after it (or,
// beyond listWindow, on its own commit); each refresh checks that those are
// still listed with the same size and modification time, so a table
// deleted and re-created at the same root is noticed. Log files below that
// point are assumed immutable, as the protocol requires.
//
// Entries are keyed by the store's pointer identity (stores that are not
// pointers are not cached) and root. The cache is bounded by
// SetSnapshotCacheLimits: least recently used entries are dropped beyond a
// number of tables or of file actions (adds plus tombstones) held in total;
// the entry just used is kept even when it alone exceeds the budget.

// listWindow: a cached state whose checkpoint is at most this many versions
// back is re-listed from the checkpoint (one LIST page with checkpoints
// every 10 commits); otherwise from its own version.
const listWindow = 100

// Default limits of the snapshot cache.
const (
	DefaultSnapshotCacheTables      = 1024
	DefaultSnapshotCacheFileActions = 1_000_000
)

// SetSnapshotCacheLimits bounds the process-wide snapshot cache to at most
// tables entries and fileActions add/remove actions held in total (an
// action is typically 0.3-2 KiB with its stats). Zero for either disables
// the cache (every Snapshot then replays the log). Entries beyond the new
// limits are dropped at once.
func SetSnapshotCacheLimits(tables, fileActions int) {
	snapCache.mu.Lock()
	defer snapCache.mu.Unlock()
	snapCache.maxTables, snapCache.maxFiles = tables, fileActions
	snapCache.evictLocked(nil)
}

type cacheKey struct {
	store any
	root  string
}

// registry is the process-wide set of cache entries, in LRU order.
type registry struct {
	mu        sync.Mutex
	m         map[cacheKey]*logCache
	lru       list.List // of *logCache, most recent first
	files     int       // sum of the entries' sizes
	maxTables int
	maxFiles  int
}

// cacheCounts counts how Snapshot calls through the cache were answered
// (tests).
var cacheCounts struct {
	unchanged, applied, fromNewCheckpoint, full atomic.Int64
}

var snapCache = &registry{m: map[cacheKey]*logCache{}, maxTables: DefaultSnapshotCacheTables, maxFiles: DefaultSnapshotCacheFileActions}

// logCache is one table's entry.
type logCache struct {
	key     cacheKey
	sem     chan struct{} // held while reading or refreshing the state
	mu      sync.Mutex    // guards st
	st      *cacheState
	known   atomic.Int64 // version of st (-1: none), readable without sem
	evicted atomic.Bool
	// guarded by registry.mu
	size int
	elem *list.Element
}

// cacheState is a snapshot with the replay state behind it. files and
// tombs are mutated in place by refreshes (under the entry's sem) and are
// never shared with a Snapshot.
type cacheState struct {
	snap  *Snapshot
	files map[fileKey]*Add
	tombs map[fileKey]*Remove
	// The log files the state rests on, as listed: commits of versions
	// start..snap.Version (absent ones recorded as absent) and, when start
	// is the checkpoint's version, the checkpoint's parts.
	start   int64
	commits map[int64]stamp
	cpFiles []logFile
}

type stamp struct {
	size int64
	mod  time.Time
}

func (r *registry) get(key cacheKey) *logCache {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.maxTables <= 0 || r.maxFiles <= 0 {
		return nil
	}
	if c, ok := r.m[key]; ok {
		r.lru.MoveToFront(c.elem)
		return c
	}
	c := &logCache{key: key, sem: make(chan struct{}, 1)}
	c.known.Store(-1)
	c.elem = r.lru.PushFront(c)
	r.m[key] = c
	r.evictLocked(c)
	return c
}

// stored records the entry's new size and makes it the most recent.
func (r *registry) stored(c *logCache, size int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.evicted.Load() {
		return
	}
	r.files += size - c.size
	c.size = size
	r.lru.MoveToFront(c.elem)
	r.evictLocked(c)
}

// evictLocked drops least recently used entries other than keep until the
// limits hold.
func (r *registry) evictLocked(keep *logCache) {
	for e := r.lru.Back(); e != nil && (r.lru.Len() > r.maxTables || r.files > r.maxFiles); {
		c := e.Value.(*logCache)
		e = e.Prev()
		if c == keep {
			continue
		}
		r.lru.Remove(c.elem)
		delete(r.m, c.key)
		r.files -= c.size
		c.size = 0
		c.evicted.Store(true)
		c.mu.Lock()
		c.st = nil
		c.known.Store(-1)
		c.mu.Unlock()
	}
}

// cacheKey identifies the table process-wide: its store and root. Only
// stores held by pointer have one (a value store cannot be told apart from
// an equal copy).
func (t *Table) cacheKey() (cacheKey, bool) {
	if t.store == nil || reflect.TypeOf(t.store).Kind() != reflect.Pointer {
		return cacheKey{}, false
	}
	return cacheKey{store: t.store, root: t.root}, true
}

// entry returns the table's cache entry (nil: not cached).
func (t *Table) entry() *logCache {
	if c := t.cache.Load(); c != nil && !c.evicted.Load() {
		return c
	}
	key, ok := t.cacheKey()
	if !ok {
		return nil
	}
	c := snapCache.get(key)
	if c != nil {
		t.cache.Store(c)
	}
	return c
}

func (c *logCache) lock(ctx context.Context) error {
	select {
	case c.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *logCache) unlock() { <-c.sem }

func (c *logCache) state() *cacheState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

func (c *logCache) setState(st *cacheState) {
	c.mu.Lock()
	if c.evicted.Load() {
		c.mu.Unlock()
		return
	}
	c.st = st
	size := 0
	c.known.Store(-1)
	if st != nil {
		size = len(st.files) + len(st.tombs)
		c.known.Store(st.snap.Version)
	}
	c.mu.Unlock()
	snapCache.stored(c, size)
}

// withTable returns s as read through t (a shallow copy: the slices and
// maps are shared and immutable).
func (s *Snapshot) withTable(t *Table) *Snapshot {
	if s.table == t {
		return s
	}
	cp := *s
	cp.table = t
	return &cp
}

// snapshotAt returns the snapshot at version (-1: latest) through the
// cache.
func (t *Table) snapshotAt(ctx context.Context, version int64) (*Snapshot, error) {
	c := t.entry()
	if c == nil {
		rr, _, err := t.coldSnapshot(ctx, version)
		if err != nil {
			return nil, err
		}
		return rr.snap, nil
	}
	if err := c.lock(ctx); err != nil {
		return nil, err
	}
	defer c.unlock()
	st := c.state()
	if st != nil && version >= 0 && version < st.snap.Version {
		// Time travel: replayed from scratch, the cache is left alone.
		rr, _, err := t.coldSnapshot(ctx, version)
		if err != nil {
			return nil, err
		}
		return rr.snap, nil
	}
	if st != nil {
		if s, ok := t.refresh(ctx, c, st, version); ok {
			return s.withTable(t), nil
		}
	}
	rr, l, err := t.coldSnapshot(ctx, version)
	if err != nil {
		if errorsIsAny(err, ErrNotATable) {
			c.setState(nil) // deleted: free the memory
		}
		// Otherwise keep the state: every refresh re-validates it.
		return nil, err
	}
	cacheCounts.full.Add(1)
	c.setState(newCacheState(rr, l))
	return rr.snap, nil
}

// startFor is the first version a state at version v with checkpoint cp
// (-1: none) is re-listed from.
func startFor(cp, v int64) int64 {
	lo := max(cp, 0)
	if v-lo <= listWindow {
		return lo
	}
	return v
}

func newCacheState(rr *replayResult, l *listing) *cacheState {
	st := &cacheState{snap: rr.snap, files: rr.r.files, tombs: rr.r.tombstones}
	st.record(l, rr.cp)
	return st
}

// record notes the log files the state rests on, from l.
func (st *cacheState) record(l *listing, cp *checkpointSet) {
	s := st.snap
	st.start = startFor(s.checkpointVersion, s.Version)
	st.commits = make(map[int64]stamp, s.Version-st.start+1)
	for v := st.start; v <= s.Version; v++ {
		if f, ok := l.commits[v]; ok {
			st.commits[v] = stamp{f.size, f.modTime}
		}
	}
	st.cpFiles = nil
	if cp != nil && st.start == cp.version {
		st.cpFiles = cp.files
	}
}

// matches reports whether the log files the state rests on are listed in
// l unchanged.
func (st *cacheState) matches(l *listing) bool {
	for v := st.start; v <= st.snap.Version; v++ {
		want, had := st.commits[v]
		got, has := l.commits[v]
		if had != has || (has && (got.size != want.size || !got.modTime.Equal(want.mod))) {
			return false
		}
	}
	if len(st.cpFiles) > 0 {
		listed := map[string]stamp{}
		for _, f := range l.all {
			if f.version == st.start && f.kind == kindCheckpoint {
				listed[f.key] = stamp{f.size, f.modTime}
			}
		}
		for _, f := range st.cpFiles {
			got, ok := listed[f.key]
			if !ok || got.size != f.size || !got.mod.Equal(f.modTime) {
				return false
			}
		}
	}
	return true
}

// refresh brings st to version target (-1: latest) from a listing of the
// log from st.start. ok is false when that cannot be done incrementally
// (see the comment at the top); the caller then replays in full.
func (t *Table) refresh(ctx context.Context, c *logCache, st *cacheState, target int64) (*Snapshot, bool) {
	base := st.snap
	l, err := t.listFrom(ctx, st.start)
	if err != nil || !st.matches(l) {
		return nil, false
	}
	if target < 0 {
		target = l.maxVersion
	}
	if target > l.maxVersion {
		return nil, false
	}
	for _, cp := range l.checkpoints {
		if cp.version > base.checkpointVersion && cp.version <= target {
			// A newer checkpoint: start from it, as a full replay does.
			rr, err := t.snapshotFromListing(ctx, l, target, t.readLastCheckpoint(ctx), true)
			if err != nil {
				return nil, false
			}
			cacheCounts.fromNewCheckpoint.Add(1)
			c.setState(newCacheState(rr, l))
			return rr.snap, true
		}
	}
	if target == base.Version {
		cacheCounts.unchanged.Add(1)
		return base, true
	}
	if l.checkContiguous(base.Version+1, target) != nil {
		return nil, false
	}
	commits := make([][]Action, 0, target-base.Version)
	for v := base.Version + 1; v <= target; v++ {
		acts, err := t.ReadCommit(ctx, v)
		if err != nil {
			return nil, false
		}
		commits = append(commits, acts)
	}
	s, err := st.advance(l, commits, target)
	if err != nil {
		return nil, false
	}
	cacheCounts.applied.Add(1)
	c.setState(st)
	return s, true
}

// advance applies commits (versions snap.Version+1..target) to the state
// and returns the new snapshot. Nothing is changed when it fails.
func (st *cacheState) advance(l *listing, commits [][]Action, target int64) (*Snapshot, error) {
	base := st.snap
	s := &Snapshot{
		Version:           target,
		Protocol:          base.Protocol,
		Metadata:          base.Metadata,
		table:             base.table,
		txns:              base.txns,
		domains:           base.domains,
		checkpointVersion: base.checkpointVersion,
	}
	// Per file key, the newest action of the new commits.
	type change struct {
		add *Add
		rm  *Remove
	}
	over := map[fileKey]change{}
	txnsCopied, domainsCopied := false, false
	for _, acts := range commits {
		s.CommitInfo = nil
		for i := range acts {
			a := &acts[i]
			switch {
			case a.CommitInfo != nil:
				s.CommitInfo = a.CommitInfo
			case a.Add != nil:
				over[keyOf(a.Add.Path, a.Add.DeletionVector)] = change{add: a.Add}
			case a.Remove != nil:
				over[keyOf(a.Remove.Path, a.Remove.DeletionVector)] = change{rm: a.Remove}
			case a.MetaData != nil:
				s.Metadata = a.MetaData
			case a.Protocol != nil:
				s.Protocol = a.Protocol
			case a.Txn != nil:
				if !txnsCopied {
					s.txns = copyMap(s.txns)
					txnsCopied = true
				}
				s.txns[a.Txn.AppID] = a.Txn
			case a.DomainMetadata != nil:
				if !domainsCopied {
					s.domains = copyMap(s.domains)
					domainsCopied = true
				}
				if a.DomainMetadata.Removed {
					delete(s.domains, a.DomainMetadata.Domain)
				} else {
					s.domains[a.DomainMetadata.Domain] = a.DomainMetadata
				}
			}
		}
	}
	if err := s.finish(l, base); err != nil {
		return nil, err
	}
	// From here on nothing fails: update the state in place.
	var dropA, newA []*Add
	var dropR, newR []*Remove
	for k, ch := range over {
		if old, ok := st.files[k]; ok {
			dropA = append(dropA, old)
		}
		if old, ok := st.tombs[k]; ok {
			dropR = append(dropR, old)
		}
		if ch.add != nil {
			st.files[k] = ch.add
			delete(st.tombs, k)
			newA = append(newA, ch.add)
		} else {
			delete(st.files, k)
			st.tombs[k] = ch.rm
			newR = append(newR, ch.rm)
		}
	}
	s.files = rebuild(base.files, dropA, newA, addKey)
	s.tombstones = rebuild(base.tombstones, dropR, newR, removeKey)
	st.snap = s
	st.record(l, nil)
	return s, nil
}

func copyMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// sortKey is the order of Snapshot.Files and Tombstones: path as in the
// log, then deletion vector id.
type sortKey struct{ path, dv string }

func (a sortKey) less(b sortKey) bool {
	if a.path != b.path {
		return a.path < b.path
	}
	return a.dv < b.dv
}

func addKey(a *Add) sortKey       { return sortKey{a.Path, a.DeletionVector.UniqueID()} }
func removeKey(r *Remove) sortKey { return sortKey{r.Path, r.DeletionVector.UniqueID()} }

// rebuild returns a new sorted slice: old (sorted by key, unique keys)
// without the elements of drop (found by binary search and identity), merged
// with add. old is not modified; it is returned as is when nothing changes.
func rebuild[T any](old, drop, add []*T, key func(*T) sortKey) []*T {
	if len(drop) == 0 && len(add) == 0 {
		return old
	}
	var skip []int // indices of old to leave out, ascending
	for _, d := range drop {
		k := key(d)
		i := sort.Search(len(old), func(i int) bool { return !key(old[i]).less(k) })
		for ; i < len(old) && key(old[i]) == k; i++ {
			if old[i] == d {
				skip = append(skip, i)
				break
			}
		}
	}
	sort.Ints(skip)
	add = append([]*T(nil), add...)
	sort.Slice(add, func(i, j int) bool { return key(add[i]).less(key(add[j])) })
	out := make([]*T, 0, len(old)-len(skip)+len(add))
	i, j := 0, 0
	for i < len(old) {
		if len(skip) > 0 && skip[0] == i {
			skip = skip[1:]
			i++
			continue
		}
		if j < len(add) && key(add[j]).less(key(old[i])) {
			out = append(out, add[j])
			j++
			continue
		}
		if j == len(add) {
			// Only old elements left: copy up to the next skipped one.
			end := len(old)
			if len(skip) > 0 {
				end = skip[0]
			}
			out = append(out, old[i:end]...)
			i = end
			continue
		}
		out = append(out, old[i])
		i++
	}
	return append(out, add[j:]...)
}

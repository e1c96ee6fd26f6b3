package ops

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

// Outcome is what the decide step of a merge makes of one changed key.
type Outcome int

const (
	// Keep leaves the target as it is: its row for the key stays (or stays
	// absent). A file whose matched keys are all kept is not rewritten.
	Keep Outcome = iota
	// Upsert makes the row in out the key's only row.
	Upsert
	// Delete removes the key's row.
	Delete
)

// Decider is the decide step of a merge: it turns a changed key and the
// target's current row for it into an outcome. Keeping it separate from
// the file work lets callers add rules (ordering guards, TOAST columns,
// tombstones) without touching pruning, rewriting or committing.
type Decider interface {
	// Decide is called once per changed key k (row k of MergeSpec.Changed)
	// per merge attempt. cur is the target's current row, one cell per
	// column of the table schema, or nil when the table has no row for the
	// key (or Truncate is set). For Upsert the decider fills out (one cell
	// per table column; zero cells are null), which may point into cur or
	// into the decider's own arrays. Calls are serialised; cur and out are
	// only valid during the call (Merge copies out before returning).
	Decide(k int, cur []Cell, out []Cell) (Outcome, error)
}

// MergeSpec describes one MERGE into an existing table.
type MergeSpec struct {
	// Keys are the key columns of the table (names, case-insensitive).
	Keys []string
	// Changed holds the distinct changed keys: one array per key column,
	// in Keys order, all of one length. Merge does not retain or release
	// them.
	Changed []arrow.Array
	// Decider decides each changed key (see NewChanges for plain upserts
	// and deletes).
	Decider Decider
	// Snapshot to merge into; nil reads the latest. On a conflict retry the
	// latest snapshot is always read again.
	Snapshot *delta.Snapshot
	// Schema, when set and different from the table's, is committed as the
	// new schema in the same commit (new columns must be nullable);
	// existing rows are read with it, so new columns read as null.
	Schema *delta.StructType
	// Truncate drops every existing row first: no file is read, every live
	// file is removed, and Decide always gets cur == nil.
	Truncate bool
	// AppID, when set, commits txn(AppID, AppVersion) with the data.
	AppID      string
	AppVersion int64
	// Operation and Params go to commitInfo (default "MERGE").
	// IdleOperation replaces Operation when the commit changes no data
	// (only the txn or the schema), e.g. "STREAMING UPDATE".
	Operation     string
	IdleOperation string
	Params        map[string]any
	// TargetFileSize for new files (default datafile.DefaultTargetFileSize).
	TargetFileSize int64
	// Now stamps removes and adds (default time.Now).
	Now func() time.Time
	// MaxAttempts bounds re-planning after a conflict (default 5; at most
	// maxAttempts).
	MaxAttempts int
	// Concurrency is how many candidate files are read and rewritten at
	// once (default GOMAXPROCS, at most 8).
	Concurrency int
	// Allocator for Arrow buffers (default memory.DefaultAllocator).
	Allocator memory.Allocator
}

// MergeResult describes a committed merge.
type MergeResult struct {
	// Version committed; -1 when there was nothing to commit.
	Version int64
	// Attempts is 1 plus the number of conflict retries.
	Attempts int
	// FilesTotal live files, of which FilesCandidate could hold a changed
	// key (pruning) and were read, and FilesRewritten held one whose
	// outcome was not Keep and were rewritten without it.
	FilesTotal, FilesCandidate, FilesRewritten int
	// FilesAdded: new files (rewritten files' rows plus upserted rows).
	FilesAdded int
	// RowsCopied: unchanged rows copied from rewritten files.
	RowsCopied int64
	// Inserted, Updated, Deleted keys; Kept keys had outcome Keep.
	Inserted, Updated, Deleted, Kept int
}

// maxAttempts caps MaxAttempts of Merge and Optimize: each attempt
// re-reads the table and rewrites files, and each commit inside one may
// itself retry up to delta.MaxCommitAttempts times.
const maxAttempts = 20

// Conflicts a merge answers by re-planning on a fresh snapshot: the winner
// removed or added files in what the merge read (a concurrent OPTIMIZE or
// another data change). Protocol or metadata changes and a concurrent
// writer with the same appId fail: the plan's assumptions are gone.
func retryable(err error) bool {
	var ce *delta.ConflictError
	if !errors.As(err, &ce) {
		return false
	}
	switch ce.Kind {
	case delta.ConflictConcurrentAppend, delta.ConflictConcurrentDeleteRead, delta.ConflictConcurrentDeleteDelete:
		return true
	}
	return false
}

// Merge applies spec to the table by copy-on-write: only live files whose
// partition values and min/max stats can contain a changed key are read;
// only those that hold a key whose outcome is Upsert or Delete are
// rewritten without it; upserted rows go to new files. The commit removes
// the rewritten files, records every candidate as read (so a concurrent
// OPTIMIZE that removed one conflicts) and depends on the whole table (so a
// concurrent non-blind data change conflicts); blind appends do not. On
// such a conflict the merge is planned again on the latest snapshot.
func Merge(ctx context.Context, t *delta.Table, spec MergeSpec) (*MergeResult, error) {
	if spec.Decider == nil {
		return nil, errors.New("ops: merge: no Decider")
	}
	if len(spec.Keys) == 0 || len(spec.Keys) != len(spec.Changed) {
		return nil, fmt.Errorf("ops: merge: %d key columns but %d changed-key arrays", len(spec.Keys), len(spec.Changed))
	}
	if spec.Operation == "" {
		spec.Operation = "MERGE"
	}
	if spec.TargetFileSize <= 0 {
		spec.TargetFileSize = datafile.DefaultTargetFileSize
	}
	if spec.Now == nil {
		spec.Now = time.Now
	}
	if spec.MaxAttempts <= 0 {
		spec.MaxAttempts = 5
	}
	spec.MaxAttempts = min(spec.MaxAttempts, maxAttempts)
	if spec.Concurrency <= 0 {
		spec.Concurrency = min(runtime.GOMAXPROCS(0), 8)
	}
	if spec.Allocator == nil {
		spec.Allocator = memory.DefaultAllocator
	}
	idx, err := newKeyIndex(spec.Changed)
	if err != nil {
		return nil, fmt.Errorf("ops: merge: %w", err)
	}
	snap := spec.Snapshot
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("ops: merge: %w", err)
		}
		if snap == nil {
			if snap, err = t.Snapshot(ctx); err != nil {
				return nil, fmt.Errorf("ops: merge: %w", err)
			}
		}
		res, err := mergeOnce(ctx, t, snap, &spec, idx)
		if err == nil {
			res.Attempts = attempt
			return res, nil
		}
		if !retryable(err) || attempt >= spec.MaxAttempts {
			return nil, fmt.Errorf("ops: merge: %w", err)
		}
		snap = nil // re-plan on the latest snapshot
	}
}

// mergeState is shared by the workers of one attempt; mu guards every
// field below it.
type mergeState struct {
	spec *MergeSpec
	idx  *keyIndex

	mu       sync.Mutex
	decided  []bool
	outcomes []Outcome
	out      *array.RecordBuilder
	outCells []Cell
	res      *MergeResult
}

// decide runs the decider for key k with the current row (nil: none) and
// returns the outcome; a key seen again (a duplicate row in the target)
// gets the first outcome. Rows of an Upsert are copied into the output.
func (m *mergeState) decide(k int, cur []Cell) (Outcome, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.decided[k] {
		return m.outcomes[k], nil
	}
	m.decided[k] = true
	clear(m.outCells)
	oc, err := m.spec.Decider.Decide(k, cur, m.outCells)
	if err != nil {
		return Keep, err
	}
	m.outcomes[k] = oc
	switch oc {
	case Upsert:
		for i, c := range m.outCells {
			if err := AppendCell(m.out.Field(i), c); err != nil {
				return Keep, fmt.Errorf("upsert column %d: %w", i, err)
			}
		}
		if cur == nil {
			m.res.Inserted++
		} else {
			m.res.Updated++
		}
	case Delete:
		if cur != nil {
			m.res.Deleted++
		}
	default:
		m.res.Kept++
	}
	return oc, nil
}

func mergeOnce(ctx context.Context, t *delta.Table, snap *delta.Snapshot, spec *MergeSpec, idx *keyIndex) (*MergeResult, error) {
	if err := snap.CanWrite(); err != nil {
		return nil, err
	}
	schema := snap.Schema()
	newSchema := spec.Schema != nil && spec.Schema.SchemaString() != schema.SchemaString()
	if spec.Schema != nil {
		schema = spec.Schema
	}
	ti := datafile.TableInfo{Root: t.Root(), Schema: schema, PartitionColumns: snap.PartitionColumns(),
		Config: snap.Config(), Allocator: spec.Allocator}
	keyCols := make([]int, len(spec.Keys))
	for j, k := range spec.Keys {
		keyCols[j] = fieldIndex(schema, k)
		if keyCols[j] < 0 {
			return nil, fmt.Errorf("key column %q is not in the table schema", k)
		}
	}
	as, err := datafile.ArrowSchema(schema)
	if err != nil {
		return nil, err
	}
	res := &MergeResult{Version: -1, FilesTotal: len(snap.Files())}
	m := &mergeState{spec: spec, idx: idx, decided: make([]bool, idx.n), outcomes: make([]Outcome, idx.n),
		out: array.NewRecordBuilder(spec.Allocator, as), outCells: make([]Cell, len(schema.Fields)), res: res}
	defer m.out.Release()

	var candidates, removed []*delta.Add
	var adds []*delta.Add
	if spec.Truncate {
		removed = snap.Files()
	} else {
		pr := newKeyPruner(schema, snap.PartitionColumns(), spec.Keys, spec.Changed)
		for _, f := range snap.Files() {
			if pr.mayContain(f) {
				candidates = append(candidates, f)
			}
		}
		res.FilesCandidate = len(candidates)
		var mu sync.Mutex
		err := forEach(ctx, spec.Concurrency, len(candidates), func(ctx context.Context, i int) error {
			fadds, rewritten, copied, err := m.mergeFile(ctx, t, ti, keyCols, candidates[i])
			if err != nil {
				return fmt.Errorf("merge file %s: %w", candidates[i].Path, err)
			}
			if rewritten {
				mu.Lock()
				removed = append(removed, candidates[i])
				adds = append(adds, fadds...)
				res.RowsCopied += copied
				mu.Unlock()
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	// Keys the table does not hold.
	for k := 0; k < idx.n; k++ {
		if !m.decided[k] {
			if _, err := m.decide(k, nil); err != nil {
				return nil, err
			}
		}
	}
	rec := m.out.NewRecordBatch()
	defer rec.Release()
	if rec.NumRows() > 0 {
		fadds, err := datafile.Write(ctx, t.Store(), ti, rec, datafile.WriteOptions{
			TargetFileSize: spec.TargetFileSize, DataChange: true, Now: spec.Now, Allocator: spec.Allocator})
		if err != nil {
			return nil, err
		}
		adds = append(adds, fadds...)
	}
	res.FilesRewritten = len(removed)
	res.FilesAdded = len(adds)
	if len(adds) == 0 && len(removed) == 0 && !newSchema && spec.AppID == "" {
		return res, nil // nothing to commit
	}

	tx := t.Begin(snap)
	if newSchema {
		md := *snap.Metadata
		md.SchemaString = schema.SchemaString()
		tx.SetMetadata(&md)
	}
	tx.ReadWholeTable()
	read := make([]string, 0, len(candidates)+len(removed))
	for _, f := range candidates {
		read = append(read, f.Path)
	}
	if spec.Truncate {
		for _, f := range removed {
			read = append(read, f.Path)
		}
	}
	tx.ReadFiles(read...)
	now := spec.Now().UnixMilli()
	for _, f := range removed {
		tx.Remove(removeOf(f, now, true))
	}
	tx.Add(adds...)
	if spec.AppID != "" {
		tx.SetAppTxn(spec.AppID, spec.AppVersion)
	}
	params := spec.Params
	if params == nil {
		params = map[string]any{"predicate": mergePredicate(spec.Keys)}
	}
	op := spec.Operation
	if len(adds) == 0 && len(removed) == 0 && spec.IdleOperation != "" {
		op = spec.IdleOperation
	}
	v, err := tx.Commit(ctx, op, params)
	if err != nil {
		return nil, err
	}
	res.Version = v
	return res, nil
}

func mergePredicate(keys []string) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = "target." + k + " = source." + k
	}
	return strings.Join(parts, " AND ")
}

// removeOf is the remove action for a live file.
func removeOf(f *delta.Add, nowMs int64, dataChange bool) *delta.Remove {
	size := f.Size
	ext := true
	return &delta.Remove{Path: f.Path, DeletionTimestamp: &nowMs, DataChange: dataChange,
		ExtendedFileMetadata: &ext, PartitionValues: f.PartitionValues, Size: &size,
		Stats: f.Stats, Tags: f.Tags, DeletionVector: f.DeletionVector}
}

// maxPendingRows bounds the rows mergeFile holds before it knows that a
// file is rewritten.
const maxPendingRows = 256 * 1024

// mergeFile streams one candidate: each record read is matched against
// the changed keys, decided, and its remaining rows written to new files.
// Writing starts at the first dropped row; records before it are held (up
// to maxPendingRows, then written on speculatively), so a file where every
// matched key is kept is not rewritten. Memory is about maxPendingRows rows
// plus the open output file, not the input file.
func (m *mergeState) mergeFile(ctx context.Context, t *delta.Table, ti datafile.TableInfo, keyCols []int, f *delta.Add) (adds []*delta.Add, rewritten bool, copied int64, err error) {
	var (
		pending     []arrow.RecordBatch // records before the first drop
		pendingRows int64
		dropped     bool // a row of the file goes
		w           *asyncWriter
		keys        = make([]arrow.Array, len(keyCols))
		buf         []byte
		cur         []Cell
		drops       []int
	)
	defer func() {
		for _, r := range pending {
			if r != nil {
				r.Release()
			}
		}
		if w != nil && err != nil {
			w.Abort()
		}
	}()
	write := func(r arrow.RecordBatch) error {
		copied += r.NumRows()
		return w.Write(r)
	}
	err = scanAhead(ctx, t.Store(), ti, f, pipelineDepth, func(r arrow.RecordBatch) error {
		drops = drops[:0]
		for j, c := range keyCols {
			keys[j] = r.Column(c)
		}
		match := func(row, k int) error {
			if cur == nil {
				cur = make([]Cell, r.NumCols())
			}
			for c := range cur {
				cur[c] = Cell{r.Column(c), row}
			}
			oc, err := m.decide(k, cur)
			if err != nil {
				return err
			}
			if oc != Keep {
				drops = append(drops, row)
			}
			return nil
		}
		if a, ok := keys[0].(*array.Int64); ok && m.idx.ints != nil && a.NullN() == 0 {
			// Hot path: one non-null long key column.
			for row, v := range a.Int64Values() {
				if k := m.idx.intKey(v); k >= 0 {
					if err := match(row, k); err != nil {
						return err
					}
				}
			}
		} else {
			for row := 0; row < int(r.NumRows()); row++ {
				if k := m.idx.lookup(keys, row, &buf); k >= 0 {
					if err := match(row, k); err != nil {
						return err
					}
				}
			}
		}
		if len(drops) == 0 && w == nil {
			r.Retain()
			pending = append(pending, r)
			pendingRows += r.NumRows()
			if pendingRows < maxPendingRows {
				return nil
			}
			// Memory stays bounded: write on, and throw the output away
			// if no row goes after all.
		}
		if w == nil {
			// A rewritten file is rows read in bulk, in the old file's
			// order: SnapshotEncodings writes a still-ascending key column
			// DELTA_BINARY_PACKED and a constant one plain (no hashing),
			// which halves the file of the bench's 10M-row table and its
			// encoding CPU.
			dw, err := datafile.NewWriter(ctx, t.Store(), ti, datafile.WriteOptions{
				TargetFileSize: m.spec.TargetFileSize, DataChange: true, Now: m.spec.Now, Allocator: ti.Allocator, SnapshotEncodings: true})
			if err != nil {
				return err
			}
			w = newAsyncWriter(dw, pipelineDepth)
			for i, p := range pending {
				if err := write(p); err != nil {
					return err
				}
				p.Release()
				pending[i] = nil
			}
			pending = pending[:0]
			if len(drops) == 0 {
				return nil // r was the last pending record
			}
		}
		if len(drops) == 0 {
			return write(r)
		}
		dropped = true
		kept, err := keepRows(m.spec.Allocator, r, drops)
		if err != nil || kept == nil {
			return err
		}
		defer kept.Release()
		return write(kept)
	})
	if err != nil {
		return nil, false, 0, err
	}
	if w == nil {
		return nil, false, 0, nil // no row goes: the file stays
	}
	if !dropped {
		// Every matched key was kept: the file stays. Output files the
		// writer already stored (past the target size) are left
		// unreferenced for VACUUM.
		w.Abort()
		w = nil
		return nil, false, 0, nil
	}
	if adds, err = w.Close(); err != nil {
		w = nil // Close aborted it
		return nil, false, 0, err
	}
	return adds, true, copied, nil
}

// keepRows returns the rows of rec minus drops (ascending row numbers) as
// one record, or nil when no row is left.
func keepRows(mem memory.Allocator, rec arrow.RecordBatch, drops []int) (arrow.RecordBatch, error) {
	// Kept row ranges [a, b).
	var runs [][2]int
	total, next := 0, 0
	for k := 0; k <= len(drops); k++ {
		d := int(rec.NumRows()) // after the last drop: the rest
		if k < len(drops) {
			d = drops[k]
		}
		if d > next {
			runs = append(runs, [2]int{next, d})
			total += d - next
		}
		next = d + 1
	}
	if total == 0 {
		return nil, nil
	}
	cols := make([]arrow.Array, rec.NumCols())
	defer releaseArrays(cols)
	for c := range cols {
		if a, ok := keepRuns(mem, rec.Column(c), runs, total); ok {
			cols[c] = a
			continue
		}
		parts := make([]arrow.Array, len(runs))
		for i, run := range runs {
			parts[i] = array.NewSlice(rec.Column(c), int64(run[0]), int64(run[1]))
		}
		if len(parts) == 1 {
			cols[c] = parts[0]
			continue
		}
		a, err := array.Concatenate(parts, mem)
		releaseArrays(parts)
		if err != nil {
			return nil, err
		}
		cols[c] = a
	}
	return array.NewRecordBatch(rec.Schema(), cols, int64(total)), nil
}

func releaseArrays(as []arrow.Array) {
	for _, a := range as {
		if a != nil {
			a.Release()
		}
	}
}

// forEach runs fn(0..n-1) on up to conc goroutines and returns the first
// error; after an error no new item starts. Every goroutine has ended when
// it returns.
func forEach(ctx context.Context, conc, n int, fn func(ctx context.Context, i int) error) error {
	if n == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     int
	)
	worker := func() {
		defer wg.Done()
		for {
			mu.Lock()
			if firstErr != nil || next >= n {
				mu.Unlock()
				return
			}
			i := next
			next++
			mu.Unlock()
			if err := ctx.Err(); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
			if err := fn(ctx, i); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
				return
			}
		}
	}
	for w := 0; w < min(conc, n); w++ {
		wg.Add(1)
		go worker()
	}
	wg.Wait()
	return firstErr
}

func fieldIndex(s *delta.StructType, name string) int {
	for i, f := range s.Fields {
		if f.Name == name {
			return i
		}
	}
	for i, f := range s.Fields {
		if strings.EqualFold(f.Name, name) {
			return i
		}
	}
	return -1
}

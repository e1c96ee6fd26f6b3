// Package silver keeps one Delta table per source table equal to the source:
// micro-batches read the Bronze commits newer than the Bronze version stored
// in Silver's own txn action (appId "silt-bronze"), fold each key's changes
// in (commit LSN, position) order, and MERGE the result: upserts and deletes
// by copy-on-write of the files that hold changed keys.
//
// Rules (see DESIGN.md, "Silver"):
//   - A change never overwrites a newer one: an existing row whose
//     (_silt_lsn, _silt_pos) is at or after a change's is kept.
//   - Unchanged TOAST columns keep the previous value of the key.
//   - TRUNCATE removes every row committed before it.
//   - Replaying Bronze commits already merged changes nothing: the txn
//     version says they are done, and the ordering rule makes even a forced
//     replay a no-op.
//   - Snapshot rows (_silt_op L) are merged only by ProcessLoad, a separate
//     pass with its own txn appId ("silt-load"); Process ignores them. The
//     pipeline runs ProcessLoad over a table's Bronze versions once its
//     snapshot is complete and before Process touches the table, so every
//     logged change of a key is applied after the key's snapshot row even
//     when the two sit in different micro-batches (see internal/source/pgsnap).
package silver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/bronze"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/delta/ops"
	"github.com/silt-dev/silt/internal/enrich"
)

// Metadata columns of Silver tables.
const (
	ColLSN      = "_silt_lsn"
	ColPos      = "_silt_pos"
	ColCommitTS = "_silt_commit_ts"
)

// AppID is the txn appId whose version is the last Bronze version merged.
const AppID = "silt-bronze"

// LoadAppID is the txn appId whose version is the last Bronze version whose
// snapshot rows ProcessLoad merged.
const LoadAppID = "silt-load"

// TablePath is the key prefix of a source table's Silver table.
func TablePath(t change.TableID) string { return "silver/" + t.Schema + "/" + t.Name }

// Options tune the processor.
type Options struct {
	// MaxVersionsPerBatch caps how many Bronze commits one micro-batch reads.
	MaxVersionsPerBatch int
	// MaxRowsPerBatch bounds a micro-batch's memory: a Bronze commit that
	// would take the batch past this many Bronze rows (counted from the
	// files' numRecords stats) is left to the next batch. A single commit
	// larger than this is still merged whole (Bronze bounds its commits by
	// flush_bytes).
	// Default DefaultMaxRowsPerBatch.
	MaxRowsPerBatch int64
	// MaxBytesPerBatch bounds it by the Bronze files' size too (the same
	// rule: the commit that would take the batch past it starts the next
	// one; a single larger commit is merged whole). Rows alone do not bound
	// the memory of a wide table: 256Ki rows of 2 KiB are 512 MiB. The
	// files are compressed, so this is a bound on the decoded size only up
	// to the compression ratio, which is lowest (about 2-4) for wide rows
	// of text, where it matters. Default DefaultMaxBytesPerBatch.
	MaxBytesPerBatch int64
	// TargetFileSize of new Silver files and of OPTIMIZE's output (default
	// 128 MiB).
	TargetFileSize int64
	// OptimizeEvery: after a MERGE commit whose version is a multiple of
	// this, small files of the table are compacted (ops.Optimize,
	// bin-packing toward TargetFileSize). 0 means DefaultOptimizeEvery; a
	// negative value turns automatic OPTIMIZE off.
	OptimizeEvery int
	// TombstoneRetention is how long a deleted key is remembered so that a
	// late, older change cannot bring it back (default 24h).
	TombstoneRetention time.Duration
	// Table returns per-table settings (nil: defaults for every table).
	Table func(change.TableID) TableOptions
	Now   func() time.Time
	// Stop, when closed, ends optional work: the automatic OPTIMIZE is not
	// started, and one in progress is cancelled (its commit either lands
	// or not; the batch is committed either way). Merges ignore it, so a
	// caller can run batches on a context that is never cancelled (to let
	// a batch finish at shutdown) and still stop promptly: pass the
	// shutdown signal here, e.g. ctx.Done() of the run.
	Stop <-chan struct{}
	// LoadMerge makes ProcessLoad MERGE every batch, even one whose keys
	// are all new to Silver (loadappend.go): for comparisons and tests.
	LoadMerge bool
	// LoadArrow writes appended snapshot rows from Arrow records even
	// when the table is flat (loadappend.go): for comparisons and tests.
	LoadArrow bool
}

// TableOptions are per-table Silver settings.
type TableOptions struct {
	// PartitionBy are business-key partition columns (e.g. plant), used when
	// the Silver table is created.
	PartitionBy []string
	// Enrich adds derived and lookup columns (nil: none).
	Enrich *enrich.Enricher
	// Keyless marks a source table without a key (no primary key, no
	// replica identity index; REPLICA IDENTITY FULL alone is no key). A
	// Bronze table without silt.primaryKey is keyless too.
	Keyless bool
	// KeylessAppend (source.keyless: append): a keyless table's Silver
	// table is an append-only change log (appendlog.go) instead of an
	// error. A table already created append-only stays so regardless.
	KeylessAppend bool
}

// withExtra puts enrichment columns before the _silt_ metadata columns.
func withExtra(s *delta.StructType, extra []*delta.StructField) *delta.StructType {
	out := &delta.StructType{}
	i := 0
	for ; i < len(s.Fields) && !strings.HasPrefix(s.Fields[i].Name, "_silt_"); i++ {
		out.Fields = append(out.Fields, s.Fields[i])
	}
	out.Fields = append(out.Fields, extra...)
	out.Fields = append(out.Fields, s.Fields[i:]...)
	return out
}

// DefaultOptimizeEvery is Options.OptimizeEvery's default.
const DefaultOptimizeEvery = 10

// DefaultMaxRowsPerBatch is Options.MaxRowsPerBatch's default. A batch holds
// roughly 250-300 bytes per Bronze row of a narrow table (Arrow columns, the
// per-key fold state, the MERGE output), so this keeps one batch near
// 60-80 MiB live however large the backlog or the source transaction.
const DefaultMaxRowsPerBatch = 256 << 10

// DefaultMaxBytesPerBatch is Options.MaxBytesPerBatch's default: 32 MiB of
// Bronze Parquet, about 64-128 MiB of decoded wide rows; narrow rows
// (compressed 10-20 times) reach DefaultMaxRowsPerBatch first.
const DefaultMaxBytesPerBatch = 32 << 20

// Result describes one micro-batch.
type Result struct {
	Table         change.TableID
	FromVersion   int64 // first Bronze version merged
	ToVersion     int64 // last Bronze version merged (-1: nothing to do)
	SilverVersion int64
	Changes       int // Bronze rows read
	Upserts       int
	Deletes       int
	Appended      int // rows appended to an append-only table
	// LoadAppended: snapshot rows ProcessLoad wrote as a plain append,
	// every key new to Silver (no MERGE; loadappend.go).
	LoadAppended   int
	FilesRewritten int
	// FilesScanned: Silver files that pruning could not rule out, all read.
	FilesScanned int
	// Optimize is the automatic OPTIMIZE run after this batch, if any;
	// OptimizeErr its error (the batch itself is committed either way).
	Optimize    *ops.OptimizeResult
	OptimizeErr error
	// MaxLSN is the highest commit LSN merged.
	MaxLSN change.LSN
	// CommitTimes are the source commit times of the changes merged (for
	// freshness), one entry per run of changes with the same time (the
	// rows of one transaction): a 2M-row transaction is one entry.
	CommitTimes []CommitTimes
}

// CommitTimes is a run of N merged changes committed at At.
type CommitTimes struct {
	At time.Time
	N  int
}

// addCommitTime counts one merged change committed at t.
func (r *Result) addCommitTime(t time.Time) {
	if n := len(r.CommitTimes); n > 0 && r.CommitTimes[n-1].At.Equal(t) {
		r.CommitTimes[n-1].N++
		return
	}
	r.CommitTimes = append(r.CommitTimes, CommitTimes{At: t, N: 1})
}

// Processor runs Silver micro-batches.
type Processor struct {
	store blob.Store
	opts  Options

	tombMu sync.Mutex
	tombs  map[change.TableID]*tombstones // loaded on a table's first batch
}

// New returns a processor.
func New(store blob.Store, opts Options) *Processor {
	if opts.MaxVersionsPerBatch == 0 {
		opts.MaxVersionsPerBatch = 50
	}
	if opts.MaxRowsPerBatch == 0 {
		opts.MaxRowsPerBatch = DefaultMaxRowsPerBatch
	}
	if opts.MaxBytesPerBatch == 0 {
		opts.MaxBytesPerBatch = DefaultMaxBytesPerBatch
	}
	if opts.TombstoneRetention == 0 {
		opts.TombstoneRetention = 24 * time.Hour
	}
	if opts.TargetFileSize == 0 {
		opts.TargetFileSize = 128 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OptimizeEvery == 0 {
		opts.OptimizeEvery = DefaultOptimizeEvery
	}
	return &Processor{store: store, opts: opts}
}

// maybeOptimize runs the automatic OPTIMIZE policy after a committed batch:
// every OptimizeEvery-th Silver version, small files are bin-packed. It
// never conflicts with the next batch's reads in a harmful way: a MERGE
// planned before it re-plans (ops.Merge), and OPTIMIZE itself re-plans if a
// MERGE removed one of its files first (a bounded number of times). Its
// failure does not undo or fail the batch; it is reported in
// res.OptimizeErr. It is optional work: it runs on a context cancelled when
// ctx is or when Options.Stop closes, so a shutdown does not wait for it.
func (p *Processor) maybeOptimize(ctx context.Context, t *delta.Table, res *Result) {
	every := int64(p.opts.OptimizeEvery)
	if every <= 0 || res.SilverVersion <= 0 || res.SilverVersion%every != 0 {
		return
	}
	p.optimize(ctx, t, res)
}

// optimizeLoad is the OPTIMIZE policy of load batches (ProcessLoad): none
// while the load runs, since compacting its files would give files whose
// key ranges span chunks still to come, which later batches would then
// have to merge (loadappend.go); one after the batch that caught up with
// Bronze (unless automatic OPTIMIZE is off).
func (p *Processor) optimizeLoad(ctx context.Context, t *delta.Table, res *Result, caughtUp bool) {
	if p.opts.OptimizeEvery <= 0 || !caughtUp {
		return
	}
	p.optimize(ctx, t, res)
}

// optimize runs OPTIMIZE after a committed batch (see maybeOptimize).
func (p *Processor) optimize(ctx context.Context, t *delta.Table, res *Result) {
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	if stop := p.opts.Stop; stop != nil {
		select {
		case <-stop:
			res.OptimizeErr = fmt.Errorf("silver %s: optimize: skipped: %w", res.Table, context.Canceled)
			return
		default:
		}
		go func() {
			select {
			case <-stop:
				cancel()
			case <-octx.Done():
			}
		}()
	}
	ores, err := ops.Optimize(octx, t, ops.OptimizeOptions{TargetFileSize: p.opts.TargetFileSize, Now: p.opts.Now})
	if err != nil {
		res.OptimizeErr = fmt.Errorf("silver %s: optimize: %w", res.Table, err)
		return
	}
	res.Optimize = ores
}

// ListTables returns the source tables that have a Bronze table.
func ListTables(ctx context.Context, store blob.Store) ([]change.TableID, error) {
	infos, err := store.List(ctx, "bronze/")
	if err != nil {
		return nil, fmt.Errorf("silver: list bronze tables: %w", err)
	}
	seen := map[change.TableID]bool{}
	var out []change.TableID
	for _, in := range infos {
		parts := strings.Split(in.Key, "/")
		if len(parts) < 5 || parts[3] != "_delta_log" {
			continue
		}
		id := change.TableID{Schema: parts[1], Name: parts[2]}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// Process merges the next micro-batch of one table. It returns a Result with
// ToVersion -1 when Silver is already up to date. Snapshot rows are skipped.
func (p *Processor) Process(ctx context.Context, id change.TableID) (Result, error) {
	return p.process(ctx, id, false)
}

// ProcessLoad merges the snapshot rows (_silt_op L) of the next micro-batch
// of Bronze versions, as inserts, and nothing else; progress is kept under
// LoadAppID. It returns a Result with ToVersion -1 when every Bronze version
// has been through it.
func (p *Processor) ProcessLoad(ctx context.Context, id change.TableID) (Result, error) {
	return p.process(ctx, id, true)
}

func (p *Processor) process(ctx context.Context, id change.TableID, load bool) (Result, error) {
	appID := AppID
	if load {
		appID = LoadAppID
	}
	res := Result{Table: id, ToVersion: -1}
	bt := delta.NewTable(p.store, bronze.TablePath(id))
	bsnap, err := bt.Snapshot(ctx)
	if err != nil {
		return res, fmt.Errorf("silver %s: read bronze: %w", id, err)
	}
	st := delta.NewTable(p.store, TablePath(id))
	ssnap, err := st.Snapshot(ctx)
	if errors.Is(err, delta.ErrNotATable) {
		ssnap = nil
	} else if err != nil {
		return res, fmt.Errorf("silver %s: read silver: %w", id, err)
	}
	done := int64(-1)
	if ssnap != nil {
		if err := ssnap.CanWrite(); err != nil {
			return res, fmt.Errorf("silver %s: %w", id, err)
		}
		if v, ok := ssnap.TxnVersion(appID); ok {
			done = v
		}
	}
	if done >= bsnap.Version {
		return res, nil
	}
	from, to := done+1, bsnap.Version
	if to-from+1 > int64(p.opts.MaxVersionsPerBatch) {
		to = from + int64(p.opts.MaxVersionsPerBatch) - 1
	}
	res.FromVersion, res.ToVersion = from, to

	// Bronze files added by versions from..to (Bronze is append-only), up
	// to MaxRowsPerBatch rows and MaxBytesPerBatch file bytes (whole
	// commits: the txn version is a commit).
	var files []*delta.Add
	var batchRows, batchBytes int64
	for v := from; v <= to; v++ {
		acts, err := bt.ReadCommit(ctx, v)
		if err != nil {
			return res, fmt.Errorf("silver %s: read bronze version %d: %w", id, v, err)
		}
		var vfiles []*delta.Add
		var vrows, vbytes int64
		for _, a := range acts {
			if a.Add != nil && a.Add.DataChange {
				vfiles = append(vfiles, a.Add)
				vrows += addRows(a.Add)
				vbytes += a.Add.Size
			}
			if a.Remove != nil && a.Remove.DataChange {
				return res, fmt.Errorf("silver %s: bronze version %d removes data (%s); Bronze must stay append-only: restore the file or rebuild Silver from scratch", id, v, a.Remove.Path)
			}
		}
		if v > from && (batchRows+vrows > p.opts.MaxRowsPerBatch || batchBytes+vbytes > p.opts.MaxBytesPerBatch) {
			to = v - 1 // the next batch starts with it
			res.ToVersion = to
			break
		}
		files = append(files, vfiles...)
		batchRows += vrows
		batchBytes += vbytes
	}
	bschema := bsnap.Schema()
	keyCols := strings.Split(bsnap.Config()[bronze.ConfPrimaryKey], ",")
	var topts TableOptions
	if p.opts.Table != nil {
		topts = p.opts.Table(id)
	}
	keyless := topts.Keyless || len(keyCols) == 0 || keyCols[0] == ""
	appendOnly := IsAppendOnly(ssnap) || (keyless && topts.KeylessAppend)
	switch {
	case appendOnly && ssnap != nil && !IsAppendOnly(ssnap):
		return res, fmt.Errorf("silver %s: the table has no key and source.keyless is append, but %s is a mirrored table (made before): move it away so silt rebuilds it as an append-only change log, or give the source table a primary key", id, TablePath(id))
	case !appendOnly && keyless:
		return res, fmt.Errorf("silver %s: the source table has no key (no primary key or replica identity index), so it cannot be mirrored: add a primary key, or set source.keyless: append (or source.keyless_tables.%s: append) to keep an append-only change log", id, id)
	}
	sschema := silverSchema(bschema, bsnap.PartitionColumns())
	var extra []*delta.StructField
	if topts.Enrich != nil {
		if extra, err = topts.Enrich.Fields(ctx, sschema); err != nil {
			return res, fmt.Errorf("silver %s: enrichment: %w", id, err)
		}
		sschema = withExtra(sschema, extra)
	}
	bti := datafile.Info(bt, bsnap)
	var recs []arrow.RecordBatch
	// The batch's records by Bronze file.
	lfiles := make([]*loadFile, len(files))
	opsMapped := bsnap.Config()["delta.columnMapping.mode"]
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	for fi, f := range files {
		lfiles[fi] = &loadFile{}
		if (opsMapped == "" || opsMapped == "none") && !opsOfPass(f, load) {
			continue // no row of this pass (stats of _silt_op)
		}
		rs, err := datafile.Read(ctx, p.store, bti, f)
		if err != nil {
			return res, fmt.Errorf("silver %s: read bronze file %s: %w", id, f.Path, err)
		}
		for _, r := range rs {
			if topts.Enrich != nil {
				er, err := topts.Enrich.Apply(ctx, r, extra)
				r.Release()
				if err != nil {
					return res, fmt.Errorf("silver %s: enrichment: %w", id, err)
				}
				r = er
			}
			recs = append(recs, r)
			lfiles[fi].recs = append(lfiles[fi].recs, r)
			lfiles[fi].rows += int(r.NumRows())
		}
	}
	if load && !appendOnly && !p.opts.LoadMerge {
		// Keys all new to Silver: a plain append (loadappend.go).
		handled, err := p.loadAppend(ctx, st, &ssnap, sschema, keyCols, topts, lfiles, from, to, &res)
		if err != nil {
			return res, err
		}
		if handled {
			p.optimizeLoad(ctx, st, &res, to == bsnap.Version)
			return res, nil
		}
	}
	if appendOnly {
		if err := p.processAppend(ctx, st, ssnap, sschema, topts, recs, load, appID, from, to, &res); err != nil {
			return res, err
		}
		return res, nil
	}

	// Collect changes per key (the folder sorts them by (lsn, pos)): one
	// slice in row order, each key's changes linked (keyChanges), so a
	// batch costs about one foldChange a row, not a slice per key.
	type chg = foldChange
	byKey := newKeyChanges(batchRows)
	var truncAt *chg
	var kbuf []byte
	for _, r := range recs {
		ix := indexOf(r.Schema())
		opA := r.Column(ix[bronze.ColOp]).(*array.String)
		lsnA := r.Column(ix[bronze.ColLSN]).(*array.Int64)
		posA := r.Column(ix[bronze.ColPos]).(*array.Int64)
		tsA := r.Column(ix[bronze.ColCommitTS]).(*array.Timestamp)
		unA := r.Column(ix[bronze.ColUnchanged]).(*array.String)
		keyIdx := make([]int, len(keyCols))
		for i, k := range keyCols {
			j, ok := ix[strings.ToLower(k)]
			if !ok {
				return res, fmt.Errorf("silver %s: key column %q missing from bronze schema", id, k)
			}
			keyIdx[i] = j
		}
		keyCells := make([]ops.Cell, len(keyIdx))
		for row := 0; row < int(r.NumRows()); row++ {
			c := chg{lsn: lsnA.Value(row), pos: posA.Value(row), op: opA.Value(row)[0], rec: r, row: row}
			if (c.op == 'L') != load {
				continue // snapshot rows go through ProcessLoad only
			}
			if !unA.IsNull(row) {
				c.unchanged = unA.Value(row)
			}
			res.Changes++
			if change.LSN(c.lsn) > res.MaxLSN {
				res.MaxLSN = change.LSN(c.lsn)
			}
			res.addCommitTime(time.UnixMicro(int64(tsA.Value(row))))
			if c.op == 'T' {
				if truncAt == nil || change.Less(change.LSN(truncAt.lsn), uint32(truncAt.pos), change.LSN(c.lsn), uint32(c.pos)) {
					cc := c
					truncAt = &cc
				}
				continue
			}
			for i, j := range keyIdx {
				keyCells[i] = ops.Cell{Arr: r.Column(j), Row: row}
			}
			kbuf = appendKey(kbuf[:0], keyCells)
			if err := byKey.add(kbuf, c); err != nil {
				return res, fmt.Errorf("silver %s: %w", id, err)
			}
		}
	}
	byKey.done()

	// Deleted-key memory: load it, and record this batch's deletes before
	// the Silver commit (see tombstones.go).
	tombs, err := p.tombstones(ctx, id)
	if err != nil {
		return res, fmt.Errorf("silver %s: %w", id, err)
	}
	now := p.opts.Now()
	newTombs := map[string]tombstone{}
	for k, key := range byKey.keys {
		for i := byKey.first[k]; i >= 0; i = byKey.chgs[i].next {
			c := &byKey.chgs[i]
			if c.op != 'D' {
				continue
			}
			if t, ok := newTombs[key]; !ok || change.Less(change.LSN(t.lsn), uint32(t.pos), change.LSN(c.lsn), uint32(c.pos)) {
				newTombs[key] = tombstone{lsn: c.lsn, pos: c.pos, at: now.UnixMicro()}
			}
		}
	}
	if err := tombs.record(ctx, p.store, newTombs, appID, to, p.opts.TombstoneRetention, now); err != nil {
		return res, fmt.Errorf("silver %s: record tombstones: %w", id, err)
	}
	dec := &folder{schema: sschema, changes: byKey, truncAt: nil, res: &res, tombs: tombs}
	if truncAt != nil {
		dec.truncAt = &foldChange{lsn: truncAt.lsn, pos: truncAt.pos}
	}

	if ssnap == nil {
		if ssnap, err = createSilver(ctx, st, id, sschema, keyCols, topts); err != nil {
			return res, err
		}
	}
	// The changed keys, one row each, in first-seen order.
	keyArrs, err := changedKeys(len(byKey.keys), func(k int) (arrow.RecordBatch, int) {
		c := &byKey.chgs[byKey.first[k]]
		return c.rec, c.row
	}, keyCols)
	if err != nil {
		return res, fmt.Errorf("silver %s: %w", id, err)
	}
	defer func() {
		for _, a := range keyArrs {
			a.Release()
		}
	}()
	spec := ops.MergeSpec{
		Keys:     keyCols,
		Changed:  keyArrs,
		Decider:  dec,
		Snapshot: ssnap,
		Schema:   sschema,
		// TRUNCATE: rows of the table were all committed before the batch,
		// hence before the TRUNCATE: they all go.
		Truncate:       truncAt != nil,
		AppID:          appID,
		AppVersion:     to,
		IdleOperation:  "STREAMING UPDATE",
		Params:         map[string]any{"predicate": "key match on " + strings.Join(keyCols, ","), "source": fmt.Sprintf("bronze versions %d-%d", from, to)},
		TargetFileSize: p.opts.TargetFileSize,
		Now:            p.opts.Now,
	}
	// A batch whose every change is stale (a replay) merges nothing but
	// still records progress (IdleOperation).
	mres, err := ops.Merge(ctx, st, spec)
	if err != nil {
		return res, fmt.Errorf("silver %s: merge: %w", id, err)
	}
	res.SilverVersion = mres.Version
	res.FilesRewritten = mres.FilesRewritten
	res.FilesScanned = mres.FilesCandidate
	if load {
		p.optimizeLoad(ctx, st, &res, to == bsnap.Version)
	} else {
		p.maybeOptimize(ctx, st, &res)
	}
	return res, nil
}

// opsOfPass reports whether a Bronze file may hold rows of the pass:
// snapshot rows (_silt_op L) when load, other rows otherwise. A file whose
// _silt_op stats are min = max = L holds only snapshot rows; one whose
// range excludes L holds none (ops are one letter, never null). Without
// stats it may.
func opsOfPass(f *delta.Add, load bool) bool {
	if f.Stats == "" {
		return true
	}
	var st struct {
		MinValues map[string]json.RawMessage `json:"minValues"`
		MaxValues map[string]json.RawMessage `json:"maxValues"`
	}
	if json.Unmarshal([]byte(f.Stats), &st) != nil {
		return true
	}
	var lo, hi string
	if json.Unmarshal(st.MinValues[bronze.ColOp], &lo) != nil || json.Unmarshal(st.MaxValues[bronze.ColOp], &hi) != nil || lo == "" || hi == "" {
		return true
	}
	if load {
		return lo <= "L" && "L" <= hi
	}
	return !(lo == "L" && hi == "L")
}

// createSilver creates a keyed table's Silver table.
func createSilver(ctx context.Context, st *delta.Table, id change.TableID, sschema *delta.StructType, keyCols []string, topts TableOptions) (*delta.Snapshot, error) {
	conf := map[string]string{bronze.ConfPrimaryKey: strings.Join(keyCols, ",")}
	for _, pc := range topts.PartitionBy {
		if sschema.Field(pc) == nil {
			return nil, fmt.Errorf("silver %s: partition column %q is not a column of the table (silver.tables.%s.partition_by)", id, pc, id)
		}
	}
	snap, err := delta.CreateTable(ctx, st, sschema, topts.PartitionBy, conf, id.String())
	if err != nil {
		return nil, fmt.Errorf("silver %s: create: %w", id, err)
	}
	return snap, nil
}

// addRows is the row count of a data file from its stats; without stats it
// is guessed from the size (zstd Parquet of change rows: ~16 bytes a row).
func addRows(a *delta.Add) int64 {
	var st struct {
		NumRecords *int64 `json:"numRecords"`
	}
	if a.Stats != "" && json.Unmarshal([]byte(a.Stats), &st) == nil && st.NumRecords != nil {
		return *st.NumRecords
	}
	return a.Size / 16
}

// tombstones returns the table's deleted-key memory, loading it once.
func (p *Processor) tombstones(ctx context.Context, id change.TableID) (*tombstones, error) {
	p.tombMu.Lock()
	defer p.tombMu.Unlock()
	if t, ok := p.tombs[id]; ok {
		return t, nil
	}
	t, err := loadTombstones(ctx, p.store, id)
	if err != nil {
		return nil, err
	}
	if p.tombs == nil {
		p.tombs = map[change.TableID]*tombstones{}
	}
	p.tombs[id] = t
	return t, nil
}

// folder is Silver's decide step for ops.Merge: for each changed key it
// folds the batch's changes, in (LSN, pos) order, onto the key's current
// Silver row. It is the one place that says what a change does to a row:
//   - changes at or before the TRUNCATE of the batch are dropped;
//   - a change at or before the row's (_silt_lsn, _silt_pos) is stale;
//   - D removes the row; I/U replace it, except that unchanged TOAST
//     columns keep the previous value.
//
// Deleted-key memory (tombstones, issue 7) belongs here too: a fold that
// starts from no row would consult it before applying an older change.
type folder struct {
	schema  *delta.StructType
	changes *keyChanges // keys and their changes
	truncAt *foldChange
	res     *Result
	tombs   *tombstones // deleted-key memory (nil: none)
	lower   []string    // lower-case Silver field names
	srcCols map[*arrow.Schema][]int
}

// sourceColumns maps each Silver field to its column in a Bronze record of
// this schema (-1: absent), computed once per record schema.
func (f *folder) sourceColumns(rec arrow.RecordBatch) []int {
	sch := rec.Schema()
	if m, ok := f.srcCols[sch]; ok {
		return m
	}
	if f.lower == nil {
		f.lower = make([]string, len(f.schema.Fields))
		for i, fl := range f.schema.Fields {
			f.lower[i] = strings.ToLower(fl.Name)
		}
	}
	ix := indexOf(sch)
	m := make([]int, len(f.schema.Fields))
	for i, name := range f.lower {
		switch name {
		case ColLSN:
			name = bronze.ColLSN
		case ColPos:
			name = bronze.ColPos
		case ColCommitTS:
			name = bronze.ColCommitTS
		}
		if j, ok := ix[name]; ok {
			m[i] = j
		} else {
			m[i] = -1
		}
	}
	if f.srcCols == nil {
		f.srcCols = map[*arrow.Schema][]int{}
	}
	f.srcCols[sch] = m
	return m
}

type foldChange struct {
	lsn       int64
	pos       int64
	rec       arrow.RecordBatch
	row       int
	unchanged string
	next      int32 // the key's next change in keyChanges.chgs (-1: none)
	op        byte
}

// keyChanges groups a micro-batch's changes by key without a slice per key
// (a batch of mostly one change per key paid a slice, a map value and a
// key string each): the changes sit in chgs in row order, each key's
// changes linked through foldChange.next from first[k] to last[k]. The
// index from key bytes to k is only needed while collecting; done drops
// it before the MERGE.
type keyChanges struct {
	index       map[string]int32
	keys        []string // in first-seen order
	first, last []int32
	chgs        []foldChange
}

// newKeyChanges returns an empty set with room for rows changes (the
// Bronze files' numRecords, at most DefaultMaxRowsPerBatch: the files may
// hold snapshot rows this pass skips; growing past it is fine).
func newKeyChanges(rows int64) *keyChanges {
	rows = min(max(rows, 0), DefaultMaxRowsPerBatch)
	return &keyChanges{index: make(map[string]int32), chgs: make([]foldChange, 0, rows)}
}

// add appends c as the latest change of the key whose bytes are key.
func (g *keyChanges) add(key []byte, c foldChange) error {
	if len(g.chgs) >= math.MaxInt32 {
		return fmt.Errorf("micro-batch of more than %d changes: lower bronze.flush_bytes", math.MaxInt32)
	}
	i := int32(len(g.chgs))
	c.next = -1
	g.chgs = append(g.chgs, c)
	if k, ok := g.index[string(key)]; ok { // no allocation for the lookup
		g.chgs[g.last[k]].next = i
		g.last[k] = i
		return nil
	}
	s := string(key)
	g.index[s] = int32(len(g.keys))
	g.keys = append(g.keys, s)
	g.first = append(g.first, i)
	g.last = append(g.last, i)
	return nil
}

// done ends collecting: the key index is dropped.
func (g *keyChanges) done() { g.index = nil }

// of returns key k's changes in row order: a view of chgs for a key with
// one change, else a new slice (the caller may reorder it).
func (g *keyChanges) of(k int) []foldChange {
	i := g.first[k]
	if g.chgs[i].next < 0 {
		return g.chgs[i : i+1 : i+1]
	}
	var cs []foldChange
	for ; i >= 0; i = g.chgs[i].next {
		cs = append(cs, g.chgs[i])
	}
	return cs
}

func (f *foldChange) before(o *foldChange) bool {
	return change.Less(change.LSN(f.lsn), uint32(f.pos), change.LSN(o.lsn), uint32(o.pos))
}

// Decide implements ops.Decider.
func (f *folder) Decide(k int, cur []ops.Cell, out []ops.Cell) (ops.Outcome, error) {
	cs := f.changes.of(k)
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].before(&cs[j]) })
	var state []ops.Cell // nil = no row
	stLSN, stPos := int64(-1), int64(-1)
	lsnCol, posCol := fieldIndex(f.schema, ColLSN), fieldIndex(f.schema, ColPos)
	if cur != nil {
		state = cur
		stLSN, stPos = cellInt(cur[lsnCol]), cellInt(cur[posCol])
	} else if f.tombs != nil {
		// No row: if the key was deleted, changes at or before the delete are stale.
		if t, ok := f.tombs.get(f.changes.keys[k]); ok && (f.truncAt == nil || !change.Less(change.LSN(t.lsn), uint32(t.pos), change.LSN(f.truncAt.lsn), uint32(f.truncAt.pos))) {
			stLSN, stPos = t.lsn, t.pos
		}
	}
	applied := false
	for i := range cs {
		c := &cs[i]
		if f.truncAt != nil && c.before(f.truncAt) {
			continue // before the TRUNCATE
		}
		if stLSN >= 0 && !change.Less(change.LSN(stLSN), uint32(stPos), change.LSN(c.lsn), uint32(c.pos)) {
			continue // stale: the row already reflects a later change
		}
		applied = true
		switch c.op {
		case 'D':
			state = nil
		case 'I', 'U', 'L': // L: a snapshot row (ProcessLoad), an insert
			src := f.sourceColumns(c.rec)
			next := make([]ops.Cell, len(f.schema.Fields))
			var unch map[string]bool
			if c.unchanged != "" {
				unch = map[string]bool{}
				for _, n := range strings.Split(c.unchanged, ",") {
					unch[strings.ToLower(n)] = true
				}
			}
			for i := range f.schema.Fields {
				switch {
				case unch != nil && unch[f.lower[i]]:
					if state != nil {
						next[i] = state[i]
					}
				case src[i] >= 0:
					next[i] = ops.Cell{Arr: c.rec.Column(src[i]), Row: c.row}
				}
			}
			state = next
		}
		stLSN, stPos = c.lsn, c.pos
	}
	switch {
	case state == nil:
		if cur != nil {
			f.res.Deletes++
			return ops.Delete, nil
		}
		return ops.Keep, nil
	case !applied:
		f.res.Upserts++
		return ops.Keep, nil // every change was stale: the row stays as it is
	}
	f.res.Upserts++
	copy(out, state)
	return ops.Upsert, nil
}

func cellInt(c ops.Cell) int64 {
	if c.Null() {
		return -1
	}
	if a, ok := c.Arr.(*array.Int64); ok {
		return a.Value(c.Row)
	}
	return -1
}

func fieldIndex(s *delta.StructType, name string) int {
	for i, f := range s.Fields {
		if strings.EqualFold(f.Name, name) {
			return i
		}
	}
	return -1
}

// changedKeys builds one array per key column holding keys 0..n-1, key k
// taken from the row at(k) points at.
func changedKeys(n int, at func(int) (arrow.RecordBatch, int), keyCols []string) ([]arrow.Array, error) {
	if n == 0 {
		out := make([]arrow.Array, len(keyCols))
		for i := range out {
			out[i] = array.MakeArrayOfNull(memory.DefaultAllocator, arrow.Null, 0)
		}
		return out, nil
	}
	rec0, _ := at(0)
	ix := indexOf(rec0.Schema())
	bs := make([]array.Builder, len(keyCols))
	for j, k := range keyCols {
		c, ok := ix[strings.ToLower(k)]
		if !ok {
			return nil, fmt.Errorf("key column %q missing from bronze schema", k)
		}
		bs[j] = array.NewBuilder(memory.DefaultAllocator, rec0.Column(c).DataType())
		defer bs[j].Release()
	}
	ixs := map[*arrow.Schema]map[string]int{}
	for k := range n {
		rec, row := at(k)
		rix, ok := ixs[rec.Schema()]
		if !ok {
			rix = indexOf(rec.Schema())
			ixs[rec.Schema()] = rix
		}
		for j, kc := range keyCols {
			if err := ops.AppendCell(bs[j], ops.Cell{Arr: rec.Column(rix[strings.ToLower(kc)]), Row: row}); err != nil {
				return nil, fmt.Errorf("key column %q: %w", kc, err)
			}
		}
	}
	out := make([]arrow.Array, len(bs))
	for j, b := range bs {
		out[j] = b.NewArray()
	}
	return out, nil
}

func indexOf(s *arrow.Schema) map[string]int {
	m := make(map[string]int, s.NumFields())
	for i, f := range s.Fields() {
		m[strings.ToLower(f.Name)] = i
	}
	return m
}

// silverSchema is the Bronze schema without Bronze-only columns, plus the
// Silver metadata columns.
func silverSchema(b *delta.StructType, partCols []string) *delta.StructType {
	skip := map[string]bool{}
	for _, p := range partCols {
		skip[strings.ToLower(p)] = true
	}
	out := &delta.StructType{}
	for _, f := range b.Fields {
		n := strings.ToLower(f.Name)
		if skip[n] || strings.HasPrefix(n, "_silt_") {
			continue
		}
		out.Fields = append(out.Fields, f)
	}
	out.Fields = append(out.Fields,
		&delta.StructField{Name: ColLSN, Type: delta.Long, Nullable: false, Metadata: map[string]any{}},
		&delta.StructField{Name: ColPos, Type: delta.Long, Nullable: false, Metadata: map[string]any{}},
		&delta.StructField{Name: ColCommitTS, Type: delta.Timestamp, Nullable: false, Metadata: map[string]any{}},
	)
	return out
}

package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

// OptimizeOptions tune Optimize. The zero value bin-packs every partition
// toward 128 MiB files.
type OptimizeOptions struct {
	// TargetFileSize is the size output files aim at (default
	// datafile.DefaultTargetFileSize).
	TargetFileSize int64
	// MinFileSize: bin-packing only touches files smaller than this
	// (default TargetFileSize). Z-ordering rewrites every selected file.
	MinFileSize int64
	// ZOrderBy, when set, rewrites every selected partition that has more
	// than one file, with its rows sorted by the Z-order of these columns
	// (not partition columns), into files of TargetFileSize.
	ZOrderBy []string
	// Filter selects partitions (zero value: all).
	Filter PartitionFilter
	// Snapshot to optimize; nil reads the latest (always on retries).
	Snapshot *delta.Snapshot
	// Now stamps removes and adds (default time.Now).
	Now func() time.Time
	// MaxAttempts bounds re-planning after a conflict (default 5; at most
	// maxAttempts).
	MaxAttempts int
	// Concurrency is how many bins are rewritten at once (default
	// GOMAXPROCS, at most 8).
	Concurrency int
	// Allocator for Arrow buffers (default memory.DefaultAllocator).
	Allocator memory.Allocator
}

// OptimizeResult describes a committed OPTIMIZE.
type OptimizeResult struct {
	// Version committed; -1 when nothing needed rewriting.
	Version  int64
	Attempts int
	// Partitions that were rewritten (wholly or in part), and the bins.
	Partitions, Bins int
	// Files and bytes removed and added.
	FilesRemoved, FilesAdded int
	BytesRemoved, BytesAdded int64
	// FilesConsidered: live files the filter selected.
	FilesConsidered int
}

// Optimize compacts small files per partition (bin-packing) or, with
// ZOrderBy, clusters each partition's rows by Z-order. It only rearranges
// rows: removes and adds carry dataChange=false, and the commit records the
// removed files as read and nothing else, so concurrent blind appends never
// conflict with it. When a concurrent commit removed a file this one
// rewrites, Optimize plans again on the latest snapshot.
func Optimize(ctx context.Context, t *delta.Table, opts OptimizeOptions) (*OptimizeResult, error) {
	if opts.TargetFileSize <= 0 {
		opts.TargetFileSize = datafile.DefaultTargetFileSize
	}
	if opts.MinFileSize <= 0 {
		opts.MinFileSize = opts.TargetFileSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	opts.MaxAttempts = min(opts.MaxAttempts, maxAttempts)
	if opts.Concurrency <= 0 {
		opts.Concurrency = min(runtime.GOMAXPROCS(0), 8)
	}
	if opts.Allocator == nil {
		opts.Allocator = memory.DefaultAllocator
	}
	snap := opts.Snapshot
	for attempt := 1; ; attempt++ {
		// OPTIMIZE is optional work: stop between attempts when the
		// caller is done (each step below honours ctx as well).
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("ops: optimize: %w", err)
		}
		var err error
		if snap == nil {
			if snap, err = t.Snapshot(ctx); err != nil {
				return nil, fmt.Errorf("ops: optimize: %w", err)
			}
		}
		res, err := optimizeOnce(ctx, t, snap, &opts)
		if err == nil {
			res.Attempts = attempt
			return res, nil
		}
		if !retryable(err) || attempt >= opts.MaxAttempts {
			return nil, fmt.Errorf("ops: optimize: %w", err)
		}
		snap = nil
	}
}

// partitionKey renders partition values as a map key.
func partitionKey(cols []string, pv map[string]*string) string {
	var b strings.Builder
	for _, c := range cols {
		if v := pv[c]; v != nil {
			b.WriteString("\x00V")
			b.WriteString(*v)
		} else {
			b.WriteString("\x00N")
		}
	}
	return b.String()
}

// PlanBins groups files into bins: per partition, files smaller than
// minSize, smallest first, packed greedily up to target bytes; only bins of
// two or more files are returned (one file alone gains nothing).
func planBins(files []*delta.Add, partCols []string, target, minSize int64) [][]*delta.Add {
	byPart := map[string][]*delta.Add{}
	var order []string
	for _, f := range files {
		if f.Size >= minSize {
			continue
		}
		k := partitionKey(partCols, f.PartitionValues)
		if _, ok := byPart[k]; !ok {
			order = append(order, k)
		}
		byPart[k] = append(byPart[k], f)
	}
	sort.Strings(order)
	var bins [][]*delta.Add
	for _, k := range order {
		fs := byPart[k]
		slices.SortStableFunc(fs, func(a, b *delta.Add) int {
			if a.Size != b.Size {
				if a.Size < b.Size {
					return -1
				}
				return 1
			}
			return strings.Compare(a.Path, b.Path)
		})
		var bin []*delta.Add
		var size int64
		for _, f := range fs {
			if len(bin) > 0 && size+f.Size > target {
				if len(bin) > 1 {
					bins = append(bins, bin)
				}
				bin, size = nil, 0
			}
			bin = append(bin, f)
			size += f.Size
		}
		if len(bin) > 1 {
			bins = append(bins, bin)
		}
	}
	return bins
}

func optimizeOnce(ctx context.Context, t *delta.Table, snap *delta.Snapshot, opts *OptimizeOptions) (*OptimizeResult, error) {
	if err := snap.CanWrite(); err != nil {
		return nil, err
	}
	schema := snap.Schema()
	partCols := snap.PartitionColumns()
	for _, z := range opts.ZOrderBy {
		if fieldIndex(schema, z) < 0 {
			return nil, fmt.Errorf("z-order column %q is not in the table schema", z)
		}
		for _, p := range partCols {
			if strings.EqualFold(p, z) {
				return nil, fmt.Errorf("z-order column %q is a partition column", z)
			}
		}
	}
	filter, err := opts.Filter.bind(schema, partCols)
	if err != nil {
		return nil, err
	}
	var files []*delta.Add
	for _, f := range snap.Files() {
		ok, err := filter.match(f.PartitionValues)
		if err != nil {
			return nil, fmt.Errorf("file %s: %w", f.Path, err)
		}
		if ok {
			files = append(files, f)
		}
	}
	res := &OptimizeResult{Version: -1, FilesConsidered: len(files)}
	var bins [][]*delta.Add
	if len(opts.ZOrderBy) > 0 {
		byPart := map[string][]*delta.Add{}
		var order []string
		for _, f := range files {
			k := partitionKey(partCols, f.PartitionValues)
			if _, ok := byPart[k]; !ok {
				order = append(order, k)
			}
			byPart[k] = append(byPart[k], f)
		}
		sort.Strings(order)
		for _, k := range order {
			if len(byPart[k]) > 1 {
				bins = append(bins, byPart[k])
			}
		}
	} else {
		bins = planBins(files, partCols, opts.TargetFileSize, opts.MinFileSize)
	}
	if len(bins) == 0 {
		return res, nil
	}
	parts := map[string]bool{}
	for _, b := range bins {
		parts[partitionKey(partCols, b[0].PartitionValues)] = true
	}
	res.Partitions, res.Bins = len(parts), len(bins)

	ti := datafile.TableInfo{Root: t.Root(), Schema: schema, PartitionColumns: partCols, Config: snap.Config(), Allocator: opts.Allocator}
	var zcols []int
	for _, z := range opts.ZOrderBy {
		zcols = append(zcols, fieldIndex(schema, z))
	}
	added := make([][]*delta.Add, len(bins))
	err = forEach(ctx, opts.Concurrency, len(bins), func(ctx context.Context, i int) error {
		adds, err := rewriteBin(ctx, t, ti, bins[i], zcols, opts)
		if err != nil {
			return fmt.Errorf("rewrite bin of %d files (first %s): %w", len(bins[i]), bins[i][0].Path, err)
		}
		added[i] = adds
		return nil
	})
	if err != nil {
		return nil, err
	}

	tx := t.Begin(snap)
	now := opts.Now().UnixMilli()
	var read []string
	for i, b := range bins {
		for _, f := range b {
			tx.Remove(removeOf(f, now, false))
			read = append(read, f.Path)
			res.FilesRemoved++
			res.BytesRemoved += f.Size
		}
		for _, a := range added[i] {
			res.FilesAdded++
			res.BytesAdded += a.Size
		}
		tx.Add(added[i]...)
	}
	tx.ReadFiles(read...)
	var preds []string
	if len(opts.Filter.Terms) > 0 {
		preds = append(preds, opts.Filter.String())
	}
	zorder := opts.ZOrderBy
	if zorder == nil {
		zorder = []string{}
	}
	if preds == nil {
		preds = []string{}
	}
	params := map[string]any{
		"predicate":  jsonText(preds),
		"zOrderBy":   jsonText(zorder),
		"targetSize": fmt.Sprint(opts.TargetFileSize),
		"auto":       false,
	}
	v, err := tx.Commit(ctx, "OPTIMIZE", params)
	if err != nil {
		return nil, err
	}
	res.Version = v
	return res, nil
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// rewriteBin reads the files of one bin, optionally sorts the rows by
// Z-order, and writes them as files of the target size (dataChange=false).
func rewriteBin(ctx context.Context, t *delta.Table, ti datafile.TableInfo, bin []*delta.Add, zcols []int, opts *OptimizeOptions) ([]*delta.Add, error) {
	if len(zcols) == 0 {
		return compactBin(ctx, t, ti, bin, opts)
	}
	rec, err := datafile.ReadConcat(ctx, t.Store(), ti, bin)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, nil // every file was empty
	}
	defer rec.Release()
	if rec.NumRows() > 1 {
		cols := make([]arrow.Array, len(zcols))
		for i, c := range zcols {
			cols[i] = rec.Column(c)
		}
		sorted, err := takeRecord(ctx, opts.Allocator, rec, zorderPermutation(cols))
		if err != nil {
			return nil, err
		}
		rec.Release()
		rec = sorted
	}
	return datafile.Write(ctx, t.Store(), ti, rec, datafile.WriteOptions{
		TargetFileSize: opts.TargetFileSize, DataChange: false, Now: opts.Now, Allocator: opts.Allocator,
		SnapshotEncodings: true, SortedRuns: true})
}

// A compaction group is the consecutive files of a bin one reader turns
// into one record for the writer: at least compactGroupRows rows (by the
// files' stats), compactGroupBytes bytes or compactGroupFiles files.
// Groups, not files, are the unit handed between goroutines, so there are
// few hand-offs (each costs a scheduling delay on a loaded machine).
const (
	compactGroupRows  = 64 * 1024
	compactGroupBytes = 4 << 20
	compactGroupFiles = 256
)

// compactGroups splits files into compaction groups.
func compactGroups(files []*delta.Add) [][]*delta.Add {
	var groups [][]*delta.Add
	var cur []*delta.Add
	var rows, bytes int64
	for _, f := range files {
		cur = append(cur, f)
		rows += numRecords(f)
		bytes += f.Size
		if rows >= compactGroupRows || bytes >= compactGroupBytes || len(cur) >= compactGroupFiles {
			groups = append(groups, cur)
			cur, rows, bytes = nil, 0, 0
		}
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// numRecords is add.stats.numRecords, or 0 when the stats lack it.
func numRecords(f *delta.Add) int64 {
	if f.Stats == "" {
		return 0
	}
	var st struct {
		NumRecords int64 `json:"numRecords"`
	}
	if json.Unmarshal([]byte(f.Stats), &st) != nil {
		return 0
	}
	return st.NumRecords
}

// compactBin streams the files of one bin, in order, into one Writer:
// readers turn groups of files into records (datafile.ReadConcat, up to
// 2*Concurrency groups ahead, so they keep the cores busy while the
// writer's work is serial, e.g. its longest column) while the writer
// encodes, so memory is a few groups plus the open output file.
func compactBin(ctx context.Context, t *delta.Table, ti datafile.TableInfo, bin []*delta.Add, opts *OptimizeOptions) (adds []*delta.Add, err error) {
	w, err := datafile.NewWriter(ctx, t.Store(), ti, datafile.WriteOptions{
		TargetFileSize: opts.TargetFileSize, DataChange: false, Now: opts.Now, Allocator: opts.Allocator,
		SnapshotEncodings: true, SortedRuns: true})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	read := func(ctx context.Context, files []*delta.Add) (arrow.RecordBatch, error) {
		return datafile.ReadConcat(ctx, t.Store(), ti, files)
	}
	err = readAhead(ctx, compactGroups(bin), 2*max(opts.Concurrency, 2), read, func(rec arrow.RecordBatch) error {
		return w.Write(rec)
	})
	if err != nil {
		return nil, err
	}
	return w.Close()
}

// readAhead reads groups with up to conc reads in flight and calls fn with
// each group's record (nil ones skipped) in order; records are released
// when fn returns. Every goroutine has ended when it returns.
func readAhead(ctx context.Context, groups [][]*delta.Add, conc int,
	read func(context.Context, []*delta.Add) (arrow.RecordBatch, error), fn func(arrow.RecordBatch) error) error {
	type result struct {
		rec arrow.RecordBatch
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make([]chan result, len(groups))
	for i := range slots {
		slots[i] = make(chan result, 1)
	}
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, g := range groups {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				rec, err := read(ctx, g)
				slots[i] <- result{rec, err}
			}()
		}
	}()
	defer func() {
		// Free what was read ahead but not consumed.
		cancel()
		wg.Wait()
		for _, s := range slots {
			select {
			case r := <-s:
				if r.rec != nil {
					r.rec.Release()
				}
			default:
			}
		}
	}()
	for i := range groups {
		var r result
		select {
		case r = <-slots[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		<-sem
		if r.err != nil {
			return r.err
		}
		if r.rec == nil {
			continue
		}
		err := fn(r.rec)
		r.rec.Release()
		if err != nil {
			return err
		}
	}
	return nil
}

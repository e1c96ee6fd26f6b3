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
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/bronze"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
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
	TargetFileSize      int64
	Now                 func() time.Time
}

// Result describes one micro-batch.
type Result struct {
	Table          change.TableID
	FromVersion    int64 // first Bronze version merged
	ToVersion      int64 // last Bronze version merged (-1: nothing to do)
	SilverVersion  int64
	Changes        int // Bronze rows read
	Upserts        int
	Deletes        int
	FilesRewritten int
	// MaxLSN is the highest commit LSN merged.
	MaxLSN change.LSN
	// CommitTimes are the source commit times of the changes merged (for freshness).
	CommitTimes []time.Time
}

// Processor runs Silver micro-batches.
type Processor struct {
	store blob.Store
	opts  Options
}

// New returns a processor.
func New(store blob.Store, opts Options) *Processor {
	if opts.MaxVersionsPerBatch == 0 {
		opts.MaxVersionsPerBatch = 50
	}
	if opts.TargetFileSize == 0 {
		opts.TargetFileSize = 128 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Processor{store: store, opts: opts}
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

	// Bronze files added by versions from..to (Bronze is append-only).
	var files []*delta.Add
	for v := from; v <= to; v++ {
		acts, err := bt.ReadCommit(ctx, v)
		if err != nil {
			return res, fmt.Errorf("silver %s: read bronze version %d: %w", id, v, err)
		}
		for _, a := range acts {
			if a.Add != nil && a.Add.DataChange {
				files = append(files, a.Add)
			}
			if a.Remove != nil && a.Remove.DataChange {
				return res, fmt.Errorf("silver %s: bronze version %d removes data (%s); Bronze must stay append-only: restore the file or rebuild Silver from scratch", id, v, a.Remove.Path)
			}
		}
	}
	bschema := bsnap.Schema()
	keyCols := strings.Split(bsnap.Config()[bronze.ConfPrimaryKey], ",")
	if len(keyCols) == 0 || keyCols[0] == "" {
		return res, fmt.Errorf("silver %s: bronze table has no %s property; cannot merge without a key", id, bronze.ConfPrimaryKey)
	}
	sschema := silverSchema(bschema, bsnap.PartitionColumns())
	bti := datafile.TableInfo{Root: bt.Root(), Schema: bschema, PartitionColumns: bsnap.PartitionColumns(), Config: bsnap.Config()}
	var recs []arrow.RecordBatch
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	for _, f := range files {
		rs, err := datafile.Read(ctx, p.store, bti, f)
		if err != nil {
			return res, fmt.Errorf("silver %s: read bronze file %s: %w", id, f.Path, err)
		}
		recs = append(recs, rs...)
	}

	// Collect changes per key, ordered by (lsn, pos).
	type chg struct {
		lsn       int64
		pos       int64
		op        byte
		rec       arrow.RecordBatch
		row       int
		unchanged string
	}
	byKey := map[string][]chg{}
	var keyOrder []string
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
		keyCells := make([]cell, len(keyIdx))
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
			res.CommitTimes = append(res.CommitTimes, time.UnixMicro(int64(tsA.Value(row))))
			if c.op == 'T' {
				if truncAt == nil || change.Less(change.LSN(truncAt.lsn), uint32(truncAt.pos), change.LSN(c.lsn), uint32(c.pos)) {
					cc := c
					truncAt = &cc
				}
				continue
			}
			for i, j := range keyIdx {
				keyCells[i] = cell{r.Column(j), row}
			}
			k := keyString(kbuf, keyCells)
			if _, ok := byKey[k]; !ok {
				keyOrder = append(keyOrder, k)
			}
			byKey[k] = append(byKey[k], c)
		}
	}

	// Existing Silver rows of changed keys, and the files that hold them.
	type existing struct {
		rec arrow.RecordBatch
		row int
		lsn int64
		pos int64
	}
	current := map[string]existing{}
	var rewrite []*delta.Add
	var keep []cell2 // rows of rewritten files that stay
	var srecs []arrow.RecordBatch
	defer func() {
		for _, r := range srecs {
			r.Release()
		}
	}()
	if ssnap != nil {
		sti := datafile.TableInfo{Root: st.Root(), Schema: ssnap.Schema(), PartitionColumns: ssnap.PartitionColumns(), Config: ssnap.Config()}
		for _, f := range ssnap.Files() {
			rs, err := datafile.Read(ctx, p.store, sti, f)
			if err != nil {
				return res, fmt.Errorf("silver %s: read silver file %s: %w", id, f.Path, err)
			}
			srecs = append(srecs, rs...)
			touched := truncAt != nil
			var fileRows []cell2
			for _, r := range rs {
				ix := indexOf(r.Schema())
				lsnA := r.Column(ix[ColLSN]).(*array.Int64)
				posA := r.Column(ix[ColPos]).(*array.Int64)
				keyCells := make([]cell, len(keyCols))
				for row := 0; row < int(r.NumRows()); row++ {
					for i, kc := range keyCols {
						keyCells[i] = cell{r.Column(ix[strings.ToLower(kc)]), row}
					}
					k := keyString(kbuf, keyCells)
					if _, ok := byKey[k]; ok {
						touched = true
						current[k] = existing{rec: r, row: row, lsn: lsnA.Value(row), pos: posA.Value(row)}
						continue
					}
					fileRows = append(fileRows, cell2{rec: r, row: row})
				}
			}
			if touched {
				rewrite = append(rewrite, f)
				if truncAt == nil {
					keep = append(keep, fileRows...)
				}
			}
		}
	}
	if truncAt != nil {
		// Rows of rewritten files not touched by this batch were committed
		// before the TRUNCATE (they are older than the batch): they go.
		current = map[string]existing{}
	}

	// Fold each key's changes into its final row.
	type final struct {
		src []cell // per silver column
		lsn int64
		pos int64
		ts  cell
	}
	var finals []final
	for _, k := range keyOrder {
		cs := byKey[k]
		sort.SliceStable(cs, func(i, j int) bool {
			return change.Less(change.LSN(cs[i].lsn), uint32(cs[i].pos), change.LSN(cs[j].lsn), uint32(cs[j].pos))
		})
		var state []cell // nil = no row
		stLSN, stPos := int64(-1), int64(-1)
		if ex, ok := current[k]; ok {
			ix := indexOf(ex.rec.Schema())
			state = make([]cell, len(sschema.Fields))
			for i, f := range sschema.Fields {
				if j, ok := ix[strings.ToLower(f.Name)]; ok {
					state[i] = cell{ex.rec.Column(j), ex.row}
				}
			}
			stLSN, stPos = ex.lsn, ex.pos
		}
		for _, c := range cs {
			if truncAt != nil && change.Less(change.LSN(c.lsn), uint32(c.pos), change.LSN(truncAt.lsn), uint32(truncAt.pos)) {
				continue // before the TRUNCATE
			}
			if stLSN >= 0 && !change.Less(change.LSN(stLSN), uint32(stPos), change.LSN(c.lsn), uint32(c.pos)) {
				continue // stale: the row already reflects a later change
			}
			switch c.op {
			case 'D':
				state = nil
			case 'I', 'U', 'L':
				ix := indexOf(c.rec.Schema())
				next := make([]cell, len(sschema.Fields))
				var unch map[string]bool
				if c.unchanged != "" {
					unch = map[string]bool{}
					for _, n := range strings.Split(c.unchanged, ",") {
						unch[strings.ToLower(n)] = true
					}
				}
				for i, f := range sschema.Fields {
					name := strings.ToLower(f.Name)
					switch {
					case name == ColLSN:
						next[i] = cell{c.rec.Column(ix[bronze.ColLSN]), c.row}
					case name == ColPos:
						next[i] = cell{c.rec.Column(ix[bronze.ColPos]), c.row}
					case name == ColCommitTS:
						next[i] = cell{c.rec.Column(ix[bronze.ColCommitTS]), c.row}
					case unch[name]:
						if state != nil {
							next[i] = state[i]
						}
					default:
						if j, ok := ix[name]; ok {
							next[i] = cell{c.rec.Column(j), c.row}
						}
					}
				}
				state = next
			}
			stLSN, stPos = c.lsn, c.pos
		}
		if _, had := current[k]; state == nil {
			if had {
				res.Deletes++
			}
			continue
		}
		res.Upserts++
		finals = append(finals, final{src: state})
	}
	if len(finals) == 0 && len(rewrite) == 0 && ssnap != nil {
		// Nothing to change in data: still record progress.
		tx := st.Begin(ssnap)
		tx.SetAppTxn(appID, to)
		v, err := tx.Commit(ctx, "STREAMING UPDATE", map[string]any{"outputMode": "Update", "queryId": "silt-silver"})
		if err != nil {
			return res, fmt.Errorf("silver %s: commit: %w", id, err)
		}
		res.SilverVersion = v
		return res, nil
	}

	// Build the new file content: kept rows of rewritten files + final rows.
	as, err := datafile.ArrowSchema(sschema)
	if err != nil {
		return res, err
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, as)
	defer b.Release()
	for _, kr := range keep {
		ix := indexOf(kr.rec.Schema())
		for i, f := range sschema.Fields {
			c := cell{}
			if j, ok := ix[strings.ToLower(f.Name)]; ok {
				c = cell{kr.rec.Column(j), kr.row}
			}
			if err := appendCell(b.Field(i), c); err != nil {
				return res, fmt.Errorf("silver %s: column %s: %w", id, f.Name, err)
			}
		}
	}
	for _, fr := range finals {
		for i := range sschema.Fields {
			if err := appendCell(b.Field(i), fr.src[i]); err != nil {
				return res, fmt.Errorf("silver %s: column %s: %w", id, sschema.Fields[i].Name, err)
			}
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()

	tx := (*delta.Txn)(nil)
	if ssnap == nil {
		conf := map[string]string{bronze.ConfPrimaryKey: strings.Join(keyCols, ",")}
		snap, err := delta.CreateTable(ctx, st, sschema, nil, conf, id.String())
		if err != nil {
			return res, fmt.Errorf("silver %s: create: %w", id, err)
		}
		ssnap = snap
	}
	tx = st.Begin(ssnap)
	if ssnap.Schema().SchemaString() != sschema.SchemaString() {
		md := *ssnap.Metadata
		md.SchemaString = sschema.SchemaString()
		tx.SetMetadata(&md)
	}
	sti := datafile.TableInfo{Root: st.Root(), Schema: sschema, PartitionColumns: ssnap.PartitionColumns(), Config: ssnap.Config()}
	if rec.NumRows() > 0 {
		adds, err := datafile.Write(ctx, p.store, sti, rec, datafile.WriteOptions{TargetFileSize: p.opts.TargetFileSize, DataChange: true})
		if err != nil {
			return res, fmt.Errorf("silver %s: write: %w", id, err)
		}
		tx.Add(adds...)
	}
	now := p.opts.Now().UnixMilli()
	for _, f := range rewrite {
		size := f.Size
		ext := true
		tx.Remove(&delta.Remove{Path: f.Path, DeletionTimestamp: &now, DataChange: true, ExtendedFileMetadata: &ext, PartitionValues: f.PartitionValues, Size: &size})
	}
	if len(rewrite) > 0 {
		paths := make([]string, len(rewrite))
		for i, f := range rewrite {
			paths[i] = f.Path
		}
		tx.ReadFiles(paths...)
	}
	tx.SetAppTxn(appID, to)
	v, err := tx.Commit(ctx, "MERGE", map[string]any{"predicate": "key match on " + strings.Join(keyCols, ","), "source": fmt.Sprintf("bronze versions %d-%d", from, to)})
	if err != nil {
		return res, fmt.Errorf("silver %s: commit: %w", id, err)
	}
	res.SilverVersion = v
	res.FilesRewritten = len(rewrite)
	return res, nil
}

type cell2 struct {
	rec arrow.RecordBatch
	row int
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

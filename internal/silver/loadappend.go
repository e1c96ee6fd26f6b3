package silver

// Snapshot rows as a plain append (issue #4).
//
// ProcessLoad merges a table's snapshot rows before any of its logged
// changes, so while a table's load runs its Silver table holds only rows
// of earlier load batches (or, for a table whose Bronze held merged
// changes before its snapshot, those rows). MERGE of a load batch decides
// each key against its current Silver row; for a key with no row, no
// tombstone and one change in the batch, Decide (folder) returns that
// change's row as an insert: the snapshot row's columns, its (_silt_lsn,
// _silt_pos, _silt_commit_ts). When that holds for every key of the batch,
// the MERGE reads nothing and rewrites nothing, and its commit only adds
// files of those rows. loadAppend writes exactly those rows and commits
// them with the same txn(LoadAppID, last Bronze version), without the
// MERGE's per-key and per-cell work and without reading Silver files.
//
// When the batch qualifies (checked from what is in memory and in the
// table's log, never by reading Silver files):
//   - every Bronze file of the batch holds only snapshot rows or none (a
//     file mixing them, written through the stream, goes to MERGE);
//   - each key occurs once in the batch, with no unchanged TOAST columns
//     (known without hashing keys when the first key column is an integer
//     that ascends strictly in each file and the files' ranges of it do
//     not overlap, as with a serial key read in heap order; else from a
//     set of the keys); a key in two chunks of the batch (a chunk redone
//     at a newer snapshot, a re-planned table's new generation) goes to
//     MERGE;
//   - no key has a tombstone;
//   - no live Silver file can hold a key of the batch, by the rule
//     ops.Merge's pruning trusts (min/max stats; missing stats mean
//     "maybe"): for each Bronze file, some key column has no nulls in the
//     file and its [min, max] over the file is disjoint from every Silver
//     file's [min, max] of that column. Integer and string key columns
//     are compared; other types never prove anything.
//
// Anything else falls back to MERGE, which gives the same result in every
// case. The commit records ReadWholeTable, so a concurrent data change
// conflicts; the batch is then merged on a fresh snapshot.
//
// Appended files are written per Bronze file (so a Silver file covers one
// chunk's key range, which later chunks' ranges do not overlap when keys
// follow the heap order) with the snapshot encodings and zstd level 1,
// as Bronze's snapshot chunks (OPTIMIZE reads any encoding and rewrites
// small files at its own level); a flat table without partition columns
// through datafile.WriteFlat, from the Bronze records' buffers, as
// Bronze's loader writes its chunks. OPTIMIZE itself is deferred while
// the load runs: it would merge those files into ones whose key ranges
// span chunks still to come (Processor.optimizeLoad).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/silt-dev/silt/internal/bronze"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/delta/ops"
)

// LoadAppendedRows returns how many snapshot rows this process has
// written to Silver as plain appends, and how many of them through
// datafile.WriteFlat (tests check which path a load took).
func LoadAppendedRows() (rows, flat int64) { return appendedRows.Load(), flatRows.Load() }

var appendedRows, flatRows atomic.Int64

// loadZstdLevel is the zstd level of appended snapshot rows (Bronze's
// bronze.snapshot_zstd_level default).
const loadZstdLevel = 1

// statsStringLen: a string max stat this long (in runes) may be a
// truncated, rounded-up prefix; ops.Merge trusts only its min then.
const statsStringLen = 32

// loadFile is one Bronze file of a load batch: its records and how many
// of their rows are snapshot rows.
type loadFile struct {
	recs  []arrow.RecordBatch
	rows  int
	lrows int
}

// keyRange is one key column's [min, max] over a Bronze file.
type keyRange struct {
	kind   byte // 'i' integer, 's' string, 0: proves nothing
	lo, hi int64
	slo    string
	shi    string
}

// fileKeyRange is the range of column col (index in each record) over
// the file's rows; kind 0 when the column has nulls, a type that is not
// compared, or invalid UTF-8.
func fileKeyRange(f *loadFile, col func(arrow.RecordBatch) int) keyRange {
	var r keyRange
	first := true
	for _, rec := range f.recs {
		j := col(rec)
		if j < 0 {
			return keyRange{}
		}
		a := rec.Column(j)
		if a.NullN() > 0 {
			return keyRange{}
		}
		n := a.Len()
		if n == 0 {
			continue
		}
		switch x := a.(type) {
		case *array.Int64:
			r.kind = 'i'
			extendInts(&r, &first, x.Int64Values())
		case *array.Int32:
			r.kind = 'i'
			extendInts(&r, &first, x.Int32Values())
		case *array.Int16:
			r.kind = 'i'
			extendInts(&r, &first, x.Int16Values())
		case *array.Int8:
			r.kind = 'i'
			extendInts(&r, &first, x.Int8Values())
		case *array.String:
			r.kind = 's'
			for i := range n {
				s := x.Value(i)
				if !utf8.ValidString(s) {
					return keyRange{}
				}
				if first || s < r.slo {
					r.slo = strings.Clone(s)
				}
				if first || s > r.shi {
					r.shi = strings.Clone(s)
				}
				first = false
			}
		default:
			return keyRange{}
		}
	}
	if first {
		return keyRange{}
	}
	return r
}

func extendInts[T int8 | int16 | int32 | int64](r *keyRange, first *bool, vs []T) {
	lo, hi := vs[0], vs[0]
	for _, v := range vs[1:] {
		lo = min(lo, v)
		hi = max(hi, v)
	}
	if *first || int64(lo) < r.lo {
		r.lo = int64(lo)
	}
	if *first || int64(hi) > r.hi {
		r.hi = int64(hi)
	}
	*first = false
}

// silverStats is the part of a Silver file's stats the check reads.
type silverStats struct {
	NumRecords *int64                     `json:"numRecords"`
	MinValues  map[string]json.RawMessage `json:"minValues"`
	MaxValues  map[string]json.RawMessage `json:"maxValues"`
}

// disjoint reports whether a Silver file whose stats are st provably holds
// no value of column name within r.
func (r *keyRange) disjoint(st *silverStats, name string) bool {
	if st == nil || r.kind == 0 {
		return false
	}
	if st.NumRecords != nil && *st.NumRecords == 0 {
		return true
	}
	lo, hasLo := st.MinValues[name]
	hi, hasHi := st.MaxValues[name]
	switch r.kind {
	case 'i':
		if hasLo {
			if v, err := strconv.ParseInt(string(lo), 10, 64); err == nil && r.hi < v {
				return true
			}
		}
		if hasHi {
			if v, err := strconv.ParseInt(string(hi), 10, 64); err == nil && r.lo > v {
				return true
			}
		}
	case 's':
		// A JSON null bound is unknown (Unmarshal leaves the string as it was).
		var slo, shi *string
		if hasLo && json.Unmarshal(lo, &slo) == nil && slo != nil && r.shi < *slo {
			return true
		}
		if hasHi && json.Unmarshal(hi, &shi) == nil && shi != nil && utf8.RuneCountInString(*shi) < statsStringLen && r.slo > *shi {
			return true
		}
	}
	return false
}

// loadAppend writes a load batch as a plain append when every key of it
// is provably new to Silver (see the file comment) and reports whether it
// did. Otherwise nothing is committed (files written for a commit that
// conflicted are left unreferenced) and the batch must be merged; *ssnapp
// is then the Silver snapshot to merge into (created or re-read here).
func (p *Processor) loadAppend(ctx context.Context, st *delta.Table, ssnapp **delta.Snapshot, sschema *delta.StructType,
	keyCols []string, topts TableOptions, files []*loadFile, from, to int64, res *Result) (bool, error) {
	id := res.Table
	// Which files hold snapshot rows, and only those; no unchanged TOAST.
	var load []*loadFile
	var sum Result // accounting, kept only if the batch is appended
	for _, f := range files {
		for _, rec := range f.recs {
			ix := indexOf(rec.Schema())
			opA, ok1 := rec.Column(ix[bronze.ColOp]).(*array.String)
			unA, ok2 := rec.Column(ix[bronze.ColUnchanged]).(*array.String)
			lsnA, ok3 := rec.Column(ix[bronze.ColLSN]).(*array.Int64)
			tsA, ok4 := rec.Column(ix[bronze.ColCommitTS]).(*array.Timestamp)
			if !ok1 || !ok2 || !ok3 || !ok4 {
				return false, nil
			}
			n := int(rec.NumRows())
			for row := range n {
				if opA.Value(row) == "L" {
					f.lrows++
				}
			}
			if f.lrows > 0 && unA.NullN() != n {
				return false, nil
			}
			if f.lrows == 0 {
				continue
			}
			sum.Changes += n
			for _, l := range lsnA.Int64Values() {
				if change.LSN(l) > sum.MaxLSN {
					sum.MaxLSN = change.LSN(l)
				}
			}
			for _, t := range tsA.TimestampValues() {
				sum.addCommitTime(t.ToTime(arrow.Microsecond))
			}
		}
		switch f.lrows {
		case 0:
		case f.rows:
			load = append(load, f)
		default:
			return false, nil // snapshot rows mixed with logged changes
		}
	}
	if len(load) == 0 {
		return false, nil
	}
	keyIdx := func(k string) func(arrow.RecordBatch) int {
		lk := strings.ToLower(k)
		return func(r arrow.RecordBatch) int {
			if j, ok := indexOf(r.Schema())[lk]; ok {
				return j
			}
			return -1
		}
	}
	ranges := make([][]keyRange, len(load))
	for i, f := range load {
		ranges[i] = make([]keyRange, len(keyCols))
		for j, k := range keyCols {
			ranges[i][j] = fileKeyRange(f, keyIdx(k))
		}
	}
	// Each key once: the first key column ascends strictly within each
	// file and the files' ranges of it do not overlap; else by the keys.
	if !uniqueByRanges(load, ranges, keyIdx(keyCols[0])) {
		seen := map[string]struct{}{}
		if !p.eachKey(load, keyCols, func(k []byte) bool {
			if _, dup := seen[string(k)]; dup {
				return false
			}
			seen[string(k)] = struct{}{}
			return true
		}) {
			return false, nil
		}
	}
	tombs, err := p.tombstones(ctx, id)
	if err != nil {
		return false, fmt.Errorf("silver %s: %w", id, err)
	}
	if tombs.size() > 0 && !p.eachKey(load, keyCols, func(k []byte) bool {
		_, ok := tombs.get(string(k))
		return !ok
	}) {
		return false, nil
	}
	if *ssnapp == nil {
		snap, err := createSilver(ctx, st, id, sschema, keyCols, topts)
		if err != nil {
			return false, err
		}
		*ssnapp = snap
	}
	ssnap := *ssnapp
	if mode := ssnap.Config()["delta.columnMapping.mode"]; mode != "" && mode != "none" {
		return false, nil // stats keyed by physical names
	}
	// Key ranges of each Bronze file against every live Silver file.
	if silverFiles := ssnap.Files(); len(silverFiles) > 0 {
		names := make([]string, len(keyCols))
		for j, k := range keyCols {
			f := sschema.Field(k)
			if f == nil {
				return false, nil
			}
			names[j] = f.Name
		}
		for _, sf := range silverFiles {
			var stats *silverStats
			if sf.Stats != "" {
				var s silverStats
				if json.Unmarshal([]byte(sf.Stats), &s) == nil {
					stats = &s
				}
			}
			for i := range load {
				apart := false
				for j := range keyCols {
					if ranges[i][j].disjoint(stats, names[j]) {
						apart = true
						break
					}
				}
				if !apart {
					return false, nil // this Silver file may hold a key of the batch
				}
			}
		}
	}

	// Every key is new: write the snapshot rows as they are.
	dec := &folder{schema: sschema}
	ti := datafile.TableInfo{Root: st.Root(), Schema: sschema, PartitionColumns: ssnap.PartitionColumns(), Config: ssnap.Config()}
	wopts := datafile.WriteOptions{TargetFileSize: p.opts.TargetFileSize, DataChange: true, Now: p.opts.Now,
		SnapshotEncodings: true, CompressionLevel: loadZstdLevel}
	var adds []*delta.Add
	n, nflat := 0, 0
	for _, f := range load {
		w, err := datafile.NewWriter(ctx, p.store, ti, wopts)
		if err != nil {
			return false, fmt.Errorf("silver %s: append snapshot rows: %w", id, err)
		}
		// Flat tables without partition columns: typed slices to
		// WriteFlat (as Bronze's snapshot chunks), else Arrow records.
		var flat []*datafile.FlatBatch
		if ff := w.FlatFields(); ff != nil && len(ssnap.PartitionColumns()) == 0 && !p.opts.LoadArrow {
			for _, rec := range f.recs {
				b, ok := flatBatch(rec, dec.sourceColumns(rec), sschema, ff)
				if !ok {
					flat = nil
					break
				}
				flat = append(flat, b)
			}
		}
		for _, b := range flat {
			if err := w.WriteFlat(b, nil); err != nil {
				w.Abort()
				return false, fmt.Errorf("silver %s: append snapshot rows: %w", id, err)
			}
			n += b.Rows
			nflat += b.Rows
		}
		for _, rec := range f.recs {
			if flat != nil {
				break
			}
			src := dec.sourceColumns(rec)
			fields := make([]arrow.Field, 0, len(src))
			cols := make([]arrow.Array, 0, len(src))
			for i, j := range src {
				if j < 0 {
					continue // absent from this record: null, as MERGE writes it
				}
				fields = append(fields, arrow.Field{Name: sschema.Fields[i].Name, Type: rec.Column(j).DataType(), Nullable: true})
				cols = append(cols, rec.Column(j))
			}
			out := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, rec.NumRows())
			err := w.Write(out)
			out.Release()
			if err != nil {
				w.Abort()
				return false, fmt.Errorf("silver %s: append snapshot rows: %w", id, err)
			}
			n += int(rec.NumRows())
		}
		fadds, err := w.Close()
		if err != nil {
			return false, fmt.Errorf("silver %s: append snapshot rows: %w", id, err)
		}
		adds = append(adds, fadds...)
	}
	tx := st.Begin(ssnap)
	if sschema.SchemaString() != ssnap.Schema().SchemaString() {
		md := *ssnap.Metadata
		md.SchemaString = sschema.SchemaString()
		tx.SetMetadata(&md)
	}
	tx.ReadWholeTable() // the keys were checked against every live file
	v, err := commitAppend(ctx, tx, adds, LoadAppID, to, fmt.Sprintf("bronze versions %d-%d (snapshot rows, keys new to silver)", from, to))
	if err != nil {
		var ce *delta.ConflictError
		if errors.As(err, &ce) && (ce.Kind == delta.ConflictConcurrentAppend || ce.Kind == delta.ConflictConcurrentDeleteRead || ce.Kind == delta.ConflictConcurrentDeleteDelete) {
			// A concurrent commit: MERGE plans on the latest snapshot.
			if *ssnapp, err = st.Snapshot(ctx); err != nil {
				return false, fmt.Errorf("silver %s: read silver: %w", id, err)
			}
			return false, nil
		}
		return false, fmt.Errorf("silver %s: append snapshot rows: %w", id, err)
	}
	res.SilverVersion = v
	res.Changes += sum.Changes
	res.MaxLSN = max(res.MaxLSN, sum.MaxLSN)
	res.CommitTimes = append(res.CommitTimes, sum.CommitTimes...)
	res.Upserts += n
	res.LoadAppended = n
	appendedRows.Add(int64(n))
	flatRows.Add(int64(nflat))
	return true, nil
}

// uniqueByRanges reports whether no key occurs twice in the files: the
// column col (the first key column) is an integer column that ascends
// strictly within each file (records in order) and the files' ranges of it
// (r[i][0]) are pairwise disjoint.
func uniqueByRanges(files []*loadFile, r [][]keyRange, col func(arrow.RecordBatch) int) bool {
	type span struct{ lo, hi int64 }
	spans := make([]span, 0, len(files))
	for i, f := range files {
		if r[i][0].kind != 'i' {
			return false
		}
		first, prev := true, int64(0)
		for _, rec := range f.recs {
			j := col(rec)
			if j < 0 {
				return false
			}
			ok := true
			switch a := rec.Column(j).(type) {
			case *array.Int64:
				ok = ascending(a.Int64Values(), &first, &prev)
			case *array.Int32:
				ok = ascending(a.Int32Values(), &first, &prev)
			case *array.Int16:
				ok = ascending(a.Int16Values(), &first, &prev)
			case *array.Int8:
				ok = ascending(a.Int8Values(), &first, &prev)
			default:
				ok = false
			}
			if !ok {
				return false
			}
		}
		spans = append(spans, span{r[i][0].lo, r[i][0].hi})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	for i := 1; i < len(spans); i++ {
		if spans[i].lo <= spans[i-1].hi {
			return false
		}
	}
	return true
}

func ascending[T int8 | int16 | int32 | int64](vs []T, first *bool, prev *int64) bool {
	for _, v := range vs {
		if !*first && int64(v) <= *prev {
			return false
		}
		*first, *prev = false, int64(v)
	}
	return true
}

// eachKey calls fn with the key bytes (appendKey, as keyChanges has them)
// of every row of the files until it returns false; it reports whether
// fn never did.
func (p *Processor) eachKey(files []*loadFile, keyCols []string, fn func([]byte) bool) bool {
	var buf []byte
	for _, f := range files {
		for _, rec := range f.recs {
			ix := indexOf(rec.Schema())
			cells := make([]ops.Cell, len(keyCols))
			idx := make([]int, len(keyCols))
			for i, k := range keyCols {
				j, ok := ix[strings.ToLower(k)]
				if !ok {
					return false
				}
				idx[i] = j
			}
			for row := range int(rec.NumRows()) {
				for i, j := range idx {
					cells[i] = ops.Cell{Arr: rec.Column(j), Row: row}
				}
				buf = appendKey(buf[:0], cells)
				if !fn(buf) {
					return false
				}
			}
		}
	}
	return true
}

// flatBatch is rec's rows as the FlatBatch of fields (the Silver table's
// data columns), src mapping Silver fields to rec's columns; false when a
// column is absent or not of the Arrow type its Delta type reads as.
func flatBatch(rec arrow.RecordBatch, src []int, sschema *delta.StructType, fields []*delta.StructField) (*datafile.FlatBatch, bool) {
	n := int(rec.NumRows())
	b := &datafile.FlatBatch{Rows: n, Cols: make([]datafile.FlatColumn, len(fields))}
	for i, f := range fields {
		k := fieldIndex(sschema, f.Name)
		if k < 0 || src[k] < 0 {
			return nil, false
		}
		a := rec.Column(src[k])
		c := &b.Cols[i]
		if a.NullN() > 0 {
			c.Null = make([]bool, n)
			for r := range n {
				c.Null[r] = a.IsNull(r)
			}
		}
		ok := true
		switch f.Type.TypeName() {
		case "byte", "short", "integer", "date", "long", "timestamp", "timestamp_ntz":
			switch x := a.(type) {
			case *array.Int8:
				c.Int = widen(x.Int8Values())
			case *array.Int16:
				c.Int = widen(x.Int16Values())
			case *array.Int32:
				c.Int = widen(x.Int32Values())
			case *array.Date32:
				c.Int = widen(x.Date32Values())
			case *array.Int64:
				c.Int = x.Int64Values()
			case *array.Timestamp:
				if tt, isTS := x.DataType().(*arrow.TimestampType); !isTS || tt.Unit != arrow.Microsecond {
					return nil, false
				}
				c.Int = widen(x.TimestampValues())
			default:
				ok = false
			}
		case "float", "double":
			switch x := a.(type) {
			case *array.Float32:
				c.Float = make([]float64, n)
				for r, v := range x.Float32Values() {
					c.Float[r] = float64(v)
				}
			case *array.Float64:
				c.Float = x.Float64Values()
			default:
				ok = false
			}
		case "boolean":
			x, isBool := a.(*array.Boolean)
			if ok = isBool; ok {
				c.Bool = make([]bool, n)
				for r := range n {
					c.Bool[r] = x.Value(r)
				}
			}
		case "string", "binary":
			switch x := a.(type) {
			case *array.String:
				c.Offsets, c.Bytes = x.ValueOffsets(), dataBuffer(x.Data())
			case *array.Binary:
				c.Offsets, c.Bytes = x.ValueOffsets(), dataBuffer(x.Data())
			default:
				ok = false
			}
		default:
			if dt, isDec := f.Type.(*delta.DecimalType); isDec {
				x, isDec := a.(*array.Decimal128)
				if ok = isDec; ok {
					at, _ := x.DataType().(*arrow.Decimal128Type)
					ok = at != nil && int(at.Scale) == dt.Scale && int(at.Precision) == dt.Precision
					c.Dec = x.Values()
				}
			} else {
				ok = false
			}
		}
		if !ok {
			return nil, false
		}
	}
	return b, true
}

func widen[T int8 | int16 | int32 | arrow.Date32 | arrow.Timestamp](vs []T) []int64 {
	out := make([]int64, len(vs))
	for i, v := range vs {
		out[i] = int64(v)
	}
	return out
}

// dataBuffer is the value bytes of a string or binary array (its offsets
// index into it).
func dataBuffer(d arrow.ArrayData) []byte {
	if bufs := d.Buffers(); len(bufs) > 2 && bufs[2] != nil {
		return bufs[2].Bytes()
	}
	return nil
}

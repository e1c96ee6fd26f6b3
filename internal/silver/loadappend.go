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
//   - each key occurs once in the batch (keyChanges), with no unchanged
//     TOAST columns; a key in two chunks of the batch (a chunk redone at a
//     newer snapshot, a re-planned table's new generation) goes to MERGE;
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
// small files at its own level). OPTIMIZE itself is deferred while the
// load runs: it would merge those files into ones whose key ranges span
// chunks still to come (see Processor.process).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

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
		a := rec.Column(col(rec))
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
		var s string
		if hasLo && json.Unmarshal(lo, &s) == nil && r.shi < s {
			return true
		}
		if hasHi && json.Unmarshal(hi, &s) == nil && utf8.RuneCountInString(s) < statsStringLen && r.slo > s {
			return true
		}
	}
	return false
}

// loadAppend writes a load batch as a plain append when every key of it
// is provably new to Silver (see the file comment). handled false: the
// batch must be merged (nothing was committed; files written for a
// commit that conflicted are left unreferenced); stale: the Silver
// snapshot is out of date (re-read it to merge).
func (p *Processor) loadAppend(ctx context.Context, st *delta.Table, ssnap *delta.Snapshot, sschema *delta.StructType,
	keyCols []string, byKey *keyChanges, tombs *tombstones, dec *folder, files []*loadFile, from, to int64, res *Result) (handled, stale bool, err error) {
	if ssnap == nil || len(byKey.keys) != len(byKey.chgs) {
		return false, false, nil // a key with several changes
	}
	for i := range byKey.chgs {
		if byKey.chgs[i].unchanged != "" {
			return false, false, nil
		}
	}
	if mode := ssnap.Config()["delta.columnMapping.mode"]; mode != "" && mode != "none" {
		return false, false, nil // stats keyed by physical names
	}
	if tombs != nil && tombs.size() > 0 {
		for _, k := range byKey.keys {
			if _, ok := tombs.get(k); ok {
				return false, false, nil
			}
		}
	}
	var load []*loadFile
	for _, f := range files {
		switch f.lrows {
		case 0:
		case f.rows:
			load = append(load, f)
		default:
			return false, false, nil // snapshot rows mixed with logged changes
		}
	}
	// Key ranges of each Bronze file against every live Silver file.
	if silverFiles := ssnap.Files(); len(silverFiles) > 0 && len(load) > 0 {
		names := make([]string, len(keyCols))
		for j, k := range keyCols {
			f := sschema.Field(k)
			if f == nil {
				return false, false, nil
			}
			names[j] = f.Name
		}
		ranges := make([][]keyRange, len(load))
		for i, f := range load {
			ranges[i] = make([]keyRange, len(keyCols))
			for j, k := range keyCols {
				lk := strings.ToLower(k)
				ranges[i][j] = fileKeyRange(f, func(r arrow.RecordBatch) int { return indexOf(r.Schema())[lk] })
			}
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
					return false, false, nil // this Silver file may hold a key of the batch
				}
			}
		}
	}

	// Every key is new: write the snapshot rows as they are.
	ti := datafile.TableInfo{Root: st.Root(), Schema: sschema, PartitionColumns: ssnap.PartitionColumns(), Config: ssnap.Config()}
	wopts := datafile.WriteOptions{TargetFileSize: p.opts.TargetFileSize, DataChange: true, Now: p.opts.Now,
		SnapshotEncodings: true, CompressionLevel: loadZstdLevel}
	var adds []*delta.Add
	n := 0
	for _, f := range load {
		w, err := datafile.NewWriter(ctx, p.store, ti, wopts)
		if err != nil {
			return false, false, fmt.Errorf("silver %s: append snapshot rows: %w", res.Table, err)
		}
		for _, rec := range f.recs {
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
				return false, false, fmt.Errorf("silver %s: append snapshot rows: %w", res.Table, err)
			}
			n += int(rec.NumRows())
		}
		fadds, err := w.Close()
		if err != nil {
			return false, false, fmt.Errorf("silver %s: append snapshot rows: %w", res.Table, err)
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
	tx.Add(adds...)
	tx.SetAppTxn(LoadAppID, to)
	op := "WRITE"
	if len(adds) == 0 {
		op = "STREAMING UPDATE" // progress only
	}
	v, err := tx.Commit(ctx, op, map[string]any{"mode": "Append", "source": fmt.Sprintf("bronze versions %d-%d (snapshot rows, keys new to silver)", from, to)})
	if err != nil {
		var ce *delta.ConflictError
		if errors.As(err, &ce) && (ce.Kind == delta.ConflictConcurrentAppend || ce.Kind == delta.ConflictConcurrentDeleteRead || ce.Kind == delta.ConflictConcurrentDeleteDelete) {
			return false, true, nil
		}
		return false, false, fmt.Errorf("silver %s: append snapshot rows: %w", res.Table, err)
	}
	res.SilverVersion = v
	res.Upserts += n
	res.LoadAppended = n
	return true, false, nil
}

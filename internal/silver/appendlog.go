package silver

// Append-only Silver tables, for source tables without a key
// (source.keyless: append; see DESIGN.md, "Keyless tables").
//
// A table without a primary key or replica identity index cannot be
// mirrored: an update or delete does not say which row it touches (with
// REPLICA IDENTITY FULL it sends the old values, but two identical rows
// cannot be told apart). Its Silver table is instead the log of its
// changes: one row per Bronze row (_silt_op I, U, D, T, or L for a snapshot
// row), with the source columns (the old values on a D row, the new ones on
// I/U/L, none on T), enrichment columns, _silt_lsn, _silt_pos,
// _silt_commit_ts and _silt_unchanged. Nothing is merged or removed
// (delta.appendOnly=true); OPTIMIZE still compacts small files.
//
// Exactly once: each commit carries txn(appId, last Bronze version) like a
// MERGE commit (AppID for logged changes, LoadAppID for snapshot rows), and
// a batch starts after that version, so a replay after a crash appends
// nothing twice. Data files written by a batch whose commit failed are
// never referenced (VACUUM removes them).
//
// The mode is recorded in the table (ConfMode) and is sticky: an
// append-only table stays one even if the source table gains a key later.

import (
	"context"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/bronze"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/delta/ops"
)

// Columns that only append-only Silver tables have.
const (
	ColOp        = "_silt_op"        // I, U, D, T, or L (snapshot row)
	ColUnchanged = "_silt_unchanged" // columns whose unchanged TOAST value was not sent (NULL in the row)
)

// ConfMode is the Silver table property that records how the table is
// kept; ModeAppend marks an append-only change log. Mirrored tables do not
// have it.
const (
	ConfMode   = "silt.silverMode"
	ModeAppend = "append"
)

// IsAppendOnly reports whether a Silver table snapshot is an append-only
// change log (see appendlog.go).
func IsAppendOnly(s *delta.Snapshot) bool {
	return s != nil && s.Config()[ConfMode] == ModeAppend
}

// appendSchema is the schema of an append-only Silver table: the mirrored
// table's schema (source and enrichment columns, _silt_lsn, _silt_pos,
// _silt_commit_ts) with _silt_op before _silt_lsn and _silt_unchanged at the
// end. Source columns are nullable already (Bronze schema).
func appendSchema(s *delta.StructType) *delta.StructType {
	out := &delta.StructType{}
	for _, f := range s.Fields {
		if f.Name == ColLSN {
			out.Fields = append(out.Fields, &delta.StructField{Name: ColOp, Type: delta.String, Nullable: false, Metadata: map[string]any{}})
		}
		out.Fields = append(out.Fields, f)
	}
	out.Fields = append(out.Fields, &delta.StructField{Name: ColUnchanged, Type: delta.String, Nullable: true, Metadata: map[string]any{}})
	return out
}

// processAppend appends the batch's Bronze rows (snapshot rows only when
// load, every other row otherwise) to the append-only Silver table and
// commits them with txn(appID, to).
func (p *Processor) processAppend(ctx context.Context, st *delta.Table, ssnap *delta.Snapshot, sschema *delta.StructType,
	topts TableOptions, recs []arrow.RecordBatch, load bool, appID string, from, to int64, res *Result) error {
	id := res.Table
	schema := appendSchema(sschema)
	if ssnap == nil {
		for _, pc := range topts.PartitionBy {
			if schema.Field(pc) == nil {
				return fmt.Errorf("silver %s: partition column %q is not a column of the table (silver.tables.%s.partition_by)", id, pc, id)
			}
		}
		conf := map[string]string{ConfMode: ModeAppend, bronze.ConfPrimaryKey: "", "delta.appendOnly": "true"}
		snap, err := delta.CreateTable(ctx, st, schema, topts.PartitionBy, conf, id.String())
		if err != nil {
			return fmt.Errorf("silver %s: create: %w", id, err)
		}
		ssnap = snap
	} else {
		// Keep columns the table has that this batch's schema lacks (none
		// today: Bronze only adds columns), and add the new ones.
		schema = unionSchema(ssnap.Schema(), schema)
	}
	as, err := datafile.ArrowSchema(schema)
	if err != nil {
		return fmt.Errorf("silver %s: %w", id, err)
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, as)
	defer b.Release()
	lower := make([]string, len(schema.Fields))
	for i, f := range schema.Fields {
		lower[i] = strings.ToLower(f.Name) // Silver and Bronze share the _silt_ names used here
	}
	for _, r := range recs {
		ix := indexOf(r.Schema())
		src := make([]int, len(lower))
		for i, n := range lower {
			if j, ok := ix[n]; ok {
				src[i] = j
			} else {
				src[i] = -1
			}
		}
		opA := r.Column(ix[bronze.ColOp]).(*array.String)
		lsnA := r.Column(ix[bronze.ColLSN]).(*array.Int64)
		tsA := r.Column(ix[bronze.ColCommitTS]).(*array.Timestamp)
		for row := 0; row < int(r.NumRows()); row++ {
			if (opA.Value(row) == "L") != load {
				continue // snapshot rows go through ProcessLoad only
			}
			for i, j := range src {
				var c ops.Cell
				if j >= 0 {
					c = ops.Cell{Arr: r.Column(j), Row: row}
				}
				if err := ops.AppendCell(b.Field(i), c); err != nil {
					return fmt.Errorf("silver %s: column %s: %w", id, schema.Fields[i].Name, err)
				}
			}
			res.Changes++
			res.Appended++
			if lsn := change.LSN(lsnA.Value(row)); lsn > res.MaxLSN {
				res.MaxLSN = lsn
			}
			res.addCommitTime(tsA.Value(row).ToTime(arrow.Microsecond))
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	var adds []*delta.Add
	if rec.NumRows() > 0 {
		ti := datafile.TableInfo{Root: st.Root(), Schema: schema, PartitionColumns: ssnap.PartitionColumns(), Config: ssnap.Config()}
		if adds, err = datafile.Write(ctx, p.store, ti, rec, datafile.WriteOptions{TargetFileSize: p.opts.TargetFileSize, DataChange: true, Now: p.opts.Now}); err != nil {
			return fmt.Errorf("silver %s: write: %w", id, err)
		}
	}
	tx := st.Begin(ssnap)
	if schema.SchemaString() != ssnap.Schema().SchemaString() {
		md := *ssnap.Metadata
		md.SchemaString = schema.SchemaString()
		tx.SetMetadata(&md)
	}
	v, err := commitAppend(ctx, tx, adds, appID, to, fmt.Sprintf("bronze versions %d-%d", from, to))
	if err != nil {
		return fmt.Errorf("silver %s: append: %w", id, err)
	}
	res.SilverVersion = v
	p.maybeOptimize(ctx, st, res)
	return nil
}

// unionSchema is have plus the fields of want it lacks, these inserted
// before have's _silt_ columns.
func unionSchema(have, want *delta.StructType) *delta.StructType {
	var extra []*delta.StructField
	for _, f := range want.Fields {
		if have.Field(f.Name) == nil {
			extra = append(extra, f)
		}
	}
	if len(extra) == 0 {
		return have
	}
	return withExtra(have, extra)
}

// commitAppend commits adds (none: progress only) as an append, with
// txn(appID, to) in the same commit; source describes the Bronze rows.
func commitAppend(ctx context.Context, tx *delta.Txn, adds []*delta.Add, appID string, to int64, source string) (int64, error) {
	tx.Add(adds...)
	tx.SetAppTxn(appID, to)
	op := "WRITE"
	if len(adds) == 0 {
		op = "STREAMING UPDATE" // progress only
	}
	return tx.Commit(ctx, op, map[string]any{"mode": "Append", "source": source})
}

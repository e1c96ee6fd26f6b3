// Package gold maintains Gold tables: windowed aggregates over a Silver
// table (for example count, min, max, sum and avg of a reading per tag per
// minute), updated incrementally and kept correct under updates, deletes and
// late data.
//
// How a micro-batch works:
//  1. Gold remembers (txn appId "silt-bronze") the last Bronze version whose
//     changes it has folded in. Silver's own txn says how far Silver has
//     merged; Gold only goes that far, so Silver already holds those changes.
//  2. The Bronze rows of versions (done, upto] name the affected windows: the
//     window of each changed row's event time (for deletes and updates, the
//     event time the Bronze row carries: exact when the time column is part
//     of the key or the table has REPLICA IDENTITY FULL).
//  3. Late data: the watermark is the highest event time seen minus the
//     allowed lateness. A change whose window ended before the watermark is
//     not applied (the window is final) and is counted in Result.Late.
//  4. Each affected window is recomputed from Silver's current rows (files
//     pruned by the time column's min/max stats) and MERGEd into Gold:
//     Gold files holding an affected window are rewritten without it and the
//     new aggregates are added, in one commit with the new txn version.
//
// The watermark is stored in the Gold table's txn action "silt-watermark"
// (version = event time in microseconds since the epoch).
package gold

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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
	"github.com/silt-dev/silt/internal/silver"
)

// Spec defines one Gold table.
type Spec struct {
	// Name of the Gold table (lake key gold/<name>).
	Name string
	// Source is the Silver table aggregated.
	Source change.TableID
	// TimeColumn is the event-time column (timestamp or date).
	TimeColumn string
	// Window is the tumbling window size (e.g. 1m).
	Window time.Duration
	// GroupBy columns (e.g. tag_id).
	GroupBy []string
	// Value is the numeric column aggregated (count, min, max, sum, avg).
	Value string
	// Lateness: windows that ended more than this before the highest event
	// time seen are final.
	Lateness time.Duration
}

// TablePath is the key prefix of a Gold table.
func TablePath(name string) string { return "gold/" + name }

const (
	appBronze    = "silt-bronze"
	appWatermark = "silt-watermark"
)

// Result describes one micro-batch.
type Result struct {
	FromVersion, ToVersion int64 // Bronze versions folded in (ToVersion -1: nothing to do)
	Windows                int   // windows recomputed
	Late                   int   // changes ignored because their window was final
	Watermark              time.Time
	GoldVersion            int64
}

// Process runs one micro-batch of spec.
func Process(ctx context.Context, store blob.Store, spec Spec) (Result, error) {
	res := Result{ToVersion: -1}
	if spec.Window <= 0 {
		return res, fmt.Errorf("gold %s: window must be positive", spec.Name)
	}
	st := delta.NewTable(store, silver.TablePath(spec.Source))
	ssnap, err := st.Snapshot(ctx)
	if errors.Is(err, delta.ErrNotATable) {
		return res, nil // nothing merged into Silver yet
	}
	if err != nil {
		return res, fmt.Errorf("gold %s: read silver: %w", spec.Name, err)
	}
	if silver.IsAppendOnly(ssnap) {
		return res, fmt.Errorf("gold %s: silver %s is an append-only change log (source.keyless: append), not a table's rows: aggregate a table with a key", spec.Name, spec.Source)
	}
	upto, ok := ssnap.TxnVersion(silver.AppID)
	if !ok {
		return res, nil
	}
	gt := delta.NewTable(store, TablePath(spec.Name))
	gsnap, err := gt.Snapshot(ctx)
	if errors.Is(err, delta.ErrNotATable) {
		gsnap = nil
	} else if err != nil {
		return res, fmt.Errorf("gold %s: %w", spec.Name, err)
	}
	done := int64(-1)
	var wm int64 = math.MinInt64
	if gsnap != nil {
		if v, ok := gsnap.TxnVersion(appBronze); ok {
			done = v
		}
		if v, ok := gsnap.TxnVersion(appWatermark); ok {
			wm = v
		}
	}
	if done >= upto {
		return res, nil
	}
	res.FromVersion, res.ToVersion = done+1, upto

	// 1-2. Affected windows from the Bronze rows of (done, upto].
	bt := delta.NewTable(store, bronze.TablePath(spec.Source))
	bsnap, err := bt.SnapshotAt(ctx, upto)
	if err != nil {
		return res, fmt.Errorf("gold %s: read bronze: %w", spec.Name, err)
	}
	var files []*delta.Add
	for v := done + 1; v <= upto; v++ {
		acts, err := bt.ReadCommit(ctx, v)
		if err != nil {
			return res, fmt.Errorf("gold %s: read bronze version %d: %w", spec.Name, v, err)
		}
		for _, a := range acts {
			if a.Add != nil && a.Add.DataChange {
				files = append(files, a.Add)
			}
		}
	}
	win := spec.Window.Microseconds()
	type wkey struct {
		group string
		start int64
	}
	affected := map[wkey]bool{}
	maxEvent := wm
	if maxEvent != math.MinInt64 {
		maxEvent += spec.Lateness.Microseconds() // stored value is the watermark
	}
	bti := datafile.Info(bt, bsnap)
	type pending struct {
		k  wkey
		ev int64
	}
	var seen []pending
	err = datafile.Scan(ctx, store, bti, files, func(r arrow.RecordBatch) error {
		ix := index(r.Schema())
		tcol, ok := ix[strings.ToLower(spec.TimeColumn)]
		if !ok {
			return fmt.Errorf("time column %q not in %s", spec.TimeColumn, spec.Source)
		}
		gcols, err := cols(ix, spec.GroupBy, spec.Source)
		if err != nil {
			return err
		}
		for i := 0; i < int(r.NumRows()); i++ {
			ev, ok := micros(r.Column(tcol), i)
			if !ok {
				continue // no event time (e.g. a TRUNCATE row, or a key-only delete without it)
			}
			k := wkey{groupKey(r, gcols, i), floorDiv(ev, win) * win}
			seen = append(seen, pending{k, ev})
			if ev > maxEvent {
				maxEvent = ev
			}
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("gold %s: %w", spec.Name, err)
	}
	newWM := wm
	if maxEvent != math.MinInt64 {
		newWM = maxEvent - spec.Lateness.Microseconds()
	}
	for _, p := range seen {
		// 3. Late data: the window ended before the watermark in force when the batch started.
		if wm != math.MinInt64 && p.k.start+win <= wm {
			res.Late++
			continue
		}
		affected[p.k] = true
	}
	if newWM != math.MinInt64 {
		res.Watermark = time.UnixMicro(newWM).UTC()
	}

	// 4. Recompute affected windows from Silver.
	type agg struct {
		group    []datafile.Value
		start    int64
		count    int64
		min, max float64
		sum      float64
		hasVal   bool
	}
	aggs := map[wkey]*agg{}
	var lo, hi int64 = math.MaxInt64, math.MinInt64
	for k := range affected {
		lo = min(lo, k.start)
		hi = max(hi, k.start+win)
	}
	if len(affected) > 0 {
		sti := datafile.Info(st, ssnap)
		cand := pruneByTime(ssnap.Files(), spec.TimeColumn, lo, hi)
		err = datafile.Scan(ctx, store, sti, cand, func(r arrow.RecordBatch) error {
			ix := index(r.Schema())
			tcol := ix[strings.ToLower(spec.TimeColumn)]
			vcol, ok := ix[strings.ToLower(spec.Value)]
			if !ok {
				return fmt.Errorf("value column %q not in %s", spec.Value, spec.Source)
			}
			gcols, err := cols(ix, spec.GroupBy, spec.Source)
			if err != nil {
				return err
			}
			for i := 0; i < int(r.NumRows()); i++ {
				ev, ok := micros(r.Column(tcol), i)
				if !ok {
					continue
				}
				k := wkey{groupKey(r, gcols, i), floorDiv(ev, win) * win}
				if !affected[k] {
					continue
				}
				a := aggs[k]
				if a == nil {
					a = &agg{start: k.start}
					for _, c := range gcols {
						a.group = append(a.group, datafile.CopyValue(r.Column(c), i))
					}
					aggs[k] = a
				}
				a.count++
				if v, ok := number(r.Column(vcol), i); ok {
					if !a.hasVal || v < a.min {
						a.min = v
					}
					if !a.hasVal || v > a.max {
						a.max = v
					}
					a.sum += v
					a.hasVal = true
				}
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("gold %s: read silver: %w", spec.Name, err)
		}
	}
	res.Windows = len(affected)

	// Gold schema: group columns (typed as in Silver), window_start, window_end, aggregates.
	schema := &delta.StructType{}
	for _, g := range spec.GroupBy {
		f := ssnap.Schema().Field(g)
		if f == nil {
			return res, fmt.Errorf("gold %s: group column %q not in %s", spec.Name, g, spec.Source)
		}
		schema.Fields = append(schema.Fields, &delta.StructField{Name: f.Name, Type: f.Type, Nullable: true, Metadata: map[string]any{}})
	}
	for _, f := range []struct {
		n string
		t delta.DataType
	}{{"window_start", delta.Timestamp}, {"window_end", delta.Timestamp}, {"count", delta.Long}, {"min", delta.Double}, {"max", delta.Double}, {"sum", delta.Double}, {"avg", delta.Double}} {
		schema.Fields = append(schema.Fields, &delta.StructField{Name: f.n, Type: f.t, Nullable: true, Metadata: map[string]any{}})
	}
	if gsnap == nil {
		conf := map[string]string{"silt.gold.source": spec.Source.String(), "silt.gold.window": spec.Window.String()}
		gsnap, err = delta.CreateTable(ctx, gt, schema, nil, conf, spec.Name)
		if err != nil {
			return res, fmt.Errorf("gold %s: create: %w", spec.Name, err)
		}
	}
	gti := datafile.Info(gt, gsnap)

	// Rewrite Gold files that hold an affected window.
	as, err := datafile.ArrowSchema(gsnap.Schema())
	if err != nil {
		return res, err
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, as)
	defer b.Release()
	var rewrite []*delta.Add
	ng := len(spec.GroupBy)
	if len(affected) > 0 {
		for _, f := range pruneByTime(gsnap.Files(), "window_start", lo, hi) {
			recs, err := datafile.Read(ctx, store, gti, f)
			if err != nil {
				return res, fmt.Errorf("gold %s: read %s: %w", spec.Name, f.Path, err)
			}
			touched := false
			var keep [][2]int
			for ri, r := range recs {
				gcols := make([]int, ng)
				for i := range gcols {
					gcols[i] = i
				}
				for i := 0; i < int(r.NumRows()); i++ {
					ws, _ := micros(r.Column(ng), i)
					if affected[wkey{groupKey(r, gcols, i), ws}] {
						touched = true
						continue
					}
					keep = append(keep, [2]int{ri, i})
				}
			}
			if touched {
				rewrite = append(rewrite, f)
				for _, k := range keep {
					r := recs[k[0]]
					for c := 0; c < int(r.NumCols()); c++ {
						if err := datafile.AppendValue(b.Field(c), datafile.CopyValue(r.Column(c), k[1])); err != nil {
							return res, err
						}
					}
				}
			}
			for _, r := range recs {
				r.Release()
			}
		}
	}
	keys := make([]wkey, 0, len(aggs))
	for k := range aggs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].start != keys[j].start {
			return keys[i].start < keys[j].start
		}
		return keys[i].group < keys[j].group
	})
	for _, k := range keys {
		a := aggs[k]
		for i, g := range a.group {
			if err := datafile.AppendValue(b.Field(i), g); err != nil {
				return res, err
			}
		}
		b.Field(ng).(*array.TimestampBuilder).Append(arrow.Timestamp(a.start))
		b.Field(ng + 1).(*array.TimestampBuilder).Append(arrow.Timestamp(a.start + win))
		b.Field(ng + 2).(*array.Int64Builder).Append(a.count)
		if a.hasVal {
			b.Field(ng + 3).(*array.Float64Builder).Append(a.min)
			b.Field(ng + 4).(*array.Float64Builder).Append(a.max)
			b.Field(ng + 5).(*array.Float64Builder).Append(a.sum)
			b.Field(ng + 6).(*array.Float64Builder).Append(a.sum / float64(a.count))
		} else {
			for c := 3; c <= 6; c++ {
				b.Field(ng + c).AppendNull()
			}
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	tx := gt.Begin(gsnap)
	if rec.NumRows() > 0 {
		adds, err := datafile.Write(ctx, store, gti, rec, datafile.WriteOptions{DataChange: true})
		if err != nil {
			return res, fmt.Errorf("gold %s: write: %w", spec.Name, err)
		}
		tx.Add(adds...)
	}
	now := time.Now().UnixMilli()
	paths := make([]string, 0, len(rewrite))
	for _, f := range rewrite {
		size := f.Size
		tx.Remove(&delta.Remove{Path: f.Path, DeletionTimestamp: &now, DataChange: true, PartitionValues: f.PartitionValues, Size: &size})
		paths = append(paths, f.Path)
	}
	tx.ReadFiles(paths...)
	tx.SetAppTxn(appBronze, upto)
	if newWM != math.MinInt64 {
		tx.SetAppTxn(appWatermark, newWM)
	}
	v, err := tx.Commit(ctx, "MERGE", map[string]any{"predicate": "window recompute", "source": fmt.Sprintf("%s bronze versions %d-%d", spec.Source, done+1, upto)})
	if err != nil {
		return res, fmt.Errorf("gold %s: commit: %w", spec.Name, err)
	}
	res.GoldVersion = v
	return res, nil
}

func index(s *arrow.Schema) map[string]int {
	m := make(map[string]int, s.NumFields())
	for i, f := range s.Fields() {
		m[strings.ToLower(f.Name)] = i
	}
	return m
}

func cols(ix map[string]int, names []string, t change.TableID) ([]int, error) {
	out := make([]int, len(names))
	for i, n := range names {
		j, ok := ix[strings.ToLower(n)]
		if !ok {
			return nil, fmt.Errorf("group column %q not in %s", n, t)
		}
		out[i] = j
	}
	return out, nil
}

func groupKey(r arrow.RecordBatch, gcols []int, i int) string {
	var sb strings.Builder
	for _, c := range gcols {
		col := r.Column(c)
		if col.IsNull(i) {
			sb.WriteString("\x01")
		} else {
			sb.WriteString(col.ValueStr(i))
		}
		sb.WriteByte(0)
	}
	return sb.String()
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// micros returns a timestamp or date value as microseconds since the epoch.
func micros(a arrow.Array, i int) (int64, bool) {
	if a.IsNull(i) {
		return 0, false
	}
	switch c := a.(type) {
	case *array.Timestamp:
		unit := c.DataType().(*arrow.TimestampType).Unit
		v := int64(c.Value(i))
		switch unit {
		case arrow.Second:
			return v * 1e6, true
		case arrow.Millisecond:
			return v * 1e3, true
		case arrow.Nanosecond:
			return v / 1e3, true
		}
		return v, true
	case *array.Date32:
		return int64(c.Value(i)) * 86400 * 1e6, true
	}
	return 0, false
}

func number(a arrow.Array, i int) (float64, bool) {
	if a.IsNull(i) {
		return 0, false
	}
	switch c := a.(type) {
	case *array.Float64:
		return c.Value(i), true
	case *array.Float32:
		return float64(c.Value(i)), true
	case *array.Int64:
		return float64(c.Value(i)), true
	case *array.Int32:
		return float64(c.Value(i)), true
	case *array.Int16:
		return float64(c.Value(i)), true
	case *array.Int8:
		return float64(c.Value(i)), true
	case *array.Decimal128:
		s := c.ValueStr(i)
		var f float64
		if _, err := fmt.Sscan(s, &f); err == nil {
			return f, true
		}
	}
	return 0, false
}

// pruneByTime keeps files whose min/max stats of col may overlap [lo, hi)
// (microseconds). Files without usable stats are kept.
func pruneByTime(files []*delta.Add, col string, lo, hi int64) []*delta.Add {
	var out []*delta.Add
	for _, f := range files {
		if f.Stats == "" {
			out = append(out, f)
			continue
		}
		var st delta.Stats
		if err := json.Unmarshal([]byte(f.Stats), &st); err != nil {
			out = append(out, f)
			continue
		}
		mn, ok1 := statTime(st.MinValues, col)
		mx, ok2 := statTime(st.MaxValues, col)
		if !ok1 || !ok2 {
			out = append(out, f)
			continue
		}
		// Timestamp stats are truncated to milliseconds: max is <= mx + 1ms.
		if mx+1000 < lo || mn >= hi {
			continue
		}
		out = append(out, f)
	}
	return out
}

func statTime(m map[string]any, col string) (int64, bool) {
	for k, v := range m {
		if !strings.EqualFold(k, col) {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return 0, false
		}
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
			if t, err := time.Parse(layout, s); err == nil {
				return t.UnixMicro(), true
			}
		}
	}
	return 0, false
}

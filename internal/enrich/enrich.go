// Package enrich adds columns to change rows on their way into Silver:
// derived columns computed from the row, and lookup columns joined from a
// static CSV file or from another Silver table (a dimension table such as
// devices or plants). It works on Arrow record batches: Apply returns the
// batch with the extra columns appended, which Silver then merges like any
// source column.
//
// Derived functions (args are column names; 'quoted' args are literals):
//
//	date(ts)            date of a timestamp (UTC)
//	hour(ts)            timestamp truncated to the hour
//	year(ts), month(ts) integer
//	lower(s), upper(s)  string
//	concat(a, '-', b)   string; NULL if any column is NULL
//
// Lookups: rows whose join column matches a lookup row get its columns
// (strings for CSV files, the dimension's types for tables); no match
// gives NULLs. A lookup table is re-read when its Delta version changes.
package enrich

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

// Derived is one derived column.
type Derived struct {
	Name     string
	Function string
	Args     []string
}

// Lookup joins columns from a CSV file or a Silver table on one column.
type Lookup struct {
	// File is a CSV file with a header row (exclusive with Table).
	File string
	// Table is the lake key prefix of a Delta table (e.g. silver/public/plants).
	Table string
	// On is the join column, present in the row and in the lookup.
	On string
	// Columns to add from the lookup.
	Columns []string
}

// Spec is one table's enrichment.
type Spec struct {
	Derived []Derived
	Lookups []Lookup
}

// Enricher applies a Spec. Safe for concurrent use.
type Enricher struct {
	spec  Spec
	store blob.Store
	mu    sync.Mutex
	dims  []*dim
}

type dim struct {
	l       Lookup
	version int64                       // Delta version loaded (tables)
	types   []delta.DataType            // per column
	rows    map[string][]datafile.Value // join value -> columns
}

// New validates spec and loads CSV lookups.
func New(spec Spec, store blob.Store) (*Enricher, error) {
	e := &Enricher{spec: spec, store: store}
	for _, d := range spec.Derived {
		if _, ok := functions[d.Function]; !ok {
			return nil, fmt.Errorf("derived column %q: unknown function %q (use date, hour, year, month, lower, upper, concat)", d.Name, d.Function)
		}
		if len(d.Args) == 0 {
			return nil, fmt.Errorf("derived column %q: %s needs an argument", d.Name, d.Function)
		}
	}
	for _, l := range spec.Lookups {
		if (l.File == "") == (l.Table == "") {
			return nil, fmt.Errorf("lookup on %q: give exactly one of file or table", l.On)
		}
		d := &dim{l: l, version: -1}
		if l.File != "" {
			if err := d.loadCSV(); err != nil {
				return nil, err
			}
		}
		e.dims = append(e.dims, d)
	}
	return e, nil
}

func (d *dim) loadCSV() error {
	raw, err := os.ReadFile(d.l.File)
	if err != nil {
		return fmt.Errorf("lookup file: %w", err)
	}
	r := csv.NewReader(bytes.NewReader(raw))
	recs, err := r.ReadAll()
	if err != nil {
		return fmt.Errorf("lookup file %s: %w", d.l.File, err)
	}
	if len(recs) == 0 {
		return fmt.Errorf("lookup file %s is empty: it needs a header row", d.l.File)
	}
	hdr := map[string]int{}
	for i, h := range recs[0] {
		hdr[strings.ToLower(strings.TrimSpace(h))] = i
	}
	on, ok := hdr[strings.ToLower(d.l.On)]
	if !ok {
		return fmt.Errorf("lookup file %s has no column %q (header: %v)", d.l.File, d.l.On, recs[0])
	}
	idx := make([]int, len(d.l.Columns))
	d.types = make([]delta.DataType, len(d.l.Columns))
	for i, c := range d.l.Columns {
		j, ok := hdr[strings.ToLower(c)]
		if !ok {
			return fmt.Errorf("lookup file %s has no column %q (header: %v)", d.l.File, c, recs[0])
		}
		idx[i] = j
		d.types[i] = delta.String
	}
	d.rows = map[string][]datafile.Value{}
	for n, rec := range recs[1:] {
		if len(rec) != len(recs[0]) {
			return fmt.Errorf("lookup file %s line %d: %d fields, header has %d", d.l.File, n+2, len(rec), len(recs[0]))
		}
		vals := make([]datafile.Value, len(idx))
		for i, j := range idx {
			vals[i] = datafile.Value{V: rec[j]}
		}
		d.rows[rec[on]] = vals
	}
	return nil
}

// refresh reloads a table lookup when its version changed.
func (d *dim) refresh(ctx context.Context, store blob.Store) error {
	if d.l.Table == "" {
		return nil
	}
	t := delta.NewTable(store, d.l.Table)
	snap, err := t.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("lookup table %s: %w", d.l.Table, err)
	}
	if snap.Version == d.version {
		return nil
	}
	schema := snap.Schema()
	if schema.Field(d.l.On) == nil {
		return fmt.Errorf("lookup table %s has no column %q", d.l.Table, d.l.On)
	}
	d.types = make([]delta.DataType, len(d.l.Columns))
	for i, c := range d.l.Columns {
		f := schema.Field(c)
		if f == nil {
			return fmt.Errorf("lookup table %s has no column %q", d.l.Table, c)
		}
		d.types[i] = f.Type
	}
	rows := map[string][]datafile.Value{}
	ti := datafile.TableInfo{Root: t.Root(), Schema: schema, PartitionColumns: snap.PartitionColumns(), Config: snap.Config()}
	err = datafile.Scan(ctx, store, ti, snap.Files(), func(r arrow.RecordBatch) error {
		ix := index(r.Schema())
		on := r.Column(ix[strings.ToLower(d.l.On)])
		for i := 0; i < int(r.NumRows()); i++ {
			if on.IsNull(i) {
				continue
			}
			vals := make([]datafile.Value, len(d.l.Columns))
			for j, c := range d.l.Columns {
				vals[j] = datafile.CopyValue(r.Column(ix[strings.ToLower(c)]), i)
			}
			rows[on.ValueStr(i)] = vals
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("lookup table %s: %w", d.l.Table, err)
	}
	d.rows, d.version = rows, snap.Version
	return nil
}

// Fields returns the extra columns Apply adds for rows of schema base.
func (e *Enricher) Fields(ctx context.Context, base *delta.StructType) ([]*delta.StructField, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*delta.StructField
	for _, d := range e.spec.Derived {
		for _, a := range d.Args {
			if !isLiteral(a) && base.Field(a) == nil {
				return nil, fmt.Errorf("derived column %q: no column %q", d.Name, a)
			}
		}
		out = append(out, &delta.StructField{Name: d.Name, Type: functions[d.Function].typ, Nullable: true, Metadata: map[string]any{}})
	}
	for _, dm := range e.dims {
		if err := dm.refresh(ctx, e.store); err != nil {
			return nil, err
		}
		if base.Field(dm.l.On) == nil {
			return nil, fmt.Errorf("lookup on %q: the table has no such column", dm.l.On)
		}
		for i, c := range dm.l.Columns {
			out = append(out, &delta.StructField{Name: c, Type: dm.types[i], Nullable: true, Metadata: map[string]any{}})
		}
	}
	for _, f := range out {
		if base.Field(f.Name) != nil {
			return nil, fmt.Errorf("enrichment column %q already exists in the table: choose another name", f.Name)
		}
	}
	return out, nil
}

// Apply returns rec with the extra columns (of Fields) appended. The caller
// releases both records.
func (e *Enricher) Apply(ctx context.Context, rec arrow.RecordBatch, extra []*delta.StructField) (arrow.RecordBatch, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := &delta.StructType{Fields: extra}
	as, err := datafile.ArrowSchema(st)
	if err != nil {
		return nil, err
	}
	ix := index(rec.Schema())
	n := int(rec.NumRows())
	cols := make([]arrow.Array, 0, len(extra))
	release := func() {
		for _, c := range cols {
			c.Release()
		}
	}
	k := 0
	for _, d := range e.spec.Derived {
		b := array.NewBuilder(memory.DefaultAllocator, as.Field(k).Type)
		fn := functions[d.Function]
		args := make([]arrow.Array, len(d.Args))
		for i, a := range d.Args {
			if !isLiteral(a) {
				j, ok := ix[strings.ToLower(a)]
				if !ok {
					b.Release()
					release()
					return nil, fmt.Errorf("derived column %q: no column %q", d.Name, a)
				}
				args[i] = rec.Column(j)
			}
		}
		for i := 0; i < n; i++ {
			if err := fn.eval(b, d.Args, args, i); err != nil {
				b.Release()
				release()
				return nil, fmt.Errorf("derived column %q: %w", d.Name, err)
			}
		}
		cols = append(cols, b.NewArray())
		b.Release()
		k++
	}
	for _, dm := range e.dims {
		on := rec.Column(ix[strings.ToLower(dm.l.On)])
		bs := make([]array.Builder, len(dm.l.Columns))
		for i := range bs {
			bs[i] = array.NewBuilder(memory.DefaultAllocator, as.Field(k+i).Type)
		}
		for i := 0; i < n; i++ {
			var vals []datafile.Value
			if !on.IsNull(i) {
				vals = dm.rows[on.ValueStr(i)]
			}
			for j, b := range bs {
				if vals == nil {
					b.AppendNull()
					continue
				}
				if err := datafile.AppendValue(b, vals[j]); err != nil {
					release()
					return nil, err
				}
			}
		}
		for _, b := range bs {
			cols = append(cols, b.NewArray())
			b.Release()
		}
		k += len(bs)
	}
	fields := append(append([]arrow.Field(nil), rec.Schema().Fields()...), as.Fields()...)
	all := make([]arrow.Array, 0, len(fields))
	for i := 0; i < int(rec.NumCols()); i++ {
		all = append(all, rec.Column(i))
	}
	all = append(all, cols...)
	out := array.NewRecordBatch(arrow.NewSchema(fields, nil), all, rec.NumRows())
	release()
	return out, nil
}

type function struct {
	typ  delta.DataType
	eval func(b array.Builder, names []string, args []arrow.Array, i int) error
}

func isLiteral(a string) bool { return len(a) >= 2 && a[0] == '\'' && a[len(a)-1] == '\'' }

func tsArg(args []arrow.Array, i int) (time.Time, bool) {
	if args[0] == nil || args[0].IsNull(i) {
		return time.Time{}, false
	}
	switch c := args[0].(type) {
	case *array.Timestamp:
		return time.UnixMicro(int64(c.Value(i))).UTC(), true
	case *array.Date32:
		return c.Value(i).ToTime(), true
	}
	return time.Time{}, false
}

func strArg(args []arrow.Array, i int) (string, bool) {
	if args[0] == nil || args[0].IsNull(i) {
		return "", false
	}
	return args[0].ValueStr(i), true
}

var functions = map[string]function{
	"date": {delta.Date, func(b array.Builder, _ []string, args []arrow.Array, i int) error {
		if t, ok := tsArg(args, i); ok {
			b.(*array.Date32Builder).Append(arrow.Date32FromTime(t))
		} else {
			b.AppendNull()
		}
		return nil
	}},
	"hour": {delta.Timestamp, func(b array.Builder, _ []string, args []arrow.Array, i int) error {
		if t, ok := tsArg(args, i); ok {
			b.(*array.TimestampBuilder).Append(arrow.Timestamp(t.Truncate(time.Hour).UnixMicro()))
		} else {
			b.AppendNull()
		}
		return nil
	}},
	"year": {delta.Integer, func(b array.Builder, _ []string, args []arrow.Array, i int) error {
		if t, ok := tsArg(args, i); ok {
			b.(*array.Int32Builder).Append(int32(t.Year()))
		} else {
			b.AppendNull()
		}
		return nil
	}},
	"month": {delta.Integer, func(b array.Builder, _ []string, args []arrow.Array, i int) error {
		if t, ok := tsArg(args, i); ok {
			b.(*array.Int32Builder).Append(int32(t.Month()))
		} else {
			b.AppendNull()
		}
		return nil
	}},
	"lower": {delta.String, func(b array.Builder, _ []string, args []arrow.Array, i int) error {
		if s, ok := strArg(args, i); ok {
			b.(*array.StringBuilder).Append(strings.ToLower(s))
		} else {
			b.AppendNull()
		}
		return nil
	}},
	"upper": {delta.String, func(b array.Builder, _ []string, args []arrow.Array, i int) error {
		if s, ok := strArg(args, i); ok {
			b.(*array.StringBuilder).Append(strings.ToUpper(s))
		} else {
			b.AppendNull()
		}
		return nil
	}},
	"concat": {delta.String, func(b array.Builder, names []string, args []arrow.Array, i int) error {
		var sb strings.Builder
		for j, a := range args {
			if a == nil {
				sb.WriteString(names[j][1 : len(names[j])-1])
				continue
			}
			if a.IsNull(i) {
				b.AppendNull()
				return nil
			}
			sb.WriteString(a.ValueStr(i))
		}
		b.(*array.StringBuilder).Append(sb.String())
		return nil
	}},
}

func index(s *arrow.Schema) map[string]int {
	m := make(map[string]int, s.NumFields())
	for i, f := range s.Fields() {
		m[strings.ToLower(f.Name)] = i
	}
	return m
}

package enrich

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

var base = &delta.StructType{Fields: []*delta.StructField{
	{Name: "id", Type: delta.Integer, Nullable: true},
	{Name: "ts", Type: delta.Timestamp, Nullable: true},
	{Name: "plant", Type: delta.String, Nullable: true},
}}

func record(t *testing.T) arrow.RecordBatch {
	as, err := datafile.ArrowSchema(base)
	if err != nil {
		t.Fatal(err)
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, as)
	defer b.Release()
	ts := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	b.Field(0).(*array.Int32Builder).AppendValues([]int32{1, 2}, nil)
	b.Field(1).(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{arrow.Timestamp(ts.UnixMicro()), 0}, []bool{true, false})
	b.Field(2).(*array.StringBuilder).AppendValues([]string{"North", ""}, []bool{true, false})
	return b.NewRecordBatch()
}

func TestDerivedAndTableLookup(t *testing.T) {
	ctx := context.Background()
	st, _ := local.New(t.TempDir())
	// A dimension table: plant -> region, capacity.
	dimSchema := &delta.StructType{Fields: []*delta.StructField{
		{Name: "plant", Type: delta.String, Nullable: true, Metadata: map[string]any{}},
		{Name: "region", Type: delta.String, Nullable: true, Metadata: map[string]any{}},
		{Name: "capacity", Type: delta.Long, Nullable: true, Metadata: map[string]any{}},
	}}
	dt := delta.NewTable(st, "silver/public/plants")
	snap, err := delta.CreateTable(ctx, dt, dimSchema, nil, nil, "plants")
	if err != nil {
		t.Fatal(err)
	}
	as, _ := datafile.ArrowSchema(dimSchema)
	b := array.NewRecordBuilder(memory.DefaultAllocator, as)
	b.Field(0).(*array.StringBuilder).AppendValues([]string{"North", "South"}, nil)
	b.Field(1).(*array.StringBuilder).AppendValues([]string{"EU", "US"}, nil)
	b.Field(2).(*array.Int64Builder).AppendValues([]int64{10, 20}, nil)
	dr := b.NewRecordBatch()
	adds, err := datafile.Write(ctx, st, datafile.TableInfo{Root: dt.Root(), Schema: dimSchema}, dr, datafile.WriteOptions{DataChange: true})
	if err != nil {
		t.Fatal(err)
	}
	tx := dt.Begin(snap)
	tx.Add(adds...)
	if _, err := tx.Commit(ctx, "WRITE", nil); err != nil {
		t.Fatal(err)
	}

	e, err := New(Spec{
		Derived: []Derived{
			{Name: "d", Function: "date", Args: []string{"ts"}},
			{Name: "h", Function: "hour", Args: []string{"ts"}},
			{Name: "y", Function: "year", Args: []string{"ts"}},
			{Name: "lp", Function: "lower", Args: []string{"plant"}},
			{Name: "k", Function: "concat", Args: []string{"plant", "'/'", "id"}},
		},
		Lookups: []Lookup{{Table: "silver/public/plants", On: "plant", Columns: []string{"region", "capacity"}}},
	}, st)
	if err != nil {
		t.Fatal(err)
	}
	extra, err := e.Fields(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	rec := record(t)
	out, err := e.Apply(ctx, rec, extra)
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for i := 0; i < int(out.NumRows()); i++ {
		var p []string
		for c := 3; c < int(out.NumCols()); c++ {
			p = append(p, out.Column(c).ValueStr(i))
		}
		rows = append(rows, strings.Join(p, " "))
	}
	want := []string{
		"2026-03-04 2026-03-04T05:00:00Z 2026 north North/1 EU 10",
		"(null) (null) (null) (null) (null) (null) (null)",
	}
	if strings.Join(rows, "|") != strings.Join(want, "|") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	if _, err := New(Spec{Derived: []Derived{{Name: "x", Function: "sqrt", Args: []string{"id"}}}}, st); err == nil {
		t.Fatal("unknown function accepted")
	}
	if _, err := New(Spec{Lookups: []Lookup{{File: "/nonexistent.csv", On: "plant", Columns: []string{"r"}}}}, st); err == nil || !strings.Contains(err.Error(), "nonexistent.csv") {
		t.Fatalf("missing file: %v", err)
	}
}

package datafile

import (
	"context"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/delta"
)

func TestSmoke(t *testing.T) {
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	schema, err := delta.ParseSchema(`{"type":"struct","fields":[{"name":"id","type":"long","nullable":true,"metadata":{}},{"name":"p","type":"string","nullable":true,"metadata":{}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	as, _ := ArrowSchema(schema)
	b := array.NewRecordBuilder(memory.DefaultAllocator, as)
	defer b.Release()
	b.Field(0).(*array.Int64Builder).AppendValues([]int64{1, 2, 3}, nil)
	b.Field(1).(*array.StringBuilder).AppendValues([]string{"a/b", "x", "a/b"}, nil)
	rec := b.NewRecordBatch()
	defer rec.Release()
	ti := TableInfo{Schema: schema, PartitionColumns: []string{"p"}}
	adds, err := Write(context.Background(), st, ti, rec, WriteOptions{DataChange: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range adds {
		t.Logf("%+v %s", a, a.Stats)
		recs, err := Read(context.Background(), st, ti, a)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			t.Log(r)
			r.Release()
		}
	}
	var _ arrow.Record
}

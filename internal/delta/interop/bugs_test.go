package interop

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/schema"

	"github.com/silt-dev/silt/internal/delta"
)

// Reproductions of silt bugs found by the interop suite. Each one asserts
// the correct behaviour. While a bug is open its test starts with knownBug,
// so it runs only with SILT_INTEROP_BUGS=1 and CI stays green meanwhile; the
// matching pytest case is in KNOWN_BUGS (xfail(strict=True)) in
// interop/test_others_to_silt.py, so CI turns red the day a fix lands and
// the gate (and the xfail) must be removed. Fixed bugs keep their test as a
// regression test.
func knownBug(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("SILT_INTEROP_BUGS") == "" {
		t.Skipf("known silt bug (%s); run with SILT_INTEROP_BUGS=1 to see it fail", what)
	}
}

// Spark (4.x, default spark.sql.parquet.outputTimestampType=INT96) writes
// TIMESTAMP columns as INT96. A value outside 1677-09-21..2262-04-11, such
// as 9999-12-31 23:59:59.999999 or 0001-01-01, is valid in Delta (µs); silt
// used to convert INT96 through Arrow nanoseconds and fail with "INT96
// timestamp is outside the Arrow nanosecond range" (fixed: datafile reads
// top-level INT96 columns straight to µs). Found by
// interop/test_others_to_silt.py::test_silt_reads[spark_timestamp_extremes].
func TestBugINT96OutsideNanosecondRange(t *testing.T) {
	ctx := context.Background()
	want := []time.Time{
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 2, 29, 0, 0, 0, 123456000, time.UTC),
	}
	var vals []parquet.Int96
	for _, w := range want {
		days := w.Unix()/86400 - boolInt(w.Unix()%86400 < 0)
		nanos := w.Sub(time.Unix(days*86400, 0)).Nanoseconds()
		v := parquet.NewInt96([3]uint32{0, 0, uint32(days + 2440588)})
		v.SetNanoSeconds(nanos)
		vals = append(vals, v)
	}
	// A one-column Parquet file as Spark writes it: optional INT96 "ts".
	root, err := schema.NewGroupNode("spark_schema", parquet.Repetitions.Required,
		schema.FieldList{schema.NewInt96Node("ts", parquet.Repetitions.Optional, -1)}, -1)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	pw := file.NewParquetWriter(&buf, root)
	rg := pw.AppendRowGroup()
	cw, err := rg.NextColumn()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cw.(*file.Int96ColumnChunkWriter).WriteBatch(vals, []int16{1, 1, 1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}

	tbl, st, err := OpenTable(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sch := &delta.StructType{Fields: []*delta.StructField{field("ts", delta.Timestamp, true)}}
	s, err := delta.CreateTable(ctx, tbl, sch, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutIfAbsent(ctx, "int96.parquet", buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	tx := tbl.Begin(s)
	tx.Add(&delta.Add{Path: "int96.parquet", PartitionValues: map[string]*string{}, Size: int64(buf.Len()), ModificationTime: 1, DataChange: true})
	if _, err := tx.Commit(ctx, "WRITE", nil); err != nil {
		t.Fatal(err)
	}
	s, err = tbl.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := ScanRows(ctx, st, tbl, s)
	if err != nil {
		t.Fatalf("reading INT96 timestamps: %v", err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, Canonical(r))
	}
	var exp []string
	for _, w := range want {
		exp = append(exp, Canonical(map[string]any{"ts": w.UnixMicro()}))
	}
	if d := DiffRows(got, exp); d != "" {
		t.Error(d)
	}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

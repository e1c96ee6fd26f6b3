package verify

import (
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// logRecord builds a change-log record from rows "op lsn pos a b unchanged"
// ("-" is NULL).
func logRecord(t *testing.T, rows ...string) arrow.RecordBatch {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "a", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "b", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "_silt_op", Type: arrow.BinaryTypes.String},
		{Name: "_silt_lsn", Type: arrow.PrimitiveTypes.Int64},
		{Name: "_silt_pos", Type: arrow.PrimitiveTypes.Int64},
		{Name: "_silt_unchanged", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	str := func(i int, v string) {
		sb := b.Field(i).(*array.StringBuilder)
		if v == "-" {
			sb.AppendNull()
		} else {
			sb.Append(v)
		}
	}
	for _, r := range rows {
		f := strings.Fields(r)
		var lsn, pos int64
		for _, c := range f[1] {
			lsn = lsn*10 + int64(c-'0')
		}
		for _, c := range f[2] {
			pos = pos*10 + int64(c-'0')
		}
		str(0, f[3])
		str(1, f[4])
		str(2, f[0])
		b.Field(3).(*array.Int64Builder).Append(lsn)
		b.Field(4).(*array.Int64Builder).Append(pos)
		str(5, f[5])
	}
	return b.NewRecordBatch()
}

func TestReplayLog(t *testing.T) {
	// Out of order across records, as files come.
	r1 := logRecord(t,
		"U 30 0 1 z -", // update of one of two identical rows (D at 30/0 in r2)
		"L 5 0 1 x -",
		"L 5 0 1 x -",
		"I 20 0 2 y -",
		"U 40 0 2 - b", // b unchanged: taken from the D row
	)
	r2 := logRecord(t,
		"D 30 0 1 x -",
		"D 40 0 2 y -",
		"U 50 0 9 9 -", // an update that changed nothing: no D, no effect
		"I 60 0 3 w -",
		"T 55 0 - - -", // removes everything committed before it
		"I 56 0 4 v -",
	)
	cols := []string{"a", "b"}
	got := replayLog([]arrow.RecordBatch{r1, r2}, cols)
	want := []string{`"3"|"w"`, `"4"|"v"`}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("replay = %q, want %q", got, want)
	}
	// Without the TRUNCATE and later rows.
	r3 := logRecord(t, "D 30 0 1 x -", "D 40 0 2 y -")
	got = replayLog([]arrow.RecordBatch{r1, r3}, cols)
	want = []string{`"1"|"x"`, `"1"|"z"`, `"2"|"y"`}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("replay = %q, want %q", got, want)
	}
}

package datafile

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
)

// The one-partition fast path of partitionRows gives the groups the per-row
// split gives, and is taken only when every partition column is constant.
func TestPartitionRowsConstantFastPath(t *testing.T) {
	mem := checkedAlloc(t)
	s := mustSchema(t, fld("y", "integer", true), fld("s", "string", true), fld("d", "date", true), fld("v", "long", true))
	ti := TableInfo{Schema: s, PartitionColumns: []string{"y", "s", "d"}, Allocator: mem}
	for _, tc := range []struct {
		name, rows string
		constant   bool
		groups     int
	}{
		{"constant", `[{"y":2024,"s":"a","d":"2024-01-02","v":1},{"y":2024,"s":"a","d":"2024-01-02","v":2},{"y":2024,"s":"a","d":"2024-01-02","v":3}]`, true, 1},
		{"all null", `[{"y":null,"s":null,"d":null,"v":1},{"y":null,"s":null,"d":null,"v":2}]`, true, 1},
		{"last int differs", `[{"y":2024,"s":"a","d":"2024-01-02","v":1},{"y":2024,"s":"a","d":"2024-01-02","v":2},{"y":2025,"s":"a","d":"2024-01-02","v":3}]`, false, 2},
		{"string differs", `[{"y":2024,"s":"a","d":"2024-01-02","v":1},{"y":2024,"s":"b","d":"2024-01-02","v":2}]`, false, 2},
		{"date differs", `[{"y":2024,"s":"a","d":"2024-01-02","v":1},{"y":2024,"s":"a","d":"2024-01-03","v":2}]`, false, 2},
		{"some null", `[{"y":2024,"s":"a","d":"2024-01-02","v":1},{"y":null,"s":"a","d":"2024-01-02","v":2}]`, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := recFromJSON(t, mem, s, tc.rows)
			defer rec.Release()
			cols := rec.Columns()
			idx := []int{0, 1, 2}
			if got := constantColumns(cols, idx); got != tc.constant {
				t.Fatalf("constantColumns = %v, want %v", got, tc.constant)
			}
			n := int(rec.NumRows())
			gs, err := partitionRows(ti, idx, cols, n)
			if err != nil {
				t.Fatal(err)
			}
			if len(gs) != tc.groups {
				t.Fatalf("%d groups, want %d", len(gs), tc.groups)
			}
			// The slow path, row by row, must agree on the first group.
			one, err := partitionRows(ti, idx, []arrow.Array{cols[0].(arrow.Array), cols[1], cols[2]}, 1)
			if err != nil {
				t.Fatal(err)
			}
			if gs[0].key != one[0].key || gs[0].dir != one[0].dir {
				t.Fatalf("group %q %q, row 0 alone gives %q %q", gs[0].key, gs[0].dir, one[0].key, one[0].dir)
			}
			rows := 0
			for _, g := range gs {
				for _, r := range g.runs {
					rows += r[1] - r[0]
				}
			}
			if rows != n {
				t.Fatalf("groups cover %d rows, want %d", rows, n)
			}
			if tc.constant && (len(gs[0].runs) != 1 || gs[0].runs[0] != [2]int{0, n}) {
				t.Fatalf("runs %v, want [[0 %d]]", gs[0].runs, n)
			}
		})
	}
}

// Decimal columns of distinct values are written without a dictionary (a
// FIXED_LEN_BYTE_ARRAY dictionary hashes every value and falls back anyway);
// repetitive ones keep it.
func TestMostlyDistinctDecimal(t *testing.T) {
	mem := checkedAlloc(t)
	for _, distinct := range []bool{true, false} {
		b := array.NewDecimal128Builder(mem, &arrow.Decimal128Type{Precision: 12, Scale: 2})
		for i := 0; i < distinctSample; i++ {
			v := int64(i)
			if !distinct {
				v %= 10
			}
			b.Append(decimal128.FromI64(v))
		}
		a := b.NewArray()
		b.Release()
		if got := mostlyDistinct(a); got != distinct {
			t.Errorf("distinct %v: mostlyDistinct = %v", distinct, got)
		}
		a.Release()
	}
}

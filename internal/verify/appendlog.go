package verify

import (
	"fmt"
	"sort"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/silt-dev/silt/internal/bronze"
)

// replayLog returns the rows (rendered as render does) that an append-only
// Silver table's change log leaves when replayed in (_silt_lsn, _silt_pos)
// order as a multiset: I and L add a row; D removes one copy of its (old)
// row; a U adds its row when a D of the same change precedes it (an update
// of a REPLICA IDENTITY FULL table is D old + U new), columns it lists in
// _silt_unchanged taking the D row's value, and is a no-op alone (an
// update that changed no value); T removes everything before it.
func replayLog(recs []arrow.RecordBatch, cols []string) []string {
	type logRow struct {
		lsn, pos  int64
		op        string
		cells     []string
		unchanged string
	}
	var rows []logRow
	for _, r := range recs {
		ix := map[string]int{}
		for i, f := range r.Schema().Fields() {
			ix[strings.ToLower(f.Name)] = i
		}
		opA, _ := r.Column(ix[bronze.ColOp]).(*array.String)
		lsnA, _ := r.Column(ix[bronze.ColLSN]).(*array.Int64)
		posA, _ := r.Column(ix[bronze.ColPos]).(*array.Int64)
		if opA == nil || lsnA == nil || posA == nil {
			continue
		}
		unA, _ := r.Column(ix[bronze.ColUnchanged]).(*array.String)
		for row := 0; row < int(r.NumRows()); row++ {
			lr := logRow{lsn: lsnA.Value(row), pos: posA.Value(row), op: opA.Value(row), cells: make([]string, len(cols))}
			for ci, c := range cols {
				j, ok := ix[strings.ToLower(c)]
				if !ok || r.Column(j).IsNull(row) {
					lr.cells[ci] = "NULL"
					continue
				}
				lr.cells[ci] = fmt.Sprintf("%q", r.Column(j).ValueStr(row))
			}
			if unA != nil && !unA.IsNull(row) {
				lr.unchanged = unA.Value(row)
			}
			rows = append(rows, lr)
		}
	}
	rank := map[string]int{"T": 0, "D": 1, "L": 2, "I": 2, "U": 3}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.lsn != b.lsn {
			return uint64(a.lsn) < uint64(b.lsn)
		}
		if a.pos != b.pos {
			return a.pos < b.pos
		}
		return rank[a.op] < rank[b.op]
	})
	live := map[string]int{}
	var lastD *logRow
	for i := range rows {
		r := &rows[i]
		if lastD != nil && (lastD.lsn != r.lsn || lastD.pos != r.pos) {
			lastD = nil
		}
		switch r.op {
		case "T":
			clear(live)
		case "D":
			k := strings.Join(r.cells, "|")
			if live[k] > 0 {
				live[k]--
			}
			lastD = r
		case "I", "L":
			live[strings.Join(r.cells, "|")]++
		case "U":
			if lastD == nil {
				continue // nothing changed
			}
			if r.unchanged != "" {
				for _, n := range strings.Split(r.unchanged, ",") {
					for ci, c := range cols {
						if strings.EqualFold(c, n) {
							r.cells[ci] = lastD.cells[ci]
						}
					}
				}
			}
			live[strings.Join(r.cells, "|")]++
		}
	}
	var out []string
	for k, n := range live {
		for ; n > 0; n-- {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

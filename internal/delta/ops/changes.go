package ops

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/delta"
)

// Changes is the plain MERGE source: upserted rows and deleted keys,
// reduced to one change per key. It implements Decider:
//
//	WHEN MATCHED AND source is a delete [AND source.guard > target.guard] THEN DELETE
//	WHEN MATCHED [AND source.guard > target.guard] THEN UPDATE SET *
//	WHEN NOT MATCHED AND source is not a delete THEN INSERT *
//
// With guard columns (for example _silt_lsn, _silt_pos) a change replaces
// or deletes a target row only when its guard tuple is greater than the
// row's: stale changes never overwrite newer rows.
type Changes struct {
	schema  *delta.StructType
	keys    []arrow.Array // distinct changed keys, retained
	winner  []change      // per key
	upserts arrow.RecordBatch
	deletes arrow.RecordBatch
	upCols  []int // table column -> upserts column (-1: null)
	upGuard []int // guard columns in upserts
	delG    []int // guard columns in deletes
	curG    []int // guard columns in the table schema
}

type change struct {
	del bool
	row int
}

// NewChanges reduces upserts (rows with the table's columns, matched by
// name; missing columns are null) and deletes (rows with at least the key
// columns, and the guard columns when guard is set) to one change per key.
// With a guard the change with the greatest guard wins (a delete wins a
// tie); without one the last upsert wins, and a delete wins over upserts.
// Either record may be nil. Changes retains both records until Release.
func NewChanges(schema *delta.StructType, keys, guard []string, upserts, deletes arrow.RecordBatch) (*Changes, error) {
	c := &Changes{schema: schema}
	col := func(r arrow.RecordBatch, name string) int {
		if r == nil {
			return -1
		}
		for i, f := range r.Schema().Fields() {
			if equalFold(f.Name, name) {
				return i
			}
		}
		return -1
	}
	for _, name := range keys {
		if fieldIndex(schema, name) < 0 {
			return nil, fmt.Errorf("ops: changes: key column %q is not in the table schema", name)
		}
		if upserts != nil && col(upserts, name) < 0 {
			return nil, fmt.Errorf("ops: changes: upserts lack key column %q", name)
		}
		if deletes != nil && col(deletes, name) < 0 {
			return nil, fmt.Errorf("ops: changes: deletes lack key column %q", name)
		}
	}
	for _, g := range guard {
		i := fieldIndex(schema, g)
		if i < 0 {
			return nil, fmt.Errorf("ops: changes: guard column %q is not in the table schema", g)
		}
		c.curG = append(c.curG, i)
		if upserts != nil {
			j := col(upserts, g)
			if j < 0 {
				return nil, fmt.Errorf("ops: changes: upserts lack guard column %q", g)
			}
			c.upGuard = append(c.upGuard, j)
		}
		if deletes != nil {
			j := col(deletes, g)
			if j < 0 {
				return nil, fmt.Errorf("ops: changes: deletes lack guard column %q", g)
			}
			c.delG = append(c.delG, j)
		}
	}
	if upserts != nil {
		c.upCols = make([]int, len(schema.Fields))
		used := 0
		for i, f := range schema.Fields {
			c.upCols[i] = col(upserts, f.Name)
			if c.upCols[i] >= 0 {
				used++
			}
		}
		if used != int(upserts.NumCols()) {
			return nil, fmt.Errorf("ops: changes: upserts have columns that are not in the table schema")
		}
	}

	// Reduce: one winner per key.
	var (
		buf    []byte
		byKey  = map[string]int{}
		kcells = make([]Cell, len(keys))
	)
	consider := func(r arrow.RecordBatch, del bool, gcols []int) {
		if r == nil {
			return
		}
		for row := 0; row < int(r.NumRows()); row++ {
			buf = buf[:0]
			for j, name := range keys {
				a := r.Column(col(r, name))
				kcells[j] = Cell{a, row}
				if a.IsNull(row) {
					buf = append(buf, 'n')
					continue
				}
				buf = appendKey(buf, a, row)
			}
			ch := change{del: del, row: row}
			k, seen := byKey[string(buf)]
			if !seen {
				byKey[string(buf)] = len(c.winner)
				c.winner = append(c.winner, ch)
				continue
			}
			prev := c.winner[k]
			if len(gcols) == 0 {
				if del || !prev.del {
					c.winner[k] = ch
				}
				continue
			}
			pr, pg := c.upserts, c.upGuard
			if prev.del {
				pr, pg = c.deletes, c.delG
			}
			cmp := compareGuard(r, gcols, row, pr, pg, prev.row)
			if cmp > 0 || (cmp == 0 && (del || !prev.del)) {
				c.winner[k] = ch
			}
		}
	}
	c.upserts, c.deletes = upserts, deletes
	consider(upserts, false, c.upGuard)
	consider(deletes, true, c.delG)

	// The distinct keys, in winner order.
	bs := make([]array.Builder, len(keys))
	for j, name := range keys {
		var dt arrow.DataType
		if upserts != nil {
			dt = upserts.Column(col(upserts, name)).DataType()
		} else if deletes != nil {
			dt = deletes.Column(col(deletes, name)).DataType()
		} else {
			dt = arrow.Null
		}
		bs[j] = array.NewBuilder(memory.DefaultAllocator, dt)
		defer bs[j].Release()
	}
	for _, w := range c.winner {
		r := upserts
		if w.del {
			r = deletes
		}
		for j, name := range keys {
			if err := AppendCell(bs[j], Cell{r.Column(col(r, name)), w.row}); err != nil {
				return nil, fmt.Errorf("ops: changes: key %q: %w", name, err)
			}
		}
	}
	for j := range keys {
		c.keys = append(c.keys, bs[j].NewArray())
	}
	if upserts != nil {
		upserts.Retain()
	}
	if deletes != nil {
		deletes.Retain()
	}
	return c, nil
}

// Keys are the distinct changed keys, one array per key column, for
// MergeSpec.Changed. They stay valid until Release.
func (c *Changes) Keys() []arrow.Array { return c.keys }

// Len is the number of distinct changed keys.
func (c *Changes) Len() int { return len(c.winner) }

// Release frees the key arrays and the retained records.
func (c *Changes) Release() {
	for _, k := range c.keys {
		k.Release()
	}
	c.keys = nil
	if c.upserts != nil {
		c.upserts.Release()
		c.upserts = nil
	}
	if c.deletes != nil {
		c.deletes.Release()
		c.deletes = nil
	}
}

// Decide implements Decider.
func (c *Changes) Decide(k int, cur []Cell, out []Cell) (Outcome, error) {
	w := c.winner[k]
	if cur != nil && len(c.curG) > 0 {
		r, g := c.upserts, c.upGuard
		if w.del {
			r, g = c.deletes, c.delG
		}
		newer := true
		for i, gi := range g {
			a, b := Cell{r.Column(gi), w.row}, cur[c.curG[i]]
			if b.Null() {
				break
			}
			if a.Null() {
				newer = false
				break
			}
			cmp, ok := compareCells(a, b)
			if !ok {
				return Keep, fmt.Errorf("ops: changes: guard column %q is not comparable", c.schema.Fields[c.curG[i]].Name)
			}
			if cmp != 0 {
				newer = cmp > 0
				break
			}
			if i == len(g)-1 {
				newer = false // equal guards: the row already reflects the change
			}
		}
		if !newer {
			return Keep, nil
		}
	}
	if w.del {
		return Delete, nil
	}
	for i, j := range c.upCols {
		if j >= 0 {
			out[i] = Cell{c.upserts.Column(j), w.row}
		}
	}
	return Upsert, nil
}

// compareGuard compares the guard tuple of row ra of a with row rb of b.
func compareGuard(a arrow.RecordBatch, ga []int, ra int, b arrow.RecordBatch, gb []int, rb int) int {
	for i := range ga {
		x, y := Cell{a.Column(ga[i]), ra}, Cell{b.Column(gb[i]), rb}
		switch {
		case x.Null() && y.Null():
			continue
		case x.Null():
			return -1
		case y.Null():
			return 1
		}
		if c, ok := compareCells(x, y); ok && c != 0 {
			return c
		}
	}
	return 0
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

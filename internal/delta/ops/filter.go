package ops

import (
	"bytes"
	"cmp"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/decimal128"

	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

// PartitionFilter selects files by partition values: a conjunction of
// comparisons, each "column op value" with op one of = != <> < <= > >=, or
// "column IS [NOT] NULL". Values may be quoted with ' or ". The zero
// filter selects every file.
type PartitionFilter struct {
	Terms []FilterTerm
}

// FilterTerm is one comparison of a PartitionFilter.
type FilterTerm struct {
	Column string
	Op     string // =, !=, <, <=, >, >=, isnull, notnull
	Value  string
}

// ParsePartitionFilter parses terms joined by AND (case-insensitive) or
// commas, for example "year = 2026 AND month >= 3" or "region=eu,day=1".
func ParsePartitionFilter(s string) (PartitionFilter, error) {
	var f PartitionFilter
	s = strings.TrimSpace(s)
	if s == "" {
		return f, nil
	}
	if up := strings.ToUpper(s); strings.HasSuffix(up, " AND") || strings.HasPrefix(up, "AND ") {
		return f, fmt.Errorf("ops: partition filter %q: dangling AND", s)
	}
	for _, part := range splitTerms(s) {
		part = strings.TrimSpace(part)
		if part == "" {
			return f, fmt.Errorf("ops: partition filter %q: empty term", s)
		}
		up := strings.ToUpper(part)
		if strings.HasSuffix(up, " IS NOT NULL") {
			f.Terms = append(f.Terms, FilterTerm{Column: unquoteIdent(part[:len(part)-len(" IS NOT NULL")]), Op: "notnull"})
			continue
		}
		if strings.HasSuffix(up, " IS NULL") {
			f.Terms = append(f.Terms, FilterTerm{Column: unquoteIdent(part[:len(part)-len(" IS NULL")]), Op: "isnull"})
			continue
		}
		i := strings.IndexAny(part, "=!<>")
		if i <= 0 {
			return f, fmt.Errorf("ops: partition filter term %q: want column op value", part)
		}
		j := i
		for j < len(part) && strings.ContainsRune("=!<>", rune(part[j])) {
			j++
		}
		op := part[i:j]
		switch op {
		case "=", "==":
			op = "="
		case "!=", "<>":
			op = "!="
		case "<", "<=", ">", ">=":
		default:
			return f, fmt.Errorf("ops: partition filter term %q: unknown operator %q", part, op)
		}
		val := strings.TrimSpace(part[j:])
		if len(val) >= 2 && (val[0] == '\'' || val[0] == '"') && val[len(val)-1] == val[0] {
			val = val[1 : len(val)-1]
		}
		f.Terms = append(f.Terms, FilterTerm{Column: unquoteIdent(part[:i]), Op: op, Value: val})
	}
	return f, nil
}

func splitTerms(s string) []string {
	var out []string
	var cur strings.Builder
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
			cur.WriteByte(c)
		case c == '\'' || c == '"':
			quote = c
			cur.WriteByte(c)
		case c == ',':
			out = append(out, cur.String())
			cur.Reset()
		case (c == 'A' || c == 'a') && i > 0 && s[i-1] == ' ' && i+4 <= len(s) && strings.EqualFold(s[i:i+3], "and") && s[i+3] == ' ':
			out = append(out, cur.String())
			cur.Reset()
			i += 3
		default:
			cur.WriteByte(c)
		}
	}
	return append(out, cur.String())
}

func unquoteIdent(s string) string {
	s = strings.TrimSpace(s)
	return strings.Trim(s, "`\"")
}

// String renders the filter (for commitInfo).
func (f PartitionFilter) String() string {
	parts := make([]string, len(f.Terms))
	for i, t := range f.Terms {
		switch t.Op {
		case "isnull":
			parts[i] = t.Column + " IS NULL"
		case "notnull":
			parts[i] = t.Column + " IS NOT NULL"
		default:
			parts[i] = fmt.Sprintf("%s %s '%s'", t.Column, t.Op, t.Value)
		}
	}
	return strings.Join(parts, " AND ")
}

// boundFilter is a PartitionFilter checked against a table.
type boundFilter struct {
	terms []boundTerm
}

type boundTerm struct {
	FilterTerm
	name string // partition column name as in partitionValues
	typ  delta.DataType
	val  any // parsed Value
}

func (f PartitionFilter) bind(schema *delta.StructType, partCols []string) (*boundFilter, error) {
	b := &boundFilter{}
	for _, t := range f.Terms {
		var name string
		for _, p := range partCols {
			if strings.EqualFold(p, t.Column) {
				name = p
			}
		}
		if name == "" {
			return nil, fmt.Errorf("ops: partition filter: %q is not a partition column (partition columns: %s)", t.Column, strings.Join(partCols, ", "))
		}
		fld := schema.Field(name)
		if fld == nil {
			return nil, fmt.Errorf("ops: partition filter: column %q is not in the schema", name)
		}
		bt := boundTerm{FilterTerm: t, name: name, typ: fld.Type}
		if t.Op != "isnull" && t.Op != "notnull" {
			v := t.Value
			pv, err := datafile.ParsePartitionValue(fld.Type, &v)
			if err != nil {
				return nil, fmt.Errorf("ops: partition filter: %w", err)
			}
			bt.val = pv
		}
		b.terms = append(b.terms, bt)
	}
	return b, nil
}

// match reports whether a file's partition values satisfy every term.
func (b *boundFilter) match(pv map[string]*string) (bool, error) {
	for _, t := range b.terms {
		v, err := datafile.ParsePartitionValue(t.typ, pv[t.name])
		if err != nil {
			return false, err
		}
		switch t.Op {
		case "isnull":
			if v != nil {
				return false, nil
			}
			continue
		case "notnull":
			if v == nil {
				return false, nil
			}
			continue
		}
		if v == nil || t.val == nil {
			return false, nil // comparisons with null are never true
		}
		c, ok := compareAny(v, t.val)
		if !ok {
			return false, fmt.Errorf("ops: partition filter: cannot compare %s values", t.typ.TypeName())
		}
		var keep bool
		switch t.Op {
		case "=":
			keep = c == 0
		case "!=":
			keep = c != 0
		case "<":
			keep = c < 0
		case "<=":
			keep = c <= 0
		case ">":
			keep = c > 0
		case ">=":
			keep = c >= 0
		}
		if !keep {
			return false, nil
		}
	}
	return true, nil
}

// compareAny compares two ParsePartitionValue results of one type.
func compareAny(a, b any) (int, bool) {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return cmp.Compare(x, y), ok
	case []byte:
		y, ok := b.([]byte)
		return bytes.Compare(x, y), ok
	case bool:
		y, ok := b.(bool)
		return cmp.Compare(b2i(x), b2i(y)), ok
	case float32:
		y, ok := b.(float32)
		return cmp.Compare(x, y), ok
	case float64:
		y, ok := b.(float64)
		return cmp.Compare(x, y), ok
	case arrow.Date32:
		y, ok := b.(arrow.Date32)
		return cmp.Compare(x, y), ok
	case arrow.Timestamp:
		y, ok := b.(arrow.Timestamp)
		return cmp.Compare(x, y), ok
	case decimal128.Num:
		y, ok := b.(decimal128.Num)
		return x.Cmp(y), ok
	}
	x, ok1 := anyInt(a)
	y, ok2 := anyInt(b)
	return cmp.Compare(x, y), ok1 && ok2
}

func anyInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case int:
		return int64(x), true
	}
	return 0, false
}

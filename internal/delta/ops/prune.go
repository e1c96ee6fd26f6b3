package ops

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

// Data skipping for MERGE (protocol §7): a file can hold a changed key only
// if, for every key column, some changed value lies inside the file's
// [min, max] (or equals its partition value, for partition columns).
// Missing or unparsable stats mean "maybe": a file is never skipped on
// missing information.

// colValues are the distinct non-null changed values of one key column, in
// the comparable domain of the column's type; exactly one slice is set.
type colValues struct {
	name  string
	typ   delta.DataType
	part  bool            // partition column: match partitionValues
	parts map[string]bool // canonical partition strings (part)
	ints  []int64         // integers, dates (days), timestamps (µs)
	flts  []float64       // float, double
	strs  []string        // string
	kind  byte            // 'i', 'd' (date), 't' (timestamp), 'f', 's', 0 = no pruning
	nulls bool            // some changed key has null here
}

// keyPruner decides whether a file may contain one of the changed keys.
type keyPruner struct {
	cols []*colValues
}

func newKeyPruner(schema *delta.StructType, partCols []string, keys []string, changed []arrow.Array) *keyPruner {
	isPart := map[string]bool{}
	for _, p := range partCols {
		isPart[strings.ToLower(p)] = true
	}
	p := &keyPruner{}
	for j, name := range keys {
		f := schema.Field(name)
		if f == nil {
			continue
		}
		cv := &colValues{name: f.Name, typ: f.Type, part: isPart[strings.ToLower(f.Name)]}
		a := changed[j]
		if cv.part {
			cv.parts = map[string]bool{}
			for i := 0; i < a.Len(); i++ {
				if a.IsNull(i) {
					cv.nulls = true
					continue
				}
				s, ok := partitionString(f.Type, a, i)
				if !ok {
					cv.parts = nil // cannot format: no pruning on this column
					break
				}
				cv.parts[s] = true
			}
			p.cols = append(p.cols, cv)
			continue
		}
		switch f.Type.TypeName() {
		case "long", "integer", "short", "byte":
			cv.kind = 'i'
		case "date":
			cv.kind = 'd'
		case "timestamp", "timestamp_ntz":
			cv.kind = 't'
		case "float", "double":
			cv.kind = 'f'
		case "string":
			cv.kind = 's'
		default:
			continue // no pruning on this column
		}
		for i := 0; i < a.Len(); i++ {
			if a.IsNull(i) {
				cv.nulls = true
				continue
			}
			switch cv.kind {
			case 'i', 'd', 't':
				v, ok := intValue(a, i)
				if !ok {
					cv.kind = 0
				}
				cv.ints = append(cv.ints, v)
			case 'f':
				v, ok := floatValue(a, i)
				if !ok {
					cv.kind = 0
				}
				cv.flts = append(cv.flts, v)
			case 's':
				s, ok := a.(*array.String)
				if !ok {
					cv.kind = 0
					break
				}
				cv.strs = append(cv.strs, s.Value(i))
			}
			if cv.kind == 0 {
				break
			}
		}
		if cv.kind == 0 {
			continue
		}
		slices.Sort(cv.ints)
		slices.Sort(cv.flts)
		slices.Sort(cv.strs)
		p.cols = append(p.cols, cv)
	}
	return p
}

// partitionString is the canonical partition-value text of row i of a.
func partitionString(t delta.DataType, a arrow.Array, i int) (string, bool) {
	var v any
	switch x := a.(type) {
	case *array.String:
		v = x.Value(i)
	case *array.Binary:
		v = x.Value(i)
	case *array.Boolean:
		v = x.Value(i)
	case *array.Float32:
		v = x.Value(i)
	case *array.Float64:
		v = x.Value(i)
	case *array.Date32:
		v = x.Value(i)
	case *array.Timestamp:
		v = x.Value(i)
	case *array.Decimal128:
		v = x.Value(i)
	default:
		n, ok := intValue(a, i)
		if !ok {
			return "", false
		}
		v = n
	}
	s, err := datafile.FormatPartitionValue(t, v)
	if err != nil {
		return "", false
	}
	if s == nil {
		return "", true
	}
	return *s, true
}

// canonicalPartition re-formats a partitionValues string so that equal
// values compare equal whatever writer formatted them.
func canonicalPartition(t delta.DataType, s *string) (string, bool) {
	v, err := datafile.ParsePartitionValue(t, s)
	if err != nil {
		return "", false
	}
	if v == nil {
		return "", true
	}
	out, err := datafile.FormatPartitionValue(t, v)
	if err != nil {
		return "", false
	}
	if out == nil {
		return "", true
	}
	return *out, true
}

// fileStats is the part of add.stats pruning uses.
type fileStats struct {
	NumRecords *int64                     `json:"numRecords"`
	MinValues  map[string]json.RawMessage `json:"minValues"`
	MaxValues  map[string]json.RawMessage `json:"maxValues"`
	NullCount  map[string]json.RawMessage `json:"nullCount"`
}

func parseStats(s string) *fileStats {
	if s == "" {
		return nil
	}
	var fs fileStats
	if err := json.Unmarshal([]byte(s), &fs); err != nil {
		return nil
	}
	return &fs
}

// mayContain reports whether the file can hold one of the changed keys.
func (p *keyPruner) mayContain(add *delta.Add) bool {
	var st *fileStats
	parsed := false
	for _, cv := range p.cols {
		if cv.part {
			if cv.parts == nil {
				continue
			}
			raw, ok := add.PartitionValues[cv.name]
			if !ok {
				continue
			}
			s, ok := canonicalPartition(cv.typ, raw)
			if !ok {
				continue
			}
			if s == "" { // null partition: only null keys, which never match
				return false
			}
			if !cv.parts[s] {
				return false
			}
			continue
		}
		if !parsed {
			st, parsed = parseStats(add.Stats), true
		}
		if st == nil {
			return true
		}
		if st.NumRecords != nil && *st.NumRecords == 0 {
			return false
		}
		lo, hasLo := st.MinValues[cv.name]
		hi, hasHi := st.MaxValues[cv.name]
		if !hasLo && !hasHi {
			// No bounds: all-null column files cannot match a non-null key.
			if nc, ok := st.NullCount[cv.name]; ok && st.NumRecords != nil && add.DeletionVector == nil {
				if n, err := strconv.ParseInt(string(nc), 10, 64); err == nil && n == *st.NumRecords {
					return false
				}
			}
			continue
		}
		if !cv.inRange(lo, hasLo, hi, hasHi) {
			return false
		}
	}
	return true
}

// inRange: is some changed value within the (possibly half-open) bounds?
func (cv *colValues) inRange(lo json.RawMessage, hasLo bool, hi json.RawMessage, hasHi bool) bool {
	switch cv.kind {
	case 'i', 'd', 't':
		min, max := int64(-1<<63), int64(1<<63-1)
		if hasLo {
			v, ok := cv.parseInt(lo, false)
			if !ok {
				return true
			}
			min = v
		}
		if hasHi {
			v, ok := cv.parseInt(hi, true)
			if !ok {
				return true
			}
			max = v
		}
		i, _ := slices.BinarySearch(cv.ints, min)
		return i < len(cv.ints) && cv.ints[i] <= max
	case 'f':
		min, max := math.Inf(-1), math.Inf(1)
		if hasLo {
			v, err := strconv.ParseFloat(string(bytes.TrimSpace(lo)), 64)
			if err != nil {
				return true
			}
			min = v
		}
		if hasHi {
			v, err := strconv.ParseFloat(string(bytes.TrimSpace(hi)), 64)
			if err != nil {
				return true
			}
			max = v
		}
		i, _ := slices.BinarySearch(cv.flts, min)
		return i < len(cv.flts) && cv.flts[i] <= max
	case 's':
		var min string
		if hasLo {
			if json.Unmarshal(lo, &min) != nil {
				return true
			}
		}
		i, _ := slices.BinarySearch(cv.strs, min)
		if i >= len(cv.strs) {
			return false
		}
		if !hasHi {
			return true
		}
		var max string
		if json.Unmarshal(hi, &max) != nil {
			return true
		}
		if utf8.RuneCountInString(max) >= 32 {
			// Possibly a truncated prefix (writers differ in how they
			// round it up): only the lower bound is trusted.
			return true
		}
		return cv.strs[i] <= max
	}
	return true
}

// parseInt reads an integer-like bound. Timestamps are truncated to
// milliseconds in stats, so an upper bound covers the whole millisecond.
func (cv *colValues) parseInt(raw json.RawMessage, upper bool) (int64, bool) {
	switch cv.kind {
	case 'i':
		v, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(string(bytes.TrimSpace(raw)), 64)
			if ferr != nil {
				return 0, false
			}
			v = int64(f)
		}
		return v, true
	case 'd':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		t, err := time.Parse("2006-01-02", s)
		if err != nil {
			return 0, false
		}
		return t.Unix() / 86400, true
	case 't':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		var t time.Time
		var err error
		if cv.typ.TypeName() == "timestamp_ntz" {
			t, err = time.Parse("2006-01-02T15:04:05.999999999", strings.TrimSuffix(s, "Z"))
		} else {
			t, err = time.Parse(time.RFC3339Nano, s)
		}
		if err != nil {
			return 0, false
		}
		us := t.UnixMicro()
		// Stats are truncated to milliseconds (and other writers may
		// round): widen both bounds by a millisecond.
		if upper {
			us += 1000
		} else {
			us -= 1000
		}
		return us, true
	}
	return 0, false
}

package change

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DMS record format: the JSON envelope AWS DMS writes to Kinesis, so that
// consumers written for DMS keep working (see DESIGN.md and the DMS target
// documentation). One change is one record:
//
//	{"data": {"id": 42, "name": "John"},
//	 "before-image": {"id": 41},                        (only when the old image was sent)
//	 "metadata": {
//	   "timestamp": "2024-07-29T00:58:44.886717Z",     (the commit time; DMS writes its own clock)
//	   "record-type": "data",                           ("control" for truncate)
//	   "operation": "insert",                           (load, insert, update, delete; truncate-table)
//	   "partition-key-type": "primary-key",
//	   "partition-key-value": "public.foo.42",
//	   "schema-name": "public", "table-name": "foo",
//	   "transaction-id": 1140, "transaction-record-id": 1,
//	   "commit-timestamp": "2024-07-29T00:58:44.886717Z",
//	   "stream-position": "00000002/7C007328.1.00000002/7C0073A0",
//	   "silt": {...}}}
//
// Values are typed as DMS types them: bool as true/false, integers, floats
// and numeric as JSON numbers (the exact PostgreSQL text, so no precision is
// lost; NaN and infinities as strings), everything else as the PostgreSQL
// text form in a string. A delete's data is the old image: the key, and
// null for columns the source did not send, as DMS does.
//
// DMS consumers ignore metadata keys they do not know; silt adds "silt"
// with what its own decoder needs to rebuild the change exactly: the
// commit and end LSN, the position, the relation (OID, columns with type
// OID, typmod and key flag), unchanged TOAST columns and, when sent, the
// full old image. DecodeDMS reads records without it too (written by DMS
// itself), with column types guessed from the JSON.

// DMSOptions say how to fill the partition key metadata.
type DMSOptions struct {
	// PartitionKeyType is the strategy name, e.g. "primary-key".
	PartitionKeyType string
	// Load marks snapshot rows: operation "load", no transaction fields.
	Load bool
}

type dmsSilt struct {
	Version   int          `json:"version"`
	LSN       string       `json:"lsn"`
	EndLSN    string       `json:"end-lsn"`
	Pos       uint32       `json:"pos"`
	RelID     uint32       `json:"relation-id"`
	Columns   []dmsColumn  `json:"columns"`
	Unchanged []string     `json:"unchanged,omitempty"`
	Old       *orderedJSON `json:"old,omitempty"`
}

type dmsColumn struct {
	Name    string `json:"name"`
	TypeOID uint32 `json:"type-oid"`
	TypeMod int32  `json:"typmod"`
	Key     bool   `json:"key,omitempty"`
}

// orderedJSON is a JSON object kept as raw bytes, so column order survives.
type orderedJSON struct{ raw []byte }

func (o orderedJSON) MarshalJSON() ([]byte, error) { return o.raw, nil }
func (o *orderedJSON) UnmarshalJSON(b []byte) error {
	o.raw = append([]byte(nil), b...)
	return nil
}

// PostgreSQL type OIDs that DMS writes as JSON numbers or booleans.
const (
	oidBool    = 16
	oidInt8    = 20
	oidInt2    = 21
	oidInt4    = 23
	oidText    = 25
	oidOID     = 26
	oidJSON    = 114
	oidFloat4  = 700
	oidFloat8  = 701
	oidNumeric = 1700
)

// AppendDMS appends the DMS JSON record of c to dst. partitionKey is the
// record's partition key, shown as partition-key-value.
func AppendDMS(dst []byte, c *Change, partitionKey []byte, opts DMSOptions) ([]byte, error) {
	op := map[Op]string{OpInsert: "insert", OpUpdate: "update", OpDelete: "delete", OpTruncate: "truncate-table"}[c.Op]
	if op == "" {
		return dst, fmt.Errorf("dms: encode: unknown operation %v", c.Op)
	}
	if opts.Load && c.Op == OpInsert {
		op = "load"
	}
	cols := c.Rel.Columns
	var b bytes.Buffer
	b.WriteString(`{"data":`)
	switch {
	case c.Op == OpTruncate:
		b.WriteString("null")
	case c.Op == OpDelete:
		writeImage(&b, cols, c.Old, true, nil)
	default:
		writeImage(&b, cols, c.New, false, nil)
	}
	if c.Old != nil && c.Op != OpDelete {
		b.WriteString(`,"before-image":`)
		writeImage(&b, cols, c.Old, false, func(i int) bool { return cols[i].Key })
	}
	ts := c.CommitTime.UTC().Format("2006-01-02T15:04:05.000000Z")
	recordType := "data"
	if c.Op == OpTruncate {
		recordType = "control"
	}
	b.WriteString(`,"metadata":{"timestamp":`)
	writeString(&b, ts)
	b.WriteString(`,"record-type":`)
	writeString(&b, recordType)
	b.WriteString(`,"operation":`)
	writeString(&b, op)
	b.WriteString(`,"partition-key-type":`)
	writeString(&b, opts.PartitionKeyType)
	b.WriteString(`,"partition-key-value":`)
	writeString(&b, strings.ReplaceAll(string(partitionKey), "\x00", "."))
	b.WriteString(`,"schema-name":`)
	writeString(&b, c.Rel.Table.Schema)
	b.WriteString(`,"table-name":`)
	writeString(&b, c.Rel.Table.Name)
	if !opts.Load {
		fmt.Fprintf(&b, `,"transaction-id":%d,"transaction-record-id":%d,"commit-timestamp":`, c.XID, uint64(c.Pos)+1)
		writeString(&b, ts)
		b.WriteString(`,"stream-position":`)
		writeString(&b, fmt.Sprintf("%08X/%08X.%d.%08X/%08X", uint32(c.LSN>>32), uint32(c.LSN), c.Pos, uint32(c.EndLSN>>32), uint32(c.EndLSN)))
	}
	s := dmsSilt{Version: 1, LSN: c.LSN.String(), EndLSN: c.EndLSN.String(), Pos: c.Pos, RelID: c.Rel.ID}
	for _, col := range cols {
		s.Columns = append(s.Columns, dmsColumn{Name: col.Name, TypeOID: col.TypeOID, TypeMod: col.TypeMod, Key: col.Key})
	}
	for i, d := range c.New {
		if d.Kind == Unchanged && i < len(cols) {
			s.Unchanged = append(s.Unchanged, cols[i].Name)
		}
	}
	if c.Old != nil {
		var ob bytes.Buffer
		writeImage(&ob, cols, c.Old, false, nil)
		s.Old = &orderedJSON{raw: ob.Bytes()}
	}
	sj, err := json.Marshal(s)
	if err != nil {
		return dst, fmt.Errorf("dms: encode: %w", err)
	}
	b.WriteString(`,"silt":`)
	b.Write(sj)
	b.WriteString("}}")
	return append(dst, b.Bytes()...), nil
}

// writeImage writes a row image as a JSON object in column order. Absent
// and unchanged columns are left out, unless nullAbsent (a delete, as DMS
// writes it: every column, null where not sent). keep, if set, selects
// columns.
func writeImage(b *bytes.Buffer, cols []Column, img []Datum, nullAbsent bool, keep func(int) bool) {
	b.WriteByte('{')
	first := true
	for i, col := range cols {
		if keep != nil && !keep(i) {
			continue
		}
		d := Datum{Kind: Absent}
		if i < len(img) {
			d = img[i]
		}
		if (d.Kind == Absent || d.Kind == Unchanged || d.Kind == 0) && !nullAbsent {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		writeString(b, col.Name)
		b.WriteByte(':')
		writeValue(b, col.TypeOID, d)
	}
	b.WriteByte('}')
}

func writeValue(b *bytes.Buffer, oid uint32, d Datum) {
	if d.Kind != Text {
		b.WriteString("null")
		return
	}
	v := string(d.Data)
	switch oid {
	case oidBool:
		switch v {
		case "t":
			b.WriteString("true")
			return
		case "f":
			b.WriteString("false")
			return
		}
	case oidInt2, oidInt4, oidInt8, oidOID, oidFloat4, oidFloat8, oidNumeric:
		if isJSONNumber(v) {
			b.WriteString(v)
			return
		}
	}
	writeString(b, v)
}

// isJSONNumber reports whether s is a number as JSON writes them
// (PostgreSQL's "1e+20" and "-0.5" are; "NaN", "Infinity", ".5" are not).
func isJSONNumber(s string) bool {
	if s == "" {
		return false
	}
	return json.Valid([]byte(s)) && (s[0] == '-' || s[0] >= '0' && s[0] <= '9')
}

func writeString(b *bytes.Buffer, s string) {
	j, _ := json.Marshal(s) // strings always marshal
	b.Write(j)
}

// dmsRecord is the envelope as read back.
type dmsRecord struct {
	Data        *orderedJSON `json:"data"`
	BeforeImage *orderedJSON `json:"before-image"`
	Metadata    struct {
		RecordType string   `json:"record-type"`
		Operation  string   `json:"operation"`
		Schema     string   `json:"schema-name"`
		Table      string   `json:"table-name"`
		XID        uint32   `json:"transaction-id"`
		RecordID   uint64   `json:"transaction-record-id"`
		CommitTime string   `json:"commit-timestamp"`
		Timestamp  string   `json:"timestamp"`
		StreamPos  string   `json:"stream-position"`
		Silt       *dmsSilt `json:"silt"`
	} `json:"metadata"`
}

// ErrNotDMS marks input that is not a DMS data record.
var ErrNotDMS = errors.New("not a DMS data record")

// DecodeDMS rebuilds a change from a DMS record. With silt's metadata the
// change is exactly the one encoded; without it (a record DMS wrote) the
// relation is built from the JSON: columns in data order, typed by their
// JSON values (number: numeric, true/false: bool, object or array: json,
// else text), key columns from before-image when present, LSN and position
// from stream-position and transaction-record-id. The relation is interned
// in cache when cache is not nil.
func DecodeDMS(b []byte, cache *RelationCache) (*Change, error) {
	var r dmsRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("dms: decode: %w: %w", ErrNotDMS, err)
	}
	m := &r.Metadata
	c := &Change{XID: m.XID}
	switch m.Operation {
	case "insert", "load":
		c.Op = OpInsert
	case "update":
		c.Op = OpUpdate
	case "delete":
		c.Op = OpDelete
	case "truncate-table", "TruncateTable":
		c.Op = OpTruncate
	default:
		return nil, fmt.Errorf("dms: decode: %w: record-type %q operation %q", ErrNotDMS, m.RecordType, m.Operation)
	}
	if m.Schema == "" || m.Table == "" {
		return nil, fmt.Errorf("dms: decode: %w: no schema-name or table-name", ErrNotDMS)
	}
	ts := m.CommitTime
	if ts == "" {
		ts = m.Timestamp
	}
	if ts != "" {
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return nil, fmt.Errorf("dms: decode: commit-timestamp %q: %w", ts, err)
		}
		c.CommitTime = t
	}
	data, err := objectFields(r.Data)
	if err != nil {
		return nil, fmt.Errorf("dms: decode data: %w", err)
	}
	before, err := objectFields(r.BeforeImage)
	if err != nil {
		return nil, fmt.Errorf("dms: decode before-image: %w", err)
	}
	rel := &Relation{Table: TableID{Schema: m.Schema, Name: m.Table}}
	var old []field
	if s := m.Silt; s != nil {
		if c.LSN, err = ParseLSN(s.LSN); err != nil {
			return nil, fmt.Errorf("dms: decode: %w", err)
		}
		if c.EndLSN, err = ParseLSN(s.EndLSN); err != nil {
			return nil, fmt.Errorf("dms: decode: %w", err)
		}
		c.Pos, rel.ID = s.Pos, s.RelID
		for _, col := range s.Columns {
			rel.Columns = append(rel.Columns, Column{Name: col.Name, TypeOID: col.TypeOID, TypeMod: col.TypeMod, Key: col.Key})
		}
		if old, err = objectFields(s.Old); err != nil {
			return nil, fmt.Errorf("dms: decode old image: %w", err)
		}
		if s.Old == nil {
			old = nil
		} else if old == nil && !bytes.Equal(bytes.TrimSpace(s.Old.raw), []byte("null")) {
			old = []field{} // an empty old image: every column absent (not "no old image")
		}
	} else {
		c.LSN, c.EndLSN, c.Pos = parseStreamPosition(m.StreamPos, m.RecordID)
		keys := map[string]bool{}
		for _, f := range before {
			keys[f.name] = true
		}
		for _, f := range data {
			rel.Columns = append(rel.Columns, Column{Name: f.name, TypeOID: guessOID(f.raw), TypeMod: -1, Key: keys[f.name]})
		}
		if len(before) > 0 {
			old = before
		}
	}
	img := func(fs []field, unchanged []string) ([]Datum, error) {
		out := make([]Datum, len(rel.Columns))
		for i := range out {
			out[i] = Datum{Kind: Absent}
		}
		for _, name := range unchanged {
			if i := columnIndex(rel, name); i >= 0 {
				out[i] = Datum{Kind: Unchanged}
			}
		}
		for _, f := range fs {
			i := columnIndex(rel, f.name)
			if i < 0 {
				return nil, fmt.Errorf("column %q is not in the relation", f.name)
			}
			d, err := datum(f.raw, rel.Columns[i].TypeOID)
			if err != nil {
				return nil, fmt.Errorf("column %q: %w", f.name, err)
			}
			out[i] = d
		}
		return out, nil
	}
	var unchanged []string
	if m.Silt != nil {
		unchanged = m.Silt.Unchanged
	}
	switch c.Op {
	case OpInsert, OpUpdate:
		if c.New, err = img(data, unchanged); err != nil {
			return nil, fmt.Errorf("dms: decode data: %w", err)
		}
		if old != nil {
			if c.Old, err = img(old, nil); err != nil {
				return nil, fmt.Errorf("dms: decode old image: %w", err)
			}
		}
	case OpDelete:
		src := data
		if old != nil && m.Silt != nil {
			src = old // exact: absent columns stay absent
		}
		if c.Old, err = img(src, nil); err != nil {
			return nil, fmt.Errorf("dms: decode data: %w", err)
		}
	}
	if cache != nil {
		rel = cache.intern(rel)
	}
	c.Rel = rel
	return c, nil
}

type field struct {
	name string
	raw  json.RawMessage
}

// objectFields reads a JSON object's fields in order; null gives none.
func objectFields(o *orderedJSON) ([]field, error) {
	if o == nil || bytes.Equal(bytes.TrimSpace(o.raw), []byte("null")) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(o.raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("want a JSON object, got %v", tok)
	}
	var out []field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		out = append(out, field{name: name, raw: raw})
	}
	return out, nil
}

func columnIndex(rel *Relation, name string) int {
	for i, c := range rel.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// datum turns a JSON value back into PostgreSQL text.
func datum(raw json.RawMessage, oid uint32) (Datum, error) {
	s := strings.TrimSpace(string(raw))
	switch {
	case s == "null":
		return Datum{Kind: Null}, nil
	case s == "true":
		return Datum{Kind: Text, Data: []byte("t")}, nil
	case s == "false":
		return Datum{Kind: Text, Data: []byte("f")}, nil
	case strings.HasPrefix(s, `"`):
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return Datum{}, err
		}
		return Datum{Kind: Text, Data: []byte(v)}, nil
	}
	// Numbers keep their exact text; objects and arrays (json columns of
	// records DMS wrote) their JSON text.
	return Datum{Kind: Text, Data: []byte(s)}, nil
}

func guessOID(raw json.RawMessage) uint32 {
	s := strings.TrimSpace(string(raw))
	switch {
	case s == "true" || s == "false":
		return oidBool
	case strings.HasPrefix(s, "{") || strings.HasPrefix(s, "["):
		return oidJSON
	case s != "" && (s[0] == '-' || s[0] >= '0' && s[0] <= '9'):
		return oidNumeric
	}
	return oidText
}

// parseStreamPosition reads DMS's "LSN.n.LSN" (the doc's example is
// "00000002/7C007328.2.00000002/7C007328"); pos comes from the 1-based
// transaction-record-id. Unparseable parts stay 0.
func parseStreamPosition(s string, recordID uint64) (lsn, end LSN, pos uint32) {
	parts := strings.Split(s, ".")
	if len(parts) >= 1 {
		lsn, _ = ParseLSN(parts[0])
	}
	if len(parts) >= 3 {
		end, _ = ParseLSN(parts[2])
	}
	if recordID > 0 {
		pos = uint32(recordID - 1)
	} else if len(parts) >= 2 {
		if n, err := strconv.ParseUint(parts[1], 10, 32); err == nil {
			pos = uint32(n)
		}
	}
	return lsn, end, pos
}

// DMSCodec transcodes stream records between silt's compact change record
// and the DMS JSON record (it fits stream.Codec). Safe for concurrent use.
type DMSCodec struct {
	// PartitionKeyType is written as partition-key-type.
	PartitionKeyType string
}

// Encode appends the DMS record of a compact change record to dst.
func (d *DMSCodec) Encode(dst, key, compact []byte) ([]byte, error) {
	c, err := Decode(compact, nil)
	if err != nil {
		return dst, fmt.Errorf("dms: encode: %w", err)
	}
	return AppendDMS(dst, c, key, DMSOptions{PartitionKeyType: d.PartitionKeyType})
}

// Decode appends the compact change record of a DMS record to dst.
func (d *DMSCodec) Decode(dst, stored []byte) ([]byte, error) {
	c, err := DecodeDMS(stored, nil)
	if err != nil {
		return dst, err
	}
	return AppendEncode(dst, c), nil
}

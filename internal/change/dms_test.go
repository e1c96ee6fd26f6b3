package change

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

var dmsRel = &Relation{ID: 16384, Table: TableID{Schema: "public", Name: "foo"}, Columns: []Column{
	{Name: "id", TypeOID: oidInt4, TypeMod: -1, Key: true},
	{Name: "name", TypeOID: oidText, TypeMod: -1},
	{Name: "ok", TypeOID: oidBool, TypeMod: -1},
	{Name: "price", TypeOID: oidNumeric, TypeMod: (10<<16 | 2) + 4},
	{Name: "ratio", TypeOID: oidFloat8, TypeMod: -1},
	{Name: "doc", TypeOID: 3802, TypeMod: -1}, // jsonb: a string in DMS JSON
	{Name: "big", TypeOID: oidText, TypeMod: -1},
}}

func tx(s string) Datum { return Datum{Kind: Text, Data: []byte(s)} }

func dmsChanges() []*Change {
	ct := time.Date(2024, 7, 29, 0, 58, 44, 886717000, time.UTC)
	base := Change{Rel: dmsRel, LSN: 0x2_7C007328, EndLSN: 0x2_7C0073A0, XID: 1140, CommitTime: ct}
	ins, upd, del, tr := base, base, base, base
	ins.Op, ins.Pos = OpInsert, 0
	ins.New = []Datum{tx("42"), tx("John \"J\" \u00e9"), tx("t"), tx("12.50"), tx("NaN"), tx(`{"a": [1, 2]}`), {Kind: Null}}
	upd.Op, upd.Pos = OpUpdate, 1
	upd.New = []Datum{tx("43"), tx("John"), tx("f"), tx("-0.01"), tx("1.5e-10"), {Kind: Null}, {Kind: Unchanged}}
	upd.Old = []Datum{tx("42"), {Kind: Absent}, {Kind: Absent}, {Kind: Absent}, {Kind: Absent}, {Kind: Absent}, {Kind: Absent}}
	del.Op, del.Pos = OpDelete, 2
	del.Old = []Datum{tx("43"), {Kind: Absent}, {Kind: Absent}, {Kind: Absent}, {Kind: Absent}, {Kind: Absent}, {Kind: Absent}}
	tr.Op, tr.Pos = OpTruncate, 3
	return []*Change{&ins, &upd, &del, &tr}
}

// TestDMSRoundTrip: decoding silt's DMS record gives back exactly the
// change (compared through the compact codec, which covers every field).
func TestDMSRoundTrip(t *testing.T) {
	var cache RelationCache
	for _, c := range dmsChanges() {
		b, err := AppendDMS(nil, c, []byte("public.foo\x0042"), DMSOptions{PartitionKeyType: "primary-key"})
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(b) {
			t.Fatalf("%v: invalid JSON %s", c.Op, b)
		}
		got, err := DecodeDMS(b, &cache)
		if err != nil {
			t.Fatalf("%v: DecodeDMS: %v\n%s", c.Op, err, b)
		}
		if want, have := AppendEncode(nil, c), AppendEncode(nil, got); !bytes.Equal(want, have) {
			t.Fatalf("%v: round trip differs\nrecord %s\nwant %+v\ngot  %+v", c.Op, b, c, got)
		}
	}
}

// TestDMSEnvelope checks the fields and value types a DMS consumer reads.
func TestDMSEnvelope(t *testing.T) {
	cs := dmsChanges()
	b, err := AppendDMS(nil, cs[0], []byte("public.foo\x0042"), DMSOptions{PartitionKeyType: "primary-key"})
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Data     map[string]any `json:"data"`
		Metadata map[string]any `json:"metadata"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	wantData := map[string]any{"id": 42.0, "name": "John \"J\" \u00e9", "ok": true, "price": 12.5, "ratio": "NaN", "doc": `{"a": [1, 2]}`, "big": nil}
	for k, v := range wantData {
		if env.Data[k] != v {
			t.Errorf("data[%s] = %#v, want %#v", k, env.Data[k], v)
		}
	}
	wantMeta := map[string]any{"record-type": "data", "operation": "insert", "partition-key-type": "primary-key",
		"partition-key-value": "public.foo.42", "schema-name": "public", "table-name": "foo", "transaction-id": 1140.0,
		"transaction-record-id": 1.0, "commit-timestamp": "2024-07-29T00:58:44.886717Z", "timestamp": "2024-07-29T00:58:44.886717Z",
		"stream-position": "00000002/7C007328.0.00000002/7C0073A0"}
	for k, v := range wantMeta {
		if env.Metadata[k] != v {
			t.Errorf("metadata[%s] = %#v, want %#v", k, env.Metadata[k], v)
		}
	}
	// A delete carries the key and null for the rest, as DMS writes it.
	b, _ = AppendDMS(nil, cs[2], nil, DMSOptions{PartitionKeyType: "primary-key"})
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	if env.Data["id"] != 43.0 || env.Data["name"] != nil || len(env.Data) != 7 || env.Metadata["operation"] != "delete" {
		t.Errorf("delete record: data %v metadata %v", env.Data, env.Metadata["operation"])
	}
	// A snapshot row is a "load", with no transaction fields.
	b, _ = AppendDMS(nil, cs[0], nil, DMSOptions{PartitionKeyType: "schema-table", Load: true})
	env.Metadata = nil
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	if env.Metadata["operation"] != "load" || env.Metadata["transaction-id"] != nil {
		t.Errorf("load record metadata %v", env.Metadata)
	}
}

// TestDecodeDMSEnvelopeFromDMS decodes the envelope DMS itself writes (the
// example in shared/docs/peers-and-pain-points.md, from a PostgreSQL source).
func TestDecodeDMSEnvelopeFromDMS(t *testing.T) {
	const rec = `{"data": {"id": 42, "name": "John", "age": 33},
 "before-image": {"id": 42},
 "metadata": {
   "timestamp": "2024-07-29T00:58:44.895275Z",
   "record-type": "data",
   "operation": "update",
   "partition-key-type": "schema-table",
   "partition-key-value": "public.foo.42",
   "schema-name": "public", "table-name": "foo",
   "transaction-id": 1140, "transaction-record-id": 1,
   "prev-transaction-id": 1139, "prev-transaction-record-id": 1,
   "commit-timestamp": "2024-07-29T00:58:44.886717Z",
   "stream-position": "00000002/7C007328.2.00000002/7C007328"}}`
	c, err := DecodeDMS([]byte(rec), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Op != OpUpdate || c.Rel.Table != (TableID{"public", "foo"}) || c.XID != 1140 || c.Pos != 0 ||
		c.LSN != 0x2_7C007328 || c.EndLSN != 0x2_7C007328 || !c.CommitTime.Equal(time.Date(2024, 7, 29, 0, 58, 44, 886717000, time.UTC)) {
		t.Fatalf("decoded %+v", c)
	}
	var names []string
	for _, col := range c.Rel.Columns {
		names = append(names, col.Name)
	}
	if len(names) != 3 || names[0] != "id" || names[2] != "age" || !c.Rel.Columns[0].Key || c.Rel.Columns[1].Key ||
		c.Rel.Columns[0].TypeOID != oidNumeric || c.Rel.Columns[1].TypeOID != oidText {
		t.Fatalf("relation %+v", c.Rel.Columns)
	}
	if string(c.New[0].Data) != "42" || string(c.New[1].Data) != "John" || string(c.New[2].Data) != "33" {
		t.Fatalf("new image %+v", c.New)
	}
	if c.Old == nil || string(c.Old[0].Data) != "42" || c.Old[1].Kind != Absent {
		t.Fatalf("old image %+v", c.Old)
	}
	// A DMS delete: the key and nulls.
	del := `{"data":{"id":7,"name":null},"metadata":{"record-type":"data","operation":"delete","schema-name":"s","table-name":"t","transaction-id":9,"transaction-record-id":3}}`
	c, err = DecodeDMS([]byte(del), nil)
	if err != nil || c.Op != OpDelete || c.Pos != 2 || string(c.Old[0].Data) != "7" || c.Old[1].Kind != Null {
		t.Fatalf("delete: %+v, %v", c, err)
	}
}

func TestDecodeDMSRejects(t *testing.T) {
	for _, bad := range []string{
		``, `not json`, `[]`,
		`{"metadata":{"record-type":"control","operation":"create-table","schema-name":"s","table-name":"t"}}`,
		`{"data":{},"metadata":{"operation":"insert"}}`,
		`{"data":[1],"metadata":{"operation":"insert","schema-name":"s","table-name":"t"}}`,
		`{"data":{"x":1},"metadata":{"operation":"insert","schema-name":"s","table-name":"t","commit-timestamp":"yesterday"}}`,
		`{"data":{"nope":1},"metadata":{"operation":"insert","schema-name":"s","table-name":"t","silt":{"version":1,"lsn":"0/1","end-lsn":"0/2","columns":[{"name":"x","type-oid":23}]}}}`,
	} {
		if _, err := DecodeDMS([]byte(bad), nil); err == nil {
			t.Errorf("DecodeDMS(%q) succeeded", bad)
		}
	}
	if _, err := DecodeDMS([]byte(`{"metadata":{"operation":"x"}}`), nil); !errors.Is(err, ErrNotDMS) {
		t.Errorf("unknown operation: %v, want ErrNotDMS", err)
	}
}

// FuzzDecodeDMS: never panics; what decodes re-encodes and decodes to the
// same change.
func FuzzDecodeDMS(f *testing.F) {
	for _, c := range dmsChanges() {
		b, _ := AppendDMS(nil, c, []byte("k"), DMSOptions{PartitionKeyType: "primary-key"})
		f.Add(b)
	}
	f.Add([]byte(`{"data":{"id":7,"name":null},"metadata":{"operation":"delete","schema-name":"s","table-name":"t"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeDMS(b, nil)
		if err != nil {
			return
		}
		enc, err := AppendDMS(nil, c, nil, DMSOptions{})
		if err != nil {
			return // an operation AppendDMS cannot express is fine to refuse
		}
		c2, err := DecodeDMS(enc, nil)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v\n%s", err, enc)
		}
		if !bytes.Equal(AppendEncode(nil, c), AppendEncode(nil, c2)) {
			t.Fatalf("re-encoding changed the change\n%s\n%s", b, enc)
		}
	})
}

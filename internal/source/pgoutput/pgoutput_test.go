package pgoutput

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/change"
)

var update = flag.Bool("update", false, "rewrite golden files")

// captured returns the messages recorded by TestCapture.
func captured(t testing.TB) [][]byte {
	t.Helper()
	f, err := os.Open("testdata/" + captureFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var msgs [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		b, err := hex.DecodeString(line)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, b)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// TestGolden decodes every captured message and compares a dump with
// testdata/pg15-messages.golden (rewrite with -update, review the diff).
// It also checks that re-encoding gives back the exact bytes.
func TestGolden(t *testing.T) {
	var out strings.Builder
	seen := map[byte]bool{}
	for i, b := range captured(t) {
		m, err := Decode(b)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		seen[m.MessageType()] = true
		if got := encode(m); !bytes.Equal(got, b) {
			t.Errorf("message %d: re-encoding differs:\n got %x\nwant %x", i, got, b)
		}
		out.WriteString(dump(m))
		out.WriteByte('\n')
	}
	for _, typ := range []byte("BCORYIUDTM") {
		if !seen[typ] {
			t.Errorf("capture has no %s message", typeName(typ))
		}
	}
	const golden = "testdata/pg15-messages.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(want) {
		t.Errorf("dump differs from %s (run with -update and review):\n%s", golden, out.String())
	}
}

// TestTruncated checks that every strict prefix of every captured message
// fails with ErrMalformed, as does each message with a trailing byte.
func TestTruncated(t *testing.T) {
	for i, b := range captured(t) {
		for n := 0; n < len(b); n++ {
			m, err := Decode(b[:n])
			if err == nil {
				t.Fatalf("message %d cut to %d bytes: decoded %s", i, n, dump(m))
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("message %d cut to %d bytes: %v is not ErrMalformed", i, n, err)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("not a *DecodeError: %T", err)
			}
		}
		if _, err := Decode(append(bytes.Clone(b), 0)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("message %d with a trailing byte: err = %v", i, err)
		}
	}
}

func TestDecodeHandBuilt(t *testing.T) {
	msgs := handBuiltSeeds()
	for _, want := range msgs {
		b := encode(want)
		got, err := Decode(b)
		if err != nil {
			t.Errorf("%s: %v", dump(want), err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("decoded %#v, want %#v", got, want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty message"},
		{"unknown type", []byte("Zabc"), "unknown message type"},
		{"stream start (proto 2)", []byte("S\x00\x00\x00\x01\x01"), "unknown message type"},
		{"begin short", []byte("B\x00\x00"), "truncated reading final LSN"},
		{"origin unterminated", append(encode(&Origin{})[:9], 'x'), "unterminated origin name"},
		{"insert bad marker", []byte("I\x00\x00\x00\x01X\x00\x00"), "expected new tuple marker 'N'"},
		{"delete bad marker", []byte("D\x00\x00\x00\x01N\x00\x00"), "expected old tuple marker"},
		{"update bad marker", []byte("U\x00\x00\x00\x01K\x00\x00X\x00\x00"), "expected new tuple marker"},
		{"binary datum", []byte("I\x00\x00\x00\x01N\x00\x01b\x00\x00\x00\x00"), "unsupported tuple column kind 0x62"},
		{"huge tuple count", []byte("I\x00\x00\x00\x01N\xff\xff"), "tuple column count 65535 exceeds"},
		{"huge value length", []byte("I\x00\x00\x00\x01N\x00\x01t\xff\xff\xff\xff"), "column value length 4294967295 exceeds"},
		{"huge relation columns", append(encode(&Relation{Namespace: "a", Name: "b"})[:len(encode(&Relation{Namespace: "a", Name: "b"}))-2], 0xff, 0xff), "column count 65535 exceeds"},
		{"huge truncate count", []byte("T\xff\xff\xff\xff\x00"), "relation count 4294967295 exceeds"},
		{"huge message content", append(encode(&LogicalMessage{Prefix: "p"})[:len(encode(&LogicalMessage{Prefix: "p"}))-4], 0x7f, 0, 0, 0), "content length 2130706432 exceeds"},
		{"trailing", append(encode(&Begin{}), 1), "1 trailing bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Decode(c.in)
			if err == nil {
				t.Fatalf("decoded %s", dump(m))
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrMalformed containing %q", err, c.want)
			}
		})
	}
}

func TestDecodeAliasesInput(t *testing.T) {
	b := encode(&Insert{RelationID: 1, New: Tuple{{Kind: change.Text, Data: []byte("abc")}}})
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	d := m.(*Insert).New[0].Data
	if cap(d) != len(d) {
		t.Errorf("datum capacity %d not clipped to length %d", cap(d), len(d))
	}
	b[len(b)-1] = 'X'
	if string(d) != "abX" {
		t.Errorf("datum does not alias the input: %q", d)
	}
}

func TestParseFrame(t *testing.T) {
	ts := time.Date(2024, 1, 1, 0, 0, 0, 1000, time.UTC)
	for _, want := range []Frame{
		&XLogData{WALStart: 1, ServerEnd: 2, SendTime: ts, Data: []byte("Bxyz")},
		&XLogData{WALStart: 1, ServerEnd: 2, SendTime: ts, Data: []byte{}},
		&Keepalive{ServerEnd: 3, SendTime: ts, ReplyRequested: true},
		&Keepalive{ServerEnd: 3, SendTime: ts},
	} {
		b := encodeFrame(want)
		got, err := ParseFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %#v, want %#v", got, want)
		}
		for n := 0; n < len(b); n++ {
			if x, ok := want.(*XLogData); ok && n >= len(b)-len(x.Data) {
				break // a shorter payload is still a valid frame
			}
			if _, err := ParseFrame(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Errorf("%T cut to %d bytes: err = %v", want, n, err)
			}
		}
	}
	if _, err := ParseFrame(append(encodeFrame(&Keepalive{SendTime: ts}), 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("keepalive with trailing byte: %v", err)
	}
	if _, err := ParseFrame([]byte("r")); !errors.Is(err, ErrMalformed) {
		t.Errorf("unknown frame: %v", err)
	}
}

func TestRelationCache(t *testing.T) {
	var c RelationCache
	if _, err := c.Lookup(5); !errors.Is(err, ErrUnknownRelation) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("Lookup unknown: %v", err)
	}
	msg := &Relation{ID: 5, Namespace: "public", Name: "t", ReplicaIdentity: IdentityDefault, Columns: []RelationColumn{
		{Flags: 1, Name: "id", TypeOID: 23, TypeMod: -1}, {Name: "v", TypeOID: 25, TypeMod: -1},
	}}
	r1 := c.Apply(msg)
	want := &change.Relation{ID: 5, Table: change.TableID{Schema: "public", Name: "t"}, Columns: []change.Column{
		{Name: "id", TypeOID: 23, TypeMod: -1, Key: true}, {Name: "v", TypeOID: 25, TypeMod: -1},
	}}
	if !reflect.DeepEqual(r1, want) {
		t.Fatalf("got %#v", r1)
	}
	if r2 := c.Apply(msg); r2 != r1 {
		t.Error("same shape gave a new *Relation")
	}
	msg2 := *msg
	msg2.Columns = append(msg2.Columns, RelationColumn{Name: "w", TypeOID: 23, TypeMod: -1})
	r3 := c.Apply(&msg2)
	if r3 == r1 || len(r3.Columns) != 3 || len(r1.Columns) != 2 {
		t.Error("changed shape did not give a new *Relation, or changed the old one")
	}
	if got, _ := c.Lookup(5); got != r3 {
		t.Error("Lookup does not return the latest relation")
	}

	// REPLICA IDENTITY FULL flags every column; Keys supplies the real key.
	full := &Relation{ID: 6, Namespace: "public", Name: "f", ReplicaIdentity: IdentityFull, Columns: []RelationColumn{
		{Flags: 1, Name: "id", TypeOID: 23}, {Flags: 1, Name: "v", TypeOID: 25},
	}}
	if r := c.Apply(full); !r.Columns[0].Key || !r.Columns[1].Key {
		t.Error("without Keys, FULL should follow the flags")
	}
	c.Keys = func(tb change.TableID) []string {
		if tb.Name == "f" {
			return []string{"id"}
		}
		return nil
	}
	if r := c.Apply(full); !r.Columns[0].Key || r.Columns[1].Key {
		t.Errorf("with Keys: %+v", r.Columns)
	}
	c.Reset()
	if _, ok := c.Get(5); ok {
		t.Error("Reset kept relations")
	}
}

func BenchmarkDecodeInsert(b *testing.B) {
	msg := encode(&Insert{RelationID: 1, New: Tuple{
		{Kind: change.Text, Data: []byte("12345")},
		{Kind: change.Text, Data: []byte("some text value")},
		{Kind: change.Null},
		{Kind: change.Text, Data: []byte("2024-01-02 03:04:05+00")},
	}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecoderInsertAllocs(t *testing.T) {
	msg := encode(&Insert{RelationID: 1, New: Tuple{{Kind: change.Text, Data: []byte("1")}, {Kind: change.Null}}})
	var d Decoder
	n := 0
	if a := testing.AllocsPerRun(1000, func() {
		if _, err := d.Decode(msg); err != nil {
			t.Fatal(err)
		}
		if n++; n%100 == 0 {
			d.Release()
		}
	}); a != 0 {
		t.Errorf("Decoder.Decode(Insert) allocates %v times, want 0 (slabs reused after Release)", a)
	}
	frame := encodeFrame(&XLogData{WALStart: 1, ServerEnd: 2, SendTime: time.Unix(1, 0), Data: msg})
	if a := testing.AllocsPerRun(100, func() { _, _ = ParseXLogData(frame) }); a != 0 {
		t.Errorf("ParseXLogData allocates %v times, want 0", a)
	}
}

func BenchmarkDecoderInsert(b *testing.B) {
	msg := encode(&Insert{RelationID: 1, New: Tuple{
		{Kind: change.Text, Data: []byte("12345")},
		{Kind: change.Text, Data: []byte("some text value")},
		{Kind: change.Null},
		{Kind: change.Text, Data: []byte("2024-01-02 03:04:05+00")},
	}})
	b.ReportAllocs()
	var d Decoder
	n := 0
	for b.Loop() {
		if _, err := d.Decode(msg); err != nil {
			b.Fatal(err)
		}
		if n++; n%1000 == 0 {
			d.Release()
		}
	}
}

func TestDecodeInsertAllocs(t *testing.T) {
	msg := encode(&Insert{RelationID: 1, New: Tuple{{Kind: change.Text, Data: []byte("1")}, {Kind: change.Null}}})
	if n := testing.AllocsPerRun(100, func() { _, _ = Decode(msg) }); n > 3 {
		t.Errorf("Decode(Insert) allocates %v times, want <= 3 (reader, message, tuple)", n)
	}
}

func handBuiltSeeds() []Message {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	text := func(s string) change.Datum { return change.Datum{Kind: change.Text, Data: []byte(s)} }
	null := change.Datum{Kind: change.Null}
	unch := change.Datum{Kind: change.Unchanged}
	return []Message{
		&Begin{FinalLSN: 0x16B374D848, CommitTime: ts, XID: 42},
		&Commit{CommitLSN: 0x16B374D848, EndLSN: 0x16B374D878, CommitTime: ts},
		&Origin{CommitLSN: 7, Name: "up"},
		&Relation{ID: 16384, Namespace: "public", Name: "t", ReplicaIdentity: IdentityDefault, Columns: []RelationColumn{
			{Flags: 1, Name: "id", TypeOID: 23, TypeMod: -1},
			{Name: "v", TypeOID: 1043, TypeMod: 14},
		}},
		&Relation{ID: 1, Namespace: "s", Name: "empty", ReplicaIdentity: IdentityNothing, Columns: []RelationColumn{}},
		&Type{OID: 99999, Namespace: "public", Name: "mood"},
		&Insert{RelationID: 16384, New: Tuple{text("1"), null}},
		&Insert{RelationID: 16384, New: Tuple{}},
		&Update{RelationID: 16384, New: Tuple{text("1"), unch}},
		&Update{RelationID: 16384, OldKind: 'K', Old: Tuple{text("1"), null}, New: Tuple{text("2"), text("")}},
		&Update{RelationID: 16384, OldKind: 'O', Old: Tuple{text("1"), text("a")}, New: Tuple{text("1"), text("b")}},
		&Delete{RelationID: 16384, OldKind: 'K', Old: Tuple{text("1"), null}},
		&Delete{RelationID: 16384, OldKind: 'O', Old: Tuple{text("1"), text("a")}},
		&Truncate{Options: TruncateCascade | TruncateRestartIdentity, RelationIDs: []uint32{1, 2, 3}},
		&LogicalMessage{Flags: 1, LSN: 99, Prefix: "silt", Content: []byte("hello\x00world")},
		&LogicalMessage{Prefix: "", Content: []byte{}},
	}
}

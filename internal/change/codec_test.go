package change

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

func sample() *Change {
	rel := &Relation{ID: 16384, Table: TableID{"public", "readings"}, Columns: []Column{
		{Name: "tag_id", TypeOID: 23, TypeMod: -1, Key: true},
		{Name: "ts", TypeOID: 1184, TypeMod: -1, Key: true},
		{Name: "value", TypeOID: 701, TypeMod: -1},
		{Name: "note", TypeOID: 25, TypeMod: -1},
	}}
	return &Change{Rel: rel, Op: OpUpdate, LSN: 0x16B374D848, Pos: 7, EndLSN: 0x16B374D900, XID: 991,
		CommitTime: time.UnixMicro(1767225600123456).UTC(),
		New:        []Datum{{Text, []byte("42")}, {Text, []byte("2026-01-01 00:00:00+00")}, {Null, nil}, {Unchanged, nil}},
		Old:        []Datum{{Text, []byte("41")}, {Text, []byte("2026-01-01 00:00:00+00")}, {Absent, nil}, {Absent, nil}},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	c := sample()
	b := AppendEncode(nil, c)
	var cache RelationCache
	got, err := Decode(b, &cache)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip:\n got  %+v\n want %+v", got, c)
	}
	got2, _ := Decode(AppendEncode(nil, c), &cache)
	if got2.Rel != got.Rel {
		t.Fatal("equal relations must be interned to one pointer")
	}
	c.Old = nil
	c.Op = OpInsert
	got3, err := Decode(AppendEncode(nil, c), nil)
	if err != nil || got3.Old != nil {
		t.Fatalf("insert without old image: %v %+v", err, got3)
	}
}

func TestCodecRejectsTruncated(t *testing.T) {
	b := AppendEncode(nil, sample())
	for i := 0; i < len(b); i++ {
		if _, err := Decode(b[:i], nil); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("prefix of %d/%d bytes: err %v, want ErrCorrupt", i, len(b), err)
		}
	}
	if _, err := Decode(append(b, 0), nil); !errors.Is(err, ErrCorrupt) {
		t.Fatal("trailing byte accepted")
	}
}

func TestLSN(t *testing.T) {
	l, err := ParseLSN("16/B374D848")
	if err != nil || l != 0x16B374D848 || l.String() != "16/B374D848" {
		t.Fatalf("%v %v %s", l, err, l)
	}
	for _, bad := range []string{"", "1", "x/1", "1/x", "1/100000000"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) accepted", bad)
		}
	}
}

func FuzzDecodeChange(f *testing.F) {
	f.Add(AppendEncode(nil, sample()))
	c := sample()
	c.Old = nil
	f.Add(AppendEncode(nil, c))
	f.Add([]byte{1, 'I'})
	// Shared across inputs: relations decoded through cache repeat as one
	// pointer, so enc reuses the relation sections it encoded before.
	var cache RelationCache
	var enc Encoder
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b, nil)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		// What decodes re-encodes to something that decodes the same, and
		// re-encoding that is stable (varints may be non-minimal in the input).
		re := AppendEncode(nil, c)
		c2, err := Decode(re, nil)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("decode(encode(c)) != c:\n %+v\n %+v", c, c2)
		}
		if re2 := AppendEncode(nil, c2); !bytes.Equal(re, re2) {
			t.Fatal("encoding is not stable")
		}
		c3, err := Decode(re, &cache)
		if err != nil {
			t.Fatalf("re-encoded record does not decode with a cache: %v", err)
		}
		if got := enc.AppendEncode([]byte{9}, c3); !bytes.Equal(got[1:], re) || got[0] != 9 {
			t.Fatalf("Encoder.AppendEncode differs from AppendEncode:\n %x\n %x", got[1:], re)
		}
	})
}

// TestEncoderMatchesAppendEncode: an Encoder reused over records of several
// relations (one of them with a changed shape: a new *Relation) writes
// exactly what AppendEncode writes.
func TestEncoderMatchesAppendEncode(t *testing.T) {
	a := sample()
	b := sample()
	b.Rel = &Relation{ID: 99, Table: TableID{"s", "other"}, Columns: []Column{{Name: "k", TypeOID: 20, TypeMod: -1, Key: true}}}
	b.New, b.Old, b.Op = []Datum{{Text, []byte("7")}}, nil, OpInsert
	altered := *a.Rel
	altered.Columns = append(append([]Column(nil), a.Rel.Columns...), Column{Name: "added", TypeOID: 25, TypeMod: -1})
	c := sample()
	c.Rel = &altered
	c.New = append(c.New, Datum{Text, []byte("x")})
	c.Old = nil
	var enc Encoder
	var got, want []byte
	for i, ch := range []*Change{a, b, a, c, b, c, a} {
		ch.Pos = uint32(i)
		got = enc.AppendEncode(got, ch)
		want = AppendEncode(want, ch)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Encoder output differs:\n got  %x\n want %x", got, want)
	}
	if len(enc.rels) != 3 {
		t.Fatalf("Encoder caches %d relation sections, want 3", len(enc.rels))
	}
}

func BenchmarkEncode(b *testing.B) {
	c := sample()
	buf := make([]byte, 0, 4096)
	b.Run("AppendEncode", func(b *testing.B) {
		for b.Loop() {
			buf = AppendEncode(buf[:0], c)
		}
	})
	b.Run("Encoder", func(b *testing.B) {
		var enc Encoder
		for b.Loop() {
			buf = enc.AppendEncode(buf[:0], c)
		}
	})
}

func TestDecodeWithCacheAllocatesLittle(t *testing.T) {
	b := AppendEncode(nil, sample())
	var cache RelationCache
	if _, err := Decode(b, &cache); err != nil {
		t.Fatal(err)
	}
	// The Change, its new image and its old image; the relation is shared.
	if a := testing.AllocsPerRun(100, func() { Decode(b, &cache) }); a > 3 {
		t.Fatalf("Decode allocates %v times per record with a warm cache, want <= 3", a)
	}
}

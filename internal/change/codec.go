package change

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Record format (version 1), as carried in one stream record:
//
//	u8   version (1)
//	u8   op
//	u64  LSN            (big endian)
//	u32  Pos
//	u64  EndLSN
//	u32  XID
//	i64  CommitTime, microseconds since the Unix epoch (UTC)
//	u32  relation OID
//	str  schema          (str = uvarint length + bytes)
//	str  table
//	uvarint ncols
//	  per column: str name, u32 type OID, i32 typmod, u8 key flag
//	u8   has old image (0/1)
//	  images: per column u8 kind, and for kind 't' a str value; new image first, then old.
//
// The relation is carried in every record: records stay self-describing, so
// a reader needs no schema registry and a schema change never makes an old
// record unreadable.

const codecVersion = 1

// ErrCorrupt marks a record that cannot be decoded.
var ErrCorrupt = errors.New("corrupt change record")

// AppendEncode appends the encoding of c to dst.
func AppendEncode(dst []byte, c *Change) []byte {
	dst = appendHeader(dst, c)
	dst = appendRelation(dst, c.Rel)
	return appendImages(dst, c)
}

// Encoder is AppendEncode for a sequence of records: the relation section
// of each *Relation is encoded once and copied into later records of the
// same *Relation (relations are immutable, and the capture side hands out
// one pointer per table shape). The output is byte for byte AppendEncode's.
// The zero value is ready to use. Not safe for concurrent use.
type Encoder struct {
	rels map[*Relation][]byte
}

// maxEncodedRelations bounds an Encoder's cache; past it the cache starts
// over (a new *Relation appears only on a schema change).
const maxEncodedRelations = 4096

// AppendEncode appends the encoding of c to dst.
func (e *Encoder) AppendEncode(dst []byte, c *Change) []byte {
	dst = appendHeader(dst, c)
	sec, ok := e.rels[c.Rel]
	if !ok {
		if e.rels == nil || len(e.rels) >= maxEncodedRelations {
			e.rels = make(map[*Relation][]byte)
		}
		sec = appendRelation(nil, c.Rel)
		e.rels[c.Rel] = sec
	}
	dst = append(dst, sec...)
	return appendImages(dst, c)
}

// appendHeader appends version, op, LSN, Pos, EndLSN, XID and commit time.
func appendHeader(dst []byte, c *Change) []byte {
	dst = append(dst, codecVersion, byte(c.Op))
	dst = binary.BigEndian.AppendUint64(dst, uint64(c.LSN))
	dst = binary.BigEndian.AppendUint32(dst, c.Pos)
	dst = binary.BigEndian.AppendUint64(dst, uint64(c.EndLSN))
	dst = binary.BigEndian.AppendUint32(dst, c.XID)
	return binary.BigEndian.AppendUint64(dst, uint64(c.CommitTime.UnixMicro()))
}

// appendRelation appends the relation section: OID, schema, table, columns.
func appendRelation(dst []byte, rel *Relation) []byte {
	dst = binary.BigEndian.AppendUint32(dst, rel.ID)
	dst = appendStr(dst, rel.Table.Schema)
	dst = appendStr(dst, rel.Table.Name)
	dst = binary.AppendUvarint(dst, uint64(len(rel.Columns)))
	for _, col := range rel.Columns {
		dst = appendStr(dst, col.Name)
		dst = binary.BigEndian.AppendUint32(dst, col.TypeOID)
		dst = binary.BigEndian.AppendUint32(dst, uint32(col.TypeMod))
		if col.Key {
			dst = append(dst, 1)
		} else {
			dst = append(dst, 0)
		}
	}
	return dst
}

// appendImages appends the old-image flag, the new image and the old one.
func appendImages(dst []byte, c *Change) []byte {
	if c.Old != nil {
		dst = append(dst, 1)
	} else {
		dst = append(dst, 0)
	}
	dst = appendImage(dst, c.New, len(c.Rel.Columns))
	if c.Old != nil {
		dst = appendImage(dst, c.Old, len(c.Rel.Columns))
	}
	return dst
}

func appendImage(dst []byte, img []Datum, n int) []byte {
	for i := 0; i < n; i++ {
		if i >= len(img) {
			dst = append(dst, byte(Absent))
			continue
		}
		d := img[i]
		k := d.Kind
		if k == 0 {
			k = Absent
		}
		dst = append(dst, byte(k))
		if k == Text {
			dst = binary.AppendUvarint(dst, uint64(len(d.Data)))
			dst = append(dst, d.Data...)
		}
	}
	return dst
}

func appendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated at %s", ErrCorrupt, what)
	}
}

func (d *decoder) u8(what string) byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) flag(what string) bool {
	v := d.u8(what)
	if v > 1 && d.err == nil {
		d.err = fmt.Errorf("%w: %s is %d, want 0 or 1", ErrCorrupt, what, v)
	}
	return v == 1
}

func (d *decoder) u32(what string) uint32 {
	if d.err != nil || len(d.b) < 4 {
		d.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) u64(what string) uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(what string) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// Decode decodes one record. The returned Change's datums alias b; the
// caller must not modify b while the Change is in use. Relations are
// interned through cache (may be nil) so that records of one table share one
// *Relation.
func Decode(b []byte, cache *RelationCache) (*Change, error) {
	d := decoder{b: b}
	if v := d.u8("version"); d.err == nil && v != codecVersion {
		return nil, fmt.Errorf("%w: unknown version %d", ErrCorrupt, v)
	}
	c := &Change{}
	c.Op = Op(d.u8("op"))
	c.LSN = LSN(d.u64("lsn"))
	c.Pos = d.u32("pos")
	c.EndLSN = LSN(d.u64("end lsn"))
	c.XID = d.u32("xid")
	c.CommitTime = time.UnixMicro(int64(d.u64("commit time"))).UTC()
	// The relation section: with a cache, a section seen before (same bytes)
	// maps to the same *Relation without allocating its strings again.
	relStart := d.b
	relID := d.u32("relation id")
	schemaB := d.bytes("schema")
	tableB := d.bytes("table")
	n := d.uvarint("column count")
	if d.err != nil {
		return nil, d.err
	}
	if n > uint64(len(d.b)) { // each column needs at least 10 bytes
		return nil, fmt.Errorf("%w: column count %d too large", ErrCorrupt, n)
	}
	colStart := d.b
	for i := uint64(0); i < n; i++ {
		d.bytes("column name")
		d.u32("type oid")
		d.u32("typmod")
		d.flag("key flag")
	}
	if d.err != nil {
		return nil, d.err
	}
	section := relStart[:len(relStart)-len(d.b)]
	var rel *Relation
	if cache != nil {
		rel = cache.bySection[string(section)] // no allocation for the lookup
	}
	if rel == nil {
		rel = &Relation{ID: relID, Table: TableID{Schema: string(schemaB), Name: string(tableB)}, Columns: make([]Column, n)}
		cd := decoder{b: colStart}
		for i := range rel.Columns {
			rel.Columns[i].Name = string(cd.bytes("column name"))
			rel.Columns[i].TypeOID = cd.u32("type oid")
			rel.Columns[i].TypeMod = int32(cd.u32("typmod"))
			rel.Columns[i].Key = cd.flag("key flag")
		}
		if cache != nil {
			rel = cache.intern(rel)
			if len(cache.bySection) < maxCachedSections {
				cache.bySection[string(section)] = rel
			}
		}
	}
	hasOld := d.flag("old flag")
	c.New = d.image(int(n))
	if hasOld {
		c.Old = d.image(int(n))
	}
	if d.err != nil {
		return nil, d.err
	}
	if !c.Op.Valid() {
		return nil, fmt.Errorf("%w: unknown op %d", ErrCorrupt, c.Op)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	c.Rel = rel
	return c, nil
}

func (d *decoder) image(n int) []Datum {
	img := make([]Datum, n)
	for i := range img {
		k := DatumKind(d.u8("datum kind"))
		switch k {
		case Null, Unchanged, Absent:
			img[i].Kind = k
		case Text:
			img[i] = Datum{Kind: Text, Data: d.bytes("datum")}
		default:
			if d.err == nil {
				d.err = fmt.Errorf("%w: unknown datum kind %d", ErrCorrupt, k)
			}
			return img
		}
	}
	return img
}

// RelationCache interns decoded relations so equal relations share a pointer.
// Not safe for concurrent use.
type RelationCache struct {
	m         map[TableID][]*Relation
	bySection map[string]*Relation // encoded relation section -> relation
}

// maxCachedSections bounds the section map (a section per relation shape).
const maxCachedSections = 4096

func (rc *RelationCache) intern(r *Relation) *Relation {
	if rc.m == nil {
		rc.m = make(map[TableID][]*Relation)
		rc.bySection = make(map[string]*Relation)
	}
	for _, have := range rc.m[r.Table] {
		if sameRelation(have, r) {
			return have
		}
	}
	rc.m[r.Table] = append(rc.m[r.Table], r)
	return r
}

func sameRelation(a, b *Relation) bool {
	if a.ID != b.ID || len(a.Columns) != len(b.Columns) {
		return false
	}
	for i := range a.Columns {
		if a.Columns[i] != b.Columns[i] {
			return false
		}
	}
	return true
}

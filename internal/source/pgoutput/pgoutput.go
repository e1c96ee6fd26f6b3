// Package pgoutput decodes the messages of PostgreSQL's pgoutput logical
// decoding plugin, protocol version 1, and the replication frames that carry
// them. It does no I/O: bytes in, a message or an error out.
//
// # Frames
//
// In COPY BOTH mode the walsender sends CopyData messages whose payload is
// one frame (ParseFrame):
//
//	XLogData            'w' u64 walStart, u64 walEnd, i64 sendTime, payload...
//	Primary keepalive   'k' u64 walEnd, i64 sendTime, u8 replyRequested
//
// The XLogData payload is one pgoutput message (Decode).
//
// # Messages (protocol 1; integers are big endian, str is NUL-terminated)
//
//	Begin     'B' u64 finalLSN, i64 commitTime, u32 xid
//	Commit    'C' u8 flags, u64 commitLSN, u64 endLSN, i64 commitTime
//	Origin    'O' u64 originCommitLSN, str name
//	Relation  'R' u32 relid, str namespace, str name, u8 replicaIdentity,
//	              u16 ncols, ncols × (u8 flags, str name, u32 typeOID, i32 typmod)
//	Type      'Y' u32 typeOID, str namespace, str name
//	Insert    'I' u32 relid, 'N' tuple
//	Update    'U' u32 relid, ['K' tuple | 'O' tuple], 'N' tuple
//	Delete    'D' u32 relid, ('K' | 'O') tuple
//	Truncate  'T' u32 nrels, u8 options, nrels × u32 relid
//	Message   'M' u8 flags, u64 lsn, str prefix, u32 n, n bytes content
//
//	tuple     u16 ncols, ncols × ('n' | 'u' | 't' u32 n, n bytes)
//
// Times are microseconds since 2000-01-01 UTC. Column flag 1 marks a column
// of the replica identity. Tuple kind 'n' is NULL, 'u' an unchanged TOASTed
// value that was not sent, 't' a value in text format. Binary tuple data
// ('b', requested with the binary option) is not supported.
//
// # Errors
//
// Every length is checked against the bytes left before it is used, and
// before anything is allocated from it; a truncated message, trailing bytes,
// an unknown message type or tuple kind return a *DecodeError, which wraps
// ErrMalformed. Decoding never panics.
//
// # Buffer ownership
//
// Decode may keep references to its input: the Data of tuple datums and the
// Content of a logical decoding message are sub-slices of b, not copies.
// The caller must not modify b while the message (or anything built from
// its tuples) is in use, and must copy what it retains past the life of b.
// Strings (names) are copied. The same holds for ParseFrame: XLogData.Data
// aliases its input.
//
// # Allocation (hot path, per change)
//
// Decode of an Insert, Update or Delete allocates the message struct and
// one []change.Datum per tuple, sized exactly; datum data is not copied.
// A Decoder decodes the same way without allocating on the hot path: it
// reuses its Begin, Commit, Insert, Update and Delete structs (valid until
// its next Decode) and cuts tuples from slabs that stay valid until
// Release; ParseXLogData parses an XLogData frame into a value.
package pgoutput

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/silt-dev/silt/internal/change"
)

// ErrMalformed marks a message or frame that cannot be decoded: truncated,
// with trailing bytes, or of an unknown type.
var ErrMalformed = errors.New("malformed pgoutput message")

// DecodeError describes why a message or frame could not be decoded. It
// wraps ErrMalformed.
type DecodeError struct {
	Type   byte   // message type byte, 0 if the input was empty
	Offset int    // byte offset in the input where decoding failed
	Reason string // what was wrong, e.g. "truncated reading relation name"
}

func (e *DecodeError) Error() string {
	if e.Type == 0 {
		return fmt.Sprintf("%v: %s at byte %d", ErrMalformed, e.Reason, e.Offset)
	}
	return fmt.Sprintf("%v: %s message: %s at byte %d", ErrMalformed, typeName(e.Type), e.Reason, e.Offset)
}

// Unwrap makes errors.Is(err, ErrMalformed) hold.
func (e *DecodeError) Unwrap() error { return ErrMalformed }

func typeName(t byte) string {
	switch t {
	case 'B':
		return "Begin"
	case 'C':
		return "Commit"
	case 'O':
		return "Origin"
	case 'R':
		return "Relation"
	case 'Y':
		return "Type"
	case 'I':
		return "Insert"
	case 'U':
		return "Update"
	case 'D':
		return "Delete"
	case 'T':
		return "Truncate"
	case 'M':
		return "Message"
	case 'w':
		return "XLogData"
	case 'k':
		return "Keepalive"
	}
	if t >= 0x20 && t < 0x7f {
		return fmt.Sprintf("type %q", t)
	}
	return fmt.Sprintf("type 0x%02x", t)
}

// Message is one decoded pgoutput message: *Begin, *Commit, *Origin,
// *Relation, *Type, *Insert, *Update, *Delete, *Truncate or *LogicalMessage.
type Message interface {
	// MessageType is the protocol's type byte, e.g. 'B' for Begin.
	MessageType() byte
}

// Begin starts a transaction.
type Begin struct {
	// FinalLSN is the LSN of the transaction's commit record; it equals
	// the CommitLSN of the matching Commit.
	FinalLSN   change.LSN
	CommitTime time.Time
	XID        uint32
}

// Commit ends a transaction.
type Commit struct {
	Flags      uint8 // unused by PostgreSQL so far, always 0
	CommitLSN  change.LSN
	EndLSN     change.LSN // end of the commit record
	CommitTime time.Time
}

// Origin names the replication origin of the transaction being sent.
type Origin struct {
	CommitLSN change.LSN // commit LSN on the origin server
	Name      string
}

// Replica identity settings of a Relation (pg_class.relreplident).
const (
	IdentityDefault = 'd' // primary key
	IdentityNothing = 'n'
	IdentityFull    = 'f' // all columns
	IdentityIndex   = 'i' // a chosen unique index
)

// Relation describes a table before the first change to it in a session
// (and again after its definition changes).
type Relation struct {
	ID              uint32
	Namespace       string
	Name            string
	ReplicaIdentity uint8
	Columns         []RelationColumn
}

// RelationColumn is one column of a Relation message.
type RelationColumn struct {
	Flags   uint8 // 1: part of the replica identity
	Name    string
	TypeOID uint32
	TypeMod int32
}

// Key reports whether the column is part of the replica identity.
func (c RelationColumn) Key() bool { return c.Flags&1 != 0 }

// Type describes a non-built-in data type used by a following Relation.
type Type struct {
	OID       uint32
	Namespace string
	Name      string
}

// Tuple is one row image. Datum Kind is change.Null, change.Unchanged or
// change.Text; Data aliases the decoded input.
type Tuple []change.Datum

// Insert is a new row.
type Insert struct {
	RelationID uint32
	New        Tuple
}

// Update is a changed row. OldKind is 0 when no old image was sent, 'K'
// when Old holds only the replica identity columns (the key changed; other
// columns are change.Null), 'O' when Old is the full old row (REPLICA
// IDENTITY FULL).
type Update struct {
	RelationID uint32
	OldKind    byte
	Old        Tuple
	New        Tuple
}

// Delete is a removed row. OldKind is 'K' (Old holds the replica identity
// columns, the others are change.Null) or 'O' (the full old row).
type Delete struct {
	RelationID uint32
	OldKind    byte
	Old        Tuple
}

// Truncate option flags.
const (
	TruncateCascade         = 1
	TruncateRestartIdentity = 2
)

// Truncate empties one or more tables.
type Truncate struct {
	Options     uint8
	RelationIDs []uint32
}

// LogicalMessage is a message written with pg_logical_emit_message (sent
// only with the plugin option messages 'true').
type LogicalMessage struct {
	Flags   uint8 // 1: transactional
	LSN     change.LSN
	Prefix  string
	Content []byte // aliases the decoded input
}

// Transactional reports whether the message was emitted as part of a
// transaction (and is sent between its Begin and Commit).
func (m *LogicalMessage) Transactional() bool { return m.Flags&1 != 0 }

func (*Begin) MessageType() byte          { return 'B' }
func (*Commit) MessageType() byte         { return 'C' }
func (*Origin) MessageType() byte         { return 'O' }
func (*Relation) MessageType() byte       { return 'R' }
func (*Type) MessageType() byte           { return 'Y' }
func (*Insert) MessageType() byte         { return 'I' }
func (*Update) MessageType() byte         { return 'U' }
func (*Delete) MessageType() byte         { return 'D' }
func (*Truncate) MessageType() byte       { return 'T' }
func (*LogicalMessage) MessageType() byte { return 'M' }

// pgEpochMicros is 2000-01-01 UTC in microseconds since the Unix epoch.
const pgEpochMicros = 946684800 * 1000000

// PGTime converts PostgreSQL's microseconds since 2000-01-01 to a UTC time.
func PGTime(micros int64) time.Time { return time.UnixMicro(micros + pgEpochMicros).UTC() }

// PGMicros converts t to PostgreSQL's microseconds since 2000-01-01.
func PGMicros(t time.Time) int64 { return t.UnixMicro() - pgEpochMicros }

// reader reads big-endian fields from b, remembering the first failure.
// After a failure every read returns zero values.
type reader struct {
	b   []byte
	off int
	typ byte
	err *DecodeError
}

func (r *reader) fail(reason string) {
	if r.err == nil {
		r.err = &DecodeError{Type: r.typ, Offset: r.off, Reason: reason}
	}
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) need(n int, what string) bool {
	if r.err != nil {
		return false
	}
	if n > r.left() {
		r.fail("truncated reading " + what)
		return false
	}
	return true
}

func (r *reader) u8(what string) uint8 {
	if !r.need(1, what) {
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

func (r *reader) u16(what string) uint16 {
	if !r.need(2, what) {
		return 0
	}
	v := binary.BigEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v
}

func (r *reader) u32(what string) uint32 {
	if !r.need(4, what) {
		return 0
	}
	v := binary.BigEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

func (r *reader) u64(what string) uint64 {
	if !r.need(8, what) {
		return 0
	}
	v := binary.BigEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

// str reads a NUL-terminated string and copies it.
func (r *reader) str(what string) string {
	if r.err != nil {
		return ""
	}
	i := bytes.IndexByte(r.b[r.off:], 0)
	if i < 0 {
		r.fail("unterminated " + what)
		return ""
	}
	s := string(r.b[r.off : r.off+i])
	r.off += i + 1
	return s
}

// bytes returns the next n bytes as a sub-slice of the input (capacity
// clipped so an append by the caller cannot overwrite what follows).
func (r *reader) bytes(n uint32, what string) []byte {
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(r.left()) {
		r.fail(fmt.Sprintf("%s length %d exceeds the %d bytes left", what, n, r.left()))
		return nil
	}
	end := r.off + int(n)
	v := r.b[r.off:end:end]
	r.off = end
	return v
}

func (r *reader) time(what string) time.Time {
	return PGTime(int64(r.u64(what)))
}

// tuple reads TupleData, into d's slabs when d is not nil.
func (r *reader) tuple(d *Decoder) Tuple {
	n := r.u16("tuple column count")
	if r.err != nil {
		return nil
	}
	// Each column takes at least one byte: check before allocating.
	if int(n) > r.left() {
		r.fail(fmt.Sprintf("tuple column count %d exceeds the %d bytes left", n, r.left()))
		return nil
	}
	var t Tuple
	if d != nil {
		t = d.tuple(int(n))
	} else {
		t = make(Tuple, n)
	}
	for i := range t {
		switch k := r.u8("tuple column kind"); k {
		case 'n':
			t[i].Kind = change.Null
		case 'u':
			t[i].Kind = change.Unchanged
		case 't':
			t[i].Kind = change.Text
			t[i].Data = r.bytes(r.u32("column value length"), "column value")
		default:
			if r.err == nil {
				r.off--
				r.fail(fmt.Sprintf("unsupported tuple column kind 0x%02x", k))
			}
		}
		if r.err != nil {
			return nil
		}
	}
	return t
}

// Decode decodes one pgoutput message (the payload of an XLogData frame).
// The message may alias b; see the package doc. Errors wrap ErrMalformed.
func Decode(b []byte) (Message, error) { return decode(b, nil) }

// Decoder decodes a sequence of messages like Decode, reusing memory:
//
//   - The *Begin, *Commit, *Insert, *Update and *Delete it returns are its
//     own structs, overwritten by its next Decode: copy what is kept.
//   - Tuples (Insert.New, Update.Old/New, Delete.Old) are cut from slabs
//     the Decoder owns; they stay valid, and are not shared with any other
//     tuple, until Release. After Release their memory is reused.
//   - Other messages are allocated as by Decode.
//
// As with Decode, datum data aliases the input. The zero value is ready to
// use. Not safe for concurrent use.
type Decoder struct {
	begin  Begin
	commit Commit
	insert Insert
	update Update
	delete Delete

	slab []change.Datum   // the slab tuples are being cut from
	used [][]change.Datum // earlier slabs handed out since Release
	free [][]change.Datum // slabs ready for reuse
}

// slabDatums is the size of a tuple slab; keptSlabs bounds the slabs kept
// for reuse by Release (the rest are left to the GC).
const (
	slabDatums = 4096
	keptSlabs  = 16
)

// Decode decodes one message; see the type doc for what stays valid.
func (d *Decoder) Decode(b []byte) (Message, error) { return decode(b, d) }

// Release makes the memory of every tuple returned so far reusable.
func (d *Decoder) Release() {
	if d.slab != nil {
		d.used = append(d.used, d.slab)
		d.slab = nil
	}
	for _, s := range d.used {
		if len(d.free) < keptSlabs {
			clear(s[:cap(s)]) // drop references to the input
			d.free = append(d.free, s[:0])
		}
	}
	clear(d.used)
	d.used = d.used[:0]
}

// tuple returns n zeroed datums from the slabs (a larger tuple than a slab
// gets its own slice).
func (d *Decoder) tuple(n int) Tuple {
	if n == 0 {
		return Tuple{} // as Decode: empty, not nil
	}
	if n > slabDatums/8 {
		return make(Tuple, n)
	}
	if cap(d.slab)-len(d.slab) < n {
		if d.slab != nil {
			d.used = append(d.used, d.slab)
		}
		if k := len(d.free); k > 0 {
			d.slab, d.free = d.free[k-1], d.free[:k-1]
		} else {
			d.slab = make([]change.Datum, 0, slabDatums)
		}
	}
	i := len(d.slab)
	d.slab = d.slab[:i+n]
	return d.slab[i : i+n : i+n]
}

func decode(b []byte, d *Decoder) (Message, error) {
	if len(b) == 0 {
		return nil, &DecodeError{Reason: "empty message"}
	}
	r := reader{b: b, off: 1, typ: b[0]}
	var m Message
	switch b[0] {
	case 'B':
		v := Begin{
			FinalLSN:   change.LSN(r.u64("final LSN")),
			CommitTime: r.time("commit time"),
			XID:        r.u32("xid"),
		}
		if d != nil {
			d.begin = v
			m = &d.begin
		} else {
			m = &v
		}
	case 'C':
		v := Commit{
			Flags:      r.u8("flags"),
			CommitLSN:  change.LSN(r.u64("commit LSN")),
			EndLSN:     change.LSN(r.u64("end LSN")),
			CommitTime: r.time("commit time"),
		}
		if d != nil {
			d.commit = v
			m = &d.commit
		} else {
			m = &v
		}
	case 'O':
		m = &Origin{CommitLSN: change.LSN(r.u64("origin commit LSN")), Name: r.str("origin name")}
	case 'R':
		m = r.relation()
	case 'Y':
		m = &Type{OID: r.u32("type OID"), Namespace: r.str("type namespace"), Name: r.str("type name")}
	case 'I':
		var ins *Insert
		if d != nil {
			ins = &d.insert
			*ins = Insert{}
		} else {
			ins = &Insert{}
		}
		ins.RelationID = r.u32("relation id")
		if k := r.u8("tuple marker"); r.err == nil && k != 'N' {
			r.off--
			r.fail(fmt.Sprintf("expected new tuple marker 'N', got 0x%02x", k))
		}
		ins.New = r.tuple(d)
		m = ins
	case 'U':
		var up *Update
		if d != nil {
			up = &d.update
			*up = Update{}
		} else {
			up = &Update{}
		}
		up.RelationID = r.u32("relation id")
		k := r.u8("tuple marker")
		if k == 'K' || k == 'O' {
			up.OldKind = k
			up.Old = r.tuple(d)
			k = r.u8("tuple marker")
		}
		if r.err == nil && k != 'N' {
			r.off--
			r.fail(fmt.Sprintf("expected new tuple marker 'N', got 0x%02x", k))
		}
		up.New = r.tuple(d)
		m = up
	case 'D':
		var del *Delete
		if d != nil {
			del = &d.delete
			*del = Delete{}
		} else {
			del = &Delete{}
		}
		del.RelationID = r.u32("relation id")
		k := r.u8("tuple marker")
		if r.err == nil && k != 'K' && k != 'O' {
			r.off--
			r.fail(fmt.Sprintf("expected old tuple marker 'K' or 'O', got 0x%02x", k))
		}
		del.OldKind = k
		del.Old = r.tuple(d)
		m = del
	case 'T':
		m = r.truncate()
	case 'M':
		lm := &LogicalMessage{
			Flags:  r.u8("flags"),
			LSN:    change.LSN(r.u64("message LSN")),
			Prefix: r.str("message prefix"),
		}
		lm.Content = r.bytes(r.u32("content length"), "content")
		m = lm
	default:
		return nil, &DecodeError{Type: b[0], Offset: 0, Reason: "unknown message type"}
	}
	if r.err == nil && r.left() != 0 {
		r.fail(fmt.Sprintf("%d trailing bytes", r.left()))
	}
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

func (r *reader) relation() *Relation {
	rel := &Relation{
		ID:              r.u32("relation id"),
		Namespace:       r.str("namespace"),
		Name:            r.str("relation name"),
		ReplicaIdentity: r.u8("replica identity"),
	}
	n := r.u16("column count")
	if r.err != nil {
		return rel
	}
	// Each column takes at least 10 bytes (flags, NUL, OID, typmod).
	if int(n)*10 > r.left() {
		r.fail(fmt.Sprintf("column count %d exceeds what the %d bytes left can hold", n, r.left()))
		return rel
	}
	rel.Columns = make([]RelationColumn, n)
	for i := range rel.Columns {
		c := &rel.Columns[i]
		c.Flags = r.u8("column flags")
		c.Name = r.str("column name")
		c.TypeOID = r.u32("column type OID")
		c.TypeMod = int32(r.u32("column typmod"))
	}
	return rel
}

func (r *reader) truncate() *Truncate {
	n := r.u32("relation count")
	t := &Truncate{Options: r.u8("options")}
	if r.err != nil {
		return t
	}
	if uint64(n)*4 > uint64(r.left()) {
		r.fail(fmt.Sprintf("relation count %d exceeds what the %d bytes left can hold", n, r.left()))
		return t
	}
	t.RelationIDs = make([]uint32, n)
	for i := range t.RelationIDs {
		t.RelationIDs[i] = r.u32("relation id")
	}
	return t
}

// XLogData is a frame of WAL data; Data is one pgoutput message.
type XLogData struct {
	WALStart  change.LSN // LSN of the start of Data in the WAL
	ServerEnd change.LSN // current end of WAL on the server
	SendTime  time.Time
	Data      []byte // aliases the frame
}

// Keepalive is the server's periodic "primary keepalive" frame.
type Keepalive struct {
	ServerEnd      change.LSN
	SendTime       time.Time
	ReplyRequested bool // the client should send a standby status update now
}

// Frame is an *XLogData or a *Keepalive.
type Frame interface{ frame() }

func (*XLogData) frame()  {}
func (*Keepalive) frame() {}

// ParseFrame decodes the payload of a CopyData message received during
// logical replication. XLogData.Data aliases b. Errors wrap ErrMalformed.
func ParseFrame(b []byte) (Frame, error) {
	if len(b) == 0 {
		return nil, &DecodeError{Reason: "empty replication frame"}
	}
	r := &reader{b: b, off: 1, typ: b[0]}
	var f Frame
	switch b[0] {
	case 'w':
		x, err := ParseXLogData(b)
		if err != nil {
			return nil, err
		}
		return &x, nil
	case 'k':
		f = &Keepalive{
			ServerEnd:      change.LSN(r.u64("server WAL end")),
			SendTime:       r.time("send time"),
			ReplyRequested: r.u8("reply requested") != 0,
		}
	default:
		return nil, &DecodeError{Type: b[0], Reason: "unknown replication frame type"}
	}
	if r.err == nil && r.left() != 0 {
		r.fail(fmt.Sprintf("%d trailing bytes", r.left()))
	}
	if r.err != nil {
		return nil, r.err
	}
	return f, nil
}

// ParseXLogData is ParseFrame for an XLogData frame ('w'), returned by
// value so that nothing is allocated. Any other frame is an error.
func ParseXLogData(b []byte) (XLogData, error) {
	if len(b) == 0 || b[0] != 'w' {
		return XLogData{}, &DecodeError{Type: firstByte(b), Reason: "not an XLogData frame"}
	}
	r := reader{b: b, off: 1, typ: b[0]}
	x := XLogData{
		WALStart:  change.LSN(r.u64("WAL start")),
		ServerEnd: change.LSN(r.u64("server WAL end")),
		SendTime:  r.time("send time"),
	}
	if r.err != nil {
		return XLogData{}, r.err
	}
	x.Data = b[r.off:len(b):len(b)]
	return x, nil
}

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

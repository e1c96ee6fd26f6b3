package pgrepl

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/source/pgoutput"
)

// changeOverhead approximates the memory of one buffered change beyond its
// message bytes (the Change struct, its pointer and the datum slices).
const changeOverhead = 128

// HeartbeatPrefix is the logical decoding message prefix of silt's
// heartbeats (pg_logical_emit_message(true, HeartbeatPrefix, ...)).
const HeartbeatPrefix = "silt_heartbeat"

// through is how far a Source has delivered: every transaction with a
// commit LSN below lsn, and the first n changes of the one at lsn
// (n == math.MaxUint64: all of it). The zero value delivers everything.
type through struct {
	lsn change.LSN
	n   uint64
}

// assembler turns the decoded message sequence of one replication session
// into committed transactions. It does no network I/O so it can be tested
// without a server; beyond memLimit it spills changes to a file in
// spillDir.
//
// Spill file format: a sequence of records, each a uvarint length followed
// by that many bytes of change.AppendEncode output (LSN, Pos, EndLSN, XID
// and CommitTime zero: they are set on delivery). The file is private to
// one transaction, created with os.CreateTemp and removed after delivery
// (or by Run's cleanup after a failure); it is never read after a crash.
type assembler struct {
	rels     pgoutput.RelationCache
	checkRel func(*pgoutput.Relation) error // vets a Relation before it is applied (nil: none)
	maxBytes int64                          // whole-transaction cap; 0: none
	memLimit int64                          // spill beyond this many bytes held in memory; 0: never
	spillDir string                         // where spill files go; "" disables spilling
	skip     through

	inTxn     bool
	begin     pgoutput.Begin
	txn       []*change.Change // in-memory changes (all of them when not spilled)
	bytes     int64            // approximate size of the whole transaction
	memBytes  int64            // approximate size of txn
	n         uint64           // changes seen in this transaction (including dropped ones)
	dropped   uint64           // leading changes dropped because skip covers them
	heartbeat bool             // the transaction carried a silt heartbeat message
	sp        *spill
	encBuf    []byte

	// Memory of the transaction being assembled, reused for the next one
	// once it is delivered (the Handler may not keep it): row message
	// payloads (which decoded datums alias), tuples, Change structs.
	dec  pgoutput.Decoder
	msgs byteArena
	chgs changeSlab
}

// byteArena hands out copies of byte slices from large blocks; reset makes
// every block reusable. Copies never move (a block never grows).
type byteArena struct {
	cur  []byte
	used [][]byte
	free [][]byte
}

const (
	arenaBlock     = 64 << 10
	arenaKeptBytes = 8 << 20 // blocks kept by reset for reuse
)

// copy returns a copy of b that stays valid until reset.
func (a *byteArena) copy(b []byte) []byte {
	if len(b) > arenaBlock/4 {
		return append([]byte(nil), b...)
	}
	if cap(a.cur)-len(a.cur) < len(b) {
		if a.cur != nil {
			a.used = append(a.used, a.cur)
		}
		if k := len(a.free); k > 0 {
			a.cur, a.free = a.free[k-1], a.free[:k-1]
		} else {
			a.cur = make([]byte, 0, arenaBlock)
		}
	}
	n := len(a.cur)
	a.cur = append(a.cur, b...)
	return a.cur[n:len(a.cur):len(a.cur)]
}

// reset makes every copy's memory reusable.
func (a *byteArena) reset() {
	if a.cur != nil {
		a.used = append(a.used, a.cur)
		a.cur = nil
	}
	for _, b := range a.used {
		if len(a.free) < arenaKeptBytes/arenaBlock {
			a.free = append(a.free, b[:0])
		}
	}
	clear(a.used)
	a.used = a.used[:0]
}

// changeSlab hands out *change.Change from fixed-size chunks; reset makes
// them reusable.
type changeSlab struct {
	cur  []change.Change
	used [][]change.Change
	free [][]change.Change
}

const (
	slabChanges    = 1024
	slabKeptChunks = 16
)

func (s *changeSlab) get() *change.Change {
	if len(s.cur) == cap(s.cur) {
		if s.cur != nil {
			s.used = append(s.used, s.cur)
		}
		if k := len(s.free); k > 0 {
			s.cur, s.free = s.free[k-1], s.free[:k-1]
		} else {
			s.cur = make([]change.Change, 0, slabChanges)
		}
	}
	s.cur = s.cur[:len(s.cur)+1]
	return &s.cur[len(s.cur)-1]
}

func (s *changeSlab) reset() {
	if s.cur != nil {
		s.used = append(s.used, s.cur)
		s.cur = nil
	}
	for _, c := range s.used {
		if len(s.free) < slabKeptChunks {
			clear(c) // drop references to relations and datums
			s.free = append(s.free, c[:0])
		}
	}
	clear(s.used)
	s.used = s.used[:0]
}

// decode decodes one pgoutput message. A row change's payload is copied
// into the transaction's arena first, as its datums alias it until
// delivery; other messages are decoded in place (they keep nothing that
// aliases b past feed).
func (a *assembler) decode(b []byte) (pgoutput.Message, error) {
	if len(b) > 0 && (b[0] == 'I' || b[0] == 'U' || b[0] == 'D') {
		b = a.msgs.copy(b)
	}
	return a.dec.Decode(b)
}

// release makes the memory of the changes assembled so far reusable; only
// once nothing references them (delivered, spilled or dropped).
func (a *assembler) release() {
	a.dec.Release()
	a.msgs.reset()
	a.chgs.reset()
}

// newChange returns a zeroed Change from the transaction's slab.
func (a *assembler) newChange(rel *change.Relation, op change.Op, newImg []change.Datum) *change.Change {
	c := a.chgs.get()
	c.Rel, c.Op, c.New = rel, op, newImg
	return c
}

// spill is the spill file of the current transaction.
type spill struct {
	f     *os.File
	w     *bufio.Writer
	count uint64 // records written
}

// feed processes one message whose encoded size is size bytes. When m is a
// Commit it returns it; the transaction's changes are then available
// through deliver until the next call to feed.
func (a *assembler) feed(m pgoutput.Message, size int) (*pgoutput.Commit, error) {
	switch m := m.(type) {
	case *pgoutput.Begin:
		if a.inTxn {
			return nil, fmt.Errorf("%w: Begin (xid %d) inside transaction %d", ErrProtocol, m.XID, a.begin.XID)
		}
		a.reset()
		a.inTxn = true
		a.begin = *m
	case *pgoutput.Commit:
		if !a.inTxn {
			return nil, fmt.Errorf("%w: Commit at %v without Begin", ErrProtocol, m.CommitLSN)
		}
		if m.CommitLSN != a.begin.FinalLSN {
			return nil, fmt.Errorf("%w: Commit LSN %v differs from Begin's final LSN %v", ErrProtocol, m.CommitLSN, a.begin.FinalLSN)
		}
		a.inTxn = false
		if a.sp == nil {
			for i, c := range a.txn {
				a.stamp(c, m, a.dropped+uint64(i))
			}
		}
		return m, nil
	case *pgoutput.Relation:
		if a.checkRel != nil {
			if err := a.checkRel(m); err != nil {
				return nil, err
			}
		}
		a.rels.Apply(m)
	case *pgoutput.Insert:
		rel, err := a.row(m.RelationID, m.New)
		if err != nil {
			return nil, err
		}
		return nil, a.add(a.newChange(rel, change.OpInsert, m.New), size)
	case *pgoutput.Update:
		rel, err := a.row(m.RelationID, m.New)
		if err != nil {
			return nil, err
		}
		c := a.newChange(rel, change.OpUpdate, m.New)
		if m.OldKind != 0 {
			if c.Old, err = oldImage(rel, m.OldKind, m.Old); err != nil {
				return nil, err
			}
		}
		return nil, a.add(c, size)
	case *pgoutput.Delete:
		rel, err := a.row(m.RelationID, nil)
		if err != nil {
			return nil, err
		}
		c := a.newChange(rel, change.OpDelete, nil)
		if c.Old, err = oldImage(rel, m.OldKind, m.Old); err != nil {
			return nil, err
		}
		return nil, a.add(c, size)
	case *pgoutput.Truncate:
		if !a.inTxn {
			return nil, fmt.Errorf("%w: Truncate outside a transaction", ErrProtocol)
		}
		for _, id := range m.RelationIDs {
			rel, err := a.rels.Lookup(id)
			if err != nil {
				return nil, fmt.Errorf("%w: truncate: %w", ErrProtocol, err)
			}
			if err := a.add(a.newChange(rel, change.OpTruncate, nil), 0); err != nil {
				return nil, err
			}
		}
	case *pgoutput.LogicalMessage:
		// Heartbeats are transactional messages: they arrive inside a
		// Begin/Commit of their own, which is then delivered (empty) so the
		// slot can be acknowledged past it. Other messages are ignored.
		if a.inTxn && m.Prefix == HeartbeatPrefix {
			a.heartbeat = true
		}
	case *pgoutput.Origin, *pgoutput.Type:
		// Origin: silt does not filter by origin. Type: the type OID in the
		// Relation suffices.
	default:
		return nil, fmt.Errorf("%w: %T", ErrProtocol, m)
	}
	return nil, nil
}

// reset forgets the previous transaction.
func (a *assembler) reset() {
	// Drop references to the previous transaction; shrink a slice that one
	// huge transaction grew far beyond the usual.
	clear(a.txn)
	if cap(a.txn) > 4096 {
		a.txn = nil
	}
	a.txn = a.txn[:0]
	a.bytes, a.memBytes, a.n, a.dropped = 0, 0, 0, 0
	a.heartbeat = false
	a.closeSpill()
	a.release()
}

// closeSpill removes the spill file, if any. Safe to call at any time.
func (a *assembler) closeSpill() {
	if a.sp == nil {
		return
	}
	a.sp.f.Close()
	os.Remove(a.sp.f.Name())
	a.sp = nil
}

// stamp sets the transaction fields of a change.
func (a *assembler) stamp(c *change.Change, m *pgoutput.Commit, pos uint64) {
	c.LSN = m.CommitLSN
	c.Pos = uint32(pos)
	c.EndLSN = m.EndLSN
	c.XID = a.begin.XID
	c.CommitTime = m.CommitTime
}

// skipping reports whether the whole current transaction was delivered
// before.
func (a *assembler) skipping() bool {
	return a.begin.FinalLSN < a.skip.lsn || (a.begin.FinalLSN == a.skip.lsn && a.skip.n == math.MaxUint64)
}

// add buffers one change of size message bytes, in memory or in the spill
// file.
func (a *assembler) add(c *change.Change, size int) error {
	i := a.n
	a.n++
	if a.skipping() || (a.begin.FinalLSN == a.skip.lsn && i < a.skip.n) {
		a.dropped++ // delivered by an earlier Run of this Source
		if len(a.txn) == 0 {
			a.release() // a skipped prefix: nothing before it is kept
		}
		return nil
	}
	n := int64(size) + changeOverhead
	a.bytes += n
	if a.maxBytes > 0 && a.bytes > a.maxBytes {
		return fmt.Errorf("%w: transaction %d exceeds %d bytes (source.max_txn_bytes)", ErrTxnTooLarge, a.begin.XID, a.maxBytes)
	}
	if a.sp != nil {
		if err := a.write(c); err != nil {
			return err
		}
		a.release() // the spill file has it
		return nil
	}
	a.txn = append(a.txn, c)
	a.memBytes += n
	if a.memLimit > 0 && a.spillDir != "" && a.memBytes > a.memLimit {
		return a.startSpill()
	}
	return nil
}

// startSpill moves the in-memory changes to a new spill file.
func (a *assembler) startSpill() error {
	if err := os.MkdirAll(a.spillDir, 0o700); err != nil {
		return fmt.Errorf("spill transaction %d: %w", a.begin.XID, err)
	}
	f, err := os.CreateTemp(a.spillDir, spillPattern)
	if err != nil {
		return fmt.Errorf("spill transaction %d: %w", a.begin.XID, err)
	}
	a.sp = &spill{f: f, w: bufio.NewWriterSize(f, 1<<20)}
	for _, c := range a.txn {
		if err := a.write(c); err != nil {
			return err
		}
	}
	clear(a.txn)
	a.txn = nil
	a.memBytes = 0
	a.release()
	return nil
}

// spillPattern names spill files (os.CreateTemp pattern).
const spillPattern = "txn-*.spill"

// RemoveSpillFiles deletes leftover spill files in dir (from a crash).
func RemoveSpillFiles(dir string) error {
	if dir == "" {
		return nil
	}
	names, err := filepath.Glob(filepath.Join(dir, spillPattern))
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		if err := os.Remove(n); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (a *assembler) write(c *change.Change) error {
	a.encBuf = change.AppendEncode(a.encBuf[:0], c)
	var hdr [binary.MaxVarintLen64]byte
	h := binary.PutUvarint(hdr[:], uint64(len(a.encBuf)))
	if _, err := a.sp.w.Write(hdr[:h]); err != nil {
		return fmt.Errorf("spill transaction %d: %w", a.begin.XID, err)
	}
	if _, err := a.sp.w.Write(a.encBuf); err != nil {
		return fmt.Errorf("spill transaction %d: %w", a.begin.XID, err)
	}
	a.sp.count++
	if cap(a.encBuf) > 1<<20 {
		a.encBuf = nil
	}
	return nil
}

// empty reports whether the committed transaction has nothing to deliver.
func (a *assembler) empty() bool {
	return a.sp == nil && len(a.txn) == 0
}

// deliver hands the committed transaction m to yield: in one call when it
// was held in memory, else in chunks of about chunkBytes read back from the
// spill file. last is true on the final call. Changes passed to yield are
// valid only during the call. The spill file is removed afterwards.
func (a *assembler) deliver(m *pgoutput.Commit, chunkBytes int, yield func(changes []*change.Change, last bool) error) error {
	if a.sp == nil {
		return yield(a.txn, true)
	}
	defer a.closeSpill()
	sp := a.sp
	if err := sp.w.Flush(); err != nil {
		return fmt.Errorf("spill transaction %d: %w", a.begin.XID, err)
	}
	if _, err := sp.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("read spilled transaction %d: %w", a.begin.XID, err)
	}
	r := bufio.NewReaderSize(sp.f, 1<<20)
	var cache change.RelationCache
	arena := make([]byte, 0, chunkBytes)
	var chunk []*change.Change
	pos := a.dropped
	for read := uint64(0); read < sp.count; read++ {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return fmt.Errorf("read spilled transaction %d: %w", a.begin.XID, err)
		}
		if n > math.MaxInt32 {
			return fmt.Errorf("read spilled transaction %d: record of %d bytes", a.begin.XID, n)
		}
		if len(chunk) > 0 && len(arena)+int(n) > cap(arena) {
			if err := yield(chunk, false); err != nil {
				return err
			}
			clear(chunk)
			chunk, arena = chunk[:0], arena[:0]
		}
		var buf []byte
		if int(n) <= cap(arena)-len(arena) {
			// Records decoded from the arena alias it, so it never grows
			// (growing would move earlier records).
			buf = arena[len(arena) : len(arena)+int(n)]
			arena = arena[:len(arena)+int(n)]
		} else {
			buf = make([]byte, n) // a record larger than a whole chunk
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("read spilled transaction %d: %w", a.begin.XID, err)
		}
		c, err := change.Decode(buf, &cache)
		if err != nil {
			return fmt.Errorf("read spilled transaction %d: %w", a.begin.XID, err)
		}
		a.stamp(c, m, pos)
		pos++
		chunk = append(chunk, c)
	}
	return yield(chunk, true)
}

// row checks a row message and returns its relation.
func (a *assembler) row(relID uint32, tuple pgoutput.Tuple) (*change.Relation, error) {
	if !a.inTxn {
		return nil, fmt.Errorf("%w: row change outside a transaction", ErrProtocol)
	}
	rel, err := a.rels.Lookup(relID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	if tuple != nil && len(tuple) != len(rel.Columns) {
		return nil, fmt.Errorf("%w: row of %s has %d columns, relation has %d", ErrProtocol, rel.Table, len(tuple), len(rel.Columns))
	}
	return rel, nil
}

// oldImage returns the old row image of an update or delete. A 'K' image
// carries only the replica identity columns; PostgreSQL sends the others as
// NULL, which would be indistinguishable from a real NULL, so they become
// change.Absent.
func oldImage(rel *change.Relation, kind byte, t pgoutput.Tuple) ([]change.Datum, error) {
	if len(t) != len(rel.Columns) {
		return nil, fmt.Errorf("%w: old row of %s has %d columns, relation has %d", ErrProtocol, rel.Table, len(t), len(rel.Columns))
	}
	if kind == 'K' {
		for i := range t {
			if !rel.Columns[i].Key {
				t[i] = change.Datum{Kind: change.Absent}
			}
		}
	}
	return t, nil
}

package pgoutput

import (
	"encoding/binary"
	"fmt"

	"github.com/silt-dev/silt/internal/change"
)

// encode is a test-only encoder: the inverse of Decode, used to build
// messages by hand and to check that decoding round-trips.
func encode(m Message) []byte {
	b := []byte{m.MessageType()}
	be := binary.BigEndian
	str := func(s string) { b = append(append(b, s...), 0) }
	tuple := func(t Tuple) {
		b = be.AppendUint16(b, uint16(len(t)))
		for _, d := range t {
			switch d.Kind {
			case change.Null:
				b = append(b, 'n')
			case change.Unchanged:
				b = append(b, 'u')
			case change.Text:
				b = append(b, 't')
				b = be.AppendUint32(b, uint32(len(d.Data)))
				b = append(b, d.Data...)
			default:
				panic(fmt.Sprintf("encode: datum kind %q", d.Kind))
			}
		}
	}
	switch m := m.(type) {
	case *Begin:
		b = be.AppendUint64(b, uint64(m.FinalLSN))
		b = be.AppendUint64(b, uint64(PGMicros(m.CommitTime)))
		b = be.AppendUint32(b, m.XID)
	case *Commit:
		b = append(b, m.Flags)
		b = be.AppendUint64(b, uint64(m.CommitLSN))
		b = be.AppendUint64(b, uint64(m.EndLSN))
		b = be.AppendUint64(b, uint64(PGMicros(m.CommitTime)))
	case *Origin:
		b = be.AppendUint64(b, uint64(m.CommitLSN))
		str(m.Name)
	case *Relation:
		b = be.AppendUint32(b, m.ID)
		str(m.Namespace)
		str(m.Name)
		b = append(b, m.ReplicaIdentity)
		b = be.AppendUint16(b, uint16(len(m.Columns)))
		for _, c := range m.Columns {
			b = append(b, c.Flags)
			str(c.Name)
			b = be.AppendUint32(b, c.TypeOID)
			b = be.AppendUint32(b, uint32(c.TypeMod))
		}
	case *Type:
		b = be.AppendUint32(b, m.OID)
		str(m.Namespace)
		str(m.Name)
	case *Insert:
		b = be.AppendUint32(b, m.RelationID)
		b = append(b, 'N')
		tuple(m.New)
	case *Update:
		b = be.AppendUint32(b, m.RelationID)
		if m.OldKind != 0 {
			b = append(b, m.OldKind)
			tuple(m.Old)
		}
		b = append(b, 'N')
		tuple(m.New)
	case *Delete:
		b = be.AppendUint32(b, m.RelationID)
		b = append(b, m.OldKind)
		tuple(m.Old)
	case *Truncate:
		b = be.AppendUint32(b, uint32(len(m.RelationIDs)))
		b = append(b, m.Options)
		for _, id := range m.RelationIDs {
			b = be.AppendUint32(b, id)
		}
	case *LogicalMessage:
		b = append(b, m.Flags)
		b = be.AppendUint64(b, uint64(m.LSN))
		str(m.Prefix)
		b = be.AppendUint32(b, uint32(len(m.Content)))
		b = append(b, m.Content...)
	default:
		panic(fmt.Sprintf("encode: %T", m))
	}
	return b
}

// encodeFrame is the inverse of ParseFrame.
func encodeFrame(f Frame) []byte {
	be := binary.BigEndian
	switch f := f.(type) {
	case *XLogData:
		b := []byte{'w'}
		b = be.AppendUint64(b, uint64(f.WALStart))
		b = be.AppendUint64(b, uint64(f.ServerEnd))
		b = be.AppendUint64(b, uint64(PGMicros(f.SendTime)))
		return append(b, f.Data...)
	case *Keepalive:
		b := []byte{'k'}
		b = be.AppendUint64(b, uint64(f.ServerEnd))
		b = be.AppendUint64(b, uint64(PGMicros(f.SendTime)))
		if f.ReplyRequested {
			return append(b, 1)
		}
		return append(b, 0)
	}
	panic(fmt.Sprintf("encodeFrame: %T", f))
}

// dump renders a message as one deterministic line for golden files.
func dump(m Message) string {
	tuple := func(t Tuple) string {
		s := "["
		for i, d := range t {
			if i > 0 {
				s += " "
			}
			switch d.Kind {
			case change.Text:
				v := string(d.Data)
				if len(v) > 40 {
					v = fmt.Sprintf("%s...(%d bytes)", v[:20], len(v))
				}
				s += fmt.Sprintf("%q", v)
			default:
				s += string(d.Kind)
			}
		}
		return s + "]"
	}
	switch m := m.(type) {
	case *Begin:
		return fmt.Sprintf("Begin final_lsn=%v xid=%d", m.FinalLSN, m.XID)
	case *Commit:
		return fmt.Sprintf("Commit flags=%d commit_lsn=%v end_lsn=%v", m.Flags, m.CommitLSN, m.EndLSN)
	case *Origin:
		return fmt.Sprintf("Origin lsn=%v name=%q", m.CommitLSN, m.Name)
	case *Relation:
		s := fmt.Sprintf("Relation %s.%s identity=%c cols=", m.Namespace, m.Name, m.ReplicaIdentity)
		for i, c := range m.Columns {
			if i > 0 {
				s += ","
			}
			s += fmt.Sprintf("%s:%d:%d:%d", c.Name, c.TypeOID, c.TypeMod, c.Flags)
		}
		return s
	case *Type:
		return fmt.Sprintf("Type %s.%s", m.Namespace, m.Name)
	case *Insert:
		return "Insert new=" + tuple(m.New)
	case *Update:
		s := "Update"
		if m.OldKind != 0 {
			s += fmt.Sprintf(" old(%c)=%s", m.OldKind, tuple(m.Old))
		}
		return s + " new=" + tuple(m.New)
	case *Delete:
		return fmt.Sprintf("Delete old(%c)=%s", m.OldKind, tuple(m.Old))
	case *Truncate:
		return fmt.Sprintf("Truncate options=%d nrels=%d", m.Options, len(m.RelationIDs))
	case *LogicalMessage:
		return fmt.Sprintf("Message flags=%d prefix=%q content=%q", m.Flags, m.Prefix, m.Content)
	}
	return fmt.Sprintf("%T", m)
}

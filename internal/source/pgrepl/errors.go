package pgrepl

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/silt-dev/silt/internal/change"
)

// Sentinels for errors.Is. Each preflight error also has a typed form whose
// message is one line saying what to do.
var (
	// ErrConfig: the Config is invalid (see the message).
	ErrConfig = errors.New("invalid source configuration")
	// ErrUnreachable: the database cannot be connected to (*ConnectError).
	ErrUnreachable = errors.New("cannot connect to PostgreSQL")
	// ErrWALLevel: wal_level is not logical (*WALLevelError).
	ErrWALLevel = errors.New("PostgreSQL wal_level is not logical")
	// ErrNoPrimaryKey: a published table has neither a primary key nor
	// REPLICA IDENTITY FULL, so its updates and deletes cannot be keyed
	// (*TableError).
	ErrNoPrimaryKey = errors.New("table has no primary key")
	// ErrMissingTable: a configured table does not exist (*TableError).
	ErrMissingTable = errors.New("table does not exist")
	// ErrSlotMismatch: the slot exists but is not a pgoutput slot of this
	// database (*SlotError).
	ErrSlotMismatch = errors.New("replication slot does not match")
	// ErrSlotNotFound: the slot does not exist (*SlotError).
	ErrSlotNotFound = errors.New("replication slot does not exist")
	// ErrSlotActive: another connection is streaming from the slot (*SlotError).
	ErrSlotActive = errors.New("replication slot is in use")
	// ErrProtocol: the server sent messages in an order the protocol does
	// not allow (for example a row for an unannounced relation).
	ErrProtocol = errors.New("unexpected replication message")
	// ErrTxnTooLarge: a transaction exceeded Config.MaxTxnBytes.
	ErrTxnTooLarge = errors.New("transaction too large to buffer")
	// ErrClosed: the Source was closed.
	ErrClosed = errors.New("source closed")
)

// ConnectError is returned when the database cannot be reached or refuses
// the connection. It wraps ErrUnreachable and the driver's error.
type ConnectError struct {
	Addr  string // host:port (or socket directory) tried
	Cause string // short reason, e.g. "connection refused"
	Err   error  // the driver's error
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("cannot connect to PostgreSQL at %s: %s; check source.dsn and that the server is running", e.Addr, e.Cause)
}

// Unwrap returns ErrUnreachable and the driver's error.
func (e *ConnectError) Unwrap() []error { return []error{ErrUnreachable, e.Err} }

func newConnectError(cfg *pgconn.Config, err error) *ConnectError {
	addr := cfg.Host
	if !strings.HasPrefix(cfg.Host, "/") {
		addr = net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	}
	return &ConnectError{Addr: addr, Cause: connectCause(err), Err: err}
}

// connectCause picks the most useful short reason out of a driver error.
func connectCause(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	var sysErr *os.SyscallError
	if errors.As(err, &sysErr) {
		return sysErr.Err.Error()
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.Error()
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// WALLevelError is returned when wal_level is not logical. It wraps ErrWALLevel.
type WALLevelError struct {
	Level string // the current setting
}

func (e *WALLevelError) Error() string {
	return fmt.Sprintf("PostgreSQL wal_level is '%s' but silt needs 'logical': run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL", e.Level)
}

func (e *WALLevelError) Unwrap() error { return ErrWALLevel }

// TableError reports a problem with a table to be published. It wraps
// ErrNoPrimaryKey or ErrMissingTable.
type TableError struct {
	Table change.TableID
	Err   error // ErrNoPrimaryKey or ErrMissingTable
	// More counts further tables with the same problem (not named, to keep
	// the message on one line).
	More int
}

func (e *TableError) Error() string {
	var s string
	switch e.Err {
	case ErrNoPrimaryKey:
		s = fmt.Sprintf("table %s has no primary key: add one (ALTER TABLE %s ADD PRIMARY KEY (...)) or set REPLICA IDENTITY FULL, or remove it from source.tables", e.Table, e.Table)
	case ErrMissingTable:
		s = fmt.Sprintf("table %s does not exist: create it, or remove it from source.tables", e.Table)
	default:
		s = fmt.Sprintf("table %s: %v", e.Table, e.Err)
	}
	if e.More > 0 {
		s += fmt.Sprintf(" (and %d more tables like it)", e.More)
	}
	return s
}

func (e *TableError) Unwrap() error { return e.Err }

// SlotError reports a problem with the replication slot. It wraps
// ErrSlotMismatch, ErrSlotNotFound or ErrSlotActive.
type SlotError struct {
	Slot   string
	Err    error
	Detail string // e.g. "plugin test_decoding" or "PID 1234"
}

func (e *SlotError) Error() string {
	switch e.Err {
	case ErrSlotMismatch:
		return fmt.Sprintf("replication slot %q exists but is %s, not a pgoutput slot of this database: drop it (silt slot drop) or choose another source.slot", e.Slot, e.Detail)
	case ErrSlotNotFound:
		return fmt.Sprintf("replication slot %q does not exist: it was dropped or never created; restart silt to create it (changes since the old slot are lost)", e.Slot)
	case ErrSlotActive:
		return fmt.Sprintf("replication slot %q is in use by %s: stop the other consumer first", e.Slot, e.Detail)
	}
	return fmt.Sprintf("replication slot %q: %v", e.Slot, e.Err)
}

func (e *SlotError) Unwrap() error { return e.Err }

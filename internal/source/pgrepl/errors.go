package pgrepl

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/source/pgoutput"
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
	// ErrNoPrimaryKey: a published table has neither a primary key nor a
	// replica identity index, so Silver cannot mirror it by key, and
	// source.keyless does not allow it (*TableError).
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
	// IdentityFull: with ErrNoPrimaryKey, Table has REPLICA IDENTITY FULL
	// (but still no key).
	IdentityFull bool
}

func (e *TableError) Error() string {
	var s string
	switch e.Err {
	case ErrNoPrimaryKey:
		what := "has no primary key"
		if e.IdentityFull {
			what = "has REPLICA IDENTITY FULL but no primary key (identical rows cannot be told apart, so it cannot be mirrored)"
		}
		s = fmt.Sprintf("table %s %s: add one (ALTER TABLE %s ADD PRIMARY KEY (...)) or use a unique index (REPLICA IDENTITY USING INDEX), or set source.keyless: append (or source.keyless_tables.%s: append) to capture it as an append-only change log, or remove it from source.tables", e.Table, what, e.Table, e.Table)
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

// ErrConnLost marks an error after which the replication connection is
// gone (the server closed it, the network failed, or nothing arrived within
// Config.ReceiveTimeout). Run can be called again to resume.
var ErrConnLost = errors.New("replication connection lost")

// connLost wraps err (an I/O failure on the replication connection) so that
// errors.Is(err, ErrConnLost) holds and the cause stays visible.
type connLost struct{ err error }

func (e *connLost) Error() string   { return e.err.Error() }
func (e *connLost) Unwrap() []error { return []error{ErrConnLost, e.err} }

// HandlerError is returned by Run when the Handler failed. It is never
// retryable: the handler's own failure (for example the stream refusing an
// append) is not a source problem that reconnecting fixes.
type HandlerError struct {
	CommitLSN change.LSN
	XID       uint32
	Err       error
}

func (e *HandlerError) Error() string {
	return fmt.Sprintf("handle transaction %d at %v: %v", e.XID, e.CommitLSN, e.Err)
}

func (e *HandlerError) Unwrap() error { return e.Err }

// Retryable reports whether Run failed in a way that calling Run again
// (after a backoff) can fix without operator action. This is the one place
// where pgrepl errors are classified; each decision says why.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	// The handler failed: retrying would hand it the same data and fail the
	// same way, or hide a broken sink.
	var he *HandlerError
	if errors.As(err, &he) {
		return false
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, ErrClosed):
		// Someone stopped us on purpose.
		return false
	case errors.Is(err, ErrConfig), errors.Is(err, ErrWALLevel), errors.Is(err, ErrProtocol),
		errors.Is(err, ErrTxnTooLarge), errors.Is(err, ErrSlotMismatch), errors.Is(err, ErrSlotNotFound),
		errors.Is(err, ErrMissingTable), errors.Is(err, ErrNoPrimaryKey), errors.Is(err, pgoutput.ErrMalformed):
		// Needs an operator (or a code fix): the same input fails again. A
		// dropped slot in particular must never be silently re-created, as
		// the changes since are lost.
		return false
	case errors.Is(err, ErrSlotActive):
		// Usually our own previous walsender that has not exited yet (after
		// a network cut the server notices only at wal_sender_timeout), or
		// another silt that holds the slot: waiting is the right thing in
		// both cases (active/passive).
		return true
	case errors.Is(err, ErrConnLost):
		// The connection broke under us: terminated walsender, restart,
		// network cut, stalled link.
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection_exception
			pgErr.Code == "57P01",                        // admin_shutdown: pg_terminate_backend, fast shutdown
			pgErr.Code == "57P02",                        // crash_shutdown
			pgErr.Code == "57P03",                        // cannot_connect_now: starting up or shutting down
			pgErr.Code == "53300",                        // too_many_connections
			pgErr.Code == "53400",                        // configuration_limit_exceeded (all wal senders busy)
			pgErr.Code == "40001", pgErr.Code == "40P01": // serialization failure, deadlock on slot queries
			return true
		}
		// Anything else the server says (authentication, missing database,
		// permissions) needs an operator.
		return false
	}
	var ce *ConnectError
	if errors.As(err, &ce) {
		// No server answer at all (refused, reset, timeout, DNS): the server
		// may be restarting or the network healing. TLS and authentication
		// problems come back as PgError or certificate errors, handled above
		// and below.
		var certErr *tls.CertificateVerificationError
		if errors.As(err, &certErr) {
			return false
		}
		var netErr net.Error
		return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
			errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
	}
	// Unknown errors are fatal: better to stop loudly than to loop.
	return false
}

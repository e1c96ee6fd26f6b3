// Package pgrepl captures committed changes from PostgreSQL through a
// logical replication slot using the pgoutput plugin (protocol 1), with
// bounded memory, heartbeats, slot statistics and resumable runs.
//
// # Lifecycle
//
//	src, err := pgrepl.Open(ctx, cfg) // preflight; create publication and slot if missing
//	go src.Run(ctx, handler)          // stream until ctx ends or an error
//	src.Ack(lsn)                      // whenever everything up to lsn is durable downstream
//	src.Close()                       // stops Run and waits for it
//
// Open connects with a normal SQL connection and checks, in order: the
// server is reachable (*ConnectError), wal_level is logical
// (*WALLevelError), every configured table exists (*TableError,
// ErrMissingTable) and every table to publish has a key: a primary key or
// a replica identity index (*TableError, ErrNoPrimaryKey), unless
// Config.KeylessAppend allows it. REPLICA IDENTITY FULL alone is no key:
// identical rows cannot be told apart, so such a table cannot be mirrored.
// Run applies the same rule to a table it meets that Open did not check
// (see Source.checkRelation).
// It then creates the publication (FOR ALL TABLES when Config.Tables is
// empty, else FOR TABLE ...) and then the slot, in that order: pgoutput looks
// the publication up as of each decoded change, so it must predate the slot.
// Each of these errors prints as one line saying what to do.
//
// Run opens a replication connection and streams from the slot's
// confirmed_flush_lsn. It calls the Handler with each committed transaction,
// in commit order, as one Batch or, for a transaction larger than
// Config.TxnMemoryLimit, as several (Batch.Last marks the final one): such a
// transaction is spilled to a file in Config.SpillDir while it arrives and
// read back in chunks at its commit, so memory stays bounded whatever the
// transaction's size. Run returns on ctx end (the ctx error), on a handler
// error (*HandlerError), or on a connection or protocol error; Retryable
// says whether calling Run again can help. A later Run of the same Source
// resumes from confirmed_flush_lsn but skips what an earlier Run delivered,
// down to the change within a chunked transaction, so a reconnect delivers
// nothing twice. A new Source (a new process) delivers again everything
// after confirmed_flush_lsn (at-least-once; Config.SkipThrough and the
// pipeline's stream dedup handle that).
//
// # Heartbeats, lag and stalls
//
// Beside each Run a goroutine emits pg_logical_emit_message(true,
// HeartbeatPrefix, ...) every Config.HeartbeatInterval when no transaction
// was delivered meanwhile. The replication session asks for logical messages
// (PostgreSQL 14+), so the heartbeat arrives as an empty transaction that
// is delivered with Batch.Heartbeat set; acknowledging its EndLSN lets the
// slot advance although the captured tables are idle (otherwise WAL written
// by other databases or unpublished tables piles up). The same goroutine
// samples SlotStats (lag, retained WAL, walsender PID, wal_status) for
// Source.Stats and warns when the lag passes Config.LagWarnBytes.
// Periodic status updates request a reply; when nothing arrives for
// Config.ReceiveTimeout the link is declared dead (ErrConnLost).
//
// # Schema changes
//
// Every Relation message updates the relation cache; each change carries the
// *change.Relation current when it was decoded, so downstream sees:
//
//   - ADD COLUMN: the new column in later changes (Bronze/Silver add it as a
//     nullable column). Existing rows are not rewritten by PostgreSQL, so a
//     column added with a DEFAULT is NULL in Silver for rows not changed
//     since; re-snapshot the table to backfill.
//   - DROP COLUMN: later changes lack it; the Delta column stays, NULL in
//     rows written afterwards.
//   - RENAME COLUMN: looks like a drop plus an add: Delta has no rename
//     without column mapping, so the new name appears as a new column
//     (filled by each row's next change) and the old one stays.
//   - Type change: delivered as is; Bronze refuses an incompatible type and
//     the pipeline stops with an error naming the column and the way out,
//     before anything is acknowledged.
//   - TRUNCATE: an OpTruncate change per table.
//   - A table added to the publication: its changes arrive from the
//     transaction that added it on (snapshotting its old rows is separate).
//
// # Acknowledgement
//
// The standby status updates that Run sends report write = flush = apply =
// the highest LSN passed to Ack (initially the slot's confirmed_flush_lsn),
// never the LSN received: PostgreSQL may discard WAL up to the flush LSN, so
// it must only cover data that is durable downstream. A status update is
// sent when Ack raises the LSN, when the server asks for a reply, and at
// least every Config.StatusInterval. The natural value to Ack is a
// transaction's endLSN once it (and all before it) are durable.
//
// # Change fields
//
// Within a transaction changes have Pos 0..n-1 in the order PostgreSQL
// sent them; all share LSN = the commit LSN, EndLSN = the end of the commit
// record, XID and CommitTime. Inserts fill New. Updates fill New, with
// change.Unchanged for unchanged TOASTed values that were not sent, and Old
// when PostgreSQL sent an old image: the key columns (other columns
// change.Absent) when the key changed, or the whole row for REPLICA IDENTITY
// FULL. Deletes fill Old the same way and leave New nil. A TRUNCATE gives
// one OpTruncate change per truncated table, with New and Old nil.
//
// Relation.Columns[i].Key marks the replica identity columns; for REPLICA
// IDENTITY FULL tables known at Open that have a primary key, Key marks the
// primary key instead (PostgreSQL would flag every column).
//
// # Concurrency
//
// Run is called by one goroutine at a time and does all network I/O on it:
// a receive is interrupted (its socket read deadline moved into the past)
// to send a status update promptly when Ack is called from another
// goroutine. Ack and Close are safe for concurrent use.
package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/source/pgoutput"
)

// Config configures a Source.
type Config struct {
	// DSN is a libpq-style connection string or URL.
	DSN string
	// Slot is the logical replication slot name: 1 to 63 characters of
	// a-z, 0-9 and _. Created with the pgoutput plugin if missing.
	Slot string
	// Publication is created if missing.
	Publication string
	// Tables to publish. Empty means all tables in the database's
	// non-system schemas (FOR ALL TABLES, so tables created later too).
	Tables []change.TableID
	// StatusInterval is the longest time between standby status updates.
	// Default 10s; it must stay below the server's wal_sender_timeout.
	StatusInterval time.Duration
	// SkipThrough drops transactions whose commit LSN is <= SkipThrough:
	// they are already durable downstream.
	SkipThrough change.LSN
	// MaxTxnBytes bounds the size of one transaction (approximately:
	// message bytes plus a per-change overhead); a larger one makes Run fail
	// with ErrTxnTooLarge. Default 1 GiB without SpillDir, unlimited with it.
	MaxTxnBytes int64
	// TxnMemoryLimit is how much of one transaction is held in memory;
	// beyond it the transaction is spilled to a file in SpillDir and later
	// delivered in chunks of about spillChunkBytes (1 MiB of encoded
	// changes). Default 64 MiB.
	TxnMemoryLimit int64
	// SpillDir holds spill files. Empty disables spilling: a transaction is
	// then held in memory whole, up to MaxTxnBytes. Leftover spill files
	// (after a crash) are removed by Open.
	SpillDir string
	// Password, if set, replaces the DSN's password (source.password_file).
	// Like the DSN it is never logged nor put in an error message.
	Password string
	// HeartbeatInterval is how often Run emits a heartbeat
	// (pg_logical_emit_message) on a normal connection when no transaction
	// was delivered meanwhile, so that an idle database's slot still
	// advances. It also samples SlotStats. Default 30s; negative disables.
	HeartbeatInterval time.Duration
	// LagWarnBytes: a warning is logged when the slot's lag (current WAL
	// minus confirmed_flush_lsn) exceeds it. Default 1 GiB; negative
	// disables.
	LagWarnBytes int64
	// ReceiveTimeout: when nothing arrives from the server for this long the
	// connection is considered dead (ErrConnLost). Periodic status updates
	// ask the server for a reply, so a live link is never silent for long.
	// Default 3 × StatusInterval.
	ReceiveTimeout time.Duration
	// Logger receives warnings (lag, heartbeat failures). Default
	// slog.Default().
	Logger *slog.Logger
	// KeylessAppend reports whether a table without a key (see
	// Source.Keyless) may be captured (source.keyless: append). nil, or
	// false for a table, refuses it at Open with a *TableError
	// (ErrNoPrimaryKey).
	KeylessAppend func(change.TableID) bool
}

// Defaults.
const (
	DefaultStatusInterval    = 10 * time.Second
	DefaultMaxTxnBytes       = 1 << 30
	DefaultTxnMemoryLimit    = 64 << 20
	DefaultHeartbeatInterval = 30 * time.Second
	DefaultLagWarnBytes      = 1 << 30
)

// spillChunkBytes is the size of one chunk of a spilled transaction, in
// encoded (spill file) bytes. Everything of a chunk is live at once on the
// capture side: its bytes, its decoded changes (about 2.5 times as much),
// and the handler's encoded copy queued for the stream, so it is kept
// small; a Batch of 1 MiB still carries ~10,000 changes, enough to make the
// per-batch cost negligible. It does not depend on TxnMemoryLimit: that
// setting is how much may be held before spilling, not how large the
// pieces handed on afterwards should be.
const spillChunkBytes = 1 << 20

var slotNameRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// Validate reports every problem with cfg at once. It does not fill defaults.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.DSN == "" {
		errs = append(errs, errors.New("source.dsn is empty"))
	} else if _, err := pgconn.ParseConfig(cfg.DSN); err != nil {
		errs = append(errs, fmt.Errorf("source.dsn: %w", err))
	}
	if !slotNameRE.MatchString(cfg.Slot) {
		errs = append(errs, fmt.Errorf("source.slot %q must be 1-63 characters of a-z, 0-9 and _", cfg.Slot))
	}
	if cfg.Publication == "" || len(cfg.Publication) > 63 {
		errs = append(errs, fmt.Errorf("source.publication %q must be 1-63 characters", cfg.Publication))
	}
	for _, t := range cfg.Tables {
		if t.Schema == "" || t.Name == "" {
			errs = append(errs, fmt.Errorf("source.tables: %q must be schema.table", t.String()))
		}
	}
	if cfg.StatusInterval < 0 {
		errs = append(errs, errors.New("source.status_interval must not be negative"))
	}
	if cfg.MaxTxnBytes < 0 {
		errs = append(errs, errors.New("source.max_txn_bytes must not be negative"))
	}
	if cfg.TxnMemoryLimit < 0 {
		errs = append(errs, errors.New("source.txn_memory_limit must not be negative"))
	}
	if cfg.ReceiveTimeout < 0 {
		errs = append(errs, errors.New("source.receive_timeout must not be negative"))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
}

// Batch is one delivery to a Handler: a whole committed transaction, or one
// chunk of a large one (see Config.TxnMemoryLimit).
type Batch struct {
	// Changes, ordered by Pos. Consecutive batches of one transaction
	// continue its Pos sequence. Empty only for a heartbeat transaction.
	Changes []*change.Change
	// CommitLSN, EndLSN and XID of the transaction (also set on each change).
	CommitLSN change.LSN
	EndLSN    change.LSN
	XID       uint32
	// Last is true on the transaction's final batch. Only once the last
	// batch (and everything before it) is durable may the caller Ack
	// EndLSN: acknowledging after an earlier batch would let PostgreSQL
	// discard the rest of the transaction.
	Last bool
	// Heartbeat marks a transaction that carried a silt heartbeat message
	// (see Config.HeartbeatInterval); it has no changes.
	Heartbeat bool
}

// Handler receives each committed transaction, in commit order, as one or
// more batches (Batch.Last marks the final one). Datums may alias buffers
// valid only during the call, and the Batch, its slice and *change.Change
// values may be reused afterwards: copy whatever is retained. Relations are
// immutable and may be kept. Returning an error stops Run with a
// *HandlerError wrapping it.
type Handler func(ctx context.Context, b *Batch) error

// Source streams changes from one slot. See the package doc.
type Source struct {
	cfg     Config
	keys    map[change.TableID][]string // primary keys of REPLICA IDENTITY FULL tables
	known   map[change.TableID]bool     // tables whose key preflight (or checkRelation) checked; Run's goroutine after Open
	keyless []change.TableID            // guarded by mu: tables without a key, allowed by Config.KeylessAppend
	connCfg *pgconn.Config              // replication connection settings

	acked atomic.Uint64 // highest LSN passed to Ack (or the slot's confirmed_flush_lsn)

	lastDelivery atomic.Int64  // unix nanos of the last delivered batch
	kicks        atomic.Uint64 // incremented by every interrupt of a receive (Ack, end of Run)
	stats        statCounters

	mu      sync.Mutex
	through through // guarded by mu: how far earlier Runs delivered
	kick    func()  // interrupts the current receive, so Run sends a status update
	running bool
	stop    context.CancelFunc // cancels the running Run
	done    chan struct{}      // closed when the running Run returns
	closed  bool
}

// Open checks the source (see the package doc), creates the publication and
// the slot if missing, and returns a Source ready to Run.
func Open(ctx context.Context, cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.StatusInterval == 0 {
		cfg.StatusInterval = DefaultStatusInterval
	}
	if cfg.MaxTxnBytes == 0 && cfg.SpillDir == "" {
		cfg.MaxTxnBytes = DefaultMaxTxnBytes
	}
	if cfg.TxnMemoryLimit == 0 {
		cfg.TxnMemoryLimit = DefaultTxnMemoryLimit
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.LagWarnBytes == 0 {
		cfg.LagWarnBytes = DefaultLagWarnBytes
	}
	if cfg.ReceiveTimeout == 0 {
		cfg.ReceiveTimeout = 3 * cfg.StatusInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Tables = slices.Clone(cfg.Tables)
	if err := RemoveSpillFiles(cfg.SpillDir); err != nil {
		return nil, fmt.Errorf("remove old spill files in %s: %w", cfg.SpillDir, err)
	}

	conn, err := connect(ctx, cfg.DSN, cfg.Password)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tables, err := preflight(ctx, conn, cfg.Tables, cfg.KeylessAppend)
	if err != nil {
		return nil, err
	}
	if err := ensurePublication(ctx, conn, cfg.Publication, cfg.Tables); err != nil {
		return nil, err
	}
	if err := ensureSlot(ctx, conn, cfg.Slot); err != nil {
		return nil, err
	}

	s := &Source{cfg: cfg, keys: map[change.TableID][]string{}, known: map[change.TableID]bool{}}
	for id, ti := range tables {
		s.known[id] = true
		if ti.identity == 'f' && len(ti.pk) > 0 {
			s.keys[id] = ti.pk
		}
		if !ti.keyed() {
			s.keyless = append(s.keyless, id)
		}
	}
	slices.SortFunc(s.keyless, func(a, b change.TableID) int { return strings.Compare(a.String(), b.String()) })
	s.connCfg, err = pgconn.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("%w: source.dsn: %w", ErrConfig, err)
	}
	if cfg.Password != "" {
		s.connCfg.Password = cfg.Password
	}
	s.connCfg.RuntimeParams["replication"] = "database"
	s.connCfg.DialFunc = lowatDial(s.connCfg.DialFunc)
	return s, nil
}

// Keyless returns the tables without a key (no primary key and no replica
// identity index) that Config.KeylessAppend allowed: those found at Open,
// sorted, then those Run met later (see checkRelation). Safe for
// concurrent use.
func (s *Source) Keyless() []change.TableID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.keyless)
}

// IsKeyless reports whether id is one of Keyless. Safe for concurrent use.
func (s *Source) IsKeyless(id change.TableID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.keyless, id)
}

// checkRelation applies preflight's key rule to a table that Open did not
// check (created, or added to the publication, later), before its first
// change is decoded: a table keyed by a replica identity index or primary
// key passes (for REPLICA IDENTITY FULL the primary key, looked up in the
// catalog, becomes the key, as at Open); a keyless one is recorded in
// Keyless if Config.KeylessAppend allows it, else Run stops with a
// *TableError (ErrNoPrimaryKey) before anything of the transaction is
// delivered.
func (s *Source) checkRelation(ctx context.Context, rel *pgoutput.Relation) error {
	id := change.TableID{Schema: rel.Namespace, Name: rel.Name}
	if s.known[id] {
		return nil
	}
	full := rel.ReplicaIdentity == pgoutput.IdentityFull
	keyless := true
	if full {
		conn, err := connect(ctx, s.cfg.DSN, s.cfg.Password)
		if err != nil {
			return err
		}
		all, err := listTables(ctx, conn)
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return err
		}
		if pk := all[id].pk; len(pk) > 0 {
			s.keys[id], keyless = pk, false
		}
	} else {
		for _, c := range rel.Columns {
			if c.Key() {
				keyless = false
			}
		}
	}
	if keyless {
		if s.cfg.KeylessAppend == nil || !s.cfg.KeylessAppend(id) {
			return &TableError{Table: id, Err: ErrNoPrimaryKey, IdentityFull: full}
		}
		s.mu.Lock()
		if !slices.Contains(s.keyless, id) {
			s.keyless = append(s.keyless, id)
		}
		s.mu.Unlock()
	}
	s.known[id] = true
	return nil
}

// Ack records that everything up to lsn is durable downstream. The next
// standby status update, sent promptly, reports it as the flushed LSN.
// Lower values than an earlier Ack are ignored. Safe for concurrent use.
func (s *Source) Ack(lsn change.LSN) {
	for {
		old := s.acked.Load()
		if uint64(lsn) <= old {
			return
		}
		if s.acked.CompareAndSwap(old, uint64(lsn)) {
			break
		}
	}
	s.mu.Lock()
	k := s.kick
	s.mu.Unlock()
	if k != nil {
		k()
	}
}

// Acked returns the LSN the source reports as flushed.
func (s *Source) Acked() change.LSN { return change.LSN(s.acked.Load()) }

// Close stops a running Run and waits for it to return. It is idempotent.
func (s *Source) Close() error {
	s.mu.Lock()
	s.closed = true
	stop, done := s.stop, s.done
	s.mu.Unlock()
	if stop != nil {
		stop()
		<-done // Run returns promptly: every blocking call in it honours its ctx
	}
	return nil
}

// Run streams from the slot until ctx ends, the handler fails, or the
// connection breaks; see the package doc. It never returns nil.
func (s *Source) Run(ctx context.Context, h Handler) error {
	if h == nil {
		return errors.New("pgrepl: Run needs a Handler")
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.running:
		s.mu.Unlock()
		return errors.New("pgrepl: Run is already running")
	}
	ctx, cancel := context.WithCancel(ctx)
	s.running, s.stop, s.done = true, cancel, make(chan struct{})
	done := s.done
	s.mu.Unlock()
	defer func() {
		cancel()
		s.mu.Lock()
		s.running, s.stop, s.done = false, nil, nil
		s.mu.Unlock()
		close(done)
	}()

	conn, err := pgconn.ConnectConfig(ctx, s.connCfg)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("replication connection: %w", newConnectError(s.connCfg, err))
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer ccancel()
		conn.Close(cctx)
	}()
	s.mu.Lock()
	skip := s.through
	s.mu.Unlock()
	r := &runner{s: s, conn: conn, h: h, asm: assembler{
		maxBytes: s.cfg.MaxTxnBytes, memLimit: s.cfg.TxnMemoryLimit, spillDir: s.cfg.SpillDir, skip: skip,
	}}
	r.asm.rels.Keys = func(id change.TableID) []string { return s.keys[id] }
	r.asm.checkRel = func(rel *pgoutput.Relation) error { return s.checkRelation(ctx, rel) }
	defer r.asm.closeSpill()

	// The heartbeat goroutine is owned by this Run, which waits for it.
	hbCtx, hbStop := context.WithCancel(ctx)
	var hbDone sync.WaitGroup
	hbDone.Go(func() { s.heartbeatLoop(hbCtx) })
	defer func() {
		hbStop()
		hbDone.Wait()
	}()

	err = r.run(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// runner is the state of one Run.
type runner struct {
	s    *Source
	conn *pgconn.PgConn
	h    Handler
	asm  assembler

	sent       change.LSN // flush LSN of the last status update
	nextStatus time.Time  // when the next periodic status update is due
	lastRecv   time.Time  // when the last message arrived (and was handled)

	netConn      net.Conn   // r.conn's socket: receive sets its read deadline
	lowat        *lowatConn // netConn when it is a lowatConn (plain TCP), else nil
	readDeadline time.Time  // the read deadline receive last set
	seenKicks    uint64     // Source.kicks when receive last set the deadline
}

func (r *runner) run(ctx context.Context) error {
	s := r.s
	confirmed, err := r.slotState(ctx)
	if err != nil {
		return err
	}
	// Never report less than the slot already confirmed: PostgreSQL 15
	// stores the reported flush LSN as is, even if it moves backwards.
	s.Ack(confirmed)

	pub := pgx.Identifier{s.cfg.Publication}.Sanitize()
	args := []string{
		"proto_version '1'",
		"publication_names '" + strings.ReplaceAll(pub, "'", "''") + "'",
	}
	if serverMajor(r.conn) >= 14 {
		// Logical decoding messages (PostgreSQL 14+): carries heartbeats.
		args = append(args, "messages 'true'")
	}
	err = pglogrepl.StartReplication(ctx, r.conn, s.cfg.Slot, 0, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: args,
	})
	if err != nil {
		return r.connError(r.slotError(fmt.Errorf("start replication from slot %s: %w", s.cfg.Slot, err)))
	}
	defer r.finalStatus(ctx)

	// Receives wait with the socket's read deadline rather than a context
	// per message (a context, its timer and pgconn's watch of it cost more
	// than decoding the message): an Ack, or the end of ctx, interrupts the
	// wait by moving the deadline into the past.
	r.netConn = r.conn.Conn()
	if lc, ok := r.netConn.(*lowatConn); ok {
		r.lowat = lc
		lc.enable()
	}
	interrupt := func() {
		s.kicks.Add(1)
		r.netConn.SetReadDeadline(time.Unix(1, 0)) // error only once closed: nothing to interrupt
	}
	s.mu.Lock()
	s.kick = interrupt
	s.mu.Unlock()
	stopWatch := context.AfterFunc(ctx, interrupt)
	defer func() {
		stopWatch()
		s.mu.Lock()
		s.kick = nil
		s.mu.Unlock()
	}()

	now := time.Now()
	r.nextStatus = now // send one at once: it confirms the start position
	r.lastRecv = now
	got := false
	for {
		now = time.Now()
		if got {
			// Time spent in the handler is not server silence.
			r.lastRecv = now
		}
		if err := r.maybeSendStatus(false, now); err != nil {
			return err
		}
		msg, err := r.receive(ctx, now)
		if err != nil {
			return err
		}
		got = msg != nil
		if msg == nil {
			continue // interrupted to send a status update
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if err := r.handleCopyData(ctx, msg.Data); err != nil {
				return r.connError(err)
			}
		case *pgproto3.ErrorResponse:
			return r.slotError(fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(msg)))
		case *pgproto3.CopyDone, *pgproto3.CommandComplete, *pgproto3.ReadyForQuery:
			// The walsender ends the stream when it shuts down (for example
			// a fast shutdown of the server): resumable.
			return &connLost{fmt.Errorf("slot %s: server ended the replication stream", s.cfg.Slot)}
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			return fmt.Errorf("%w: %T during replication", ErrProtocol, msg)
		}
	}
}

// slotBusyWait is how long Run waits for the slot to be released. After a
// Run ends, its walsender exits only once it sees the connection close, so
// the next Run can briefly find the slot still active.
const slotBusyWait = 10 * time.Second

// slotState waits until the slot is free and returns its
// confirmed_flush_lsn.
func (r *runner) slotState(ctx context.Context) (change.LSN, error) {
	deadline := time.Now().Add(slotBusyWait)
	for {
		lsn, err := r.readSlot(ctx)
		err = r.connError(err)
		var se *SlotError
		if !errors.As(err, &se) || se.Err != ErrSlotActive || time.Now().After(deadline) {
			return lsn, err
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}

// readSlot reads the slot's confirmed_flush_lsn and checks it is free.
// A replication=database connection accepts simple SQL queries; the slot
// name was validated by Config.Validate, so quoting it inline is safe.
func (r *runner) readSlot(ctx context.Context) (change.LSN, error) {
	slot := r.s.cfg.Slot
	res, err := r.conn.Exec(ctx, "SELECT confirmed_flush_lsn::text, coalesce(active_pid, 0)::text FROM pg_replication_slots WHERE slot_name = '"+slot+"'").ReadAll()
	if err != nil {
		return 0, fmt.Errorf("read slot %s: %w", slot, err)
	}
	if len(res) != 1 || len(res[0].Rows) == 0 {
		return 0, &SlotError{Slot: slot, Err: ErrSlotNotFound}
	}
	row := res[0].Rows[0]
	if pid := string(row[1]); pid != "0" {
		return 0, &SlotError{Slot: slot, Err: ErrSlotActive, Detail: "PID " + pid}
	}
	if row[0] == nil {
		return 0, &SlotError{Slot: slot, Err: ErrSlotMismatch, Detail: "a slot without confirmed_flush_lsn"}
	}
	lsn, err := change.ParseLSN(string(row[0]))
	if err != nil {
		return 0, fmt.Errorf("read slot %s: %w", slot, err)
	}
	return lsn, nil
}

// slotError maps server errors about the slot to *SlotError.
func (r *runner) slotError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "42704": // undefined_object: replication slot "x" does not exist
			return &SlotError{Slot: r.s.cfg.Slot, Err: ErrSlotNotFound}
		case "55006": // object_in_use: replication slot "x" is active for PID n
			return &SlotError{Slot: r.s.cfg.Slot, Err: ErrSlotActive, Detail: pgErr.Message}
		}
	}
	return err
}

// receive waits for the next message. It returns (nil, nil) when the wait
// was cut short to send a status update (Ack called, or one is due).
func (r *runner) receive(ctx context.Context, now time.Time) (pgproto3.BackendMessage, error) {
	deadline := r.nextStatus
	if d := r.lastRecv.Add(r.s.cfg.ReceiveTimeout); d.Before(deadline) {
		deadline = d
	}
	if r.lowat != nil && r.lowat.busy {
		// Waits for a full SO_RCVLOWAT are bounded (see lowatConn).
		if d := now.Add(busyWait); d.Before(deadline) {
			deadline = d
		}
	}
	if k := r.s.kicks.Load(); k != r.seenKicks || !deadline.Equal(r.readDeadline) {
		r.seenKicks = k
		if err := r.netConn.SetReadDeadline(deadline); err != nil {
			return nil, r.connError(fmt.Errorf("receive from slot %s: %w", r.s.cfg.Slot, err))
		}
		r.readDeadline = deadline
		// An interrupt (Ack, or ctx ending) between the Load above and the
		// SetReadDeadline was overwritten by it: look again now.
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if change.LSN(r.s.acked.Load()) != r.sent {
			return nil, nil
		}
	}
	// Background: pgconn then sets up no context watch; the read
	// deadline above bounds the wait.
	msg, err := r.conn.ReceiveMessage(context.Background())
	if err == nil {
		return msg, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	// Our deadline or an interrupt ends the read with a timeout; pgconn
	// keeps the connection usable after a timeout.
	if pgconn.Timeout(err) && !r.conn.IsClosed() {
		r.readDeadline = time.Time{} // set it again on the next receive
		if silent := time.Since(r.lastRecv); silent > r.s.cfg.ReceiveTimeout {
			// Periodic status updates ask for a reply, so a live server is
			// never silent this long: the link is stalled or half-open.
			return nil, &connLost{fmt.Errorf("receive from slot %s: nothing from the server for %s", r.s.cfg.Slot, silent.Round(time.Millisecond))}
		}
		return nil, nil
	}
	return nil, r.connError(fmt.Errorf("receive from slot %s: %w", r.s.cfg.Slot, err))
}

// connError marks err as ErrConnLost when the connection is gone.
func (r *runner) connError(err error) error {
	if err != nil && r.conn.IsClosed() {
		var he *HandlerError
		if !errors.As(err, &he) {
			return &connLost{err}
		}
	}
	return err
}

func (r *runner) handleCopyData(ctx context.Context, data []byte) error {
	if len(data) == 0 || data[0] != 'w' {
		f, err := pgoutput.ParseFrame(data)
		if err != nil {
			return fmt.Errorf("replication frame: %w", err)
		}
		if k, ok := f.(*pgoutput.Keepalive); ok && k.ReplyRequested {
			return r.maybeSendStatus(true, time.Now())
		}
		return nil
	}
	f, err := pgoutput.ParseXLogData(data)
	if err != nil {
		return fmt.Errorf("replication frame: %w", err)
	}
	// The receive buffer is reused by the next receive; a row change is
	// copied into the transaction's arena so that its decoded tuples can
	// alias it while the transaction is buffered (asm.decode).
	m, err := r.asm.decode(f.Data)
	if err != nil {
		return fmt.Errorf("decode message at %v: %w", f.WALStart, err)
	}
	commit, err := r.asm.feed(m, len(f.Data))
	var te *TableError
	if errors.As(err, &te) {
		return err // one line that names the table (checkRelation)
	}
	if err != nil {
		return fmt.Errorf("at %v: %w", f.WALStart, err)
	}
	if commit == nil || r.asm.skipping() || commit.CommitLSN <= r.s.cfg.SkipThrough {
		return nil
	}
	if r.asm.empty() && !r.asm.heartbeat {
		return nil
	}
	return r.deliver(ctx, commit)
}

// deliver hands the committed transaction to the handler, in one batch or
// in chunks, recording after each batch how far delivery got so that a
// later Run of this Source does not deliver it again.
func (r *runner) deliver(ctx context.Context, commit *pgoutput.Commit) error {
	a := &r.asm
	if a.sp != nil {
		r.s.stats.spilledTxns.Add(1)
	}
	b := Batch{CommitLSN: commit.CommitLSN, EndLSN: commit.EndLSN, XID: a.begin.XID, Heartbeat: a.heartbeat && a.empty()}
	done := a.dropped
	return a.deliver(commit, spillChunkBytes, func(changes []*change.Change, last bool) error {
		b.Changes, b.Last = changes, last
		if err := r.h(ctx, &b); err != nil {
			return &HandlerError{CommitLSN: commit.CommitLSN, XID: b.XID, Err: err}
		}
		done += uint64(len(changes))
		t := through{lsn: commit.CommitLSN, n: done}
		if last {
			t.n = math.MaxUint64
			r.s.stats.transactions.Add(1)
		}
		r.s.mu.Lock()
		r.s.through = t
		r.s.mu.Unlock()
		r.s.stats.batches.Add(1)
		r.s.lastDelivery.Store(time.Now().UnixNano())
		if !last {
			// Delivering a spilled transaction can outlast the server's
			// wal_sender_timeout; keep replying so it does not cut us off.
			return r.maybeSendStatus(false, time.Now())
		}
		return nil
	})
}

// maybeSendStatus sends a standby status update if the acknowledged LSN
// moved, the periodic one is due, or force is set (the server asked).
func (r *runner) maybeSendStatus(force bool, now time.Time) error {
	acked := change.LSN(r.s.acked.Load())
	periodic := !now.Before(r.nextStatus)
	if !force && acked == r.sent && !periodic {
		return nil
	}
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), r.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(acked),
		WALFlushPosition: pglogrepl.LSN(acked),
		WALApplyPosition: pglogrepl.LSN(acked),
		ClientTime:       now,
		// The server answers a periodic update with a keepalive, which
		// proves the link alive (see Config.ReceiveTimeout).
		ReplyRequested: periodic && !force,
	})
	if err != nil {
		return &connLost{fmt.Errorf("send standby status to slot %s: %w", r.s.cfg.Slot, err)}
	}
	r.sent = acked
	r.nextStatus = now.Add(r.s.cfg.StatusInterval)
	return nil
}

// finalStatus reports the last Ack before the connection closes, so an Ack
// that raced with shutdown still reaches the slot.
func (r *runner) finalStatus(context.Context) {
	if change.LSN(r.s.acked.Load()) != r.sent && !r.conn.IsClosed() {
		_ = r.maybeSendStatus(true, time.Now()) // best effort: the next Run reports it anyway
	}
}

// DropSlot drops a replication slot. It returns a *SlotError wrapping
// ErrSlotNotFound if there is none, or ErrSlotActive if a consumer is
// streaming from it.
// password, if not empty, replaces the DSN's.
func DropSlot(ctx context.Context, dsn, password, slot string) error {
	conn, err := connect(ctx, dsn, password)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var pid *int32
	err = conn.QueryRow(ctx, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&pid)
	if errors.Is(err, pgx.ErrNoRows) {
		return &SlotError{Slot: slot, Err: ErrSlotNotFound}
	}
	if err != nil {
		return fmt.Errorf("look up replication slot %s: %w", slot, err)
	}
	if pid != nil {
		return &SlotError{Slot: slot, Err: ErrSlotActive, Detail: fmt.Sprintf("PID %d", *pid)}
	}
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			switch pgErr.Code {
			case "42704":
				return &SlotError{Slot: slot, Err: ErrSlotNotFound}
			case "55006":
				return &SlotError{Slot: slot, Err: ErrSlotActive, Detail: pgErr.Message}
			}
		}
		return fmt.Errorf("drop replication slot %s: %w", slot, err)
	}
	return nil
}

package pgsnap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/change"
)

// Config configures a snapshot.
type Config struct {
	// DSN of the source, with the session settings of pipeline.SessionDSN:
	// values are read in text format and must print exactly as pgoutput
	// prints them.
	DSN string
	// Password, if set, replaces the DSN's password.
	Password string
	// Publication whose tables are copied.
	Publication string
	// TablesParallel is how many tables are copied at once (DMS
	// MaxFullLoadSubTasks). Default 2.
	TablesParallel int
	// ChunksPerTable is how many chunks of one table are copied at once
	// (DMS ParallelLoadThreads). Default 4. The snapshot holds
	// TablesParallel × ChunksPerTable connections.
	ChunksPerTable int
	// ChunkRows is the target rows per chunk, the unit of parallelism
	// within a table and of resumption. Default 100000.
	ChunkRows int64
	// MaxChunks caps the chunks of one table. Default 10000.
	MaxChunks int
	// BatchRows is how many rows one Sink.Emit carries. Default 2000.
	BatchRows int
	// Retryable says whether an error of a chunk worker (a query, or a
	// connect) may be fixed by reconnecting: Run then resumes the
	// unfinished chunks in a new snapshot after a backoff. The pipeline
	// passes pgrepl.Retryable plus ErrConnLost. Nil: nothing is retried.
	Retryable func(error) bool
	// RetryMin and RetryMax bound the backoff between attempts (doubling;
	// defaults 100ms and 30s).
	RetryMin, RetryMax time.Duration
	Logger             *slog.Logger
}

func (c *Config) defaults() {
	if c.TablesParallel <= 0 {
		c.TablesParallel = 2
	}
	if c.ChunksPerTable <= 0 {
		c.ChunksPerTable = 4
	}
	if c.ChunkRows <= 0 {
		c.ChunkRows = 100000
	}
	if c.MaxChunks <= 0 {
		c.MaxChunks = 10000
	}
	if c.BatchRows <= 0 {
		c.BatchRows = 2000
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(30*time.Second, c.RetryMin)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// ErrConnLost marks an error after which a snapshot connection is gone (the
// server closed it, restarted, or the network broke), or could not be
// opened because the server did not answer. Reconnecting may fix it.
var ErrConnLost = errors.New("snapshot connection lost")

// connLost wraps err so that errors.Is(err, ErrConnLost) holds.
type connLost struct{ err error }

func (e *connLost) Error() string   { return e.err.Error() }
func (e *connLost) Unwrap() []error { return []error{ErrConnLost, e.err} }

// lost marks err as ErrConnLost when conn is closed after it (pgx closes a
// connection whose socket failed or whose server said FATAL).
func lost(conn *pgx.Conn, err error) error {
	if err != nil && conn != nil && conn.IsClosed() {
		return &connLost{err}
	}
	return err
}

// connectLost marks a connect error as ErrConnLost when the server did not
// answer at all (refused, reset, EOF, timeout): it may be restarting or the
// network healing. An answer (authentication, missing database) is a
// *pgconn.PgError and stays as it is.
func connectLost(err error) error {
	var pgErr *pgconn.PgError
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &pgErr) || errors.As(err, &certErr) {
		return err
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
		return &connLost{err}
	}
	return err
}

// Mark is an opaque position returned by Sink.Emit.
type Mark any

// Sink receives snapshot rows; the pipeline implements it on the stream.
type Sink interface {
	// Emit appends rows (op change.OpLoad) downstream and returns a mark
	// covering them. The changes and their datums are valid only during the
	// call. Emit is called from several goroutines at once.
	Emit(ctx context.Context, rows []*change.Change) (Mark, error)
	// WaitDurable blocks until everything Emit returned m for (and all
	// emitted before it) is durable downstream, i.e. in Bronze.
	WaitDurable(ctx context.Context, m Mark) error
}

// ChunkSink is an optional ability of a Sink: writing one chunk straight
// to its destination (the pipeline: the table's Bronze Delta table), as one
// atomic commit that records the chunk's identity (appID, version), from
// several goroutines at once. Rows of such a chunk do not go through Emit.
type ChunkSink interface {
	// BeginChunk starts chunk (appID, version) of rel. done reports that it
	// is durable already (written before a crash): nothing to copy. w nil
	// and done false: this chunk must go through Emit (e.g. the destination
	// needs a schema change first).
	BeginChunk(ctx context.Context, rel *change.Relation, appID string, version int64) (w ChunkWriter, done bool, err error)
}

// ChunkWriter receives the rows of one chunk.
type ChunkWriter interface {
	// Append adds rows; the changes and their datums are valid only
	// during the call.
	Append(rows []*change.Change) error
	// Commit makes every appended row durable, atomically with the chunk's
	// identity.
	Commit(ctx context.Context) error
	// Release frees the writer (after Commit, or to abandon the chunk).
	Release()
}

// BinaryChunkWriter is a ChunkWriter that also takes values of some types
// in PostgreSQL's binary send format (change.Binary datums): the chunk
// reads those columns in binary.
type BinaryChunkWriter interface {
	ChunkWriter
	// ReadsBinary reports whether the writer reads column c's binary form
	// into exactly the value its text form gives.
	ReadsBinary(c change.Column) bool
}

// Export is the snapshot a new slot exported (see pgrepl.ExportedSnapshot).
type Export struct {
	Name          string
	ConsistentLSN change.LSN
	Created       time.Time
}

// Snapshot is the initial load of one slot: its durable state and, while
// chunks remain, the connections that copy them.
type Snapshot struct {
	cfg   Config
	store blob.Store

	mu    sync.Mutex
	state *State // guarded by mu; saved after every change

	conns []*pgx.Conn // each in a REPEATABLE READ transaction on the snapshot
	pg15  bool

	stats   []*tableStats // parallel to state.Tables
	retries atomic.Int64  // attempts Run started again after a retryable error
	wake    chan struct{} // AddTable -> the caller of Run (Wake)
}

// WriteCreating records, before the slot is created, that a snapshot is
// being set up (PhaseCreating).
func WriteCreating(ctx context.Context, store blob.Store, slot string) error {
	return SaveState(ctx, store, &State{Slot: slot, Phase: PhaseCreating})
}

// DeleteState removes the state document.
func DeleteState(ctx context.Context, store blob.Store) error {
	return store.Delete(ctx, StateKey)
}

// Create starts a snapshot in the snapshot a new slot exported. It must be
// called while the export is valid (pgrepl.SlotCreatedFunc): it opens the
// worker connections, imports the snapshot into each, plans every table of
// the publication and saves the state (PhaseRunning). Copying starts with
// Run.
func Create(ctx context.Context, cfg Config, store blob.Store, slot string, exp Export) (*Snapshot, error) {
	cfg.defaults()
	s := &Snapshot{cfg: cfg, store: store, wake: make(chan struct{}, 1)}
	if err := s.connect(ctx, exp.Name); err != nil {
		return nil, err
	}
	st := &State{Slot: slot, Phase: PhaseRunning, ConsistentLSN: exp.ConsistentLSN.String(), SnapshotName: exp.Name, CommitTime: exp.Created.UTC()}
	tables, err := listTables(ctx, s.conns[0], cfg.Publication)
	if err != nil {
		s.Close()
		return nil, err
	}
	for _, ti := range tables {
		ts, err := s.plan(ctx, ti)
		if err != nil {
			s.Close()
			return nil, err
		}
		st.Tables = append(st.Tables, ts)
	}
	if len(st.Tables) == 0 {
		st.Phase = PhaseDone
	}
	if err := SaveState(ctx, store, st); err != nil {
		s.Close()
		return nil, err
	}
	s.state = st
	s.initStats()
	return s, nil
}

// Open loads the state of an earlier snapshot; it returns nil, nil if there
// is none. An unfinished snapshot continues with Run.
func Open(ctx context.Context, cfg Config, store blob.Store) (*Snapshot, error) {
	cfg.defaults()
	st, err := LoadState(ctx, store)
	if err != nil || st == nil {
		return nil, err
	}
	s := &Snapshot{cfg: cfg, store: store, state: st, wake: make(chan struct{}, 1)}
	s.initStats()
	return s, nil
}

// State returns a copy of the state.
func (s *Snapshot) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := *s.state
	st.Tables = make([]*TableState, len(s.state.Tables))
	for i, t := range s.state.Tables {
		tc := *t
		tc.Chunks = append([]Chunk(nil), t.Chunks...)
		st.Tables[i] = &tc
	}
	return st
}

// Complete reports whether every chunk is durable downstream.
func (s *Snapshot) Complete() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.Complete()
}

// Gate says what Silver may do with a table.
type Gate int

const (
	// GateNone: the table is not part of the snapshot (or already merged):
	// Silver merges as usual.
	GateNone Gate = iota
	// GateWait: the table's snapshot is still being copied; Silver must not
	// touch it yet, or a logged change could be merged before the
	// snapshot row it follows.
	GateWait
	// GateMerge: the table's snapshot rows are all in Bronze; Silver must
	// merge them (silver.ProcessLoad) before anything else, then call
	// MarkMerged.
	GateMerge
)

// Gate returns the gate of table id.
func (s *Snapshot) Gate(id change.TableID) Gate {
	if s == nil {
		return GateNone
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Phase == PhaseCreating {
		return GateWait
	}
	t := s.state.Table(id)
	switch {
	case t == nil || t.Merged:
		return GateNone
	case !t.Done:
		return GateWait
	}
	return GateMerge
}

// Knows reports whether table id is part of the snapshot (copied, being
// copied, or added to be copied).
func (s *Snapshot) Knows(id change.TableID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.Table(id) != nil
}

// AddTable records that table id (relation oid), added to the publication
// after the snapshot was planned, must be copied, and saves the state; it
// reports false if the table is known already. From then on Gate(id) is
// GateWait until the table is copied: the caller must call AddTable before
// any logged change of the table can reach Silver (the pipeline does it
// before appending the table's first change to the stream). Run (or the
// next Run, whose caller Wake wakes) plans and copies the table in a new
// snapshot; see the package doc for why that has no gap or overlap with the
// table's logged changes.
func (s *Snapshot) AddTable(ctx context.Context, id change.TableID, oid uint32) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Table(id) != nil {
		return false, nil
	}
	if s.state.Phase == PhaseCreating {
		return false, errors.New("snapshot: internal error: AddTable before the snapshot was planned")
	}
	s.state.Tables = append(s.state.Tables, &TableState{Schema: id.Schema, Name: id.Name, OID: oid, Added: true})
	s.stats = append(s.stats, &tableStats{})
	s.state.Phase = PhaseRunning
	if err := SaveState(ctx, s.store, s.state); err != nil {
		s.state.Tables = s.state.Tables[:len(s.state.Tables)-1]
		s.stats = s.stats[:len(s.stats)-1]
		return false, err
	}
	s.cfg.Logger.Info("snapshot: table added to the publication; it will be copied, then streamed", "table", id.String())
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true, nil
}

// unplanned reports whether a table added by AddTable waits to be planned.
func (s *Snapshot) unplanned() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.state.Tables {
		if !t.Done && len(t.Chunks) == 0 {
			return true
		}
	}
	return false
}

// Wake receives a value after AddTable added a table: a caller whose Run
// returned (complete) should Run again.
func (s *Snapshot) Wake() <-chan struct{} { return s.wake }

// Discover adds (AddTable) every table of the publication the state does not
// know: tables added to the publication while silt was stopped, or by
// source.tables at start. It returns the tables it added.
func (s *Snapshot) Discover(ctx context.Context) ([]change.TableID, error) {
	pcfg, err := pgx.ParseConfig(s.cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("snapshot: source.dsn: %w", err)
	}
	if s.cfg.Password != "" {
		pcfg.Password = s.cfg.Password
	}
	conn, err := pgx.ConnectConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("snapshot: connect: %w", connectLost(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tables, err := listTables(ctx, conn, s.cfg.Publication)
	if err != nil {
		return nil, err
	}
	var added []change.TableID
	for _, t := range tables {
		ok, err := s.AddTable(ctx, t.id, t.oid)
		if err != nil {
			return added, err
		}
		if ok {
			added = append(added, t.id)
		}
	}
	return added, nil
}

// MarkMerged records that Silver merged the snapshot rows of table id.
func (s *Snapshot) MarkMerged(ctx context.Context, id change.TableID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.state.Table(id)
	if t == nil || t.Merged {
		return nil
	}
	t.Merged = true
	return SaveState(ctx, s.store, s.state)
}

// connect opens the worker connections, each in a REPEATABLE READ READ ONLY
// transaction on snapshot name. With name empty, the first connection
// exports a fresh snapshot for the others (a resumed run).
func (s *Snapshot) connect(ctx context.Context, name string) error {
	n := s.cfg.TablesParallel * s.cfg.ChunksPerTable
	pcfg, err := pgx.ParseConfig(s.cfg.DSN)
	if err != nil {
		return fmt.Errorf("snapshot: source.dsn: %w", err)
	}
	if s.cfg.Password != "" {
		pcfg.Password = s.cfg.Password
	}
	// The first connection exports the snapshot if there is no name yet;
	// the others connect and import it at once (each connection costs a
	// round trip or more, and the copy waits for all of them).
	first := 0
	if name == "" {
		conn, err := s.connectOne(ctx, pcfg, "")
		if conn != nil {
			s.conns = append(s.conns, conn)
		}
		if err != nil {
			s.Close()
			return err
		}
		if err := conn.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&name); err != nil {
			s.Close()
			return fmt.Errorf("snapshot: export: %w", lost(conn, err))
		}
		first = 1
	}
	conns := make([]*pgx.Conn, n-first)
	errs := make([]error, n-first)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns[i], errs[i] = s.connectOne(ctx, pcfg, name)
		}()
	}
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			s.conns = append(s.conns, c)
		}
	}
	for _, err := range errs {
		if err != nil {
			s.Close()
			return err
		}
	}
	v, _ := strconv.Atoi(s.conns[0].PgConn().ParameterStatus("server_version_num"))
	if v == 0 {
		major, _, _ := strings.Cut(s.conns[0].PgConn().ParameterStatus("server_version"), ".")
		m, _ := strconv.Atoi(major)
		v = m * 10000
	}
	s.pg15 = v >= 150000
	return nil
}

// connectOne opens one worker connection in a REPEATABLE READ READ ONLY
// transaction, importing snapshot name unless it is empty. On an error
// after connecting it returns the connection too (for Close).
func (s *Snapshot) connectOne(ctx context.Context, pcfg *pgx.ConnConfig, name string) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("snapshot: connect: %w", connectLost(err))
	}
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return conn, fmt.Errorf("snapshot: begin: %w", lost(conn, err))
	}
	if name == "" {
		return conn, nil
	}
	// The name comes from the server; quote it anyway.
	if _, err := conn.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+strings.ReplaceAll(name, "'", "''")+"'"); err != nil {
		return conn, fmt.Errorf("snapshot: import snapshot %s: %w", name, lost(conn, err))
	}
	return conn, nil
}

// Close ends the worker transactions and connections. It is idempotent.
func (s *Snapshot) Close() {
	for _, c := range s.conns {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.Close(ctx)
		cancel()
	}
	s.conns = nil
}

func (s *Snapshot) plan(ctx context.Context, ti tableInfo) (*TableState, error) {
	rpp, err := rowsPerPage(ctx, s.conns[0], ti)
	if err != nil {
		return nil, err
	}
	ranges := PlanRanges(uint32(ti.pages), rpp, chunkRowsFor(rpp*float64(ti.pages), s.cfg.ChunkRows, s.cfg.ChunksPerTable), s.cfg.MaxChunks)
	ts := &TableState{Schema: ti.id.Schema, Name: ti.id.Name, OID: ti.oid, RelFileNode: ti.relfilenode,
		Pages: uint32(ti.pages), EstRows: int64(rpp * float64(ti.pages)), Gen: 1}
	for _, r := range ranges {
		ts.Chunks = append(ts.Chunks, Chunk{Range: r})
	}
	return ts, nil
}

// chunkRowsFor returns the rows per chunk for a table of est rows: at most
// chunkRows, but small enough to give each of the table's workers about
// four chunks (so that the last chunks do not leave workers idle), and not
// below minChunkRows (each chunk costs a commit).
func chunkRowsFor(est float64, chunkRows int64, workers int) int64 {
	const minChunkRows = 10000
	if want := int64(est) / int64(4*max(workers, 1)); want < chunkRows {
		return max(want, min(chunkRows, minChunkRows))
	}
	return chunkRows
}

// resume prepares an unfinished snapshot for copying in a new snapshot:
// tables whose heap file changed are planned again, dropped tables are
// marked done. See the package doc for why a newer snapshot is correct.
func (s *Snapshot) resume(ctx context.Context) error {
	if err := s.connect(ctx, ""); err != nil {
		return err
	}
	tables, err := listTables(ctx, s.conns[0], s.cfg.Publication)
	if err != nil {
		return lost(s.conns[0], err)
	}
	byOID := map[uint32]tableInfo{}
	for _, t := range tables {
		byOID[t.oid] = t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.Resumes++
	for i, t := range s.state.Tables {
		if t.Done {
			continue
		}
		ti, ok := byOID[t.OID]
		switch {
		case !ok:
			s.cfg.Logger.Warn("snapshot: table no longer published; skipping the rest of it", "table", t.ID().String())
			t.Done = true
		case len(t.Chunks) == 0: // added to the publication later (AddTable): plan it now
			nt, err := s.plan(ctx, ti)
			if err != nil {
				return lost(s.conns[0], err)
			}
			nt.Added, nt.Gen = true, t.Gen+1
			s.state.Tables[i] = nt
			s.cfg.Logger.Info("snapshot: copying a table added to the publication", "table", t.ID().String(), "chunks", len(nt.Chunks))
		case ti.relfilenode != t.RelFileNode:
			s.cfg.Logger.Info("snapshot: table was rewritten since the plan; copying it whole again", "table", t.ID().String())
			nt, err := s.plan(ctx, ti)
			if err != nil {
				return lost(s.conns[0], err)
			}
			nt.Added, nt.Gen = t.Added, t.Gen+1 // chunk identities of the old plan must not match
			s.state.Tables[i] = nt
		}
	}
	return SaveState(ctx, s.store, s.state)
}

// Run copies every chunk not yet done into sink and returns when all are
// durable downstream (nil), when ctx ends, or on an error Config.Retryable
// does not accept. After a retryable error (PostgreSQL restarted, a
// connection cut) it waits (backoff doubling from RetryMin to RetryMax) and
// copies the chunks not yet durable again, in a new snapshot (see the
// package doc for why a newer snapshot is correct); chunks already durable
// are never copied again. Each table's progress is in Stats. Run may also
// be called again after an error: it resumes the same way.
func (s *Snapshot) Run(ctx context.Context, sink Sink) error {
	backoff := s.cfg.RetryMin
	for {
		started := time.Now()
		err := s.run(ctx, sink)
		if err == nil && !s.Complete() {
			continue // tables were added while copying (AddTable): copy them in a new snapshot
		}
		if err == nil || ctx.Err() != nil || s.cfg.Retryable == nil || !s.cfg.Retryable(err) {
			return err
		}
		if time.Since(started) > time.Minute {
			backoff = s.cfg.RetryMin // it made progress for a while: start over
		}
		s.retries.Add(1)
		s.cfg.Logger.Warn("snapshot interrupted; copying the unfinished chunks again in a new snapshot", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, s.cfg.RetryMax)
	}
}

// run is one attempt of Run.
func (s *Snapshot) run(ctx context.Context, sink Sink) error {
	if s.Complete() {
		return nil
	}
	if s.conns == nil || s.unplanned() {
		s.Close() // a table added since Create is planned in a new snapshot
		if err := s.resume(ctx); err != nil {
			s.Close()
			return err
		}
		s.initStats()
	}
	defer s.Close()
	st := s.State()
	loadLSN, err := st.LoadLSN()
	if err != nil {
		return err
	}
	rels := make([]*change.Relation, len(st.Tables))
	var work []chunkRef
	for ti, t := range st.Tables {
		if t.Done {
			continue
		}
		rel, err := relation(ctx, s.conns[0], t.OID, t.ID(), s.cfg.Publication, s.pg15)
		if err != nil {
			return lost(s.conns[0], err)
		}
		rels[ti] = rel
		for ci, c := range t.Chunks {
			if !c.Done {
				work = append(work, chunkRef{table: ti, chunk: ci, rng: c.Range, gen: t.Gen})
			}
		}
	}
	s.cfg.Logger.Info("snapshot: copying", "tables", len(st.Tables), "chunks", len(work), "consistent_lsn", st.ConsistentLSN, "connections", len(s.conns))

	// Workers stop at the first error (wctx); chunks they finished before
	// it are still marked done once durable (ctx), so a retry redoes only
	// the chunks that were being copied.
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sch := newScheduler(work, s.cfg.TablesParallel, s.cfg.ChunksPerTable)
	completed := make(chan completion, len(work))
	var wg sync.WaitGroup
	for _, conn := range s.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := worker{s: s, conn: conn, sink: sink, rels: rels, loadLSN: loadLSN, commitTime: st.CommitTime}
			for {
				ref, ok := sch.next(wctx)
				if !ok {
					return
				}
				m, rows, durable, err := w.copyChunk(wctx, ref)
				sch.done(ref)
				if err != nil {
					cancel(fmt.Errorf("snapshot of %s, blocks %d-%d: %w", rels[ref.table].Table, ref.rng.Lo, ref.rng.Hi, lost(conn, err)))
					return
				}
				completed <- completion{ref: ref, mark: m, rows: rows, durable: durable}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(completed)
	}()

	// Mark chunks done, in the order they finished, once durable.
	var markErr error
	for c := range completed {
		if markErr != nil {
			continue // drain after an error
		}
		if !c.durable {
			markErr = sink.WaitDurable(ctx, c.mark)
		}
		if markErr == nil {
			markErr = s.markDone(ctx, c)
		}
		if markErr != nil {
			cancel(markErr)
		}
	}
	if err := context.Cause(wctx); err != nil {
		return err
	}
	if !s.Complete() {
		if len(work) == 0 && len(s.State().Tables) == len(st.Tables) {
			return errors.New("snapshot: internal error: tables left unplanned after a run")
		}
		return nil // tables added meanwhile (AddTable) or planned by this run: Run goes on
	}
	s.cfg.Logger.Info("snapshot: complete", "tables", len(st.Tables))
	return nil
}

type chunkRef struct {
	table, chunk int
	rng          Range
	gen          int64
}

type completion struct {
	ref     chunkRef
	mark    Mark
	rows    int64
	durable bool // written through a ChunkSink: no mark to wait for
}

func (s *Snapshot) markDone(ctx context.Context, c completion) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.state.Tables[c.ref.table]
	t.Chunks[c.ref.chunk].Done = true
	t.Chunks[c.ref.chunk].Rows = c.rows
	done := true
	for _, ch := range t.Chunks {
		done = done && ch.Done
	}
	if done {
		t.Done = true
		s.stats[c.ref.table].finish()
	}
	s.stats[c.ref.table].chunksDone.Add(1)
	all := true
	for _, t := range s.state.Tables {
		all = all && t.Done
	}
	if all {
		s.state.Phase = PhaseDone
	}
	return SaveState(ctx, s.store, s.state)
}

// scheduler hands out chunks so that at most tablesPar tables, and at most
// chunksPer chunks of one table, are copied at once. Tables are started in
// plan order.
type scheduler struct {
	mu        sync.Mutex
	cond      *sync.Cond
	pending   map[int][]chunkRef // table -> chunks not started
	order     []int
	active    map[int]int // table -> chunks being copied
	tablesPar int
	chunksPer int
}

func newScheduler(work []chunkRef, tablesPar, chunksPer int) *scheduler {
	s := &scheduler{pending: map[int][]chunkRef{}, active: map[int]int{}, tablesPar: tablesPar, chunksPer: chunksPer}
	s.cond = sync.NewCond(&s.mu)
	for _, w := range work {
		if _, ok := s.pending[w.table]; !ok {
			s.order = append(s.order, w.table)
		}
		s.pending[w.table] = append(s.pending[w.table], w)
	}
	return s
}

// next returns the next chunk to copy, waiting while every remaining chunk
// is held back by the limits; ok is false when none remain or ctx ended.
func (s *scheduler) next(ctx context.Context) (chunkRef, bool) {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for ctx.Err() == nil {
		left := false
		for _, t := range s.order {
			p := s.pending[t]
			if len(p) == 0 {
				continue
			}
			left = true
			a := s.active[t]
			if a >= s.chunksPer || (a == 0 && len(s.active) >= s.tablesPar) {
				continue
			}
			s.pending[t] = p[1:]
			s.active[t] = a + 1
			return p[0], true
		}
		if !left {
			return chunkRef{}, false
		}
		s.cond.Wait()
	}
	return chunkRef{}, false
}

func (s *scheduler) done(r chunkRef) {
	s.mu.Lock()
	if s.active[r.table]--; s.active[r.table] <= 0 {
		delete(s.active, r.table)
	}
	s.cond.Broadcast()
	s.mu.Unlock()
}

// worker copies chunks on one connection.
type worker struct {
	s          *Snapshot
	conn       *pgx.Conn
	sink       Sink
	rels       []*change.Relation
	loadLSN    change.LSN
	commitTime time.Time

	changes []change.Change
	ptrs    []*change.Change
	datums  []change.Datum
	arena   []byte
}

// copyChunk reads one chunk (in text format, but for the binary columns of
// a BinaryChunkWriter) and hands it on in batches:
// straight to its destination in one commit when the sink is a ChunkSink
// that accepts the chunk (durable true on return), else through Emit
// (durable once WaitDurable(mark) returns). Every row gets (LSN, Pos) =
// (LoadLSN, chunk index): a redone chunk produces the same identities.
func (w *worker) copyChunk(ctx context.Context, ref chunkRef) (mark Mark, rows int64, durable bool, err error) {
	rel := w.rels[ref.table]
	var cw ChunkWriter
	if cs, ok := w.sink.(ChunkSink); ok {
		var done bool
		cw, done, err = cs.BeginChunk(ctx, rel, ChunkAppID(ref.chunk), ref.gen)
		if err != nil {
			return nil, 0, false, fmt.Errorf("begin chunk: %w", err)
		}
		if done { // committed before a crash
			return nil, 0, true, nil
		}
		if cw != nil {
			defer cw.Release()
		}
	}
	cols := make([]string, len(rel.Columns))
	for i, c := range rel.Columns {
		cols[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + quote(rel.Table) +
		" WHERE ctid >= '(" + strconv.FormatUint(uint64(ref.rng.Lo), 10) + ",0)'::tid"
	if !ref.rng.Open {
		q += " AND ctid < '(" + strconv.FormatUint(uint64(ref.rng.Hi), 10) + ",0)'::tid"
	}
	if len(cols) == 0 {
		q = "SELECT FROM " + quote(rel.Table) + q[strings.Index(q, " WHERE"):]
	}
	batch := w.s.cfg.BatchRows
	ncol := len(rel.Columns)
	if cap(w.changes) < batch {
		w.changes = make([]change.Change, batch)
		w.ptrs = make([]*change.Change, batch)
	}
	if cap(w.datums) < batch*ncol {
		w.datums = make([]change.Datum, batch*ncol)
	}
	st := w.s.stats[ref.table]
	st.start()
	var last Mark
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		if cw != nil {
			if err := cw.Append(w.ptrs[:n]); err != nil {
				return err
			}
			st.rows.Add(int64(n))
			n = 0
			w.arena = w.arena[:0]
			return nil
		}
		m, err := w.sink.Emit(ctx, w.ptrs[:n])
		if err != nil {
			return fmt.Errorf("emit: %w", err)
		}
		last = m
		st.rows.Add(int64(n))
		n = 0
		w.arena = w.arena[:0]
		return nil
	}
	// Text results, as CDC's pgoutput sends them; a chunk written straight
	// to Bronze reads the types whose binary form gives the same value
	// (BinaryChunkWriter) in binary: cheaper for PostgreSQL to produce and
	// for silt to read.
	var formats []int16
	kind := make([]change.DatumKind, ncol)
	bw, _ := cw.(BinaryChunkWriter)
	for i, c := range rel.Columns {
		kind[i] = change.Text
		if bw != nil && bw.ReadsBinary(c) {
			if formats == nil {
				formats = make([]int16, ncol)
			}
			formats[i], kind[i] = 1, change.Binary
		}
	}
	rr := w.conn.PgConn().ExecParams(ctx, q, nil, nil, nil, formats)
	for rr.NextRow() {
		vals := rr.Values()
		if len(vals) != ncol {
			rr.Close()
			return nil, 0, false, fmt.Errorf("row has %d columns, want %d", len(vals), ncol)
		}
		img := w.datums[n*ncol : (n+1)*ncol : (n+1)*ncol]
		for i, v := range vals {
			switch {
			case v == nil:
				img[i] = change.Datum{Kind: change.Null}
			case cw != nil: // appended below, before the next row replaces vals
				img[i] = change.Datum{Kind: kind[i], Data: v}
			default:
				start := len(w.arena)
				w.arena = append(w.arena, v...)
				img[i] = change.Datum{Kind: change.Text, Data: w.arena[start:len(w.arena):len(w.arena)]}
			}
		}
		c := &w.changes[n]
		*c = change.Change{Rel: rel, Op: change.OpLoad, LSN: w.loadLSN, Pos: uint32(ref.chunk), EndLSN: w.loadLSN,
			CommitTime: w.commitTime, New: img}
		w.ptrs[n] = c
		n++
		rows++
		if cw != nil { // straight into the chunk's Arrow builder: no copy of the row
			if err := cw.Append(w.ptrs[:1]); err != nil {
				rr.Close()
				return nil, 0, false, err
			}
			n = 0
			if rows%1024 == 0 {
				st.rows.Add(1024)
			}
			continue
		}
		if n == batch {
			if err := flush(); err != nil {
				rr.Close()
				return nil, 0, false, err
			}
		}
	}
	if _, err := rr.Close(); err != nil {
		return nil, 0, false, fmt.Errorf("read: %w", err)
	}
	if err := flush(); err != nil {
		return nil, 0, false, err
	}
	if cw != nil {
		st.rows.Add(rows % 1024)
		if err := cw.Commit(ctx); err != nil {
			return nil, 0, false, fmt.Errorf("commit chunk: %w", err)
		}
		return nil, rows, true, nil
	}
	if last == nil { // an empty chunk: a mark for what came before
		m, err := w.sink.Emit(ctx, nil)
		if err != nil {
			return nil, 0, false, fmt.Errorf("emit: %w", err)
		}
		last = m
	}
	return last, rows, false, nil
}

// tableStats are one table's live counters.
type tableStats struct {
	rows       atomic.Int64
	chunksDone atomic.Int64
	started    atomic.Int64 // unix nanos of the first chunk start, 0 before
	finished   atomic.Int64 // unix nanos when the last chunk was durable
}

func (t *tableStats) start() { t.started.CompareAndSwap(0, time.Now().UnixNano()) }

func (t *tableStats) finish() { t.finished.CompareAndSwap(0, time.Now().UnixNano()) }

func (s *Snapshot) initStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = make([]*tableStats, len(s.state.Tables))
	for i, t := range s.state.Tables {
		s.stats[i] = &tableStats{}
		for _, c := range t.Chunks {
			if c.Done {
				s.stats[i].chunksDone.Add(1)
				s.stats[i].rows.Add(c.Rows)
			}
		}
	}
}

// TableProgress is one table's progress.
type TableProgress struct {
	Table        change.TableID
	Rows         int64 // rows emitted (this run plus chunks durable before)
	EstRows      int64 // planner estimate
	Chunks       int
	ChunksDone   int // durable downstream
	RowsPerSec   float64
	ETA          time.Duration // 0 when unknown or done
	Done, Merged bool
}

// Progress is a point-in-time view of a snapshot.
type Progress struct {
	Phase         string
	ConsistentLSN string
	Tables        []TableProgress
	Rows          int64
	RowsPerSec    float64
	// Retries counts how often this process resumed the snapshot after a
	// retryable error (PostgreSQL restart, connection cut).
	Retries int64
}

// Stats returns the snapshot's progress: rows, rows/s and ETA per table.
func (s *Snapshot) Stats() Progress {
	if s == nil {
		return Progress{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := Progress{Phase: s.state.Phase, ConsistentLSN: s.state.ConsistentLSN, Retries: s.retries.Load()}
	now := time.Now().UnixNano()
	for i, t := range s.state.Tables {
		ts := s.stats[i]
		tp := TableProgress{Table: t.ID(), Rows: ts.rows.Load(), EstRows: t.EstRows, Chunks: len(t.Chunks),
			ChunksDone: int(ts.chunksDone.Load()), Done: t.Done, Merged: t.Merged}
		if st := ts.started.Load(); st != 0 {
			end := now
			if f := ts.finished.Load(); f != 0 {
				end = f
			}
			if el := time.Duration(end - st).Seconds(); el > 0 {
				tp.RowsPerSec = float64(tp.Rows) / el
				p.RowsPerSec += tp.RowsPerSec * boolf(!t.Done)
			}
			if !t.Done && tp.RowsPerSec > 0 && tp.EstRows > tp.Rows {
				tp.ETA = time.Duration(float64(tp.EstRows-tp.Rows) / tp.RowsPerSec * float64(time.Second))
			}
		}
		p.Rows += tp.Rows
		p.Tables = append(p.Tables, tp)
	}
	return p
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Package pipeline wires the stages together and owns every goroutine and
// the acknowledgement path:
//
//	PostgreSQL slot --capture--> stream (shards) --bronze--> Bronze Delta --silver--> Silver Delta
//	      ^                                                        |
//	      +---------- Ack(endLSN) once the txn is in Bronze -------+
//
// Ack rule: the slot's confirmed LSN advances to a transaction's end LSN only
// after every record of that transaction (and of every earlier one) is
// committed to Bronze, i.e. below the per-shard watermark stored by the
// Bronze progress commit. The stream is a buffer, never the only copy that
// the slot has given up.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/blob/lake"
	"github.com/silt-dev/silt/internal/bronze"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/gold"
	"github.com/silt-dev/silt/internal/silver"
	"github.com/silt-dev/silt/internal/source/pgrepl"
	"github.com/silt-dev/silt/internal/source/pgsnap"
	"github.com/silt-dev/silt/internal/stream"
	"github.com/silt-dev/silt/internal/stream/locallog"
)

// Pipeline is one running silt pipeline.
type Pipeline struct {
	cfg    *config.Config
	logger *slog.Logger
	store  blob.Store
	log    stream.Log
	part   *stream.Partitioner // partition keys from stream config (keys.go)
	src    *pgrepl.Source

	snap       *pgsnap.Snapshot        // initial load (snapshot.go); nil when there is none
	domains    *pgsnap.Domains         // domain types for Bronze (snapshot.go)
	snapKnown  map[change.TableID]bool // capture goroutine only: tables the snapshot knows (snapshot.go)
	loader     *bronze.Loader          // snapshot chunks straight to Bronze (snapshot.go)
	loaderOnce sync.Once

	// capture state (capture goroutine only)
	dedup    []lastPos // per shard: last (LSN,pos) already in the stream at start
	dedupOn  bool
	enc      change.Encoder   // stream records, relation sections encoded once
	spans    []encSpan        // onTxn's scratch
	encHint  int              // bytes of the last encoded transaction: the next buffer's size
	notedRel *change.Relation // the relation onTxn last passed to noteTableForSnapshot

	appendCh  chan *appendJob     // capture -> appender (runAppender)
	appendSem *semaphore.Weighted // bounds the bytes queued for the appender
	appendErr chan error          // the appender's failure, seen by the capture handler

	ackMu         sync.Mutex
	pending       []pendingAck // guarded by ackMu
	lastWatermark []int64      // guarded by ackMu: Bronze's durable per-shard position

	stats Stats
	fresh *quantiles

	tablesMu     sync.Mutex
	knownTables  map[change.TableID]bool // tables with a Bronze table
	tablesListed bool

	closeOnce sync.Once
	closeErr  error
}

type lastPos struct {
	ok  bool
	lsn change.LSN
	pos uint32
}

type pendingAck struct {
	end  change.LSN
	ends []int64 // per shard: stream end offset after this txn was appended
}

// Stats are counters for status output. Read with Snapshot.
type Stats struct {
	Transactions  atomic.Int64
	Changes       atomic.Int64
	LastCommitLSN atomic.Uint64
	AckedLSN      atomic.Uint64
	BronzeCommits atomic.Int64
	BronzeRows    atomic.Int64
	SilverBatches atomic.Int64
	SilverChanges atomic.Int64
	SilverMaxLSN  atomic.Uint64
	GoldLate      atomic.Int64 // changes not applied to Gold because their window was final
	Reconnects    atomic.Int64 // capture reconnects after retryable source errors
}

// StatsSnapshot is a point-in-time copy of Stats plus freshness figures.
type StatsSnapshot struct {
	Transactions, Changes        int64
	LastCommitLSN, AckedLSN      change.LSN
	BronzeCommits, BronzeRows    int64
	SilverBatches, SilverChanges int64
	SilverMaxLSN                 change.LSN
	FreshnessP50, FreshnessP99   time.Duration
	FreshnessSamples             int
	GoldLate                     int64 // changes not applied to Gold because their window was final
}

// ResetFreshness forgets the freshness samples (benchmarks measure one phase at a time).
func (p *Pipeline) ResetFreshness() { p.fresh.reset() }

// Snapshot returns current figures.
func (p *Pipeline) Snapshot() StatsSnapshot {
	p50, p99, n := p.fresh.get()
	return StatsSnapshot{
		Transactions: p.stats.Transactions.Load(), Changes: p.stats.Changes.Load(),
		LastCommitLSN: change.LSN(p.stats.LastCommitLSN.Load()), AckedLSN: change.LSN(p.stats.AckedLSN.Load()),
		BronzeCommits: p.stats.BronzeCommits.Load(), BronzeRows: p.stats.BronzeRows.Load(),
		SilverBatches: p.stats.SilverBatches.Load(), SilverChanges: p.stats.SilverChanges.Load(),
		SilverMaxLSN: change.LSN(p.stats.SilverMaxLSN.Load()),
		GoldLate:     p.stats.GoldLate.Load(),
		FreshnessP50: p50, FreshnessP99: p99, FreshnessSamples: n,
	}
}

// Open validates the configuration, opens the lake and the stream and runs
// the source's preflight checks (connection, wal_level, keys, slot).
func Open(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	applyMemoryLimit(int64(cfg.MemoryLimit), logger) // memlimit.go
	p := &Pipeline{cfg: cfg, logger: logger, fresh: newQuantiles(200000)}
	st, err := lake.Open(ctx, cfg.Lake)
	if err != nil {
		return nil, err
	}
	p.store = st
	if _, err := silverTables(cfg, p.store); err != nil { // CSV lookups are checked at start
		return nil, err
	}
	var tables []change.TableID
	for _, t := range cfg.Source.Tables {
		id, _ := config.ParseTable(t) // validated
		tables = append(tables, id)
	}
	if err := p.openSnapshot(ctx, tables); err != nil { // initial load: slot with exported snapshot (snapshot.go)
		p.closeSnapshot()
		return nil, err
	}
	src, err := pgrepl.Open(ctx, pgrepl.Config{
		DSN:            SessionDSN(cfg.Source.DSN),
		Slot:           cfg.Source.Slot,
		Publication:    cfg.Source.Publication,
		Tables:         tables,
		StatusInterval: cfg.Source.StatusInterval.Duration,
		// CDC robustness (pgrepl owner): spill, heartbeats, lag warning, password.
		TxnMemoryLimit:    int64(cfg.Source.TxnMemoryLimit),
		SpillDir:          filepath.Join(cfg.Stream.Dir, "spill"),
		Password:          cfg.Source.Password,
		HeartbeatInterval: cfg.Source.HeartbeatInterval.Duration,
		LagWarnBytes:      int64(cfg.Source.LagWarnBytes),
		ReceiveTimeout:    cfg.Source.ReceiveTimeout.Duration,
		Logger:            logger,
		// Keyless tables (source.keyless): refused, or append-only in Silver.
		KeylessAppend: func(id change.TableID) bool { return cfg.Source.KeylessMode(id) == config.KeylessAppend },
	})
	if err != nil {
		p.closeSnapshot()
		return nil, err
	}
	p.src = src
	if err := p.discoverTables(ctx); err != nil { // published tables without a snapshot (snapshot.go)
		src.Close()
		p.closeSnapshot()
		return nil, err
	}
	// Domain types, read once the source is known to be reachable.
	p.domains = pgsnap.NewDomains(SessionDSN(cfg.Source.DSN), cfg.Source.Password)
	if err := p.domains.Load(ctx); err != nil {
		p.logger.Warn("cannot read domain types; domain columns will be stored as text", "err", err)
	}
	lg, part, err := openStream(ctx, cfg.Stream, logger) // locallog or kinesis (keys.go)
	if err != nil {
		src.Close()
		return nil, err
	}
	p.log, p.part = lg, part
	return p, nil
}

// Close releases the source connection and the stream. It is idempotent.
func (p *Pipeline) Close() error {
	p.closeOnce.Do(func() { p.closeErr = p.close() })
	return p.closeErr
}

func (p *Pipeline) close() error {
	var errs []error
	if p.src != nil {
		errs = append(errs, p.src.Close())
	}
	p.closeSnapshot()
	if p.log != nil {
		errs = append(errs, p.log.Close())
	}
	return errors.Join(errs...)
}

// Store returns the lake's object store.
func (p *Pipeline) Store() blob.Store { return p.store }

// Run runs capture, Bronze and Silver until ctx is cancelled (a clean stop:
// capture stops, Bronze drains what is in the stream, Silver merges it) or a
// stage fails.
func (p *Pipeline) Run(ctx context.Context) error {
	if err := p.loadDedup(ctx); err != nil {
		return err
	}
	captureCtx, stopCapture := context.WithCancel(ctx)
	defer stopCapture()
	bronzeCtx, stopBronze := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBronze()
	silverCtx, stopSilver := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSilver()

	errc := make(chan error, 4)
	var wg sync.WaitGroup
	wg.Add(4)
	captureDone := make(chan struct{})
	snapDone, snapErr := p.startSnapshot(captureCtx) // initial load alongside capture (snapshot.go)
	p.appendCh = make(chan *appendJob, appendQueueJobs)
	p.appendSem = semaphore.NewWeighted(appendQueueBytes)
	p.appendErr = make(chan error, 1)
	appenderDone := make(chan struct{})
	go func() {
		stage(ctx, "append")
		defer wg.Done()
		defer close(appenderDone)
		// The appender outlives capture: it drains every job capture queued.
		if err := p.runAppender(context.WithoutCancel(ctx), p.appendCh); err != nil {
			p.appendErr <- err
			errc <- fmt.Errorf("capture: %w", err)
			for range p.appendCh { // unblock nothing is waiting: capture sees appendErr
			}
		}
	}()
	go func() {
		stage(ctx, "capture")
		defer wg.Done()
		defer close(captureDone)
		defer close(p.appendCh)
		err := p.runCapture(captureCtx) // retries retryable source errors (capture.go)
		if err != nil && captureCtx.Err() == nil {
			errc <- fmt.Errorf("capture: %w", err)
		}
	}()
	bw := bronze.NewWriter(p.store, p.log, bronze.Options{
		FlushInterval:  p.cfg.Bronze.FlushInterval.Duration,
		FlushBytes:     int64(p.cfg.Bronze.FlushBytes),
		TargetFileSize: int64(p.cfg.Bronze.TargetFileSize),
		PartitionBy:    p.cfg.Bronze.PartitionBy,
		OnProgress:     p.onBronzeProgress,
		OnCommit: func(t change.TableID, v int64, rows int) {
			p.stats.BronzeCommits.Add(1)
			p.stats.BronzeRows.Add(int64(rows))
			p.noteTable(t)
		},
		Logger: p.logger,
		Types:  p.typeResolver(), // domain columns by their base type (snapshot.go)
	})
	bronzeDone := make(chan struct{})
	go func() {
		stage(ctx, "bronze")
		defer wg.Done()
		defer close(bronzeDone)
		if err := bw.Run(bronzeCtx); err != nil {
			errc <- fmt.Errorf("bronze: %w", err)
		}
	}()
	go func() {
		stage(ctx, "silver")
		defer wg.Done()
		if err := p.runSilver(silverCtx, bronzeDone, ctx.Done()); err != nil {
			errc <- fmt.Errorf("silver: %w", err)
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	case runErr = <-snapErr:
	}
	// Soft stop in data-flow order: capture, then Bronze drains the stream,
	// then Silver merges what Bronze has.
	stopCapture()
	<-captureDone
	<-snapDone
	<-appenderDone
	if runErr == nil {
		p.drainBronze(ctx)
	}
	stopBronze()
	<-bronzeDone
	stopSilver()
	wg.Wait()
	close(errc)
	for err := range errc {
		if runErr == nil {
			runErr = err
		}
	}
	return runErr
}

// drainBronze waits (bounded) until Bronze has consumed the stream.
func (p *Pipeline) drainBronze(ctx context.Context) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		caught := true
		pos := p.watermark()
		for s := 0; s < p.log.Shards(); s++ {
			end, err := p.log.End(context.WithoutCancel(ctx), s)
			if err != nil || (s < len(pos) && pos[s] < end) || len(pos) == 0 {
				caught = false
			}
		}
		if caught {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *Pipeline) watermark() []int64 {
	p.ackMu.Lock()
	defer p.ackMu.Unlock()
	return p.lastWatermark
}

// loadDedup reads the last (LSN, pos) of each shard. After a crash the slot
// may resend transactions that are already in the stream; a change routed to
// shard s is a duplicate iff it is at or before that shard's last record,
// because each shard holds a prefix of the changes routed to it in order.
func (p *Pipeline) loadDedup(ctx context.Context) error {
	p.dedup = make([]lastPos, p.log.Shards())
	var cache change.RelationCache
	for s := range p.dedup {
		end, err := p.log.End(ctx, s)
		if err != nil {
			return fmt.Errorf("stream: shard %d: %w", s, err)
		}
		if end == 0 {
			continue
		}
		c, err := lastLogged(ctx, p.log, s, end, &cache) // skips snapshot rows (snapshot.go)
		if err != nil {
			return err
		}
		if c == nil {
			continue
		}
		p.dedup[s] = lastPos{ok: true, lsn: c.LSN, pos: c.Pos}
		p.dedupOn = true
	}
	return nil
}

// onTxn is the capture handler: route, encode and append one transaction,
// or one chunk of a large one (b.Last marks the final chunk; only then is
// the transaction's end LSN queued for acknowledgement).
func (p *Pipeline) onTxn(ctx context.Context, b *pgrepl.Batch) error {
	txn, commitLSN, endLSN := b.Changes, b.CommitLSN, b.EndLSN
	shards := p.log.Shards()
	j := &appendJob{last: b.Last, commitLSN: commitLSN, endLSN: endLSN, changes: len(txn)}
	// Encode into one buffer owned by the job (the handler's datums are only
	// valid during this call; the appender runs after it returns). The
	// appender recycles the buffer once the stream has it (appendBufs).
	j.mem = getAppendMem(p.encHint)
	buf := j.mem.buf
	spans := p.spans[:0]
	for _, c := range txn {
		if c.Rel != p.notedRel { // one look per run of changes of one relation
			if err := p.noteTableForSnapshot(ctx, c); err != nil { // a table added to the publication (snapshot.go)
				return err
			}
			p.notedRel = c.Rel
		}
		ks := len(buf)
		buf = p.part.AppendKey(buf, c)
		ds := len(buf)
		if p.dedupOn {
			s := stream.ShardFor(buf[ks:ds], shards)
			if d := p.dedup[s]; d.ok && !change.Less(d.lsn, d.pos, c.LSN, c.Pos) {
				buf = buf[:ks]
				continue // already in the stream before the restart
			}
		}
		buf = p.enc.AppendEncode(buf, c)
		spans = append(spans, encSpan{ds, len(buf), ks, ds})
	}
	p.spans = spans
	if p.dedupOn && commitLSN > p.maxDedupLSN() {
		p.dedupOn = false // every shard is past its restart point
	}
	entries := j.mem.entries[:0]
	for _, sp := range spans {
		entries = append(entries, stream.Entry{PartitionKey: buf[sp.kstart:sp.kend:sp.kend], Data: buf[sp.start:sp.end:sp.end]})
	}
	j.mem.buf, j.mem.entries, j.entries = buf, entries, entries
	j.bytes = len(buf)
	p.encHint = len(buf)
	if err := p.appendSem.Acquire(ctx, queueWeight(j.bytes)); err != nil {
		return err
	}
	select {
	case p.appendCh <- j:
		return nil
	case err := <-p.appendErr:
		p.appendErr <- err // keep it for Run
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// encSpan locates one encoded change (and its partition key) in a job's
// buffer.
type encSpan struct{ start, end, kstart, kend int }

func (p *Pipeline) maxDedupLSN() change.LSN {
	var m change.LSN
	for _, d := range p.dedup {
		if d.ok && d.lsn > m {
			m = d.lsn
		}
	}
	return m
}

// onBronzeProgress is called after each Bronze progress commit.
func (p *Pipeline) onBronzeProgress(pos []int64) {
	p.ackMu.Lock()
	p.lastWatermark = pos
	p.ackMu.Unlock()
	p.tryAck()
	// Let retention drop what Bronze holds, but keep each shard's last
	// record: loadDedup needs it to skip transactions the slot resends
	// after a crash.
	if tr, ok := p.log.(stream.Trimmer); ok {
		for s, off := range pos {
			if off > 1 {
				if err := tr.Trim(context.Background(), s, off-1); err != nil {
					p.logger.Warn("stream trim failed", "shard", s, "offset", off-1, "err", err)
				}
			}
		}
	}
}

// tryAck acknowledges the newest transaction all of whose records are below
// the Bronze watermark.
func (p *Pipeline) tryAck() {
	p.ackMu.Lock()
	pos := p.lastWatermark
	n := 0
	var ack change.LSN
	for _, pa := range p.pending {
		if pos == nil || !below(pa.ends, pos) {
			break
		}
		ack = pa.end
		n++
	}
	if n > 0 {
		p.pending = append(p.pending[:0], p.pending[n:]...)
	}
	p.ackMu.Unlock()
	if n > 0 {
		p.src.Ack(ack)
		p.stats.AckedLSN.Store(uint64(ack))
	}
}

func below(ends, pos []int64) bool {
	for s, e := range ends {
		if s >= len(pos) || e > pos[s] {
			return false
		}
	}
	return true
}

// runSilver runs micro-batches for every table on the trigger interval until
// ctx is done; after bronzeDone closes it does a final pass.
// stop closes when the pipeline is asked to stop: optional work (OPTIMIZE)
// stops then, while merges finish.
func (p *Pipeline) runSilver(ctx context.Context, bronzeDone <-chan struct{}, stop <-chan struct{}) error {
	tables, err := silverTables(p.cfg, p.store)
	if err != nil {
		return err
	}
	proc := silver.New(p.store, silver.Options{TargetFileSize: int64(p.cfg.Silver.TargetFileSize), OptimizeEvery: p.cfg.Silver.OptimizeEvery,
		Table: func(id change.TableID) silver.TableOptions {
			o := tables[id]
			o.Keyless, o.KeylessAppend = p.src.IsKeyless(id), p.cfg.Source.KeylessMode(id) == config.KeylessAppend
			return o
		}, Stop: stop})
	tick := time.NewTicker(p.cfg.Silver.Interval.Duration)
	defer tick.Stop()
	final := false
	for {
		if err := p.silverPass(context.WithoutCancel(ctx), proc); err != nil {
			return err
		}
		if final {
			return nil
		}
		select {
		case <-tick.C:
		case <-bronzeDone:
			final = true
			bronzeDone = nil
		case <-ctx.Done():
			return nil
		}
	}
}

func (p *Pipeline) silverPass(ctx context.Context, proc *silver.Processor) error {
	tables, err := p.bronzeTables(ctx)
	if err != nil {
		return err
	}
	for _, t := range tables {
		if skip, err := p.snapshotGate(ctx, proc, t); err != nil { // snapshot rows first (snapshot.go)
			return err
		} else if skip {
			continue
		}
		for {
			res, err := proc.Process(ctx, t)
			if err != nil {
				return err
			}
			if res.ToVersion < 0 {
				break
			}
			now := time.Now()
			for _, ct := range res.CommitTimes {
				// The window keeps the latest len(buf) samples: adding more
				// of one value changes nothing.
				for range min(ct.N, len(p.fresh.buf)) {
					p.fresh.add(now.Sub(ct.At))
				}
			}
			p.stats.SilverBatches.Add(1)
			p.stats.SilverChanges.Add(int64(res.Changes))
			if uint64(res.MaxLSN) > p.stats.SilverMaxLSN.Load() {
				p.stats.SilverMaxLSN.Store(uint64(res.MaxLSN))
			}
			p.logger.Debug("silver batch", "table", t.String(), "bronze_from", res.FromVersion, "bronze_to", res.ToVersion,
				"silver_version", res.SilverVersion, "changes", res.Changes, "upserts", res.Upserts, "deletes", res.Deletes, "appended", res.Appended)
		}
	}
	return p.goldPass(ctx)
}

// bronzeTables returns the tables that have a Bronze table: listed once
// (a listing of bronze/ names every data file), then kept up to date from
// Bronze commits.
func (p *Pipeline) bronzeTables(ctx context.Context) ([]change.TableID, error) {
	p.tablesMu.Lock()
	listed := p.tablesListed
	p.tablesMu.Unlock()
	if !listed {
		ts, err := silver.ListTables(ctx, p.store)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			p.noteTable(t)
		}
		p.tablesMu.Lock()
		p.tablesListed = true
		p.tablesMu.Unlock()
	}
	p.tablesMu.Lock()
	defer p.tablesMu.Unlock()
	out := make([]change.TableID, 0, len(p.knownTables))
	for t := range p.knownTables {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

func (p *Pipeline) noteTable(t change.TableID) {
	p.tablesMu.Lock()
	defer p.tablesMu.Unlock()
	if p.knownTables == nil {
		p.knownTables = map[change.TableID]bool{}
	}
	p.knownTables[t] = true
}

// goldPass brings every configured Gold table up to its Silver table.
func (p *Pipeline) goldPass(ctx context.Context) error {
	for _, g := range p.cfg.Gold {
		src, _ := config.ParseTable(g.Source) // validated
		spec := gold.Spec{Name: g.Name, Source: src, TimeColumn: g.TimeColumn, Window: g.Window.Duration,
			GroupBy: g.GroupBy, Value: g.Value, Lateness: g.Lateness.Duration}
		for {
			res, err := gold.Process(ctx, p.store, spec)
			if err != nil {
				return err
			}
			if res.ToVersion < 0 {
				break
			}
			p.stats.GoldLate.Add(int64(res.Late))
			p.logger.Debug("gold batch", "gold", g.Name, "bronze_to", res.ToVersion, "windows", res.Windows, "late", res.Late, "watermark", res.Watermark)
		}
	}
	return nil
}

func durability(s string) locallog.Durability {
	if s == "none" {
		return locallog.DurabilityNone
	}
	return locallog.DurabilityFsync
}

// quantiles keeps the last n samples.
type quantiles struct {
	mu  sync.Mutex
	buf []time.Duration
	n   int
	i   int
	// gen counts adds; the last computed result is reused while it matches
	// (Snapshot is polled often, sorting 200k samples is not free).
	gen, cachedGen uint64
	p50, p99       time.Duration
}

func newQuantiles(n int) *quantiles { return &quantiles{buf: make([]time.Duration, n)} }

func (q *quantiles) add(d time.Duration) {
	q.mu.Lock()
	q.buf[q.i] = d
	q.gen++
	q.i = (q.i + 1) % len(q.buf)
	if q.n < len(q.buf) {
		q.n++
	}
	q.mu.Unlock()
}

func (q *quantiles) reset() {
	q.mu.Lock()
	q.n, q.i = 0, 0
	q.gen++
	q.mu.Unlock()
}

func (q *quantiles) get() (p50, p99 time.Duration, n int) {
	q.mu.Lock()
	if q.gen == q.cachedGen {
		p50, p99, n = q.p50, q.p99, q.n
		q.mu.Unlock()
		return p50, p99, n
	}
	gen := q.gen
	s := append([]time.Duration(nil), q.buf[:q.n]...)
	q.mu.Unlock()
	if len(s) > 0 {
		slices.Sort(s)
		p50, p99 = s[len(s)*50/100], s[min(len(s)-1, len(s)*99/100)]
	}
	q.mu.Lock()
	q.p50, q.p99, q.cachedGen = p50, p99, gen
	q.mu.Unlock()
	return p50, p99, len(s)
}

// stage labels the calling goroutine, and the goroutines it starts, with
// the pipeline stage it runs (pprof label "stage": capture, append,
// snapshot, bronze, silver), so that a CPU profile of a whole run
// (`silt bench --cpuprofile`) can be cut by stage: go tool pprof
// -tagfocus=stage=snapshot.
func stage(ctx context.Context, name string) {
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("stage", name)))
}

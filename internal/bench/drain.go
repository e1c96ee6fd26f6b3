package bench

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/pgcluster"
	"github.com/silt-dev/silt/internal/pipeline"
)

// env is what the scenarios share: one private PostgreSQL and pg_recvlogical.
type env struct {
	cl   *pgcluster.Cluster
	recv string
	out  io.Writer
	tmp  string // parent of scenario data directories
}

func startEnv(ctx context.Context, out io.Writer, tmp string) (*env, error) {
	bin, err := pgcluster.FindBinDir()
	if err != nil {
		return nil, err
	}
	recv := bin + "/pg_recvlogical"
	if _, err := os.Stat(recv); err != nil {
		if recv, err = exec.LookPath("pg_recvlogical"); err != nil {
			return nil, fmt.Errorf("pg_recvlogical not found: install postgresql-client")
		}
	}
	cl, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		return nil, err
	}
	return &env{cl: cl, recv: recv, out: out, tmp: tmp}, nil
}

func (e *env) close() { e.cl.Stop() }

// createDB creates a database and returns its DSN.
func (e *env) createDB(ctx context.Context, name string) (string, error) {
	admin, err := pgx.Connect(ctx, e.cl.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return e.cl.DSN(name), nil
}

func (e *env) dataDir(name string) (string, error) {
	return os.MkdirTemp(e.tmp, "silt-bench-"+name+"-")
}

// DrainResult is one backlog drained by pg_recvlogical and by silt.
//
// The capture figures (Recvlogical*, SiltCapture*, CaptureVsRecv) are
// medians over Rounds alternating runs, each on its own slot: every slot
// (one per pg_recvlogical run, one per silt capture run, one for the full
// pipeline) is created on the same publication before the backlog is
// written, so all decode the same WAL with the same pgoutput options.
// pg_recvlogical writes to /dev/null; silt's capture (pipeline
// RunCaptureOnly: decode, route, encode, append with group-commit fsync)
// writes the local stream and nothing else. The full pipeline (capture,
// Bronze, Silver at once, as `silt run`) then drains its own slot for the
// Bronze and Silver figures; PipelineCapture* is when it had every change
// in the stream while Bronze and Silver competed for the CPU.
type DrainResult struct {
	Name            string  `json:"name"`
	Changes         int64   `json:"changes"`
	WriteSecs       float64 `json:"write_seconds"`
	Rounds          int     `json:"rounds"`
	RecvlogicalSecs float64 `json:"recvlogical_seconds"` // median
	RecvlogicalRate float64 `json:"recvlogical_changes_per_s"`
	RecvlogicalUse  Usage   `json:"recvlogical_usage"`    // of the median run
	SiltCaptureSecs float64 `json:"silt_capture_seconds"` // median: all changes appended to the stream
	SiltCaptureRate float64 `json:"silt_capture_changes_per_s"`
	CaptureUse      Usage   `json:"silt_capture_usage"` // the silt process during the median capture run
	CaptureVsRecv   float64 `json:"capture_vs_recvlogical"`
	// Per round, in run order: changes/s of each side and the 1-minute
	// load average just before the round.
	RecvlogicalRuns []float64 `json:"recvlogical_runs"`
	SiltCaptureRuns []float64 `json:"silt_capture_runs"`
	RoundLoad       []float64 `json:"round_load1"`

	PipelineCaptureSecs float64 `json:"pipeline_capture_seconds"` // full pipeline: all changes in the stream
	PipelineCaptureRate float64 `json:"pipeline_capture_changes_per_s"`
	PipelineVsRecv      float64 `json:"pipeline_capture_vs_recvlogical"`
	SiltBronzeSecs      float64 `json:"silt_bronze_seconds"` // all changes committed to Bronze (Parquet)
	SiltBronzeRate      float64 `json:"silt_bronze_changes_per_s"`
	SiltSilverSecs      float64 `json:"silt_silver_seconds"` // all changes merged into Silver
	SiltSilverRate      float64 `json:"silt_silver_changes_per_s"`
	SilverVsRecv        float64 `json:"silver_vs_recvlogical"`
	SiltUse             Usage   `json:"silt_usage"` // the silt process from start until Silver held the backlog
}

// drainRounds is how many times each side drains its own copy of the
// backlog; the medians are reported.
const drainRounds = 5

// drainSpec describes a backlog scenario.
type drainSpec struct {
	name   string
	db     string
	ddl    string
	tables []string
	shards int
	// peerSlot, when set, is one more pgoutput slot created with the
	// others, left for a peer tool to drain after silt.
	peerSlot string
	// write makes the backlog and returns the number of changes it made.
	write func(ctx context.Context, dsn string) (int64, error)
}

// live is a silt pipeline left running after a drain.
type live struct {
	p       *pipeline.Pipeline
	dsn     string
	runErr  chan error
	stop    context.CancelFunc
	dataDir string
	once    sync.Once
	err     error
}

// close stops the pipeline (a clean stop) and removes its data; idempotent.
func (l *live) close() error {
	l.once.Do(func() {
		l.stop()
		l.err = <-l.runErr
		l.p.Close()
		os.RemoveAll(l.dataDir)
	})
	return l.err
}

// opened is a pipeline opened (its slot created) but not run yet.
type opened struct {
	p       *pipeline.Pipeline
	cfg     *config.Config
	dataDir string
}

func (o *opened) close() {
	o.p.Close()
	os.RemoveAll(o.dataDir)
}

// openPipeline opens a pipeline on its own data directory and slot
// (creating the publication if missing and the slot).
func (e *env) openPipeline(ctx context.Context, s drainSpec, dsn, slot string, snapshot bool) (*opened, error) {
	dataDir, err := e.dataDir(slot)
	if err != nil {
		return nil, err
	}
	cfg := config.Default(dataDir)
	cfg.Source.DSN = dsn
	cfg.Source.Slot = slot
	cfg.Source.Publication = "silt_" + s.db
	cfg.Source.Tables = s.tables
	if !snapshot {
		cfg.Source.Snapshot = "never"
	}
	cfg.Stream.Shards = s.shards
	cfg.Bronze.FlushInterval.Duration = 250 * time.Millisecond
	cfg.Silver.Interval.Duration = 250 * time.Millisecond
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := pipeline.Open(ctx, cfg, logger)
	if err != nil {
		os.RemoveAll(dataDir)
		return nil, err
	}
	return &opened{p: p, cfg: cfg, dataDir: dataDir}, nil
}

// runDrain: every slot is created on the same publication before the
// backlog is written (see DrainResult). Then, for drainRounds rounds
// (alternating which side goes first), pg_recvlogical drains one of its
// slots to /dev/null, stopping at the LSN current after the backlog (-E),
// and silt's capture drains one of its slots into a fresh local stream.
// Last the full pipeline (capture, Bronze and Silver, as `silt run`)
// drains its slot; it is returned running.
func (e *env) runDrain(ctx context.Context, s drainSpec) (DrainResult, *live, error) {
	res := DrainResult{Name: s.name, Rounds: drainRounds}
	dsn, err := e.createDB(ctx, s.db)
	if err != nil {
		return res, nil, err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return res, nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, s.ddl); err != nil {
		return res, nil, err
	}
	// The full pipeline first: it creates the publication (and its slot,
	// with the initial snapshot of the still empty tables).
	full, err := e.openPipeline(ctx, s, dsn, "silt_"+s.db, true)
	if err != nil {
		return res, nil, err
	}
	var caps []*opened
	defer func() {
		for _, c := range caps {
			if c != nil {
				c.close()
			}
		}
	}()
	fail := func(err error) (DrainResult, *live, error) {
		full.close()
		return res, nil, err
	}
	recvSlots := make([]string, drainRounds)
	for i := range drainRounds {
		o, err := e.openPipeline(ctx, s, dsn, fmt.Sprintf("cap_%s_%d", s.db, i), false)
		if err != nil {
			return fail(err)
		}
		caps = append(caps, o)
		recvSlots[i] = fmt.Sprintf("recv_%s_%d", s.db, i)
		if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", recvSlots[i]); err != nil {
			return fail(err)
		}
	}
	if s.peerSlot != "" {
		if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", s.peerSlot); err != nil {
			return fail(err)
		}
	}

	fmt.Fprintf(e.out, "%s: writing the backlog ...\n", s.name)
	wstart := time.Now()
	n, err := s.write(ctx, dsn)
	if err != nil {
		return fail(err)
	}
	res.Changes = n
	res.WriteSecs = time.Since(wstart).Seconds()
	var endLSN string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&endLSN); err != nil {
		return fail(err)
	}
	fmt.Fprintf(e.out, "%s: %d changes written in %.1fs\n", s.name, n, res.WriteSecs)

	type recvRun struct {
		secs float64
		use  Usage
	}
	type capRun struct {
		secs float64
		use  Usage
	}
	var recvs []recvRun
	var capts []capRun
	runRecv := func(i int) error {
		secs, use, err := e.recvlogical(ctx, dsn, recvSlots[i], "silt_"+s.db, endLSN)
		if err != nil {
			return err
		}
		conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", recvSlots[i])
		recvs = append(recvs, recvRun{secs, use})
		res.RecvlogicalRuns = append(res.RecvlogicalRuns, float64(n)/secs)
		return nil
	}
	var timing []captureTiming
	runCapture := func(i int) error {
		tm, use, err := captureOnly(ctx, caps[i].p, n)
		caps[i].close()
		caps[i] = nil
		if err != nil {
			return err
		}
		secs := tm.secs
		timing = append(timing, tm)
		conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", fmt.Sprintf("cap_%s_%d", s.db, i))
		capts = append(capts, capRun{secs, use})
		res.SiltCaptureRuns = append(res.SiltCaptureRuns, float64(n)/secs)
		return nil
	}
	for i := range drainRounds {
		load := load1()
		res.RoundLoad = append(res.RoundLoad, load)
		first, second := runRecv, runCapture
		if i%2 == 1 {
			first, second = runCapture, runRecv
		}
		if err := first(i); err != nil {
			return fail(err)
		}
		if err := second(i); err != nil {
			return fail(err)
		}
		tm := timing[i]
		fmt.Fprintf(e.out, "%s: round %d (load %.2f): pg_recvlogical %.0f/s, silt capture %.0f/s (%.2fx; first change in the stream after %s, last batch from the source at %s, all in the stream at %s)\n",
			s.name, i+1, load, res.RecvlogicalRuns[i], res.SiltCaptureRuns[i], res.SiltCaptureRuns[i]/res.RecvlogicalRuns[i],
			tm.first.Round(time.Millisecond), tm.lastBatch.Round(time.Millisecond), time.Duration(tm.secs*float64(time.Second)).Round(time.Millisecond))
	}
	slices.SortFunc(recvs, func(a, b recvRun) int { return cmp.Compare(a.secs, b.secs) })
	slices.SortFunc(capts, func(a, b capRun) int { return cmp.Compare(a.secs, b.secs) })
	mr, mc := recvs[len(recvs)/2], capts[len(capts)/2]
	res.RecvlogicalSecs, res.RecvlogicalRate, res.RecvlogicalUse = mr.secs, float64(n)/mr.secs, mr.use
	res.SiltCaptureSecs, res.SiltCaptureRate, res.CaptureUse = mc.secs, float64(n)/mc.secs, mc.use
	res.CaptureVsRecv = res.SiltCaptureRate / res.RecvlogicalRate
	fmt.Fprintf(e.out, "%s: median of %d: pg_recvlogical %.2fs (%.0f/s), silt capture into the stream %.2fs (%.0f/s, %.2fx pg_recvlogical; %.1f CPU s)\n",
		s.name, drainRounds, res.RecvlogicalSecs, res.RecvlogicalRate, res.SiltCaptureSecs, res.SiltCaptureRate, res.CaptureVsRecv, mc.use.CPUSeconds)

	p := full.p
	runCtx, stop := context.WithCancel(ctx)
	l := &live{p: p, dsn: dsn, runErr: make(chan error, 1), stop: stop, dataDir: full.dataDir}
	m := startMeter()
	start := time.Now()
	go func() { l.runErr <- p.Run(runCtx) }()
	captured, bronzed := false, false
	for {
		select {
		case err := <-l.runErr:
			l.runErr <- err
			l.close()
			return res, nil, fmt.Errorf("pipeline stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		st := p.Snapshot()
		if !captured && st.Changes >= n {
			captured = true
			res.PipelineCaptureSecs = time.Since(start).Seconds()
		}
		if !bronzed && st.BronzeRows >= n {
			bronzed = true
			res.SiltBronzeSecs = time.Since(start).Seconds()
		}
		if st.SilverChanges >= n {
			res.SiltSilverSecs = time.Since(start).Seconds()
			break
		}
		if time.Since(start) > 30*time.Minute {
			l.close()
			return res, nil, fmt.Errorf("%s: silt did not drain the backlog in 30 minutes (%d of %d changes in Silver)", s.name, st.SilverChanges, n)
		}
	}
	res.SiltUse = m.stop()
	res.PipelineCaptureRate = float64(n) / res.PipelineCaptureSecs
	res.PipelineVsRecv = res.PipelineCaptureRate / res.RecvlogicalRate
	res.SiltSilverRate = float64(n) / res.SiltSilverSecs
	if res.SiltBronzeSecs > 0 {
		res.SiltBronzeRate = float64(n) / res.SiltBronzeSecs
	}
	res.SilverVsRecv = res.SiltSilverRate / res.RecvlogicalRate
	fmt.Fprintf(e.out, "%s: full pipeline: every change in the stream after %.2fs (%.0f/s, %.2fx, Bronze and Silver running), merged into Silver in %.2fs (%.0f/s, %.2fx); %.1f CPU s, peak RSS %.0f MiB\n",
		s.name, res.PipelineCaptureSecs, res.PipelineCaptureRate, res.PipelineVsRecv, res.SiltSilverSecs, res.SiltSilverRate, res.SilverVsRecv,
		res.SiltUse.CPUSeconds, res.SiltUse.PeakRSSMiB)
	return res, l, nil
}

// recvlogical drains slot with pg_recvlogical (proto_version 1, the
// publication, to /dev/null) up to endLSN and returns its wall time.
func (e *env) recvlogical(ctx context.Context, dsn, slot, pub, endLSN string) (float64, Usage, error) {
	start := time.Now()
	cmd := exec.CommandContext(ctx, e.recv, "-d", dsn, "--slot", slot, "--start", "--no-loop",
		"-o", "proto_version=1", "-o", "publication_names="+pub, "-E", endLSN, "-f", "/dev/null")
	var rout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &rout, &rout
	if err := cmd.Start(); err != nil {
		return 0, Usage{}, fmt.Errorf("pg_recvlogical: %v", err)
	}
	hwm := watchHWM(cmd.Process.Pid)
	if err := waitReaped(cmd, hwm); err != nil {
		return 0, Usage{}, fmt.Errorf("pg_recvlogical: %v: %s", err, strings.TrimSpace(rout.String()))
	}
	wall := time.Since(start)
	return wall.Seconds(), childUsage(cmd, wall, hwm.peak), nil
}

// captureOnly runs p's capture alone (pipeline.RunCaptureOnly) until n
// changes are in the stream and returns how long that took. It also
// returns, as seen by polling every few milliseconds, when the first
// change was in the stream (connection and start-up) and when the source
// delivered its last batch (what follows is the final append and fsync).
func captureOnly(ctx context.Context, p *pipeline.Pipeline, n int64) (captureTiming, Usage, error) {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	m := startMeter()
	start := time.Now()
	go func() { done <- p.RunCaptureOnly(runCtx) }()
	var tm captureTiming
	var batches int64
	for {
		now := time.Now()
		if b := p.SourceStats().Batches; b != batches {
			batches, tm.lastBatch = b, now.Sub(start)
		}
		c := p.Snapshot().Changes
		if c > 0 && tm.first == 0 {
			tm.first = now.Sub(start)
		}
		if c >= n {
			break
		}
		select {
		case err := <-done:
			return tm, Usage{}, fmt.Errorf("silt capture stopped after %d of %d changes: %v", p.Snapshot().Changes, n, err)
		case <-time.After(2 * time.Millisecond):
		}
		if time.Since(start) > 30*time.Minute {
			return tm, Usage{}, fmt.Errorf("silt capture did not drain the backlog in 30 minutes (%d of %d changes)", p.Snapshot().Changes, n)
		}
	}
	tm.secs = time.Since(start).Seconds()
	use := m.stop()
	stop()
	<-done
	return tm, use, nil
}

// captureTiming is one silt capture run.
type captureTiming struct {
	secs      float64
	first     time.Duration // first change in the stream
	lastBatch time.Duration // last batch delivered by the source
}

// load1 is the 1-minute load average (0 if unknown).
func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b) + " 0")[0], 64)
	return f
}

// insertDDL is the pure-insert scenario's table.
const insertDDL = `
CREATE TABLE public.bench_events (
  id      bigint PRIMARY KEY,
  device  integer NOT NULL,
  kind    text NOT NULL,
  value   double precision,
  payload text,
  ts      timestamptz NOT NULL
);`

// writeInserts inserts n rows in transactions of txnRows rows.
func writeInserts(n, txnRows int) func(ctx context.Context, dsn string) (int64, error) {
	return func(ctx context.Context, dsn string) (int64, error) {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return 0, err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var done int64
		for lo := 1; lo <= n; lo += txnRows {
			hi := min(lo+txnRows-1, n)
			ct, err := conn.Exec(ctx, `INSERT INTO public.bench_events
				SELECT g, g % 1000, (ARRAY['temp','pressure','flow','level'])[1 + g % 4], g * 0.25,
				       'payload-' || md5(g::text), timestamptz '2026-01-01' + g * interval '1 millisecond'
				FROM generate_series($1::bigint, $2::bigint) g`, lo, hi)
			if err != nil {
				return done, err
			}
			done += ct.RowsAffected()
		}
		return done, nil
	}
}

// waitReaped waits for cmd to exit without reaping it first (waitid with
// WNOWAIT), stops the VmHWM watch while /proc/PID still exists, then reaps.
func waitReaped(cmd *exec.Cmd, w *hwmWatch) error {
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, 1 /* P_PID */, uintptr(cmd.Process.Pid), uintptr(unsafe.Pointer(&info[0])),
			syscall.WEXITED|0x1000000 /* WNOWAIT */, 0, 0)
		if errno != syscall.EINTR {
			break
		}
	}
	w.end()
	return cmd.Wait()
}

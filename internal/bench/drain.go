package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
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
type DrainResult struct {
	Name            string  `json:"name"`
	Changes         int64   `json:"changes"`
	WriteSecs       float64 `json:"write_seconds"`
	RecvlogicalSecs float64 `json:"recvlogical_seconds"`
	RecvlogicalRate float64 `json:"recvlogical_changes_per_s"`
	RecvlogicalUse  Usage   `json:"recvlogical_usage"`
	SiltCaptureSecs float64 `json:"silt_capture_seconds"` // all changes appended to the stream
	SiltCaptureRate float64 `json:"silt_capture_changes_per_s"`
	SiltBronzeSecs  float64 `json:"silt_bronze_seconds"` // all changes committed to Bronze (Parquet)
	SiltBronzeRate  float64 `json:"silt_bronze_changes_per_s"`
	SiltSilverSecs  float64 `json:"silt_silver_seconds"` // all changes merged into Silver
	SiltSilverRate  float64 `json:"silt_silver_changes_per_s"`
	CaptureVsRecv   float64 `json:"capture_vs_recvlogical"`
	SilverVsRecv    float64 `json:"silver_vs_recvlogical"`
	SiltUse         Usage   `json:"silt_usage"` // the silt process from start until Silver held the backlog
}

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

// runDrain: silt's slot and pg_recvlogical's slot are created on the same
// publication before the backlog is written, so both decode the same WAL
// with the same pgoutput options (proto_version 1, publication_names).
// pg_recvlogical runs first, writing to /dev/null, stopping at the LSN
// current after the backlog (-E); then silt's pipeline (capture into the
// stream, Bronze and Silver, as `silt run` does) drains its slot. silt's
// capture time is when every change was appended to the stream; its Silver
// time when every change was merged into Silver. The pipeline is returned
// running.
func (e *env) runDrain(ctx context.Context, s drainSpec) (DrainResult, *live, error) {
	res := DrainResult{Name: s.name}
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
	dataDir, err := e.dataDir(s.db)
	if err != nil {
		return res, nil, err
	}
	cfg := config.Default(dataDir)
	cfg.Source.DSN = dsn
	cfg.Source.Slot = "silt_" + s.db
	cfg.Source.Publication = "silt_" + s.db
	cfg.Source.Tables = s.tables
	cfg.Stream.Shards = s.shards
	cfg.Bronze.FlushInterval.Duration = 250 * time.Millisecond
	cfg.Silver.Interval.Duration = 250 * time.Millisecond
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := pipeline.Open(ctx, cfg, logger) // creates the publication and silt's slot
	if err != nil {
		os.RemoveAll(dataDir)
		return res, nil, err
	}
	fail := func(err error) (DrainResult, *live, error) {
		p.Close()
		os.RemoveAll(dataDir)
		return res, nil, err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot('recv_"+s.db+"', 'pgoutput')"); err != nil {
		return fail(err)
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

	start := time.Now()
	cmd := exec.CommandContext(ctx, e.recv, "-d", dsn, "--slot", "recv_"+s.db, "--start", "--no-loop",
		"-o", "proto_version=1", "-o", "publication_names="+cfg.Source.Publication, "-E", endLSN, "-f", "/dev/null")
	var rout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &rout, &rout
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("pg_recvlogical: %v", err))
	}
	hwm := watchHWM(cmd.Process.Pid)
	if err := waitReaped(cmd, hwm); err != nil {
		return fail(fmt.Errorf("pg_recvlogical: %v: %s", err, strings.TrimSpace(rout.String())))
	}
	wall := time.Since(start)
	res.RecvlogicalUse = childUsage(cmd, wall, hwm.peak)
	res.RecvlogicalSecs = wall.Seconds()
	res.RecvlogicalRate = float64(n) / res.RecvlogicalSecs
	conn.Exec(ctx, "SELECT pg_drop_replication_slot('recv_"+s.db+"')")
	fmt.Fprintf(e.out, "%s: pg_recvlogical drained it in %.2fs (%.0f/s)\n", s.name, res.RecvlogicalSecs, res.RecvlogicalRate)

	runCtx, stop := context.WithCancel(ctx)
	l := &live{p: p, dsn: dsn, runErr: make(chan error, 1), stop: stop, dataDir: dataDir}
	m := startMeter()
	start = time.Now()
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
			res.SiltCaptureSecs = time.Since(start).Seconds()
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
	res.SiltCaptureRate = float64(n) / res.SiltCaptureSecs
	res.SiltSilverRate = float64(n) / res.SiltSilverSecs
	if res.SiltBronzeSecs > 0 {
		res.SiltBronzeRate = float64(n) / res.SiltBronzeSecs
	}
	res.CaptureVsRecv = res.SiltCaptureRate / res.RecvlogicalRate
	res.SilverVsRecv = res.SiltSilverRate / res.RecvlogicalRate
	fmt.Fprintf(e.out, "%s: silt captured it in %.2fs (%.0f/s, %.2fx pg_recvlogical), merged into Silver in %.2fs (%.0f/s, %.2fx); %.1f CPU s, peak RSS %.0f MiB\n",
		s.name, res.SiltCaptureSecs, res.SiltCaptureRate, res.CaptureVsRecv, res.SiltSilverSecs, res.SiltSilverRate, res.SilverVsRecv,
		res.SiltUse.CPUSeconds, res.SiltUse.PeakRSSMiB)
	return res, l, nil
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

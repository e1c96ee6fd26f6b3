package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options size every scenario of Run. A zero size skips its scenario.
type Options struct {
	Mode         string // "quick" or "full": printed
	InsertDrain  int    // pure-insert backlog (rows)
	InsertTxn    int    // rows per insert transaction
	E2E          E2EOptions
	SnapshotRows int64
	SnapshotConn int // snapshot chunks per table = COPY connections
	Shards       int
	LogRecords   int64
	LogRecordB   int
	LogAppenders int
	LogBatch     int              // 0: Appends of pipeline.AppendBatchBytes, as the pipeline's appender makes
	DeltaOps     *DeltaOpsOptions // nil: not run
	DeltaOpsWhy  string           // printed when DeltaOps is nil
	Conduit      string           // Conduit binary; empty: not run
	ConduitWhy   string           // printed when Conduit is empty
	WorkDir      string           // scenario data (default: os.TempDir)
	Out          io.Writer
}

// Report is everything Run measured, plus the machine it ran on.
type Report struct {
	Mode       string           `json:"mode"`
	Started    time.Time        `json:"started"`
	Machine    Machine          `json:"machine"`
	Insert     *DrainResult     `json:"insert_drain,omitempty"`
	E2E        *E2EResult       `json:"e2e,omitempty"`
	Snapshot   *SnapshotResult  `json:"snapshot,omitempty"`
	LogAppend  *LogAppendResult `json:"log_append,omitempty"`
	LogMany    *LogAppendResult `json:"log_append_many,omitempty"` // 16 appenders x 100 records
	DeltaOps   *DeltaOps        `json:"delta_ops,omitempty"`
	Peer       PeerResult       `json:"peer"`
	Rows       []Row            `json:"table"`
	Errors     []string         `json:"errors,omitempty"`
	UptimeEnd  string           `json:"uptime_end"`
	TotalSecs  float64          `json:"total_seconds"`
	ResourceBy string           `json:"resources_measured_by"`
}

// Machine is what the figures were measured on.
type Machine struct {
	CPUs     int    `json:"cpus"`
	MemTotal string `json:"mem_total"`
	Disk     string `json:"disk"`
	Go       string `json:"go"`
	Postgres string `json:"postgres"`
	Kernel   string `json:"kernel"`
	Uptime   string `json:"uptime_start"`
}

// Row is one line of the printed table. Ratio > 1 means silt did better
// than the baseline (throughput silt/baseline; for times baseline/silt).
type Row struct {
	Scenario   string  `json:"scenario"`
	Unit       string  `json:"unit"`
	Silt       float64 `json:"silt"`
	Baseline   float64 `json:"baseline"`
	BaseName   string  `json:"baseline_name"`
	Ratio      float64 `json:"ratio"`
	CPUPerM    float64 `json:"silt_cpu_s_per_million"`
	PerWhat    string  `json:"per_million_of"`
	PeakRSSMiB float64 `json:"silt_peak_rss_mib"`
	BaseCPUPM  float64 `json:"baseline_cpu_s_per_million,omitempty"`
	Note       string  `json:"note,omitempty"`
}

// Run starts one private PostgreSQL and runs every scenario with a
// non-zero size, each against its baseline in the same run. A scenario
// that fails is reported and the others still run.
func Run(ctx context.Context, o Options) (Report, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Shards == 0 {
		o.Shards = 2
	}
	rep := Report{Mode: o.Mode, Started: time.Now(), ResourceBy: "silt scenarios run in this process: CPU = getrusage(RUSAGE_SELF) user+sys delta " +
		"over the scenario (PostgreSQL's own processes not counted); peak RSS = VmHWM at the end after resetting it through /proc/self/clear_refs " +
		"at the start. Delta ops run in child processes: their own rusage / VmHWM."}
	rep.Machine = machine()
	e, err := startEnv(ctx, o.Out, o.WorkDir)
	if err != nil {
		return rep, err
	}
	defer e.close()
	rep.Machine.Postgres = e.pgVersion(ctx)
	fail := func(name string, err error) {
		msg := fmt.Sprintf("%s: %v", name, err)
		rep.Errors = append(rep.Errors, msg)
		fmt.Fprintln(o.Out, "FAILED", msg)
	}

	if o.InsertDrain > 0 {
		spec := drainSpec{name: "insert drain", db: "bench_ins", ddl: insertDDL, tables: []string{"public.bench_events"},
			shards: o.Shards, write: writeInserts(o.InsertDrain, max(o.InsertTxn, 1))}
		if o.Conduit != "" {
			spec.peerSlot = "conduit_ins"
		}
		d, l, err := e.runDrain(ctx, spec)
		if err != nil {
			fail("insert drain", err)
		} else {
			rep.Insert = &d
			if err := l.close(); err != nil {
				fail("insert drain (stop)", err)
			}
			if o.Conduit != "" {
				wait := max(time.Minute, 20*time.Duration(d.SiltBronzeSecs*float64(time.Second)))
				p, err := e.runConduit(ctx, o.Conduit, l.dsn, "bench_events", "silt_bench_ins", "conduit_ins", d.Changes, wait)
				if err != nil {
					p.Why = err.Error()
				}
				p.SiltRate = d.SiltBronzeRate
				if p.Ran && p.Rate > 0 {
					p.Ratio = p.SiltRate / p.Rate
				}
				rep.Peer = p
			}
		}
		e.dropSlots(ctx, "bench_ins")
	}
	if o.Conduit == "" {
		rep.Peer = PeerResult{Name: "Conduit", Why: o.ConduitWhy}
	} else if !rep.Peer.Ran && rep.Peer.Why == "" {
		rep.Peer = PeerResult{Name: "Conduit", Why: "the insert drain scenario did not run"}
	}
	if o.E2E.DrainChanges > 0 {
		o.E2E.Out = o.Out
		if o.E2E.Shards == 0 {
			o.E2E.Shards = o.Shards
		}
		r, err := runE2E(ctx, e, o.E2E)
		if err != nil {
			fail("mixed drain / end-to-end", err)
		}
		if r.DrainChanges > 0 {
			rep.E2E = &r
		}
	}
	if o.SnapshotRows > 0 {
		r, err := e.runSnapshot(ctx, o.SnapshotRows, max(o.SnapshotConn, 1), o.Shards)
		if err != nil {
			fail("snapshot", err)
		} else {
			rep.Snapshot = &r
		}
	}
	if o.LogRecords > 0 {
		r, err := e.runLogAppend(ctx, o.LogRecords, o.LogRecordB, o.LogAppenders, o.LogBatch, o.Shards)
		if err != nil {
			fail("log append", err)
		} else {
			rep.LogAppend = &r
		}
		if r.Appenders != manyAppenders || r.Batch != manyBatch {
			r, err := e.runLogAppend(ctx, o.LogRecords, o.LogRecordB, manyAppenders, manyBatch, o.Shards)
			if err != nil {
				fail("log append, many appenders", err)
			} else {
				rep.LogMany = &r
			}
		}
	}
	if o.DeltaOps != nil {
		work := o.WorkDir
		if work == "" {
			work = os.TempDir()
		}
		d, err := runDeltaOps(ctx, *o.DeltaOps, work, o.Out)
		if err != nil {
			fail("delta ops", err)
		} else {
			rep.DeltaOps = &d
		}
	}
	rep.Rows = rows(rep, o)
	rep.UptimeEnd = uptime()
	rep.TotalSecs = time.Since(rep.Started).Seconds()
	return rep, nil
}

func rows(rep Report, o Options) []Row {
	var rs []Row
	drain := func(d *DrainResult, label string) {
		note := fmt.Sprintf("%d changes; pg_recvlogical peak RSS %.0f MiB", d.Changes, d.RecvlogicalUse.PeakRSSMiB)
		bcpu := d.RecvlogicalUse.PerMillion(d.Changes)
		rs = append(rs, Row{Scenario: "capture drain, " + label + " (into stream)", Unit: "changes/s", Silt: d.SiltCaptureRate, Baseline: d.RecvlogicalRate,
			BaseName: "pg_recvlogical", Ratio: d.CaptureVsRecv, CPUPerM: d.CaptureUse.PerMillion(d.Changes), PerWhat: "changes",
			PeakRSSMiB: d.CaptureUse.PeakRSSMiB, BaseCPUPM: bcpu, Note: note + fmt.Sprintf("; median of %d alternating runs per side, own slot each (silt %s, pg_recvlogical %s, load1 %s)",
				d.Rounds, rates(d.SiltCaptureRuns), rates(d.RecvlogicalRuns), loads(d.RoundLoad))})
		rs = append(rs, Row{Scenario: "capture drain, " + label + ", full pipeline", Unit: "changes/s", Silt: d.PipelineCaptureRate, Baseline: d.RecvlogicalRate,
			BaseName: "pg_recvlogical", Ratio: d.PipelineVsRecv, CPUPerM: d.SiltUse.PerMillion(d.Changes), PerWhat: "changes",
			PeakRSSMiB: d.SiltUse.PeakRSSMiB, BaseCPUPM: bcpu, Note: "every change in the stream while Bronze and Silver run in the same process; silt CPU/RSS cover the whole drain to Silver"})
		rs = append(rs, Row{Scenario: "drain to Silver, " + label, Unit: "changes/s", Silt: d.SiltSilverRate, Baseline: d.RecvlogicalRate,
			BaseName: "pg_recvlogical", Ratio: d.SilverVsRecv, CPUPerM: d.SiltUse.PerMillion(d.Changes), PerWhat: "changes", PeakRSSMiB: d.SiltUse.PeakRSSMiB, BaseCPUPM: bcpu})
	}
	if rep.Insert != nil {
		drain(rep.Insert, "inserts")
	}
	if rep.E2E != nil {
		drain(&rep.E2E.Drain, "mixed I/U/D")
		for _, r := range rep.E2E.Rates {
			label := fmt.Sprintf("%d/s", r.Offered)
			row := Row{Scenario: "end-to-end, offered " + label, Unit: "changes/s", Silt: r.Sustained, Baseline: r.Achieved, BaseName: "workload achieved",
				CPUPerM: r.Usage.PerMillion(r.Changes), PerWhat: "changes", PeakRSSMiB: r.Usage.PeakRSSMiB,
				Note: fmt.Sprintf("%d changes, catch-up %s; CPU includes the in-process workload client", r.Changes, r.CatchUp.Round(time.Millisecond))}
			if r.Offered == 0 {
				label = "max"
				row.Scenario = "end-to-end, offered max"
				row.Baseline, row.BaseName = rep.E2E.Drain.RecvlogicalRate, "pg_recvlogical (mixed drain)"
				row.Note = fmt.Sprintf("%d changes, workload made %.0f/s, catch-up %s; CPU includes the in-process workload client", r.Changes, r.Achieved, r.CatchUp.Round(time.Millisecond))
			}
			if row.Baseline > 0 {
				row.Ratio = row.Silt / row.Baseline
			}
			rs = append(rs, row)
			rs = append(rs, Row{Scenario: "freshness p50, offered " + label, Unit: "ms commit->Silver", Silt: float64(r.P50.Milliseconds())})
			rs = append(rs, Row{Scenario: "freshness p99, offered " + label, Unit: "ms commit->Silver", Silt: float64(r.P99.Milliseconds())})
		}
	}
	if s := rep.Snapshot; s != nil {
		rs = append(rs, Row{Scenario: fmt.Sprintf("initial snapshot, %d rows (to Bronze)", s.Rows), Unit: "rows/s", Silt: s.SiltRate, Baseline: s.CopyRate,
			BaseName: fmt.Sprintf("%d x COPY binary -> /dev/null", s.Connections), Ratio: s.Ratio, CPUPerM: s.SiltUse.PerMillion(s.Rows), PerWhat: "rows",
			PeakRSSMiB: s.SiltUse.PeakRSSMiB, Note: fmt.Sprintf("%d chunks/table, %d shards, fsync; medians of %d silt runs (%s s) and %d COPY runs (%s s), alternating; CPU/RSS of the median silt run",
				s.ChunksPer, s.Shards, len(s.SiltRuns), joinSecs(s.SiltRuns), len(s.CopySecs), joinSecs(s.CopySecs))})
		rs = append(rs, Row{Scenario: fmt.Sprintf("snapshot rows Bronze -> Silver, %d rows", s.Rows), Unit: "rows/s", Silt: float64(s.Rows) / max(s.SilverSecs, 1e-9),
			CPUPerM: s.SilverUse.PerMillion(s.Rows), PerWhat: "rows", Note: fmt.Sprintf("final Silver pass at stop (median run), merged %v; no baseline", s.SilverMerged)})
	}
	for _, l := range []*LogAppendResult{rep.LogAppend, rep.LogMany} {
		if l == nil {
			continue
		}
		rs = append(rs, Row{Scenario: fmt.Sprintf("embedded log append %dx%d, fsync", l.Appenders, l.Batch), Unit: "MB/s", Silt: l.LogMBs, Baseline: l.RawMBs, BaseName: "raw write 1 MiB + fsync",
			Ratio: l.Ratio, CPUPerM: l.SiltUse.PerMillion(l.Records), PerWhat: "records", PeakRSSMiB: l.SiltUse.PeakRSSMiB,
			Note: fmt.Sprintf("%d records of %d B, %.0f records/s, %d appenders x batch %d, %d shards, median of %d; vs raw write+fdatasync per %d KiB in flight, a file per shard (%.0f MB/s): %.2f",
				l.Records, l.RecordBytes, l.LogRecords, l.Appenders, l.Batch, l.Shards, l.Rounds, l.GroupChunk>>10, l.RawGroupMBs, l.RatioGroup)})
	}
	if d := rep.DeltaOps; d != nil {
		for _, r := range d.Results {
			n, per := int64(0), ""
			switch {
			case strings.HasPrefix(r.Name, "MERGE"):
				n, per = toInt(r.Size["keys"]), "changed keys"
			default:
				n, per = toInt(r.Size["rows"]), "rows compacted"
			}
			cpu, bcpu := 0.0, 0.0
			if n > 0 {
				cpu, bcpu = r.Silt.CPUSeconds/float64(n)*1e6, r.DeltaRS.CPUSeconds/float64(n)*1e6
			}
			rs = append(rs, Row{Scenario: "Delta " + r.Name, Unit: "seconds", Silt: r.Silt.Seconds, Baseline: r.DeltaRS.Seconds, BaseName: "delta-rs " + d.DeltaLake,
				Ratio: r.Ratio, CPUPerM: cpu, PerWhat: per, PeakRSSMiB: r.Silt.PeakRSSMiB, BaseCPUPM: bcpu,
				Note: fmt.Sprintf("%s; CPU per M %s; delta-rs peak RSS %.0f MiB", sizeNote(r.Size), per, r.DeltaRS.PeakRSSMiB)})
		}
	}
	p := rep.Peer
	if p.Ran {
		rs = append(rs, Row{Scenario: "peer: inserts to files", Unit: "changes/s", Silt: p.SiltRate, Baseline: p.Rate, BaseName: "Conduit (JSON lines)",
			Ratio: p.Ratio, BaseCPUPM: p.Use.PerMillion(p.Records), CPUPerM: rep.Insert.SiltUse.PerMillion(rep.Insert.Changes), PeakRSSMiB: rep.Insert.SiltUse.PeakRSSMiB,
			Note: fmt.Sprintf("silt: insert backlog to Bronze Parquet (CPU/RSS: whole drain to Silver); Conduit peak RSS %.0f MiB", p.Use.PeakRSSMiB)})
	} else {
		rs = append(rs, Row{Scenario: "peer: Conduit", Note: "not run: " + p.Why})
	}
	return rs
}

// rates formats per-run rates ("51234/49876/50011").
func rates(v []float64) string {
	var b strings.Builder
	for i, r := range v {
		if i > 0 {
			b.WriteByte('/')
		}
		fmt.Fprintf(&b, "%.0f", r)
	}
	return b.String()
}

// loads formats per-round load averages.
func loads(v []float64) string {
	var b strings.Builder
	for i, r := range v {
		if i > 0 {
			b.WriteByte('/')
		}
		fmt.Fprintf(&b, "%.1f", r)
	}
	return b.String()
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case float64:
		return int64(x)
	case int64:
		return x
	case int:
		return int64(x)
	}
	return 0
}

func sizeNote(m map[string]any) string {
	if _, ok := m["keys"]; ok {
		return fmt.Sprintf("%d keys into %d rows", toInt(m["keys"]), toInt(m["rows"]))
	}
	return fmt.Sprintf("%d files, %d rows", toInt(m["files"]), toInt(m["rows"]))
}

// Print writes the report as one table.
func (rep Report) Print(w io.Writer) {
	m := rep.Machine
	fmt.Fprintf(w, "\nsilt bench (%s), %s; %d CPUs, %s RAM, disk %s; %s; %s\n", rep.Mode, rep.Started.UTC().Format("2006-01-02 15:04 UTC"),
		m.CPUs, m.MemTotal, m.Disk, m.Go, m.Postgres)
	fmt.Fprintf(w, "uptime at start: %s\nuptime at end:   %s\n", m.Uptime, rep.UptimeEnd)
	fmt.Fprintln(w, "ratio > 1: silt better (throughput silt/baseline; for times baseline/silt). CPU s/M: CPU seconds per million changes (rows, records,")
	fmt.Fprintln(w, "keys: see notes) of the silt process during the scenario, and of the baseline's client process where it has one (PostgreSQL's server")
	fmt.Fprintln(w, "processes are not counted for either). Peak RSS: the silt process (VmHWM, reset at each scenario's start).")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tunit\tsilt\tbaseline\tratio\tsilt CPU s/M\tbase CPU s/M\tsilt peak RSS MiB\tbaseline / notes")
	for _, r := range rep.Rows {
		if r.Unit == "" {
			fmt.Fprintf(tw, "%s\t\t\t\t\t\t\t\t%s\n", r.Scenario, r.Note)
			continue
		}
		base, ratio, cpu, bcpu, rss := "", "", "", "", ""
		if r.BaseCPUPM > 0 {
			bcpu = fmt.Sprintf("%.1f", r.BaseCPUPM)
		}
		if r.BaseName != "" {
			base, ratio = num(r.Baseline), fmt.Sprintf("%.2f", r.Ratio)
		}
		if r.CPUPerM > 0 {
			cpu = fmt.Sprintf("%.1f", r.CPUPerM)
		}
		if r.PeakRSSMiB > 0 {
			rss = fmt.Sprintf("%.0f", r.PeakRSSMiB)
		}
		notes := r.BaseName
		if r.Note != "" {
			if notes != "" {
				notes += "; "
			}
			notes += r.Note
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Scenario, r.Unit, num(r.Silt), base, ratio, cpu, bcpu, rss, notes)
	}
	tw.Flush()
	for _, e := range rep.Errors {
		fmt.Fprintln(w, "FAILED:", e)
	}
	fmt.Fprintf(w, "total %.0fs\n", rep.TotalSecs)
}

func num(f float64) string {
	switch {
	case f >= 1000:
		return fmt.Sprintf("%.0f", f)
	case f >= 10:
		return fmt.Sprintf("%.1f", f)
	default:
		return fmt.Sprintf("%.2f", f)
	}
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Uptime: uptime()}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				f := strings.Fields(l)
				if len(f) >= 2 {
					var kb float64
					fmt.Sscan(f[1], &kb)
					m.MemTotal = fmt.Sprintf("%.1f GiB", kb/1024/1024)
				}
			}
		}
	}
	if out, err := exec.Command("df", "-h", "--output=source,fstype,size", os.TempDir()).Output(); err == nil {
		ls := strings.Split(strings.TrimSpace(string(out)), "\n")
		m.Disk = strings.Join(strings.Fields(ls[len(ls)-1]), " ")
	}
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(out))
	}
	return m
}

func uptime() string {
	out, err := exec.Command("uptime").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// dropSlots drops the inactive slots of a database (they would retain WAL).
func (e *env) dropSlots(ctx context.Context, db string) {
	c, err := pgx.Connect(ctx, e.cl.DSN("postgres"))
	if err != nil {
		return
	}
	defer c.Close(ctx)
	c.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active", db)
}

func (e *env) pgVersion(ctx context.Context) string {
	c, err := pgx.Connect(ctx, e.cl.DSN("postgres"))
	if err != nil {
		return "PostgreSQL ?"
	}
	defer c.Close(ctx)
	var v string
	c.QueryRow(ctx, "SHOW server_version").Scan(&v)
	return "PostgreSQL " + strings.Fields(v + " ?")[0]
}

// joinSecs renders seconds as "1.23/4.56/...".
func joinSecs(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatFloat(x, 'f', 2, 64)
	}
	return strings.Join(parts, "/")
}

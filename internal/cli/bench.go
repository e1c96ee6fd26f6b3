package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"github.com/silt-dev/silt/internal/bench"
)

func benchCmd() *cobra.Command {
	var cpuProfile string
	var (
		full                                bool
		jsonPath, workDir                   string
		insert, drain, snapRows, logRecords int
		logAppenders, logBatch              int
		rateDur                             time.Duration
		deltaPython, deltaScript            string
		deltaRows, deltaKeys, deltaFiles    int
		deltaScen                           string
		conduit, conduitWhy                 string
		only                                []string
	)
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure silt against baselines run in the same process (pg_recvlogical, COPY, raw disk, delta-rs, Conduit) and print ratios",
		Long: `Start a private PostgreSQL and measure, in one run, each silt scenario next to
its baseline, and print one table (ratio > 1: silt better):
  - capture drain: a backlog of pure inserts and one of the mixed insert/update/
    delete workload, drained by pg_recvlogical (pgoutput proto 1, same
    publication, to /dev/null) and by silt from identical slots over the same WAL
    (into the stream, and into Silver);
  - end-to-end: silt live at offered rates of 5,000 and 20,000 changes/s and the
    maximum: sustained changes/s into Silver, commit-to-Silver latency p50/p99;
  - initial snapshot to Bronze against parallel COPY ... (FORMAT binary) to /dev/null;
  - the embedded log's fsync'd append against raw sequential write+fsync;
  - Delta MERGE and OPTIMIZE against delta-rs (bench/deltaops, needs --deltaops-python);
  - a peer: Conduit draining the insert backlog into files (needs --conduit).
CPU seconds per million changes and peak RSS are printed for each silt scenario.
The default (quick) sizes finish in a few minutes; --full uses the issue's sizes
(1M changes, 5M snapshot rows, 10M-row MERGE target); every size has a flag.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			out := cmd.OutOrStdout()
			o := bench.Options{Mode: "quick", InsertDrain: 200_000, InsertTxn: 1000,
				E2E:          bench.E2EOptions{DrainChanges: 100_000, Rates: []int{5000, 20000, 0}, RateDuration: 10 * time.Second},
				SnapshotRows: 500_000, SnapshotConn: 4, Shards: 2,
				LogRecords: 1_000_000, LogRecordB: 200, LogAppenders: 1, LogBatch: 0,
				WorkDir: workDir, Out: out}
			dro := bench.DeltaOpsOptions{Python: deltaPython, Script: deltaScript, Rows: 1_000_000, Keys: 10_000,
				SmallFiles: 500, SmallRows: 1000, Scenarios: "uniform"}
			if full {
				o.Mode = "full"
				o.InsertDrain, o.E2E.DrainChanges, o.E2E.RateDuration = 1_000_000, 1_000_000, 60*time.Second
				o.SnapshotRows, o.LogRecords = 5_000_000, 5_000_000
				dro.Rows, dro.Keys, dro.SmallFiles, dro.Scenarios = 10_000_000, 100_000, 1000, "uniform,tail"
			}
			set := func(dst *int, v int) {
				if v > 0 {
					*dst = v
				}
			}
			set(&o.InsertDrain, insert)
			set(&o.E2E.DrainChanges, drain)
			set(&dro.Rows, deltaRows)
			set(&dro.Keys, deltaKeys)
			set(&dro.SmallFiles, deltaFiles)
			set(&o.LogAppenders, logAppenders)
			set(&o.LogBatch, logBatch)
			if deltaScen != "" {
				dro.Scenarios = deltaScen
			}
			if snapRows > 0 {
				o.SnapshotRows = int64(snapRows)
			}
			if logRecords > 0 {
				o.LogRecords = int64(logRecords)
			}
			if rateDur > 0 {
				o.E2E.RateDuration = rateDur
			}
			if deltaPython != "" {
				o.DeltaOps = &dro
			} else {
				o.DeltaOpsWhy = "no --deltaops-python (an interpreter with deltalake; scripts/setup.sh makes .venv)"
			}
			o.Conduit, o.ConduitWhy = conduit, conduitWhy
			if conduit == "" && conduitWhy == "" {
				o.ConduitWhy = "no --conduit binary given"
			}
			if len(only) > 0 {
				keep := map[string]bool{}
				for _, s := range only {
					keep[s] = true
				}
				if !keep["insert"] {
					o.InsertDrain = 0
				}
				if !keep["mixed"] {
					o.E2E.DrainChanges = 0
				}
				if !keep["snapshot"] {
					o.SnapshotRows = 0
				}
				if !keep["log"] {
					o.LogRecords = 0
				}
				if !keep["delta"] {
					o.DeltaOps, o.DeltaOpsWhy = nil, "not selected (--only)"
				}
				if !keep["insert"] && o.Conduit != "" {
					o.Conduit, o.ConduitWhy = "", "not selected (--only insert runs it)"
				}
			}
			rep, err := bench.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if o.DeltaOps == nil {
				rep.Errors = append(rep.Errors, "delta ops not run: "+o.DeltaOpsWhy)
			}
			rep.Print(out)
			if jsonPath != "" {
				b, _ := json.MarshalIndent(rep, "", "  ")
				if err := os.WriteFile(jsonPath, b, 0o644); err != nil {
					return err
				}
				fmt.Fprintf(out, "figures written to %s\n", jsonPath)
			}
			if n := len(rep.Errors); n > 0 && o.DeltaOps != nil {
				return fmt.Errorf("%d scenario(s) failed", n)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof; the pipeline's samples carry the label stage=capture, append, snapshot, bronze or silver: -tagfocus=stage=snapshot)")
	f.BoolVar(&full, "full", false, "the issue's sizes (about 30 minutes on 2 cores)")
	f.StringVar(&jsonPath, "json", "", "also write the figures as JSON to this file")
	f.StringVar(&workDir, "work-dir", "", "directory for scenario data (default: the system temp directory)")
	f.IntVar(&insert, "insert-changes", 0, "pure-insert backlog rows (quick 200000, full 1000000)")
	f.IntVar(&drain, "drain-changes", 0, "mixed backlog changes (quick 100000, full 1000000)")
	f.DurationVar(&rateDur, "rate-duration", 0, "how long each offered rate runs (quick 10s, full 60s)")
	f.IntVar(&snapRows, "snapshot-rows", 0, "initial snapshot table rows (quick 500000, full 5000000)")
	f.IntVar(&logRecords, "log-records", 0, "embedded log append records of 200 B (quick 1000000, full 5000000)")
	f.IntVar(&logAppenders, "log-appenders", 0, "embedded log: goroutines appending at once (default 1, as the pipeline; a second line always shows 16 x 100)")
	f.IntVar(&logBatch, "log-batch", 0, "embedded log: records per Append call (default: the pipeline's largest Append, pipeline.AppendBatchBytes (8 MiB) of records)")
	f.StringVar(&deltaPython, "deltaops-python", "", "Python with deltalake for the delta-rs comparison (e.g. .venv/bin/python); empty skips it")
	f.StringVar(&deltaScript, "deltaops-script", "bench/deltaops/bench.py", "the delta-rs comparison script")
	f.IntVar(&deltaRows, "delta-rows", 0, "MERGE target rows (quick 1000000, full 10000000)")
	f.IntVar(&deltaKeys, "delta-keys", 0, "MERGE changed keys (quick 10000, full 100000)")
	f.StringVar(&deltaScen, "delta-scenarios", "", "MERGE key distributions (quick uniform, full uniform,tail)")
	f.IntVar(&deltaFiles, "delta-files", 0, "OPTIMIZE small files of 1000 rows (quick 500, full 1000)")
	f.StringVar(&conduit, "conduit", "", "Conduit binary for the peer run; empty skips it")
	f.StringVar(&conduitWhy, "conduit-why", "", "why there is no Conduit binary (printed in the table)")
	f.StringSliceVar(&only, "only", nil, "run only these scenarios: insert,mixed,snapshot,log,delta")
	return c
}

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/silt-dev/silt/internal/blob/lake"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/demo"
	"github.com/silt-dev/silt/internal/pipeline"
	"github.com/silt-dev/silt/internal/source/pgrepl"
	"github.com/silt-dev/silt/internal/verify"
)

func runCmd() *cobra.Command {
	var cfgPath string
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the pipeline: capture changes, write Bronze and keep Silver equal to the source",
		Long: `Run the pipeline until interrupted (Ctrl-C or SIGTERM stops it cleanly: capture
stops, Bronze drains the stream, Silver merges what Bronze holds). Restarting resumes
where it stopped, without loss or duplicates.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			logger := newLogger(cmd.ErrOrStderr(), cfg.Log.Level)
			p, err := pipeline.Open(cmd.Context(), cfg, logger)
			if err != nil {
				return err
			}
			defer p.Close()
			logger.Info("silt running", "slot", cfg.Source.Slot, "stream", cfg.Stream.Dir, "shards", cfg.Stream.Shards, "lake", cfg.Lake.Path)
			stopStatus := startProgress(cmd.Context(), p, logger)
			defer stopStatus()
			srv, err := startStatus(cfg, p)
			if err != nil {
				return err
			}
			if srv != nil {
				defer srv.Close()
				logger.Info("status endpoint", "url", "http://"+srv.Addr()+"/status", "metrics", "http://"+srv.Addr()+"/metrics")
			}
			if err := p.Run(cmd.Context()); err != nil {
				return err
			}
			logger.Info("silt stopped cleanly")
			return nil
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "", "path to silt.yaml (see \"silt config example\")")
	return c
}

// startProgress logs pipeline figures every 10s.
func startProgress(ctx context.Context, p *pipeline.Pipeline, logger interface {
	Info(string, ...any)
}) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s := p.Snapshot()
				logger.Info("progress", "changes", s.Changes, "changes_per_s", float64(s.Changes-last)/10,
					"last_commit_lsn", s.LastCommitLSN.String(), "acked_lsn", s.AckedLSN.String(),
					"bronze_rows", s.BronzeRows, "silver_changes", s.SilverChanges,
					"freshness_p50", s.FreshnessP50.Round(time.Millisecond).String(), "freshness_p99", s.FreshnessP99.Round(time.Millisecond).String())
				last = s.Changes
			}
		}
	}()
	return func() { cancel(); <-done }
}

func demoCmd() *cobra.Command {
	var o demo.Options
	var verbose bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run silt end to end on a throwaway PostgreSQL and check that Silver equals the source",
		Long: `Start a throwaway PostgreSQL (or use --dsn), create IoT telemetry tables
(silt_demo.devices, silt_demo.readings), run a mixed insert/update/delete workload with
TOASTed values, run the pipeline until it catches up, then compare every Silver table
with its source (row count and checksum over all columns). Exits non-zero on any mismatch.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out = cmd.OutOrStdout()
			if verbose {
				o.Logger = newLogger(cmd.ErrOrStderr(), "debug")
			}
			_, err := demo.Run(cmd.Context(), o)
			if errors.Is(err, demo.ErrMismatch) {
				return &ExitError{Code: 3, Err: err}
			}
			return err
		},
	}
	c.Flags().StringVar(&o.DSN, "dsn", "", "use this database instead of a throwaway cluster (tables go in schema silt_demo)")
	c.Flags().DurationVar(&o.Duration, "duration", 20*time.Second, "how long the workload runs")
	c.Flags().IntVar(&o.Rate, "rate", 0, "target changes per second (0: as fast as the database goes)")
	c.Flags().IntVar(&o.Workers, "workers", 2, "concurrent workload connections")
	c.Flags().IntVar(&o.Shards, "shards", 2, "stream shards")
	c.Flags().StringVar(&o.DataDir, "data-dir", "", "keep the stream and lake here (default: a temp dir, removed after)")
	c.Flags().Uint64Var(&o.Seed, "seed", 0, "workload seed (0: random; printed)")
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "log pipeline details to stderr")
	return c
}

func checkCmd() *cobra.Command {
	var cfgPath string
	c := &cobra.Command{
		Use:   "check",
		Short: "Compare every Silver table with its source table, row for row",
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			conn, err := pgx.Connect(ctx, pipeline.SessionDSN(cfg.Source.DSN))
			if err != nil {
				return fmt.Errorf("connect to source: %w", err)
			}
			defer conn.Close(ctx)
			st, err := lake.Open(ctx, cfg.Lake)
			if err != nil {
				return err
			}
			var tables []change.TableID
			for _, t := range cfg.Source.Tables {
				id, _ := config.ParseTable(t)
				tables = append(tables, id)
			}
			if len(tables) == 0 {
				infos, err := st.List(ctx, "silver/")
				if err != nil {
					return err
				}
				seen := map[string]bool{}
				for _, in := range infos {
					p := strings.Split(in.Key, "/")
					if len(p) > 3 && !seen[p[1]+"."+p[2]] {
						seen[p[1]+"."+p[2]] = true
						tables = append(tables, change.TableID{Schema: p[1], Name: p[2]})
					}
				}
			}
			bad := 0
			for _, t := range tables {
				r, err := verify.Table(ctx, conn, st, t)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), r)
				if !r.Equal() {
					bad++
				}
			}
			if bad > 0 {
				return &ExitError{Code: 3, Err: fmt.Errorf("%d of %d tables differ from the source", bad, len(tables))}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "", "path to silt.yaml")
	return c
}

func configCmd() *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Print an example configuration or validate one"}
	c.AddCommand(&cobra.Command{
		Use:   "example",
		Short: "Print a documented example silt.yaml",
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), config.Example)
			return err
		},
	})
	var cfgPath string
	v := &cobra.Command{
		Use:   "validate",
		Short: "Check a configuration file and list every problem at once",
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := loadConfig(cfgPath); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "configuration is valid")
			return nil
		},
	}
	v.Flags().StringVarP(&cfgPath, "config", "c", "", "path to silt.yaml")
	c.AddCommand(v)
	return c
}

func slotCmd() *cobra.Command {
	c := &cobra.Command{Use: "slot", Short: "Inspect or drop silt's replication slot"}
	var cfgPath string
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the slot's confirmed LSN, lag and retained WAL",
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			st, err := pgrepl.ReadSlotStats(cmd.Context(), cfg.Source.DSN, cfg.Source.Password, cfg.Source.Slot)
			if errors.Is(err, pgrepl.ErrSlotNotFound) {
				return fmt.Errorf("slot %q does not exist (silt run creates it)", cfg.Source.Slot)
			}
			if err != nil {
				return err
			}
			return printSlotStats(cmd.OutOrStdout(), st, int64(cfg.Source.LagWarnBytes))
		},
	}
	status.Flags().StringVarP(&cfgPath, "config", "c", "", "path to silt.yaml")
	drop := &cobra.Command{
		Use:   "drop",
		Short: "Drop the slot (stop silt first; a later run starts from the current WAL position)",
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			if err := pgrepl.DropSlot(cmd.Context(), cfg.Source.DSN, cfg.Source.Password, cfg.Source.Slot); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "dropped slot %s\n", cfg.Source.Slot)
			return nil
		},
	}
	drop.Flags().StringVarP(&cfgPath, "config", "c", "", "path to silt.yaml")
	c.AddCommand(status, drop)
	return c
}

func tableCmd() *cobra.Command {
	c := &cobra.Command{Use: "table", Short: "Inspect Delta tables (any engine's): describe, history, cat, checkpoint"}
	open := func(path string) (*delta.Table, error) {
		// A local directory or s3://bucket/prefix (AWS settings from the
		// environment: AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_S3).
		st, err := lake.Open(context.Background(), config.LakeConfig{Path: path})
		if err != nil {
			return nil, err
		}
		return delta.NewTable(st, ""), nil
	}
	var version int64
	var asOf string
	snapshot := func(ctx context.Context, t *delta.Table) (*delta.Snapshot, error) {
		switch {
		case asOf != "":
			ts, err := time.Parse(time.RFC3339, asOf)
			if err != nil {
				return nil, fmt.Errorf("--as-of %q: use RFC 3339, e.g. 2026-11-26T08:00:00Z", asOf)
			}
			return t.SnapshotAsOf(ctx, ts)
		case version >= 0:
			return t.SnapshotAt(ctx, version)
		}
		return t.Snapshot(ctx)
	}
	describe := &cobra.Command{
		Use:   "describe PATH",
		Short: "Show version, protocol, schema, partitioning, properties, files and app transactions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := open(args[0])
			if err != nil {
				return err
			}
			s, err := snapshot(cmd.Context(), t)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			var size int64
			for _, f := range s.Files() {
				size += f.Size
			}
			fmt.Fprintf(w, "version\t%d\n", s.Version)
			fmt.Fprintf(w, "protocol\treader %d, writer %d %v %v\n", s.Protocol.MinReaderVersion, s.Protocol.MinWriterVersion, s.Protocol.ReaderFeatures, s.Protocol.WriterFeatures)
			fmt.Fprintf(w, "id\t%s\n", s.Metadata.ID)
			fmt.Fprintf(w, "partition columns\t%v\n", s.PartitionColumns())
			fmt.Fprintf(w, "files\t%d (%d bytes)\n", len(s.Files()), size)
			for k, v := range s.Config() {
				fmt.Fprintf(w, "property\t%s = %s\n", k, v)
			}
			for app, tx := range s.Txns() {
				fmt.Fprintf(w, "app txn\t%s = %d\n", app, tx.Version)
			}
			fmt.Fprintln(w, "schema:")
			for _, f := range s.Schema().Fields {
				null := ""
				if !f.Nullable {
					null = " not null"
				}
				fmt.Fprintf(w, "  %s\t%s%s\n", f.Name, typeString(f.Type), null)
			}
			return w.Flush()
		},
	}
	history := &cobra.Command{
		Use:   "history PATH",
		Short: "List commits, newest first, with operation and parameters",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := open(args[0])
			if err != nil {
				return err
			}
			limit, _ := cmd.Flags().GetInt("limit")
			h, err := t.History(cmd.Context(), limit)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "VERSION\tTIMESTAMP\tOPERATION\tPARAMETERS")
			for _, e := range h {
				op, _ := e.CommitInfo["operation"].(string)
				params, _ := json.Marshal(e.CommitInfo["operationParameters"])
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", e.Version, e.Timestamp.UTC().Format(time.RFC3339Nano), op, params)
			}
			return w.Flush()
		},
	}
	history.Flags().Int("limit", 0, "show at most this many commits (0: all)")
	cat := &cobra.Command{
		Use:   "cat PATH",
		Short: "Print the table's rows (at a version or time) as JSON lines",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := open(args[0])
			if err != nil {
				return err
			}
			s, err := snapshot(cmd.Context(), t)
			if err != nil {
				return err
			}
			limit, _ := cmd.Flags().GetInt("limit")
			ti := datafile.Info(t, s)
			if tz, _ := cmd.Flags().GetString("partition-tz"); tz != "" {
				if ti.PartitionTimeZone, err = time.LoadLocation(tz); err != nil {
					return fmt.Errorf("--partition-tz: %w", err)
				}
			}
			n := 0
			errLimit := errors.New("limit")
			err = datafile.Scan(cmd.Context(), t.Store(), ti, s.Files(), func(r arrow.RecordBatch) error {
				for row := 0; row < int(r.NumRows()); row++ {
					if limit > 0 && n >= limit {
						return errLimit
					}
					m := make(map[string]any, r.NumCols())
					for i, f := range r.Schema().Fields() {
						col := r.Column(i)
						if col.IsNull(row) {
							m[f.Name] = nil
							continue
						}
						m[f.Name] = col.GetOneForMarshal(row)
					}
					b, err := json.Marshal(m)
					if err != nil {
						return err
					}
					fmt.Fprintln(cmd.OutOrStdout(), string(b))
					n++
				}
				return nil
			})
			if err != nil && !errors.Is(err, errLimit) {
				return err
			}
			return nil
		},
	}
	cat.Flags().Int("limit", 0, "print at most this many rows (0: all)")
	cat.Flags().String("partition-tz", "", "zone (Area/City) in which zone-less timestamp partition values are read, as Spark's spark.sql.session.timeZone (default UTC; values with Z or an offset are unaffected)")
	checkpoint := &cobra.Command{
		Use:   "checkpoint PATH",
		Short: "Write a checkpoint of the latest version (and update _last_checkpoint)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := open(args[0])
			if err != nil {
				return err
			}
			s, err := t.Snapshot(cmd.Context())
			if err != nil {
				return err
			}
			if err := t.WriteCheckpoint(cmd.Context(), s); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "checkpoint written at version %d\n", s.Version)
			return nil
		},
	}
	for _, sub := range []*cobra.Command{describe, cat} {
		sub.Flags().Int64Var(&version, "version", -1, "read this version (time travel)")
		sub.Flags().StringVar(&asOf, "as-of", "", "read the version current at this time (RFC 3339)")
	}
	c.AddCommand(describe, history, cat, checkpoint)
	c.AddCommand(tableOpsCmds()...)
	return c
}

// typeString renders a Delta type the way Spark's DDL does: struct<a:int,...>.
func typeString(t delta.DataType) string {
	switch v := t.(type) {
	case *delta.StructType:
		parts := make([]string, len(v.Fields))
		for i, f := range v.Fields {
			parts[i] = f.Name + ":" + typeString(f.Type)
		}
		return "struct<" + strings.Join(parts, ",") + ">"
	case *delta.ArrayType:
		return "array<" + typeString(v.ElementType) + ">"
	case *delta.MapType:
		return "map<" + typeString(v.KeyType) + "," + typeString(v.ValueType) + ">"
	}
	return t.TypeName()
}

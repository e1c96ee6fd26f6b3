package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/silt-dev/silt/internal/blob/lake"
	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/ops"
)

// tableOpsCmds are the table maintenance subcommands: optimize, vacuum.
func tableOpsCmds() []*cobra.Command {
	return []*cobra.Command{optimizeCmd(), vacuumCmd()}
}

// openTable opens a Delta table at a local directory or s3://bucket/prefix
// (AWS settings from the environment, as for "silt table describe").
func openTable(path string) (*delta.Table, error) {
	st, err := lake.Open(context.Background(), config.LakeConfig{Path: path})
	if err != nil {
		return nil, err
	}
	return delta.NewTable(st, ""), nil
}

func optimizeCmd() *cobra.Command {
	var zorder, where, target, minSize string
	c := &cobra.Command{
		Use:   "optimize PATH",
		Short: "Compact small files (bin-packing) or cluster rows by Z-order",
		Long: `Rewrite the small files of each partition into files of about --target-size
(bin-packing), or, with --zorder, rewrite every partition with more than one file
with its rows sorted by the Z-order of the given columns, so that min/max data
skipping works on each of them. Rows are not changed: the commit carries
dataChange=false and never conflicts with concurrent appends.

--where selects partitions: comparisons of partition columns joined by AND,
for example --where "year = 2026 AND month >= 3".`,
		Example: `  silt table optimize lake/silver/public/readings
  silt table optimize lake/silver/public/readings --zorder device_id,ts
  silt table optimize lake/bronze/public/readings --where "year = 2026 AND day = 14"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := openTable(args[0])
			if err != nil {
				return err
			}
			var opts ops.OptimizeOptions
			if zorder != "" {
				for _, z := range strings.Split(zorder, ",") {
					if z = strings.TrimSpace(z); z != "" {
						opts.ZOrderBy = append(opts.ZOrderBy, z)
					}
				}
			}
			if opts.Filter, err = ops.ParsePartitionFilter(where); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if target != "" {
				if opts.TargetFileSize, err = config.ParseByteSize(target); err != nil {
					return &ExitError{Code: 2, Err: fmt.Errorf("--target-size: %w", err)}
				}
			}
			if minSize != "" {
				if opts.MinFileSize, err = config.ParseByteSize(minSize); err != nil {
					return &ExitError{Code: 2, Err: fmt.Errorf("--min-size: %w", err)}
				}
			}
			res, err := ops.Optimize(cmd.Context(), t, opts)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if res.Version < 0 {
				fmt.Fprintf(out, "nothing to optimize (%d files considered)\n", res.FilesConsidered)
				return nil
			}
			w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintf(w, "version\t%d\npartitions\t%d\nfiles removed\t%d (%s)\nfiles added\t%d (%s)\n",
				res.Version, res.Partitions, res.FilesRemoved, humanBytes(res.BytesRemoved), res.FilesAdded, humanBytes(res.BytesAdded))
			if len(opts.ZOrderBy) > 0 {
				fmt.Fprintf(w, "z-order by\t%s\n", strings.Join(opts.ZOrderBy, ", "))
			}
			return w.Flush()
		},
	}
	c.Flags().StringVar(&zorder, "zorder", "", "comma-separated columns to Z-order by (not partition columns)")
	c.Flags().StringVar(&where, "where", "", `partition filter, e.g. "year = 2026 AND month >= 3"`)
	c.Flags().StringVar(&target, "target-size", "", "target file size (default 128MiB)")
	c.Flags().StringVar(&minSize, "min-size", "", "bin-packing only rewrites files smaller than this (default: the target size)")
	return c
}

func vacuumCmd() *cobra.Command {
	var opts ops.VacuumOptions
	c := &cobra.Command{
		Use:   "vacuum PATH",
		Short: "Delete files no version inside the retention window needs",
		Long: `Delete the data files under the table that are not referenced by the current
version or by any version committed inside the retention window, and that are
older than the window. The retention defaults to the table property
delta.deletedFileRetentionDuration (7 days when unset); a shorter --retain is
refused unless --force is given, since readers of older versions and writers
with uncommitted files could lose data. _delta_log and files or directories
whose names start with "_" or "." are never touched, except, on local disk, the
temp files (".tmp-*") that a writer which crashed mid-write left behind for
more than an hour.`,
		Example: `  silt table vacuum lake/silver/public/readings --dry-run
  silt table vacuum lake/silver/public/readings --retain 168h`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := openTable(args[0])
			if err != nil {
				return err
			}
			res, err := ops.Vacuum(cmd.Context(), t, opts)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			verb := "deleted"
			if res.DryRun {
				verb = "would delete"
			}
			for _, f := range res.Files {
				fmt.Fprintf(out, "%s %s\n", verb, f)
			}
			fmt.Fprintf(out, "%s %d files (%s); retention %s (cutoff %s); kept %d referenced and %d newer files\n",
				verb, len(res.Files), humanBytes(res.Bytes), res.Retention, res.Cutoff.UTC().Format("2006-01-02T15:04:05Z"), res.Referenced, res.Young)
			// Local tables: temp files of writers that crashed mid-Put are
			// invisible to listings, so VACUUM sweeps them separately.
			if ls, ok := t.Store().(*local.Store); ok {
				keys, n, err := ls.SweepTemp(cmd.Context(), t.Root(), time.Hour, res.DryRun)
				if err != nil {
					return err
				}
				for _, k := range keys {
					fmt.Fprintf(out, "%s %s\n", verb, k)
				}
				if len(keys) > 0 {
					fmt.Fprintf(out, "%s %d abandoned temp files (%s) older than 1h\n", verb, len(keys), humanBytes(n))
				}
			}
			return nil
		},
	}
	c.Flags().DurationVar(&opts.Retain, "retain", 0, "retention, e.g. 168h (default: the table's delta.deletedFileRetentionDuration, 7 days if unset)")
	c.Flags().BoolVar(&opts.DryRun, "dry-run", false, "list the files without deleting them")
	c.Flags().BoolVar(&opts.Force, "force", false, "allow a retention shorter than the table's")
	return c
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

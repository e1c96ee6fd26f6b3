package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/source/pgrepl"
)

func doctorCmd() *cobra.Command {
	var cfgPath string
	c := &cobra.Command{
		Use:   "doctor",
		Short: "Check that the source database is ready for silt, and say how to fix what is not",
		Long: `Check the source database without changing it: connection and TLS mode, wal_level,
free replication slots and wal senders, the REPLICATION privilege, publication
coverage, tables without a key, max_slot_wal_keep_size and the slot's health.
Each problem is printed with its fix. Exit status 1 when a problem was found.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			findings, err := pgrepl.Doctor(cmd.Context(), doctorConfig(cfg))
			if err != nil {
				return err
			}
			problems := printFindings(cmd.OutOrStdout(), findings)
			if problems > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("doctor found %d problem(s)", problems)}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "", "path to silt.yaml")
	return c
}

func doctorConfig(cfg *config.Config) pgrepl.Config {
	pc := pgrepl.Config{DSN: cfg.Source.DSN, Password: cfg.Source.Password, Slot: cfg.Source.Slot,
		Publication: cfg.Source.Publication, LagWarnBytes: int64(cfg.Source.LagWarnBytes),
		KeylessAppend: func(id change.TableID) bool { return cfg.Source.KeylessMode(id) == config.KeylessAppend }}
	for _, t := range cfg.Source.Tables {
		id, _ := config.ParseTable(t) // validated
		pc.Tables = append(pc.Tables, id)
	}
	return pc
}

// printFindings writes one line per check (and a fix line under each
// non-OK one) and returns the number of problems.
func printFindings(w io.Writer, findings []pgrepl.Finding) int {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	problems := 0
	for _, f := range findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Level, f.Check, f.Detail)
		if f.Level != pgrepl.LevelOK && f.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", f.Fix)
		}
		if f.Level == pgrepl.LevelProblem {
			problems++
		}
	}
	tw.Flush()
	return problems
}

// printSlotStats prints `silt slot status`.
func printSlotStats(w io.Writer, st pgrepl.SlotStats, warnBytes int64) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	pid := "-"
	if st.ActivePID != 0 {
		pid = fmt.Sprint(st.ActivePID)
	}
	safe := "unlimited (max_slot_wal_keep_size = -1)"
	if st.SafeWALSize >= 0 {
		safe = fmt.Sprintf("%d", st.SafeWALSize)
	}
	lagNote := ""
	if warnBytes > 0 && st.LagBytes > warnBytes {
		lagNote = fmt.Sprintf("  (above source.lag_warn_bytes %d)", warnBytes)
	}
	fmt.Fprintf(tw, "slot\t%s\n", st.Slot)
	fmt.Fprintf(tw, "active\t%v\n", st.Active)
	fmt.Fprintf(tw, "active_pid\t%s\n", pid)
	fmt.Fprintf(tw, "confirmed_flush_lsn\t%s\n", st.ConfirmedFlushLSN)
	fmt.Fprintf(tw, "restart_lsn\t%s\n", st.RestartLSN)
	fmt.Fprintf(tw, "current_wal_lsn\t%s\n", st.CurrentLSN)
	fmt.Fprintf(tw, "lag_bytes\t%d%s\n", st.LagBytes, lagNote)
	fmt.Fprintf(tw, "retained_wal_bytes\t%d\n", st.RetainedWALBytes)
	fmt.Fprintf(tw, "wal_status\t%s\n", strings.TrimSpace(st.WALStatus))
	fmt.Fprintf(tw, "safe_wal_size\t%s\n", safe)
	return tw.Flush()
}

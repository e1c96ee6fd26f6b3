package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/silt-dev/silt/internal/bench"
)

func benchCmd() *cobra.Command {
	var full bool
	var jsonPath string
	var drain int
	var rateDur time.Duration
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure silt against baselines run in the same process (pg_recvlogical, ...) and print ratios",
		Long: `Start a private PostgreSQL and measure, in one run:
  - a backlog drained by pg_recvlogical (pgoutput, same publication) and by silt
    (captured into the stream, and merged into Silver), with ratios;
  - silt live at offered rates of 5,000 and 20,000 changes/s and the maximum:
    sustained changes/s into Silver and commit-to-Silver latency p50/p99.
--quick (default) finishes in a few minutes; --full uses larger sizes.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o := bench.E2EOptions{DrainChanges: 100_000, Rates: []int{5000, 20000, 0}, RateDuration: 15 * time.Second, Out: cmd.OutOrStdout()}
			if full {
				o.DrainChanges, o.RateDuration = 1_000_000, 60*time.Second
			}
			if drain > 0 {
				o.DrainChanges = drain
			}
			if rateDur > 0 {
				o.RateDuration = rateDur
			}
			fmt.Fprintf(cmd.OutOrStdout(), "silt bench on %s/%s, %d CPUs, %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
			res, err := bench.RunE2E(cmd.Context(), o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, "\nscenario                              silt            baseline         ratio")
			fmt.Fprintf(out, "capture drain (changes/s)             %-15.0f %-16.0f %.2f  (pg_recvlogical)\n", res.SiltCaptureRate, res.RecvlogicalRate, res.CaptureVsRecv)
			fmt.Fprintf(out, "end-to-end drain to Silver (ch/s)     %-15.0f %-16.0f %.2f  (pg_recvlogical)\n", res.SiltSilverRate, res.RecvlogicalRate, res.SilverVsRecv)
			for _, r := range res.Rates {
				label := fmt.Sprintf("%d/s", r.Offered)
				if r.Offered == 0 {
					label = "max"
				}
				fmt.Fprintf(out, "live %-8s sustained (ch/s)        %-15.0f %-16.0f %.2f  (offered, achieved by workload)\n", label, r.Sustained, r.Achieved, r.Sustained/r.Achieved)
				fmt.Fprintf(out, "live %-8s commit->Silver p50/p99  %s / %s\n", label, r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond))
			}
			if jsonPath != "" {
				b, _ := json.MarshalIndent(res, "", "  ")
				if err := os.WriteFile(jsonPath, b, 0o644); err != nil {
					return err
				}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&full, "full", false, "larger sizes (about 30 minutes)")
	c.Flags().StringVar(&jsonPath, "json", "", "also write the figures as JSON to this file")
	c.Flags().IntVar(&drain, "drain-changes", 0, "backlog size (overrides the mode's)")
	c.Flags().DurationVar(&rateDur, "rate-duration", 0, "how long each offered rate runs (overrides the mode's)")
	return c
}

package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/obs"
	"github.com/silt-dev/silt/internal/pipeline"
	"github.com/silt-dev/silt/internal/status"
)

// Report is what /status serves.
type Report struct {
	Time          time.Time `json:"time"`
	Uptime        string    `json:"uptime"`
	Transactions  int64     `json:"transactions"`
	Changes       int64     `json:"changes"`
	LastCommitLSN string    `json:"last_commit_lsn"`
	AckedLSN      string    `json:"acked_lsn"`
	BronzeCommits int64     `json:"bronze_commits"`
	BronzeRows    int64     `json:"bronze_rows"`
	SilverBatches int64     `json:"silver_batches"`
	SilverChanges int64     `json:"silver_changes"`
	SilverMaxLSN  string    `json:"silver_max_lsn"`
	FreshnessP50  string    `json:"freshness_p50"`
	FreshnessP99  string    `json:"freshness_p99"`
	GoldLate      int64     `json:"gold_late_changes"`
	Reconnects    int64     `json:"capture_reconnects"`
	// Slot: the latest sample of the replication slot (lag, retained WAL).
	Slot any `json:"slot"`
	// HotShardRatio is the busiest shard's incoming bytes over the mean (1 = even).
	HotShardRatio float64 `json:"hot_shard_ratio"`
	Shards        any     `json:"shards"`
	// Snapshot is the initial load's progress (rows, rows/s, ETA per table).
	Snapshot any `json:"snapshot,omitempty"`
}

func makeReport(p *pipeline.Pipeline, started time.Time) Report {
	s := p.Snapshot()
	return Report{
		Time: time.Now().UTC(), Uptime: time.Since(started).Round(time.Second).String(),
		Transactions: s.Transactions, Changes: s.Changes,
		LastCommitLSN: s.LastCommitLSN.String(), AckedLSN: s.AckedLSN.String(),
		BronzeCommits: s.BronzeCommits, BronzeRows: s.BronzeRows,
		SilverBatches: s.SilverBatches, SilverChanges: s.SilverChanges, SilverMaxLSN: s.SilverMaxLSN.String(),
		FreshnessP50: s.FreshnessP50.Round(time.Millisecond).String(), FreshnessP99: s.FreshnessP99.Round(time.Millisecond).String(),
		GoldLate: s.GoldLate, Reconnects: p.Reconnects(),
		Slot:          p.SourceStats().Slot,
		HotShardRatio: obs.HotShard(p.StreamStats()),
		Shards:        p.StreamStats(),
		Snapshot:      snapshotProgress(p),
	}
}

func snapshotProgress(p *pipeline.Pipeline) any {
	sp := p.SnapshotProgress()
	if sp.Phase == "" {
		return nil
	}
	return sp
}

// startStatus starts the status endpoint for a running pipeline (nil when disabled).
func startStatus(cfg *config.Config, p *pipeline.Pipeline) (*status.Server, error) {
	if cfg.Status.Listen == "off" {
		return nil, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	obs.RegisterPipeline(reg, p.Snapshot)
	reg.MustRegister(obs.NewStreamCollector(pipeline.StreamStatsReporter{P: p}))
	started := time.Now()
	return status.Start(cfg.Status.Listen, reg, func() any { return makeReport(p, started) }, func() error { return nil })
}

func statusCmd() *cobra.Command {
	var cfgPath string
	var asJSON bool
	c := &cobra.Command{
		Use:   "status",
		Short: "Show a running silt's progress: changes, acknowledged LSN, Bronze and Silver, freshness p50/p99",
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			if cfg.Status.Listen == "off" {
				return &ExitError{Code: 2, Err: errors.New("status.listen is off: enable it to use silt status")}
			}
			client := &http.Client{Timeout: 5 * time.Second}
			resp, err := client.Get("http://" + cfg.Status.Listen + "/status")
			if err != nil {
				return fmt.Errorf("no silt running at %s (status.listen): %w", cfg.Status.Listen, err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if asJSON {
				_, err = cmd.OutOrStdout().Write(body)
				return err
			}
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				return fmt.Errorf("status: %w", err)
			}
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			for _, k := range keys {
				fmt.Fprintf(w, "%s\t%v\n", k, m[k])
			}
			return w.Flush()
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "", "path to silt.yaml")
	c.Flags().BoolVar(&asJSON, "json", false, "print the raw JSON")
	return c
}

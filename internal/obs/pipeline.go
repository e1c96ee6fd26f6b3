package obs

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/silt-dev/silt/internal/pipeline"
)

// RegisterPipeline exposes a pipeline's figures as Prometheus metrics, read
// from its stats snapshot at scrape time.
func RegisterPipeline(reg prometheus.Registerer, snap func() pipeline.StatsSnapshot) {
	gauge := func(name, help string, f func(s pipeline.StatsSnapshot) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "silt", Name: name, Help: help}, func() float64 { return f(snap()) })
	}
	counter := func(name, help string, f func(s pipeline.StatsSnapshot) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "silt", Name: name, Help: help}, func() float64 { return f(snap()) })
	}
	reg.MustRegister(
		counter("capture_transactions_total", "Source transactions captured.", func(s pipeline.StatsSnapshot) float64 { return float64(s.Transactions) }),
		counter("capture_changes_total", "Row changes captured.", func(s pipeline.StatsSnapshot) float64 { return float64(s.Changes) }),
		gauge("capture_last_commit_lsn", "Commit LSN of the last captured transaction.", func(s pipeline.StatsSnapshot) float64 { return float64(s.LastCommitLSN) }),
		gauge("slot_acked_lsn", "LSN acknowledged to the replication slot (durable in Bronze).", func(s pipeline.StatsSnapshot) float64 { return float64(s.AckedLSN) }),
		counter("bronze_commits_total", "Bronze Delta commits.", func(s pipeline.StatsSnapshot) float64 { return float64(s.BronzeCommits) }),
		counter("bronze_rows_total", "Rows written to Bronze.", func(s pipeline.StatsSnapshot) float64 { return float64(s.BronzeRows) }),
		counter("silver_batches_total", "Silver micro-batches merged.", func(s pipeline.StatsSnapshot) float64 { return float64(s.SilverBatches) }),
		counter("silver_changes_total", "Changes merged into Silver.", func(s pipeline.StatsSnapshot) float64 { return float64(s.SilverChanges) }),
		gauge("freshness_p50_seconds", "Median time from source commit to visibility in Silver (last 10,000 changes).", func(s pipeline.StatsSnapshot) float64 { return s.FreshnessP50.Seconds() }),
		gauge("freshness_p99_seconds", "99th percentile time from source commit to visibility in Silver (last 10,000 changes).", func(s pipeline.StatsSnapshot) float64 { return s.FreshnessP99.Seconds() }),
	)
}

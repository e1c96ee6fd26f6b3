package cli

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// defaultPrices is the editable price table; --prices replaces it.
//
//go:embed kinesis-prices.yaml
var defaultPrices []byte

// kinesisPrices is the price table.
type kinesisPrices struct {
	Region        string  `yaml:"region"`
	Currency      string  `yaml:"currency"`
	HoursPerMonth float64 `yaml:"hours_per_month"`
	Provisioned   struct {
		ShardHour              float64 `yaml:"shard_hour"`
		PutPayloadUnitsMillion float64 `yaml:"put_payload_units_million"`
	} `yaml:"provisioned"`
	OnDemand struct {
		StreamHour float64 `yaml:"stream_hour"`
		WriteGB    float64 `yaml:"write_gb"`
		ReadGB     float64 `yaml:"read_gb"`
	} `yaml:"on_demand"`
}

func parsePrices(b []byte) (*kinesisPrices, error) {
	var p kinesisPrices
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("price table: %w", err)
	}
	var bad []string
	for name, v := range map[string]float64{"hours_per_month": p.HoursPerMonth, "provisioned.shard_hour": p.Provisioned.ShardHour,
		"provisioned.put_payload_units_million": p.Provisioned.PutPayloadUnitsMillion, "on_demand.stream_hour": p.OnDemand.StreamHour,
		"on_demand.write_gb": p.OnDemand.WriteGB, "on_demand.read_gb": p.OnDemand.ReadGB} {
		if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			bad = append(bad, name)
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("price table: %s must be positive numbers", strings.Join(bad, ", "))
	}
	return &p, nil
}

// Per-shard limits of Kinesis Data Streams (provisioned mode).
const (
	shardWriteBytes   = 1_000_000 // bytes/s
	shardWriteRecords = 1_000     // records/s
	shardReadBytes    = 2_000_000 // bytes/s, shared by the consumers of a shard
	putPayloadUnit    = 25 * 1024 // bytes
	onDemandRecordMin = 1024      // on-demand bills each record as at least 1 KB
)

// shardPlanInput is what the user told us.
type shardPlanInput struct {
	WriteMBs  float64 // MB/s written (1 MB = 10^6 bytes, as Kinesis counts)
	RecordsS  float64 // records/s written
	AvgBytes  float64 // bytes per record (partition key plus data)
	Consumers int     // shared-throughput consumers reading everything
	Headroom  float64 // fraction of each shard's limit kept free
}

// shardPlan is the answer.
type shardPlan struct {
	In                                          shardPlanInput
	ByWriteBytes, ByRecords, ByRead             int
	Shards                                      int
	Binding                                     string
	ProvisionedMonth                            float64
	ProvisionedShards, ProvisionedPUT           float64
	OnDemandMonth                               float64
	OnDemandStream, OnDemandWrite, OnDemandRead float64
}

// planShards computes the shard count: for each limit, the load divided by
// the usable part of one shard's limit, rounded up; the largest wins.
func planShards(in shardPlanInput, p *kinesisPrices) (*shardPlan, error) {
	switch {
	case in.WriteMBs <= 0 && in.RecordsS <= 0:
		return nil, errors.New("give --write-mb-s or --records-s (or both)")
	case in.WriteMBs <= 0 && in.AvgBytes <= 0:
		return nil, errors.New("with only --records-s, give --avg-bytes too, to know the write volume")
	case in.RecordsS <= 0 && in.AvgBytes <= 0:
		return nil, errors.New("with only --write-mb-s, give --avg-bytes too, to know the record rate")
	case in.Headroom < 0 || in.Headroom >= 0.9:
		return nil, fmt.Errorf("--headroom %.2f must be in [0, 0.9)", in.Headroom)
	case in.Consumers < 0:
		return nil, fmt.Errorf("--consumers %d must not be negative", in.Consumers)
	}
	if in.WriteMBs <= 0 {
		in.WriteMBs = in.RecordsS * in.AvgBytes / 1e6
	}
	if in.RecordsS <= 0 {
		in.RecordsS = in.WriteMBs * 1e6 / in.AvgBytes
	}
	if in.AvgBytes <= 0 {
		in.AvgBytes = in.WriteMBs * 1e6 / in.RecordsS
	}
	usable := 1 - in.Headroom
	need := func(load, limit float64) int { return max(1, int(math.Ceil(load/(limit*usable)-1e-9))) }
	pl := &shardPlan{In: in,
		ByWriteBytes: need(in.WriteMBs*1e6, shardWriteBytes),
		ByRecords:    need(in.RecordsS, shardWriteRecords),
		ByRead:       need(in.WriteMBs*1e6*float64(in.Consumers), shardReadBytes),
	}
	pl.Shards, pl.Binding = pl.ByWriteBytes, "write MB/s"
	if pl.ByRecords > pl.Shards {
		pl.Shards, pl.Binding = pl.ByRecords, "write records/s"
	}
	if pl.ByRead > pl.Shards {
		pl.Shards, pl.Binding = pl.ByRead, "read MB/s"
	}
	secondsPerMonth := p.HoursPerMonth * 3600
	recordsMonth := in.RecordsS * secondsPerMonth
	units := math.Ceil(in.AvgBytes / putPayloadUnit)
	pl.ProvisionedShards = float64(pl.Shards) * p.HoursPerMonth * p.Provisioned.ShardHour
	pl.ProvisionedPUT = recordsMonth * units / 1e6 * p.Provisioned.PutPayloadUnitsMillion
	pl.ProvisionedMonth = pl.ProvisionedShards + pl.ProvisionedPUT
	billedBytes := math.Max(in.AvgBytes, onDemandRecordMin) * recordsMonth
	pl.OnDemandStream = p.HoursPerMonth * p.OnDemand.StreamHour
	pl.OnDemandWrite = billedBytes / 1e9 * p.OnDemand.WriteGB
	pl.OnDemandRead = in.AvgBytes * recordsMonth * float64(in.Consumers) / 1e9 * p.OnDemand.ReadGB
	pl.OnDemandMonth = pl.OnDemandStream + pl.OnDemandWrite + pl.OnDemandRead
	return pl, nil
}

func (pl *shardPlan) print(w io.Writer, p *kinesisPrices) {
	in := pl.In
	fmt.Fprintf(w, "load: %.3f MB/s, %.0f records/s, %.0f bytes/record, %d consumer(s); headroom %.0f%%\n",
		in.WriteMBs, in.RecordsS, in.AvgBytes, in.Consumers, in.Headroom*100)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "limit per shard\tload\tshards needed\n")
	fmt.Fprintf(tw, "write 1 MB/s\t%.3f MB/s\t%d\n", in.WriteMBs, pl.ByWriteBytes)
	fmt.Fprintf(tw, "write 1,000 records/s\t%.0f records/s\t%d\n", in.RecordsS, pl.ByRecords)
	fmt.Fprintf(tw, "read 2 MB/s (shared)\t%.3f MB/s\t%d\n", in.WriteMBs*float64(in.Consumers), pl.ByRead)
	tw.Flush()
	fmt.Fprintf(w, "recommended: %d shard(s) (bound by %s); set stream.shards: %d\n", pl.Shards, pl.Binding, pl.Shards)
	fmt.Fprintf(w, "monthly cost (%s, %s, %.0f h/month; from the price table, check it):\n", p.Region, p.Currency, p.HoursPerMonth)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "provisioned\t%.2f\t= %d shards x %.0f h x %g + PUT units %.2f\n", pl.ProvisionedMonth, pl.Shards, p.HoursPerMonth, p.Provisioned.ShardHour, pl.ProvisionedPUT)
	fmt.Fprintf(tw, "on-demand\t%.2f\t= stream %.2f + writes %.2f + reads %.2f\n", pl.OnDemandMonth, pl.OnDemandStream, pl.OnDemandWrite, pl.OnDemandRead)
	tw.Flush()
	cheaper := "provisioned"
	if pl.OnDemandMonth < pl.ProvisionedMonth {
		cheaper = "on-demand"
	}
	fmt.Fprintf(w, "cheaper at this steady load: %s. The count assumes keys spread evenly: one hot key (or partition_key\n", cheaper)
	fmt.Fprintf(w, "schema-table on a busy table) is capped at one shard whatever the count. Try it locally with stream.limits.enforce.\n")
}

func shardsCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "shards",
		Short: "Plan the stream's shard count and what it costs on Kinesis",
	}
	var (
		in     shardPlanInput
		prices string
	)
	plan := &cobra.Command{
		Use:   "plan",
		Short: "Recommend a shard count with headroom, and compare provisioned and on-demand monthly cost",
		Long: `Recommend a shard count for a write load, from Kinesis's per-shard limits
(1 MB/s or 1,000 records/s of writes, 2 MB/s of reads shared by consumers), keeping
--headroom of each limit free, and estimate the monthly cost of provisioned and
on-demand capacity from a price table (built in; --prices FILE replaces it: print the
built-in one with --print-prices, edit, pass it back).`,
		Example: "  silt shards plan --write-mb-s 3 --records-s 5000\n  silt shards plan --records-s 2000 --avg-bytes 600 --prices my-prices.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if ok, _ := cmd.Flags().GetBool("print-prices"); ok {
				_, err := cmd.OutOrStdout().Write(defaultPrices)
				return err
			}
			raw := defaultPrices
			if prices != "" {
				b, err := os.ReadFile(prices)
				if err != nil {
					return &ExitError{Code: 2, Err: fmt.Errorf("--prices: %w", err)}
				}
				raw = b
			}
			p, err := parsePrices(raw)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			pl, err := planShards(in, p)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			pl.print(cmd.OutOrStdout(), p)
			return nil
		},
	}
	f := plan.Flags()
	f.Float64Var(&in.WriteMBs, "write-mb-s", 0, "peak write volume in MB/s (10^6 bytes, partition key plus data)")
	f.Float64Var(&in.RecordsS, "records-s", 0, "peak write rate in records/s")
	f.Float64Var(&in.AvgBytes, "avg-bytes", 0, "average record size in bytes (derived from the other two when both are given)")
	f.IntVar(&in.Consumers, "consumers", 1, "consumers reading the whole stream with shared throughput (silt's Bronze writer is one)")
	f.Float64Var(&in.Headroom, "headroom", 0.25, "fraction of each shard limit kept free for bursts and uneven keys")
	f.StringVar(&prices, "prices", "", "price table YAML replacing the built-in one")
	f.Bool("print-prices", false, "print the built-in price table and exit")
	c.AddCommand(plan)
	return c
}

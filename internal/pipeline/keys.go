package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/stream"
	"github.com/silt-dev/silt/internal/stream/kinesis"
	"github.com/silt-dev/silt/internal/stream/locallog"
)

// openStream opens the stream that cfg.Kind names, wrapped for the record
// format, and builds its Partitioner. It logs, once, why the partition key
// strategy may make hot shards.
func openStream(ctx context.Context, cfg config.StreamConfig, logger *slog.Logger) (stream.Log, *stream.Partitioner, error) {
	part, err := stream.NewPartitioner(stream.PartitionConfig{Strategy: cfg.PartitionKey, Columns: cfg.PartitionKeyColumns},
		func(t change.TableID, why string) {
			logger.Warn("stream partition key falls back to primary-key", "table", t.String(), "reason", why)
		})
	if err != nil {
		return nil, nil, fmt.Errorf("stream.partition_key: %w", err)
	}
	for _, w := range part.Warnings(cfg.Shards) {
		logger.Warn("stream partition key may make hot shards", "strategy", cfg.PartitionKey, "shards", cfg.Shards, "why", w)
	}
	var lg stream.Log
	switch cfg.Kind {
	case "local", "":
		opts := locallog.Options{Shards: cfg.Shards, Durability: durability(cfg.Durability), Logger: logger}
		if l := cfg.Limits; l.Enforce {
			opts.Limits = locallog.Limits{WriteBytesPerSec: int64(l.WriteBytesPerSec), WriteRecordsPerSec: int64(l.WriteRecordsPerSec), ReadBytesPerSec: int64(l.ReadBytesPerSec)}
		}
		ll, err := locallog.Open(cfg.Dir, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("stream.dir %s: %w", cfg.Dir, err)
		}
		lg = ll
	case "kinesis":
		k := cfg.Kinesis
		client, err := kinesis.NewClient(ctx, k.Region, k.Endpoint)
		if err != nil {
			return nil, nil, err
		}
		kl, err := kinesis.Open(ctx, kinesis.Options{Client: client, Stream: k.StreamName, Shards: cfg.Shards, StateDir: cfg.Dir, Create: k.Create, Logger: logger})
		if err != nil {
			return nil, nil, fmt.Errorf("stream.kinesis %s: %w", k.StreamName, err)
		}
		lg = kl
	default:
		return nil, nil, fmt.Errorf("stream.kind %q is not supported", cfg.Kind)
	}
	if cfg.Format == "dms" {
		// Stored records are DMS JSON for outside consumers; the pipeline
		// still appends and reads compact records.
		lg = stream.WithCodec(lg, &change.DMSCodec{PartitionKeyType: part.Strategy()})
	}
	return lg, part, nil
}

// StreamStats returns the stream's per-shard figures (nil when the stream
// keeps none), for the status page and obs.NewStreamCollector.
func (p *Pipeline) StreamStats() []stream.ShardStats {
	if r, ok := p.log.(stream.StatsReporter); ok {
		return r.Stats()
	}
	return nil
}

// StreamStatsReporter adapts StreamStats to stream.StatsReporter.
type StreamStatsReporter struct{ P *Pipeline }

// Stats implements stream.StatsReporter.
func (r StreamStatsReporter) Stats() []stream.ShardStats { return r.P.StreamStats() }

// SessionDSN adds the session settings silt's text decoding relies on (UTC,
// ISO dates, hex bytea) to a DSN in either URL or keyword form.
func SessionDSN(dsn string) string {
	const opts = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c bytea_output=hex -c IntervalStyle=postgres -c extra_float_digits=3"
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn
		}
		q := u.Query()
		q.Set("options", strings.TrimSpace(q.Get("options")+" "+opts))
		// url.Values encodes spaces as '+', which libpq-style parsers keep literally.
		u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
		return u.String()
	}
	return strings.TrimSpace(dsn) + " options='" + opts + "'"
}

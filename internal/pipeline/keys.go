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
	switch cfg.Kind {
	case "local", "":
		lg, err := locallog.Open(cfg.Dir, locallog.Options{Shards: cfg.Shards, Durability: durability(cfg.Durability)})
		if err != nil {
			return nil, nil, fmt.Errorf("stream.dir %s: %w", cfg.Dir, err)
		}
		return lg, part, nil
	}
	return nil, nil, fmt.Errorf("stream.kind %q is not supported by this build", cfg.Kind)
}

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

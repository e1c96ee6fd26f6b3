package stream

import (
	"context"
	"fmt"
	"time"
)

// Codec transcodes record data between what the pipeline appends (silt's
// compact change records) and what the log stores, for example the DMS
// JSON envelope that existing DMS consumers of a Kinesis stream read.
type Codec interface {
	// Encode appends the stored form of data (appended under key) to dst.
	Encode(dst, key, data []byte) ([]byte, error)
	// Decode appends the form the pipeline reads of stored data to dst.
	Decode(dst, stored []byte) ([]byte, error)
}

// WithCodec returns l with every record transcoded by c on Append and
// Read. Offsets, shards and keys are l's. The result forwards Waiter,
// Trimmer and StatsReporter to l (Wait polls End when l has no Waiter).
func WithCodec(l Log, c Codec) Log { return &codecLog{Log: l, c: c} }

type codecLog struct {
	Log
	c Codec
}

var (
	_ Waiter        = (*codecLog)(nil)
	_ Trimmer       = (*codecLog)(nil)
	_ StatsReporter = (*codecLog)(nil)
)

func (l *codecLog) Append(ctx context.Context, entries []Entry) error {
	out := make([]Entry, len(entries))
	var buf []byte
	for i, e := range entries {
		start := len(buf)
		var err error
		if buf, err = l.c.Encode(buf, e.PartitionKey, e.Data); err != nil {
			return fmt.Errorf("stream: encode entry %d: %w", i, err)
		}
		out[i] = Entry{PartitionKey: e.PartitionKey, Data: buf[start:len(buf):len(buf)]}
	}
	// buf may have moved while growing: slice it again at the end.
	off := 0
	for i := range out {
		n := len(out[i].Data)
		out[i].Data = buf[off : off+n : off+n]
		off += n
	}
	return l.Log.Append(ctx, out)
}

// Read returns decoded records; their Data is fresh memory the caller owns.
func (l *codecLog) Read(ctx context.Context, shard int, from int64, max int) ([]Record, error) {
	recs, err := l.Log.Read(ctx, shard, from, max)
	if err != nil {
		return nil, err
	}
	for i := range recs {
		d, err := l.c.Decode(nil, recs[i].Data)
		if err != nil {
			return nil, fmt.Errorf("stream: decode shard %d offset %d: %w", shard, recs[i].Offset, err)
		}
		recs[i].Data = d
	}
	return recs, nil
}

func (l *codecLog) Wait(ctx context.Context, shard int, offset int64) error {
	if w, ok := l.Log.(Waiter); ok {
		return w.Wait(ctx, shard, offset)
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		end, err := l.Log.End(ctx, shard)
		if err != nil || end > offset {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (l *codecLog) Trim(ctx context.Context, shard int, before int64) error {
	if t, ok := l.Log.(Trimmer); ok {
		return t.Trim(ctx, shard, before)
	}
	return nil
}

func (l *codecLog) Stats() []ShardStats {
	if s, ok := l.Log.(StatsReporter); ok {
		return s.Stats()
	}
	return nil
}

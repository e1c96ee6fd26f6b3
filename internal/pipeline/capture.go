package pipeline

import (
	"context"
	"time"

	"github.com/silt-dev/silt/internal/source/pgrepl"
)

// Capture reconnect backoff: doubles from captureBackoffMin up to
// captureBackoffMax, and starts over once a Run has lasted
// captureBackoffReset (the link was healthy again).
const (
	captureBackoffMin   = 100 * time.Millisecond
	captureBackoffMax   = 30 * time.Second
	captureBackoffReset = time.Minute
)

// runCapture runs the source until ctx ends or it fails with an error that
// pgrepl.Retryable says reconnecting cannot fix. Between attempts it waits
// with exponential backoff.
//
// No loss, no duplicates: the Source remembers how far it delivered (down to
// the change within a chunked transaction), so transactions PostgreSQL
// resends after a reconnect (everything after the slot's confirmed LSN) are
// not appended to the stream again; p.dedup still covers what was in the
// stream before this process started. Acks keep flowing to the Source across
// reconnects (Ack only records the LSN; each Run reports it).
func (p *Pipeline) runCapture(ctx context.Context) error {
	backoff := captureBackoffMin
	for {
		started := time.Now()
		err := p.src.Run(ctx, p.onTxn)
		if ctx.Err() != nil || !pgrepl.Retryable(err) {
			return err
		}
		if time.Since(started) > captureBackoffReset {
			backoff = captureBackoffMin
		}
		p.logger.Warn("capture interrupted; reconnecting", "err", err, "retry_in", backoff)
		p.stats.Reconnects.Add(1)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, captureBackoffMax)
	}
}

// SourceStats returns the capture source's counters and its latest slot
// sample (lag, retained WAL, walsender PID), for status output.
func (p *Pipeline) SourceStats() pgrepl.Stats { return p.src.Stats() }

// Reconnects returns how many times capture reconnected after a retryable
// source error.
func (p *Pipeline) Reconnects() int64 { return p.stats.Reconnects.Load() }

package pipeline

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/semaphore"

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

// RunCaptureOnly runs capture and the appender alone, without Bronze,
// Silver or the initial snapshot, until ctx ends or capture fails: the
// same path as Run from the slot into the stream (decode, route, encode,
// group-commit append), and nothing after it. Nothing is acknowledged
// (Bronze never covers anything), so the slot keeps its WAL. It exists
// for `silt bench`, which measures capture into the stream against
// pg_recvlogical on an identical slot; run a pipeline with Run.
func (p *Pipeline) RunCaptureOnly(ctx context.Context) error {
	if err := p.loadDedup(ctx); err != nil {
		return err
	}
	p.appendCh = make(chan *appendJob, appendQueueJobs)
	p.appendSem = semaphore.NewWeighted(appendQueueBytes)
	p.appendErr = make(chan error, 1)
	captureCtx, stopCapture := context.WithCancel(ctx)
	defer stopCapture()
	appended := make(chan error, 1)
	go func() {
		err := p.runAppender(context.WithoutCancel(ctx), p.appendCh)
		if err != nil {
			p.appendErr <- err
			stopCapture() // capture may be waiting for queue room
			for range p.appendCh {
			}
		}
		appended <- err
	}()
	err := p.runCapture(captureCtx)
	close(p.appendCh)
	if aerr := <-appended; aerr != nil {
		return fmt.Errorf("capture: %w", aerr)
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("capture: %w", err)
	}
	return ctx.Err()
}

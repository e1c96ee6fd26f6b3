package s3

import (
	"context"
	"math/rand/v2"
	"time"
)

// Retry describes one failed attempt that will be retried (Options.OnRetry).
type Retry struct {
	Op      string
	URL     string
	Attempt int // 1 for the first attempt
	Class   string
	Err     error
	Backoff time.Duration
}

// attemptResult is what do reports besides the final error.
type attemptResult struct {
	attempts int
	// unknown is true when an attempt that failed may still have taken
	// effect (class retryUnknown). Put-if-absent uses it to tell its own
	// earlier write from someone else's.
	unknown bool
}

// do runs fn until it succeeds, fails with a fatal error, or MaxAttempts
// attempts were made. Each attempt gets its own context with the request
// timeout, so one stalled request cannot hold the caller forever and is
// retried like any other timeout. Between attempts it sleeps a full-jitter
// exponential backoff (capped) or until ctx is done.
//
// The SDK's own retryer is disabled (see New): the loop needs to know when
// an attempt may have taken effect, which the SDK does not report.
func (s *Store) do(ctx context.Context, op, key string, fn func(ctx context.Context) error) (attemptResult, error) {
	var res attemptResult
	for {
		res.attempts++
		actx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		err := fn(actx)
		cancel()
		if err == nil {
			return res, nil
		}
		c := classify(ctx, err)
		if c == retryUnknown {
			res.unknown = true
		}
		if c == fatal || res.attempts >= s.opts.MaxAttempts {
			return res, err
		}
		wait := s.backoff(res.attempts)
		s.stats.retries.Add(1)
		if s.opts.OnRetry != nil {
			s.opts.OnRetry(Retry{Op: op, URL: s.url(key), Attempt: res.attempts, Class: c.String(), Err: err, Backoff: wait})
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, ctx.Err()
		case <-t.C:
		}
	}
}

// backoff is full jitter: a random wait in [0, min(max, min*2^(n-1))].
func (s *Store) backoff(attempt int) time.Duration {
	d := s.opts.MinBackoff
	for i := 1; i < attempt && d < s.opts.MaxBackoff; i++ {
		d *= 2
	}
	if d > s.opts.MaxBackoff {
		d = s.opts.MaxBackoff
	}
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

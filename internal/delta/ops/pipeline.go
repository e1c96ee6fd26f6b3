package ops

import (
	"context"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

// pipelineDepth is how many records each stage of a file's pipeline
// (decode -> fold -> encode) may hold finished for the next stage: enough
// to keep the stages busy while one waits on the other, few enough that
// memory stays a handful of 64Ki-row records per file.
const pipelineDepth = 2

// scanAhead is datafile.Scan of one file with the decoding on its own
// goroutine, up to depth records ahead of fn: the caller folds record i
// while record i+1 is decoded. fn gets the records in file order; each is
// released when fn returns (fn retains it to keep it). An error from fn
// stops the decoding and is returned as is. Every goroutine has ended when
// it returns.
func scanAhead(ctx context.Context, store blob.Store, ti datafile.TableInfo, f *delta.Add, depth int, fn func(arrow.RecordBatch) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan arrow.RecordBatch, depth)
	errc := make(chan error, 1)
	go func() {
		defer close(ch)
		errc <- datafile.Scan(ctx, store, ti, []*delta.Add{f}, func(r arrow.RecordBatch) error {
			r.Retain()
			select {
			case ch <- r:
				return nil
			case <-ctx.Done():
				r.Release()
				return ctx.Err()
			}
		})
	}()
	var err error
	for r := range ch { // drained to the end, so every record is released
		if err == nil {
			if err = fn(r); err != nil {
				cancel()
			}
		}
		r.Release()
	}
	if rerr := <-errc; err == nil {
		err = rerr
	}
	return err
}

// asyncWriter feeds a datafile.Writer from its own goroutine, so the
// caller prepares record i+1 while record i is encoded. Write, Close and
// Abort are called by one goroutine. Records are written in the order
// given.
type asyncWriter struct {
	w    *datafile.Writer
	ch   chan arrow.RecordBatch
	done chan struct{}
	once sync.Once

	mu  sync.Mutex
	err error // the writer's first error; later records are dropped
}

func newAsyncWriter(w *datafile.Writer, depth int) *asyncWriter {
	a := &asyncWriter{w: w, ch: make(chan arrow.RecordBatch, depth), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for r := range a.ch {
			if a.failed() == nil {
				if err := w.Write(r); err != nil {
					a.mu.Lock()
					a.err = err
					a.mu.Unlock()
				}
			}
			r.Release()
		}
	}()
	return a
}

func (a *asyncWriter) failed() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// Write queues r (retained until written); it returns the writer's error
// if an earlier record failed.
func (a *asyncWriter) Write(r arrow.RecordBatch) error {
	if err := a.failed(); err != nil {
		return err
	}
	r.Retain()
	a.ch <- r
	return nil
}

// wait ends the writing goroutine after the queued records.
func (a *asyncWriter) wait() {
	a.once.Do(func() { close(a.ch) })
	<-a.done
}

// Close writes what is queued and closes the Writer (see
// datafile.Writer.Close).
func (a *asyncWriter) Close() ([]*delta.Add, error) {
	a.wait()
	if err := a.failed(); err != nil {
		a.w.Abort()
		return nil, err
	}
	return a.w.Close()
}

// Abort waits for the queued records and aborts the Writer.
func (a *asyncWriter) Abort() {
	a.mu.Lock()
	if a.err == nil {
		a.err = context.Canceled // skip what is still queued
	}
	a.mu.Unlock()
	a.wait()
	a.w.Abort()
}

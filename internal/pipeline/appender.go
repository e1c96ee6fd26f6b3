package pipeline

import (
	"context"
	"fmt"
	"sync"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/stream"
)

// appendJob is one transaction (or one chunk of a large one), encoded and
// routed, waiting to be appended to the stream.
type appendJob struct {
	entries   []stream.Entry // Data and PartitionKey are owned by the job (in mem)
	mem       *appendMem     // recycled once appended
	bytes     int
	changes   int
	last      bool // the transaction's last chunk: queue its end LSN for the ack
	commitLSN change.LSN
	endLSN    change.LSN
}

// Appender bounds: the capture handler blocks once appendQueueJobs jobs or
// appendQueueBytes of encoded changes wait (a large transaction arrives in
// chunks, so bytes are the bound that matters), and one stream Append
// carries at most appendBatchBytes.
const (
	appendQueueJobs  = 256
	appendQueueBytes = 16 << 20
	appendBatchBytes = 8 << 20
)

// AppendBatchBytes is the most one stream Append of the appender carries,
// for benchmarks that append the way the pipeline does (silt bench --only
// log).
const AppendBatchBytes = appendBatchBytes

// queueWeight is a job's weight in the queue's byte semaphore (a job larger
// than the whole budget takes all of it, so it still fits).
func queueWeight(n int) int64 { return min(max(int64(n), 1), appendQueueBytes) }

// runAppender appends queued jobs to the stream in order, batching every
// job that is waiting into one Append (one group-commit fsync per shard
// instead of one per transaction). After each Append it queues the acks of
// the transactions it completed, with the stream end offsets after the
// batch (conservative: a transaction is acknowledged once Bronze holds
// everything up to the end of its batch). It returns when jobs is closed and
// drained, or on the first error.
func (p *Pipeline) runAppender(ctx context.Context, jobs <-chan *appendJob) error {
	shards := p.log.Shards()
	var batch []*appendJob
	var entries []stream.Entry
	for {
		j, ok := <-jobs
		if !ok {
			return nil
		}
		batch = append(batch[:0], j)
		size := j.bytes
	more:
		for size < appendBatchBytes {
			select {
			case j, ok := <-jobs:
				if !ok {
					break more
				}
				batch = append(batch, j)
				size += j.bytes
			default:
				break more
			}
		}
		entries = entries[:0]
		changes := 0
		for _, j := range batch {
			entries = append(entries, j.entries...)
			changes += j.changes
		}
		// One Append per appendBatchBytes: a chunk of a large transaction
		// is bigger, and the stream's own buffers grow to what one Append
		// carries. The pieces go in order, so each shard still holds a
		// prefix (rule 4) if the process dies between them.
		for rest := entries; len(rest) > 0; {
			n, bytes := 0, 0
			for n < len(rest) && (n == 0 || bytes < appendBatchBytes) {
				bytes += len(rest[n].Data) + len(rest[n].PartitionKey)
				n++
			}
			if err := p.log.Append(ctx, rest[:n]); err != nil {
				return fmt.Errorf("append to stream: %w", err)
			}
			rest = rest[n:]
		}
		// Drop the references to the jobs' buffers: entries is reused, and
		// a stale tail would keep a batch's worth of encoded changes alive
		// (up to appendBatchBytes plus a whole chunk of a large transaction)
		// long after they are in the stream.
		clear(entries)
		p.stats.Changes.Add(int64(changes))
		for _, j := range batch {
			p.appendSem.Release(queueWeight(j.bytes))
			putAppendMem(j.mem) // the stream does not keep entries after Append
			j.mem, j.entries = nil, nil
		}
		var ends []int64
		for _, j := range batch {
			if !j.last {
				continue
			}
			if ends == nil {
				ends = make([]int64, shards)
				for s := range ends {
					e, err := p.log.End(ctx, s)
					if err != nil {
						return fmt.Errorf("stream end of shard %d: %w", s, err)
					}
					ends[s] = e
				}
			}
			p.stats.Transactions.Add(1)
			p.stats.LastCommitLSN.Store(uint64(j.commitLSN))
			p.ackMu.Lock()
			p.pending = append(p.pending, pendingAck{end: j.endLSN, ends: ends})
			p.ackMu.Unlock()
		}
		if ends != nil {
			p.tryAck()
		}
		for i := range batch {
			batch[i] = nil
		}
	}
}

// appendMem is the memory of one job: the encoded changes and partition
// keys, and the entries pointing into them. Jobs recycle it through
// appendBufs, so a steady stream of transactions encodes without
// allocating.
type appendMem struct {
	buf     []byte
	entries []stream.Entry
}

// appendBufs holds appendMem for reuse; maxPooledBuf bounds what is kept
// (a large transaction's buffer is left to the GC).
var appendBufs sync.Pool

const maxPooledBuf = 4 << 20

// getAppendMem returns an empty appendMem whose buffer holds at least
// hint bytes.
func getAppendMem(hint int) *appendMem {
	m, _ := appendBufs.Get().(*appendMem)
	if m == nil {
		m = &appendMem{}
	}
	if cap(m.buf) < hint {
		m.buf = make([]byte, 0, min(hint+hint/4, maxPooledBuf))
	}
	m.buf = m.buf[:0]
	return m
}

func putAppendMem(m *appendMem) {
	if m == nil || cap(m.buf) > maxPooledBuf {
		return
	}
	clear(m.entries) // drop references into the buffer
	m.entries = m.entries[:0]
	appendBufs.Put(m)
}

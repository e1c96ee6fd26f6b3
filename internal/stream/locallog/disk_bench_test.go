package locallog

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/stream"
)

// BenchmarkAppendVsDisk is the acceptance figure for the embedded log:
// its append throughput with fsync on, next to the raw disk's sequential
// write + fsync rate measured in the same run on the same directory, and
// the ratio (goal: at least 0.7).
//
// Each iteration appends 64 MiB of 1 KiB records from 16 appenders in
// batches of 256 (a capture stream under load: many transactions in
// flight), one shard, DurabilityFsync; then writes the same bytes raw in
// 1 MiB writes with one fsync at the end: the disk's sequential ceiling,
// which no log that fsyncs each group commit can beat.
//
//	go test -run XXX -bench AppendVsDisk -benchtime 3x ./internal/stream/locallog/
func BenchmarkAppendVsDisk(b *testing.B) {
	for _, pending := range []int{16 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("pending=%dMiB", pending>>20), func(b *testing.B) {
			benchVsDisk(b, pending)
		})
	}
}

func benchVsDisk(b *testing.B, pending int) {
	const (
		total     = 64 << 20
		recBytes  = 1024
		appenders = 16
		batch     = 256
	)
	key := []byte("public.readings\x0012345")
	data := make([]byte, recBytes-len(key))
	frame := frameLen(key, data)
	perAppender := total / frame / appenders
	var logTime, rawTime time.Duration
	var syncs, syncNs int64
	for range b.N {
		dir := b.TempDir()
		l, err := Open(filepath.Join(dir, "log"), Options{Logger: quietLogger(), MaxPendingBytes: pending})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		var wg sync.WaitGroup
		start := time.Now()
		for range appenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e := make([]stream.Entry, batch)
				for i := range e {
					e[i] = stream.Entry{PartitionKey: key, Data: data}
				}
				for n := perAppender; n > 0; n -= batch {
					if err := l.Append(ctx, e[:min(n, batch)]); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		logTime += time.Since(start)
		syncs += l.shards[0].syncs.Load()
		syncNs += l.shards[0].syncNs.Load()
		l.Close()
		rawTime += rawWrite(b, filepath.Join(dir, "raw"), int64(perAppender*appenders*frame), true)
	}
	bytes := float64(perAppender*appenders*frame) * float64(b.N)
	logMBs := bytes / 1e6 / logTime.Seconds()
	rawMBs := bytes / 1e6 / rawTime.Seconds()
	b.ReportMetric(logMBs, "log-MB/s")
	b.ReportMetric(float64(perAppender*appenders*b.N)/logTime.Seconds(), "log-records/s")
	b.ReportMetric(rawMBs, "raw-MB/s")
	b.ReportMetric(logMBs/rawMBs, "ratio")
	b.ReportMetric(bytes/float64(syncs)/1e6, "MB/fsync")
	b.ReportMetric(float64(syncNs)/float64(syncs)/1e3, "µs/fsync")
	b.Logf("log %.1f MB/s (%.0f records/s, %.2f MB and %.0f µs per fsync), raw write+fsync %.1f MB/s, ratio %.2f",
		logMBs, float64(perAppender*appenders*b.N)/logTime.Seconds(), bytes/float64(syncs)/1e6, float64(syncNs)/float64(syncs)/1e3, rawMBs, logMBs/rawMBs)
}

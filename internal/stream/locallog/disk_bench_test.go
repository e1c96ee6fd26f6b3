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
// Each iteration appends 64 MiB of records, DurabilityFsync, then writes
// the same bytes raw in 1 MiB writes with one fsync at the end: the disk's
// sequential ceiling, which no log that fsyncs each group commit can beat.
// Shapes:
//
//   - pipeline: one appender, Appends of pipelineAppend bytes (8 MiB, a
//     copy of pipeline.AppendBatchBytes, which this package cannot import),
//     one in flight: what silt's pipeline does (internal/pipeline/appender.go
//     batches every waiting transaction into one Append of up to that);
//     with 1 KiB records on one shard (the default config), and with 200 B
//     records on 2 shards as `silt bench --only log`, where hashing the
//     partition keys (MD5, to route) is a large part of the work;
//
//   - 16x256: many producers each waiting for its own batch of 256 records
//     of 1 KiB (the group commit holds what they have in flight at once).
//
//     go test -run XXX -bench AppendVsDisk -benchtime 3x ./internal/stream/locallog/
func BenchmarkAppendVsDisk(b *testing.B) {
	const pipelineAppend = 8 << 20
	for _, c := range []struct {
		name                       string
		appenders, batch, recBytes int
		shards                     int
	}{
		{"pipeline/1KiB/shards=1", 1, pipelineAppend / 1024, 1024, 1},
		{"pipeline/200B/shards=2", 1, pipelineAppend / 200, 200, 2},
		{"16x256/1KiB/shards=1", 16, 256, 1024, 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchVsDisk(b, c.appenders, c.batch, c.recBytes, c.shards)
		})
	}
}

func benchVsDisk(b *testing.B, appenders, batch, recBytes, shards int) {
	const total = 64 << 20
	keys := make([][]byte, batch)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "public.readings\x00%07d", i)
	}
	data := make([]byte, recBytes-len(keys[0]))
	frame := frameLen(keys[0], data)
	perAppender := total / frame / appenders
	var logTime, rawTime time.Duration
	var syncs, syncNs int64
	for range b.N {
		dir := b.TempDir()
		l, err := Open(filepath.Join(dir, "log"), Options{Logger: quietLogger(), Shards: shards})
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
					e[i] = stream.Entry{PartitionKey: keys[i], Data: data}
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
		for _, s := range l.physical() {
			syncs += s.syncs.Load()
			syncNs += s.syncNs.Load()
		}
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

package locallog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/stream"
)

// BenchmarkAppend appends b.N records of recordBytes through the log from
// several concurrent appenders, batch records per Append, then writes the
// same number of bytes raw to a file in the same directory (1 MiB writes,
// one fsync at the end: the disk's sequential ceiling). It reports the
// log's MB/s (of frames) and records/s, the raw MB/s and their ratio.
//
// records/fsync shows the group commit at work: with one flusher per
// shard, N appenders of one record each settle at about N/2 records per
// fsync (half wait on the fsync in flight while the other half queue).
//
//	go test -run XXX -bench Append -benchtime 20000x ./internal/stream/locallog/
func BenchmarkAppend(b *testing.B) {
	const recordBytes = 200
	for _, dur := range []Durability{DurabilityFsync, DurabilityNone} {
		for _, appenders := range []int{1, 16, 128} {
			for _, batch := range []int{1, 100} {
				b.Run(fmt.Sprintf("%s/appenders=%d/batch=%d", dur, appenders, batch), func(b *testing.B) {
					benchAppend(b, dur, appenders, batch, recordBytes)
				})
			}
		}
	}
}

func benchAppend(b *testing.B, dur Durability, appenders, batch, recordBytes int) {
	dir := b.TempDir()
	l, err := Open(filepath.Join(dir, "log"), Options{Durability: dur, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	key := []byte("public.orders.42")
	data := make([]byte, recordBytes-len(key))
	frame := frameLen(key, data)
	b.SetBytes(int64(frame))
	b.ReportAllocs()

	ctx := context.Background()
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := range appenders {
		n := b.N / appenders
		if g < b.N%appenders {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := make([]stream.Entry, batch)
			for i := range e {
				e[i] = stream.Entry{PartitionKey: key, Data: data}
			}
			for n > 0 {
				k := min(n, batch)
				if err := l.Append(ctx, e[:k]); err != nil {
					b.Error(err)
					return
				}
				n -= k
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	total := int64(b.N) * int64(frame)
	rawElapsed := rawWrite(b, filepath.Join(dir, "raw"), total, dur == DurabilityFsync)
	logMBs := float64(total) / 1e6 / elapsed.Seconds()
	rawMBs := float64(total) / 1e6 / rawElapsed.Seconds()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(rawMBs, "raw-MB/s")
	b.ReportMetric(logMBs/rawMBs, "ratio-vs-raw")
	if syncs := l.shards[0].syncs.Load(); syncs > 0 {
		b.ReportMetric(float64(b.N)/float64(syncs), "records/fsync")
		b.ReportMetric(elapsed.Seconds()/float64(syncs)*1e6, "µs/fsync")
	}
}

// rawWrite writes total bytes to name in 1 MiB writes, then fsyncs once.
func rawWrite(b *testing.B, name string, total int64, sync bool) time.Duration {
	f, err := os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	start := time.Now()
	for left := total; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := f.Write(buf[:n]); err != nil {
			b.Fatal(err)
		}
		left -= n
	}
	if sync {
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

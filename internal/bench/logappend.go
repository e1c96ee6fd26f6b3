package bench

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/silt-dev/silt/internal/stream"
	"github.com/silt-dev/silt/internal/stream/locallog"
)

// LogAppendResult is the embedded log's fsync'd append throughput against
// the raw disk's sequential write+fsync rate, both in the same directory.
type LogAppendResult struct {
	Records     int64     `json:"records"`
	RecordBytes int       `json:"record_bytes"` // partition key + data
	Appenders   int       `json:"appenders"`
	Batch       int       `json:"batch"`
	Shards      int       `json:"shards"`
	DiskBytes   int64     `json:"disk_bytes"` // segment bytes the log wrote
	LogSecs     float64   `json:"log_seconds"`
	LogMBs      float64   `json:"log_mb_per_s"` // DiskBytes / LogSecs
	LogRecords  float64   `json:"log_records_per_s"`
	RawSecs     []float64 `json:"raw_seconds"`  // before the log run (about the same bytes) and after it (the log's bytes)
	RawMBs      float64   `json:"raw_mb_per_s"` // mean of the two runs' MB/s
	Ratio       float64   `json:"ratio"`
	SiltUse     Usage     `json:"silt_usage"`
}

// runLogAppend appends records records of recordBytes bytes to a fresh
// locallog (fsync durability, group commit) from appenders goroutines in
// batches of batch, then measures the raw disk in the same directory:
// the same number of bytes the log put on disk, written in 1 MiB writes
// and fsynced once (run before the log with an estimate of its size, and
// after it with the bytes it wrote; the mean MB/s is the baseline). Same method as locallog's BenchmarkAppend.
func (e *env) runLogAppend(ctx context.Context, records int64, recordBytes, appenders, batch, shards int) (LogAppendResult, error) {
	res := LogAppendResult{Records: records, RecordBytes: recordBytes, Appenders: appenders, Batch: batch, Shards: shards}
	dir, err := e.dataDir("log")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	key := []byte("bench.events.42")
	data := make([]byte, max(recordBytes-len(key), 1))
	for i := range data {
		data[i] = byte(i * 7)
	}
	// Estimate the raw size first so the first raw run can go before the log run.
	est := records * int64(recordBytes+16)
	raw1, err := rawWriteFsync(filepath.Join(dir, "raw"), est)
	if err != nil {
		return res, err
	}
	l, err := locallog.Open(filepath.Join(dir, "log"), locallog.Options{Shards: shards, Durability: locallog.DurabilityFsync,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return res, err
	}
	m := startMeter()
	start := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, appenders)
	for g := range appenders {
		n := records / int64(appenders)
		if int64(g) < records%int64(appenders) {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ents := make([]stream.Entry, batch)
			keys := make([][]byte, batch)
			for i := range ents {
				keys[i] = fmt.Appendf(nil, "bench.events.%d.%d", g, i)
				ents[i] = stream.Entry{PartitionKey: keys[i], Data: data}
			}
			for n > 0 {
				k := min(n, int64(batch))
				if err := l.Append(ctx, ents[:k]); err != nil {
					errc <- err
					return
				}
				n -= k
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	res.SiltUse = m.stop()
	close(errc)
	if err := <-errc; err != nil {
		l.Close()
		return res, err
	}
	if err := l.Close(); err != nil {
		return res, err
	}
	filepath.WalkDir(filepath.Join(dir, "log"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				res.DiskBytes += fi.Size()
			}
		}
		return nil
	})
	raw2, err := rawWriteFsync(filepath.Join(dir, "raw"), res.DiskBytes)
	if err != nil {
		return res, err
	}
	res.LogSecs = elapsed.Seconds()
	res.LogMBs = float64(res.DiskBytes) / 1e6 / res.LogSecs
	res.LogRecords = float64(records) / res.LogSecs
	res.RawSecs = []float64{raw1.Seconds(), raw2.Seconds()}
	res.RawMBs = (float64(est)/1e6/raw1.Seconds() + float64(res.DiskBytes)/1e6/raw2.Seconds()) / 2
	res.Ratio = res.LogMBs / res.RawMBs
	fmt.Fprintf(e.out, "log append: %d records of %d B, %d appenders x batch %d, %d shards, fsync: %.2fs, %.1f MB/s, %.0f records/s; raw write+fsync %.1f MB/s; ratio %.2f\n",
		records, recordBytes, appenders, batch, shards, res.LogSecs, res.LogMBs, res.LogRecords, res.RawMBs, res.Ratio)
	return res, nil
}

// rawWriteFsync writes total bytes to a new file in 1 MiB writes, fsyncs
// once and removes the file.
func rawWriteFsync(name string, total int64) (time.Duration, error) {
	f, err := os.Create(name)
	if err != nil {
		return 0, err
	}
	defer os.Remove(name)
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 13)
	}
	start := time.Now()
	for left := total; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := f.Write(buf[:n]); err != nil {
			return 0, err
		}
		left -= n
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

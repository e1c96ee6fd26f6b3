package bench

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/silt-dev/silt/internal/pipeline"
	"github.com/silt-dev/silt/internal/stream"
	"github.com/silt-dev/silt/internal/stream/locallog"
)

// The shapes of the log append scenario.
//
// The default shape is the way silt itself appends: the pipeline's appender
// (internal/pipeline/appender.go) is ONE goroutine that batches every
// waiting transaction into one Append of up to pipeline.AppendBatchBytes
// (8 MiB), with one Append in flight at a time. So by default one appender
// appends batches of that many bytes of records, and the group commit is
// as large as silt makes it.
//
// The second line, manyAppenders x manyBatch, is many small producers
// each waiting for its own small batch: only ~330 KiB wait for each fsync,
// so it measures the per-fsync cost rather than the bandwidth; it is
// printed so that a regression there shows too. --log-appenders and
// --log-batch change the first shape.
const (
	manyAppenders = 16
	manyBatch     = 100
)

// logRounds is how many times the log and both raw baselines run, one
// after the other; the figures are medians, so one disturbed run on a
// shared machine does not decide the result.
const logRounds = 3

// LogAppendResult is the embedded log's fsync'd append throughput against
// two raw sequential write+fsync rates of the same bytes in the same
// directory, each the median of logRounds interleaved runs:
//
//   - ceiling (RawMBs, the ratio's baseline): 1 MiB writes and one fsync
//     at the end, the disk's sequential bandwidth. Chosen over a baseline
//     with the log's own fsync count, under which a log that fsyncs more
//     often than needed would look better.
//   - group commit (RawGroupMBs, RatioGroup): the bytes split over one
//     file per shard, written in parallel, each in chunks of what the
//     appenders have in flight for it at once (appenders x batch records /
//     shards), each chunk followed by fdatasync, space reserved ahead
//     (fallocate) as the log does: the fewest fsyncs a writer can do when
//     each appender waits for its batch to be durable before it continues.
//     Without the log's overlap of the next write with the running fsync,
//     so not an upper bound; it shows how much of the gap to the ceiling
//     the fsyncs the workload forces account for.
type LogAppendResult struct {
	Records      int64     `json:"records"`
	RecordBytes  int       `json:"record_bytes"` // partition key + data
	Appenders    int       `json:"appenders"`
	Batch        int       `json:"batch"`
	Shards       int       `json:"shards"`
	Rounds       int       `json:"rounds"`
	DiskBytes    int64     `json:"disk_bytes"` // segment bytes the log wrote (frames)
	LogSecs      []float64 `json:"log_seconds"`
	LogMBs       float64   `json:"log_mb_per_s"` // median of DiskBytes / LogSecs
	LogRecords   float64   `json:"log_records_per_s"`
	GroupChunk   int64     `json:"raw_group_chunk_bytes"`
	RawGroupSecs []float64 `json:"raw_group_seconds"`
	RawGroupMBs  float64   `json:"raw_group_mb_per_s"`
	RawSecs      []float64 `json:"raw_seconds"`
	RawMBs       float64   `json:"raw_mb_per_s"`
	Ratio        float64   `json:"ratio"`        // median of per-round log / ceiling
	RatioGroup   float64   `json:"ratio_group"`  // median of per-round log / group commit
	RoundRatios  []float64 `json:"round_ratios"` // per round, log / ceiling
	SiltUse      Usage     `json:"silt_usage"`   // the last log run
}

// runLogAppend appends records records of recordBytes bytes to a fresh
// locallog (fsync durability, group commit) from appenders goroutines in
// batches of batch, logRounds times, each round after the two raw
// baselines of the same bytes (see LogAppendResult).
func (e *env) runLogAppend(ctx context.Context, records int64, recordBytes, appenders, batch, shards int) (LogAppendResult, error) {
	if batch <= 0 {
		batch = max(pipeline.AppendBatchBytes/max(recordBytes, 1), 1)
	}
	res := LogAppendResult{Records: records, RecordBytes: recordBytes, Appenders: appenders, Batch: batch, Shards: shards, Rounds: logRounds}
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
	keys := make([][][]byte, appenders)
	var total int64 // frame bytes the log will write: 8 B header, 3 B version and key length
	for g := range appenders {
		keys[g] = make([][]byte, batch)
		for i := range batch {
			keys[g][i] = fmt.Appendf(nil, "bench.events.%d.%d", g, i)
		}
		n := records / int64(appenders)
		if int64(g) < records%int64(appenders) {
			n++
		}
		for i := range n {
			total += int64(8 + 3 + len(keys[g][i%int64(batch)]) + len(data))
		}
	}
	res.GroupChunk = total / records * int64(appenders*batch) / int64(max(shards, 1))
	var logMBs, groupMBs, ceilMBs, ratios, groupRatios []float64
	for round := range logRounds {
		ceil, err := rawWriteFsync(filepath.Join(dir, "raw"), total)
		if err != nil {
			return res, err
		}
		group, err := rawGroupCommit(filepath.Join(dir, "raw"), total, res.GroupChunk, max(shards, 1))
		if err != nil {
			return res, err
		}
		logDir := filepath.Join(dir, fmt.Sprintf("log-%d", round))
		elapsed, use, err := appendLog(ctx, logDir, records, keys, data, appenders, batch, shards)
		if err != nil {
			return res, err
		}
		var disk int64
		filepath.WalkDir(logDir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && filepath.Ext(d.Name()) == ".seg" {
				if fi, err := d.Info(); err == nil {
					disk += fi.Size()
				}
			}
			return nil
		})
		os.RemoveAll(logDir)
		if disk != total {
			return res, fmt.Errorf("log append: segments hold %d bytes, expected %d", disk, total)
		}
		res.DiskBytes, res.SiltUse = disk, use
		res.LogSecs = append(res.LogSecs, elapsed.Seconds())
		res.RawGroupSecs = append(res.RawGroupSecs, group.Seconds())
		res.RawSecs = append(res.RawSecs, ceil.Seconds())
		mb := float64(total) / 1e6
		logMBs = append(logMBs, mb/elapsed.Seconds())
		groupMBs = append(groupMBs, mb/group.Seconds())
		ceilMBs = append(ceilMBs, mb/ceil.Seconds())
		ratios = append(ratios, ceil.Seconds()/elapsed.Seconds())
		groupRatios = append(groupRatios, group.Seconds()/elapsed.Seconds())
		fmt.Fprintf(e.out, "log append round %d: log %.1f MB/s (%.2fs); raw 1 MiB writes + one fsync %.1f MB/s, ratio %.2f; raw group commit %.1f MB/s, ratio %.2f\n",
			round+1, logMBs[round], elapsed.Seconds(), ceilMBs[round], ratios[round], groupMBs[round], groupRatios[round])
	}
	res.RoundRatios = ratios
	res.LogMBs, res.RawGroupMBs, res.RawMBs = median(logMBs), median(groupMBs), median(ceilMBs)
	res.LogRecords = res.LogMBs * 1e6 / (float64(total) / float64(records))
	res.Ratio, res.RatioGroup = median(ratios), median(groupRatios)
	fmt.Fprintf(e.out, "log append: %d records of %d B, %d appenders x batch %d, %d shards, fsync, median of %d: %.1f MB/s, %.0f records/s; raw 1 MiB writes + one fsync %.1f MB/s, ratio %.2f; raw write+fdatasync per %d KiB in flight per shard file (group commit) %.1f MB/s, ratio %.2f\n",
		records, recordBytes, appenders, batch, shards, logRounds, res.LogMBs, res.LogRecords, res.RawMBs, res.Ratio, res.GroupChunk>>10, res.RawGroupMBs, res.RatioGroup)
	return res, nil
}

// appendLog runs one log round: records records from appenders goroutines,
// appender g cycling over keys[g] in batches of batch.
func appendLog(ctx context.Context, dir string, records int64, keys [][][]byte, data []byte, appenders, batch, shards int) (time.Duration, Usage, error) {
	l, err := locallog.Open(dir, locallog.Options{Shards: shards, Durability: locallog.DurabilityFsync,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return 0, Usage{}, err
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
			for i := range ents {
				ents[i] = stream.Entry{PartitionKey: keys[g][i], Data: data}
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
	use := m.stop()
	close(errc)
	if err := <-errc; err != nil {
		l.Close()
		return 0, use, err
	}
	return elapsed, use, l.Close()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
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

// rawGroupCommit writes total bytes to `files` new files, in parallel, each
// in chunks of chunk bytes followed by fdatasync, reserving space 16 MiB
// ahead (fallocate) like the log, and removes them: what a group commit
// with no overhead at all costs.
func rawGroupCommit(name string, total, chunk int64, files int) (time.Duration, error) {
	start := time.Now()
	errs := make(chan error, files)
	for i := range files {
		go func() {
			errs <- rawGroupFile(fmt.Sprintf("%s-%d", name, i), total/int64(files), chunk)
		}()
	}
	var first error
	for range files {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return time.Since(start), first
}

func rawGroupFile(name string, total, chunk int64) error {
	f, err := locallog.OSFS{}.Create(name)
	if err != nil {
		return err
	}
	defer os.Remove(name)
	defer f.Close()
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i * 13)
	}
	var reserved int64
	for pos := int64(0); pos < total; pos += chunk {
		n := min(chunk, total-pos)
		if pos+n > reserved {
			reserved = pos + n + 16<<20
			if err := f.Allocate(reserved); err != nil {
				return err
			}
		}
		if _, err := f.WriteAt(buf[:n], pos); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return nil
}

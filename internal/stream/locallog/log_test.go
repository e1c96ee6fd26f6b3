package locallog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/stream"
	"github.com/silt-dev/silt/internal/stream/streamtest"
)

const testDir = "/log"

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// checkNoLeaks fails if a goroutine of this package outlives the test.
func checkNoLeaks(t *testing.T) {
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			buf := make([]byte, 1<<20)
			stacks := string(buf[:runtime.Stack(buf, true)])
			leaked := ""
			for _, g := range strings.Split(stacks, "\n\n") {
				if strings.Contains(g, "locallog.(*shard).runFlusher") || strings.Contains(g, "locallog.(*Log).runRetention") {
					leaked = g
				}
			}
			if leaked == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("goroutine leaked after Close:\n%s", leaked)
			}
			runtime.Gosched()
		}
	})
}

// reshardSteps is streamtest's Reshard hook for the embedded log: split
// logical shard 0's physical shard, split its first child, merge that
// child's two children again.
func reshardSteps(t *testing.T, sl stream.Log, step int) {
	t.Helper()
	l := sl.(*Log)
	ctx := context.Background()
	var open []Shard
	for _, s := range l.Topology() {
		if s.Open && s.Logical == 0 {
			open = append(open, s)
		}
	}
	var err error
	switch step {
	case 0, 1:
		_, err = l.SplitShard(ctx, open[0].ID, "")
	case 2:
		_, err = l.MergeShards(ctx, open[len(open)-2].ID, open[len(open)-1].ID)
	}
	if err != nil {
		t.Fatalf("reshard step %d: %v", step, err)
	}
}

func TestConformance(t *testing.T) {
	t.Run("OS", func(t *testing.T) {
		streamtest.RunWith(t, func(t *testing.T, shards int) streamtest.Opener {
			checkNoLeaks(t)
			dir := t.TempDir()
			return func(t *testing.T) stream.Log {
				// Small segments so the suite crosses segment boundaries.
				l, err := Open(dir, Options{Shards: shards, SegmentBytes: 4 << 10, Logger: quietLogger()})
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
		}, streamtest.Options{Reshard: reshardSteps})
	})
	t.Run("Mem", func(t *testing.T) {
		streamtest.RunWith(t, func(t *testing.T, shards int) streamtest.Opener {
			checkNoLeaks(t)
			fs := newMemFS()
			return func(t *testing.T) stream.Log {
				l, err := Open(testDir, Options{Shards: shards, FS: fs, Logger: quietLogger()})
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
		}, streamtest.Options{Reshard: reshardSteps})
	})
}

func openT(t *testing.T, dir string, opts Options) *Log {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// rec returns the i-th record of the test workloads; sizes vary so frames
// do not line up with anything.
func rec(i int) stream.Entry {
	return stream.Entry{
		PartitionKey: []byte(fmt.Sprintf("k%d", i%5)),
		Data:         []byte(fmt.Sprintf("value-%d-%s", i, strings.Repeat("x", i%37))),
	}
}

// checkRecords reads shard 0 and checks it holds exactly rec(0..n-1).
func checkRecords(t *testing.T, l *Log, n int) {
	t.Helper()
	ctx := context.Background()
	end, err := l.End(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if end != int64(n) {
		t.Fatalf("End = %d, want %d", end, n)
	}
	for off := int64(0); off < end; {
		recs, err := l.Read(ctx, 0, off, 1000)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		for _, r := range recs {
			want := rec(int(r.Offset))
			if r.Offset != off || !bytes.Equal(r.PartitionKey, want.PartitionKey) || !bytes.Equal(r.Data, want.Data) {
				t.Fatalf("offset %d: got (%d, %q, %q), want (%q, %q)", off, r.Offset, r.PartitionKey, r.Data, want.PartitionKey, want.Data)
			}
			off++
		}
	}
}

func appendRecs(t *testing.T, l *Log, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := l.Append(context.Background(), []stream.Entry{rec(i)}); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func TestShardCountStored(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{Shards: 2})
	l.Close()
	_, err := Open(dir, Options{Shards: 3, Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "2 shards") || !strings.Contains(err.Error(), "is 3") {
		t.Fatalf("reopen with 3 shards: err = %v, want one naming 2 and 3", err)
	}
	l = openT(t, dir, Options{})
	if l.Shards() != 2 {
		t.Fatalf("reopen with Shards 0: %d shards, want the stored 2", l.Shards())
	}
}

func TestOptionsValidate(t *testing.T) {
	_, err := Open(t.TempDir(), Options{Durability: "sometimes", SegmentBytes: 10, MaxReadBytes: -1})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"Durability", "SegmentBytes", "MaxReadBytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s; all problems should be reported at once", err, want)
		}
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	openT(t, dir, Options{})
	if _, err := Open(dir, Options{Logger: quietLogger()}); !errors.Is(err, errLocked) {
		t.Fatalf("second Open = %v, want errLocked", err)
	}
}

func TestManySegmentsRandomReads(t *testing.T) {
	checkNoLeaks(t)
	fs := newMemFS()
	l := openT(t, testDir, Options{FS: fs, SegmentBytes: 4 << 10, Durability: DurabilityNone})
	const n = 3000
	var batch []stream.Entry
	for i := range n {
		batch = append(batch, rec(i))
		if len(batch) == 17 || i == n-1 {
			if err := l.Append(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
	if segs := len(l.shards[0].segs); segs < 20 {
		t.Fatalf("only %d segments; the test wants many", segs)
	}
	checkRecords(t, l, n)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	for range 300 {
		from := rng.Int64N(n)
		recs, err := l.Read(context.Background(), 0, from, 1+rng.IntN(50))
		if err != nil || len(recs) == 0 {
			t.Fatalf("Read(%d) = %d records, %v", from, len(recs), err)
		}
		for k, r := range recs {
			if r.Offset != from+int64(k) || !bytes.Equal(r.Data, rec(int(r.Offset)).Data) {
				t.Fatalf("Read(%d)[%d] = offset %d %q", from, k, r.Offset, r.Data)
			}
		}
	}
	// Reopen: closed segments are indexed lazily on first read.
	l.Close()
	l = openT(t, testDir, Options{FS: fs, SegmentBytes: 4 << 10})
	checkRecords(t, l, n)
}

func TestReadCaps(t *testing.T) {
	l := openT(t, t.TempDir(), Options{MaxReadBytes: 1000, MaxReadRecords: 20, Durability: DurabilityNone})
	ctx := context.Background()
	small := make([]stream.Entry, 100)
	for i := range small {
		small[i] = stream.Entry{PartitionKey: []byte("k"), Data: bytes.Repeat([]byte{'a'}, 50)}
	}
	big := stream.Entry{PartitionKey: []byte("k"), Data: bytes.Repeat([]byte{'b'}, 5000)}
	if err := l.Append(ctx, append(small, big, small[0])); err != nil {
		t.Fatal(err)
	}
	recs, err := l.Read(ctx, 0, 0, 1000)
	want := 1000 / frameLen(small[0].PartitionKey, small[0].Data)
	if err != nil || len(recs) != want {
		t.Fatalf("Read with MaxReadBytes 1000: %d records, %v; want %d", len(recs), err, want)
	}
	recs, err = l.Read(ctx, 0, 90, 1000)
	if err != nil || len(recs) != 10 {
		t.Fatalf("Read before the big record: %d records, %v; want 10 (it must not fit)", len(recs), err)
	}
	recs, err = l.Read(ctx, 0, 100, 1000)
	if err != nil || len(recs) != 1 || len(recs[0].Data) != 5000 {
		t.Fatalf("Read of a record over MaxReadBytes: %d records, %v; want it alone", len(recs), err)
	}
	l.opts.MaxReadBytes = 1 << 20
	recs, err = l.Read(ctx, 0, 0, 1000)
	if err != nil || len(recs) != 20 {
		t.Fatalf("Read with MaxReadRecords 20: %d records, %v", len(recs), err)
	}
}

func TestAppendLimits(t *testing.T) {
	l := openT(t, t.TempDir(), Options{MaxRecordBytes: 100})
	ctx := context.Background()
	if err := l.Append(ctx, []stream.Entry{{PartitionKey: []byte("k"), Data: make([]byte, 100)}}); err == nil {
		t.Fatal("record over MaxRecordBytes accepted")
	}
	if err := l.Append(ctx, []stream.Entry{{PartitionKey: make([]byte, maxKeyLen+1)}}); err == nil {
		t.Fatal("key over 65535 bytes accepted")
	}
	if end, _ := l.End(ctx, 0); end != 0 {
		t.Fatalf("a rejected Append wrote %d records", end)
	}
}

func TestMaxPendingBlocks(t *testing.T) {
	// With a tiny queue many concurrent appenders must still all complete.
	l := openT(t, t.TempDir(), Options{MaxPendingBytes: 64, Durability: DurabilityNone})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := l.Append(context.Background(), []stream.Entry{{PartitionKey: []byte{byte(g)}, Data: make([]byte, i)}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if end, _ := l.End(context.Background(), 0); end != 400 {
		t.Fatalf("End = %d, want 400", end)
	}
}

func TestStickyWriteFailure(t *testing.T) {
	fs := newMemFS()
	l := openT(t, testDir, Options{FS: fs})
	appendRecs(t, l, 0, 5)
	fs.failAfter(0)
	err1 := l.Append(context.Background(), []stream.Entry{rec(5)})
	if !errors.Is(err1, errInjected) {
		t.Fatalf("Append on a failing disk = %v", err1)
	}
	fs.failAfter(-1)
	if err := l.Append(context.Background(), []stream.Entry{rec(5)}); !errors.Is(err, errInjected) {
		t.Fatalf("Append after a failure = %v, want the sticky error", err)
	}
	checkRecords(t, l, 5) // what was acknowledged is still readable
	l.Close()
	l = openT(t, testDir, Options{FS: fs})
	checkRecords(t, l, 5)
	appendRecs(t, l, 5, 10)
	checkRecords(t, l, 10)
}

func TestCorruptClosedSegment(t *testing.T) {
	fs := newMemFS()
	l := openT(t, testDir, Options{FS: fs, SegmentBytes: 4 << 10})
	appendRecs(t, l, 0, 400)
	l.Close()
	f := fs.file(filepath.Join(shardDir(testDir, 0), segName(0)))
	f.data[100] ^= 0xff
	l = openT(t, testDir, Options{FS: fs, SegmentBytes: 4 << 10})
	if _, err := l.Read(context.Background(), 0, 0, 10); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read of a damaged closed segment = %v, want ErrCorrupt", err)
	}
	// Later segments are unaffected.
	end, _ := l.End(context.Background(), 0)
	if recs, err := l.Read(context.Background(), 0, end-1, 1); err != nil || len(recs) != 1 {
		t.Fatalf("Read of the last record = %v, %v", recs, err)
	}
}

func TestSegmentLayoutOnDisk(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, Options{SegmentBytes: 4 << 10, Shards: 2})
	var batch []stream.Entry
	for i := range 500 {
		batch = append(batch, rec(i))
	}
	if err := l.Append(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	l.Close()
	names, err := OSFS{}.ReadDir(shardDir(dir, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 2 || names[0] != "00000000000000000000.seg" {
		t.Fatalf("shard-0000 holds %v", names)
	}
	meta, err := readFile(OSFS{}, filepath.Join(dir, metaName))
	if err != nil || string(meta) != `{"format":1,"shards":2}`+"\n" {
		t.Fatalf("META = %q, %v", meta, err)
	}
}

func TestRetention(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var clockMu sync.Mutex
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	advance := func(d time.Duration) { clockMu.Lock(); now = now.Add(d); clockMu.Unlock() }
	base := Options{SegmentBytes: 4 << 10, Durability: DurabilityNone, RetentionInterval: time.Hour, Now: clock}
	ctx := context.Background()

	setup := func(t *testing.T, ret Retention) (*Log, *shard) {
		opts := base
		opts.Retention = ret
		opts.FS = newMemFS()
		l := openT(t, testDir, opts)
		appendRecs(t, l, 0, 1000)
		return l, l.shards[0]
	}
	segCount := func(s *shard) int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.segs) }
	// firstNext is where the first segment ends.
	firstNext := func(s *shard) int64 { s.mu.Lock(); defer s.mu.Unlock(); return s.segs[0].next }

	t.Run("NothingWithoutTrim", func(t *testing.T) {
		l, s := setup(t, Retention{})
		n := segCount(s)
		s.applyRetention()
		if segCount(s) != n {
			t.Fatal("retention deleted a segment nobody trimmed")
		}
		checkRecords(t, l, 1000)
	})
	t.Run("TrimInsideSegmentKeepsIt", func(t *testing.T) {
		l, s := setup(t, Retention{})
		n := segCount(s)
		if err := l.Trim(ctx, 0, firstNext(s)-1); err != nil {
			t.Fatal(err)
		}
		s.applyRetention()
		if segCount(s) != n {
			t.Fatal("deleted a segment holding a record at the trim point")
		}
		if err := l.Trim(ctx, 0, firstNext(s)); err != nil {
			t.Fatal(err)
		}
		s.applyRetention()
		if segCount(s) != n-1 {
			t.Fatal("a fully consumed segment was kept with no limits set")
		}
	})
	t.Run("TrimAll", func(t *testing.T) {
		l, s := setup(t, Retention{})
		if err := l.Trim(ctx, 0, 1000); err != nil {
			t.Fatal(err)
		}
		s.applyRetention()
		if segCount(s) != 1 {
			t.Fatalf("%d segments left; only the active one should stay", segCount(s))
		}
		start, _ := l.Start(ctx, 0)
		if _, err := l.Read(ctx, 0, 0, 1); start > 0 && !errors.Is(err, stream.ErrTrimmed) {
			t.Fatalf("Read(0) after retention = %v, want ErrTrimmed", err)
		}
		recs, err := l.Read(ctx, 0, start, 1)
		if err != nil || len(recs) != 1 || !bytes.Equal(recs[0].Data, rec(int(start)).Data) {
			t.Fatalf("Read(Start) = %v, %v", recs, err)
		}
		appendRecs(t, l, 1000, 1010)
		if recs, err := l.Read(ctx, 0, 1005, 1); err != nil || !bytes.Equal(recs[0].Data, rec(1005).Data) {
			t.Fatalf("Read after retention and append = %v, %v", recs, err)
		}
	})
	t.Run("MaxBytes", func(t *testing.T) {
		l, s := setup(t, Retention{MaxBytes: 12 << 10})
		if err := l.Trim(ctx, 0, 1000); err != nil {
			t.Fatal(err)
		}
		s.applyRetention()
		s.mu.Lock()
		var total int64
		for _, g := range s.segs {
			total += g.size
		}
		segs := len(s.segs)
		s.mu.Unlock()
		if total > 12<<10 || segs < 3 {
			t.Fatalf("after MaxBytes retention: %d segments, %d bytes; want <= 12 KiB kept as replay", segs, total)
		}
	})
	t.Run("MaxBytesNeverDropsUnconsumed", func(t *testing.T) {
		l, s := setup(t, Retention{MaxBytes: 1})
		n := segCount(s)
		s.applyRetention()
		if segCount(s) != n {
			t.Fatal("MaxBytes deleted unconsumed data")
		}
		checkRecords(t, l, 1000)
	})
	t.Run("MaxAge", func(t *testing.T) {
		l, s := setup(t, Retention{MaxAge: time.Hour})
		if err := l.Trim(ctx, 0, 1000); err != nil {
			t.Fatal(err)
		}
		n := segCount(s)
		s.applyRetention()
		if segCount(s) != n {
			t.Fatal("MaxAge deleted young segments")
		}
		advance(2 * time.Hour)
		s.applyRetention()
		if segCount(s) != 1 {
			t.Fatalf("%d segments left after they aged out", segCount(s))
		}
	})
	t.Run("ByGoroutineAfterTrim", func(t *testing.T) {
		l, s := setup(t, Retention{})
		if err := l.Trim(ctx, 0, 1000); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for segCount(s) != 1 {
			if time.Now().After(deadline) {
				t.Fatal("Trim did not wake the retention goroutine")
			}
			runtime.Gosched()
		}
	})
}

// TestReadWhileRetention races reads against retention and rolls.
func TestReadWhileRetention(t *testing.T) {
	checkNoLeaks(t)
	l := openT(t, testDir, Options{FS: newMemFS(), SegmentBytes: 4 << 10, Durability: DurabilityNone})
	ctx := context.Background()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		appendRecs(t, l, 0, 3000)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		var off int64
		for {
			if err := l.Wait(ctx, 0, off); err != nil {
				t.Error(err)
				return
			}
			recs, err := l.Read(ctx, 0, off, 100)
			if err != nil {
				t.Errorf("Read(%d): %v", off, err)
				return
			}
			for _, r := range recs {
				if r.Offset != off || !bytes.Equal(r.Data, rec(int(off)).Data) {
					t.Errorf("offset %d: %q", off, r.Data)
					return
				}
				off++
			}
			if err := l.Trim(ctx, 0, off); err != nil {
				t.Error(err)
				return
			}
			if off == 3000 {
				return
			}
		}
	}()
	wg.Wait()
	<-done
}

func TestCloseUnblocksFullQueue(t *testing.T) {
	checkNoLeaks(t)
	l, err := Open(t.TempDir(), Options{Logger: quietLogger(), Durability: DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				err := l.Append(context.Background(), []stream.Entry{{Data: make([]byte, 1000)}})
				if errors.Is(err, stream.ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	if err := l.Wait(context.Background(), 0, 100); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	// Everything acknowledged before Close survives it.
	end := l.shards[0].end
	l2 := openT(t, l.Dir(), Options{})
	if got, _ := l2.End(context.Background(), 0); got != end {
		t.Fatalf("End after reopen = %d, before Close %d", got, end)
	}
}

var _ io.Closer = (*Log)(nil)

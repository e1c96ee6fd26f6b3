package locallog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/stream"
)

// Crash tests. Every disk operation goes through memFS, which knows what
// was synced; a "crash" is crashClone, which keeps only durable state.

// lastSegment returns the path and base of shard 0's last segment.
func lastSegment(t *testing.T, fs *memFS) (string, int64) {
	t.Helper()
	dir := shardDir(testDir, 0)
	names, err := fs.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var last int64 = -1
	for _, n := range names {
		if b, ok := parseSegName(n); ok && b > last {
			last = b
		}
	}
	return filepath.Join(dir, segName(last)), last
}

// setFile replaces a file's contents, durably.
func setFile(f *memFile, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data = bytes.Clone(b)
	f.synced = bytes.Clone(b)
}

// logBuffer collects log output so a test can check what recovery said.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestCrashCutEveryByte cuts the last segment at every byte offset and
// checks that reopening keeps exactly the whole frames before the cut,
// logs the cut, and that appends continue from there.
func TestCrashCutEveryByte(t *testing.T) {
	const n = 150
	opts := Options{SegmentBytes: 4 << 10, Logger: quietLogger()}
	orig := newMemFS()
	opts.FS = orig
	l := openT(t, testDir, opts)
	appendRecs(t, l, 0, n)
	l.Close()

	path, base := lastSegment(t, orig)
	if base == 0 {
		t.Fatal("want several segments so earlier ones are checked too")
	}
	full := bytes.Clone(orig.file(path).data)
	// ends[i] is the byte just past record base+i in the last segment.
	var ends []int
	for i, at := base, 0; i < n; i++ {
		at += frameLen(rec(int(i)).PartitionKey, rec(int(i)).Data)
		ends = append(ends, at)
	}
	if ends[len(ends)-1] != len(full) {
		t.Fatalf("last segment is %d bytes, frames add up to %d", len(full), ends[len(ends)-1])
	}
	for cut := 0; cut <= len(full); cut++ {
		fs := orig.crashClone(nil)
		setFile(fs.file(path), full[:cut])
		kept := 0
		for kept < len(ends) && ends[kept] <= cut {
			kept++
		}
		var logs logBuffer
		o := opts
		o.FS = fs
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		l, err := Open(testDir, o)
		if err != nil {
			t.Fatalf("cut at %d: Open: %v", cut, err)
		}
		want := int(base) + kept
		checkRecords(t, l, want)
		torn := kept == 0 && cut > 0 || kept > 0 && ends[kept-1] != cut
		if got := strings.Contains(logs.String(), "cut invalid tail"); got != torn {
			t.Fatalf("cut at %d: logged a cut = %v, want %v; log:\n%s", cut, got, torn, logs.String())
		}
		if size := len(fs.file(path).data); kept > 0 && size != ends[kept-1] || kept == 0 && size != 0 {
			t.Fatalf("cut at %d: segment is %d bytes after recovery, want the valid prefix", cut, size)
		}
		appendRecs(t, l, want, want+3)
		checkRecords(t, l, want+3)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCrashCorruptMiddle damages one frame in the middle of the last
// segment; recovery keeps the frames before it and cuts it and everything
// after, even whole frames.
func TestCrashCorruptMiddle(t *testing.T) {
	const n = 40
	orig := newMemFS()
	opts := Options{FS: orig, Logger: quietLogger()}
	l := openT(t, testDir, opts)
	appendRecs(t, l, 0, n)
	l.Close()
	path, _ := lastSegment(t, orig)
	full := bytes.Clone(orig.file(path).data)
	starts := []int{0}
	for i := range n {
		starts = append(starts, starts[i]+frameLen(rec(i).PartitionKey, rec(i).Data))
	}
	damages := []struct {
		name string
		at   func(k int) int
	}{
		{"data", func(k int) int { return starts[k+1] - 1 }},
		{"crc", func(k int) int { return starts[k] + 5 }},
		{"length", func(k int) int { return starts[k] }},
		{"version", func(k int) int { return starts[k] + 8 }},
		{"keylen", func(k int) int { return starts[k] + 9 }},
	}
	for _, d := range damages {
		for _, k := range []int{0, 1, n / 2, n - 1} {
			fs := orig.crashClone(nil)
			b := bytes.Clone(full)
			b[d.at(k)] ^= 0x5a
			setFile(fs.file(path), b)
			o := opts
			o.FS = fs
			l, err := Open(testDir, o)
			if err != nil {
				t.Fatalf("%s of record %d: Open: %v", d.name, k, err)
			}
			checkRecords(t, l, k)
			appendRecs(t, l, k, k+2)
			checkRecords(t, l, k+2)
			l.Close()
		}
	}
}

// crashRun is one run of the crash-at-operation-k workload.
type crashRun struct {
	attempted [][]stream.Entry // per shard, in append order
	acked     []int            // per shard: how many of attempted were acknowledged
	crashed   bool             // the injected failure fired
}

const crashShards = 2

func crashOpts(fs *memFS) Options {
	return Options{FS: fs, Shards: crashShards, SegmentBytes: 4 << 10, Logger: quietLogger(), RetentionInterval: time.Hour}
}

// runUntilCrash opens a log on fs, lets the k-th mutating operation fail,
// and appends batches until an Append fails or the workload ends.
func runUntilCrash(t *testing.T, fs *memFS, k int) (r crashRun) {
	r = crashRun{attempted: make([][]stream.Entry, crashShards), acked: make([]int, crashShards)}
	fs.failAfter(k)
	defer func() { r.crashed = fs.fired() }()
	l, err := Open(testDir, crashOpts(fs))
	if err != nil {
		if !errors.Is(err, errInjected) {
			t.Fatalf("Open: %v", err)
		}
		return r
	}
	defer l.Close()
	seq := 0
	for i := range 120 {
		var batch []stream.Entry
		for range 1 + i%3 {
			e := rec(seq)
			seq++
			batch = append(batch, e)
			sh := stream.ShardFor(e.PartitionKey, crashShards)
			r.attempted[sh] = append(r.attempted[sh], e)
		}
		if err := l.Append(context.Background(), batch); err != nil {
			if !errors.Is(err, errInjected) {
				t.Fatalf("Append: %v", err)
			}
			return r
		}
		for sh := range crashShards {
			r.acked[sh] = len(r.attempted[sh])
		}
	}
	return r
}

// checkAfterCrash reopens fs and checks each shard holds a prefix of what
// was attempted that contains everything acknowledged, then appends.
func checkAfterCrash(t *testing.T, fs *memFS, r crashRun, what string) {
	t.Helper()
	l, err := Open(testDir, crashOpts(fs))
	if err != nil {
		t.Fatalf("%s: reopen: %v", what, err)
	}
	defer l.Close()
	ctx := context.Background()
	for sh := range crashShards {
		end, _ := l.End(ctx, sh)
		if end < int64(r.acked[sh]) {
			t.Fatalf("%s: shard %d has %d records, %d were acknowledged", what, sh, end, r.acked[sh])
		}
		if end > int64(len(r.attempted[sh])) {
			t.Fatalf("%s: shard %d has %d records, only %d were appended", what, sh, end, len(r.attempted[sh]))
		}
		for off := int64(0); off < end; {
			recs, err := l.Read(ctx, sh, off, 1000)
			if err != nil {
				t.Fatalf("%s: shard %d Read(%d): %v", what, sh, off, err)
			}
			for _, rc := range recs {
				want := r.attempted[sh][off]
				if !bytes.Equal(rc.PartitionKey, want.PartitionKey) || !bytes.Equal(rc.Data, want.Data) {
					t.Fatalf("%s: shard %d offset %d = %q, want %q", what, sh, off, rc.Data, want.Data)
				}
				off++
			}
		}
	}
	// The log keeps working after recovery.
	e := stream.Entry{PartitionKey: []byte("after"), Data: []byte("crash")}
	if err := l.Append(ctx, []stream.Entry{e}); err != nil {
		t.Fatalf("%s: Append after recovery: %v", what, err)
	}
	sh := stream.ShardFor(e.PartitionKey, crashShards)
	end, _ := l.End(ctx, sh)
	recs, err := l.Read(ctx, sh, end-1, 1)
	if err != nil || len(recs) != 1 || string(recs[0].Data) != "crash" {
		t.Fatalf("%s: read after recovery: %v, %v", what, recs, err)
	}
}

// TestCrashAtEveryOperation fails the k-th mutating file operation (write,
// fsync, truncate, create, rename, remove, directory sync), for k = 0, 1,
// ... until a run finishes without failing. After each, the durable state
// (and, in a second pass, durable state plus a random part of each file's
// unsynced tail) must reopen to a prefix holding every acknowledged record.
func TestCrashAtEveryOperation(t *testing.T) {
	t.Run("pieces=default", testCrashAtEveryOperation)
	// Every Append of two or three records spans several pieces, so the
	// syncers hold their fsync across pieces (shard.holdBegin).
	t.Run("pieces=1record", func(t *testing.T) {
		smallPieces(t)
		testCrashAtEveryOperation(t)
	})
}

// smallPieces makes Log.Append queue about one test record per piece, and
// wait after each piece until the flushers have written it, so the
// syncers really hold written, unsynced pieces (a crash can land there).
func smallPieces(t *testing.T) {
	oldPiece, oldAfter := appendPiece, afterPiece
	appendPiece, afterPiece = 8, waitWritten
	t.Cleanup(func() { appendPiece, afterPiece = oldPiece, oldAfter })
}

// waitWritten waits until every shard's queued frames are written (handed
// to the syncer or synced), the shard failed, or the log closed.
func waitWritten(l *Log) {
	for _, s := range l.physical() {
		for {
			s.mu.Lock()
			tail, queued, stop := s.tail, len(s.qbuf), s.err != nil || s.closed
			durable := s.end >= tail
			s.mu.Unlock()
			s.syncMu.Lock()
			written := durable || s.syncedTo >= tail || len(s.syncQ) > 0 && s.syncQ[len(s.syncQ)-1].next >= tail
			s.syncMu.Unlock()
			if stop || queued == 0 && written {
				break
			}
			runtime.Gosched()
		}
	}
}

func testCrashAtEveryOperation(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	runs := 0
	for k := 0; ; k++ {
		fs := newMemFS()
		r := runUntilCrash(t, fs, k)
		checkAfterCrash(t, fs.crashClone(nil), r, fmt.Sprintf("crash at op %d", k))
		checkAfterCrash(t, fs.crashClone(rng), r, fmt.Sprintf("crash at op %d with torn unsynced tail", k))
		runs++
		if !r.crashed {
			break
		}
	}
	t.Logf("%d crash points", runs)
	if runs < 100 {
		t.Fatalf("only %d crash points: the workload is too small to mean much", runs)
	}
}

// TestCrashConcurrentAppenders crashes at random operations while several
// goroutines append, so group commit batches many Appends per fsync.
// Per key, what survives must be a gapless prefix holding every
// acknowledged record.
func TestCrashConcurrentAppenders(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	const appenders, perApp = 4, 60
	for iter := range 40 {
		fs := newMemFS()
		l, err := Open(testDir, crashOpts(fs))
		if err != nil {
			t.Fatal(err)
		}
		fs.failAfter(rng.IntN(400))
		acked := make([]map[string]int, appenders)
		var wg sync.WaitGroup
		for g := range appenders {
			acked[g] = map[string]int{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				seq := map[string]int{}
				for i := range perApp {
					k := fmt.Sprintf("g%d-%d", g, i%3)
					e := stream.Entry{PartitionKey: []byte(k), Data: []byte(fmt.Sprint(seq[k]))}
					seq[k]++
					if err := l.Append(context.Background(), []stream.Entry{e}); err != nil {
						return
					}
					acked[g][k] = seq[k]
				}
			}()
		}
		wg.Wait()
		l.Close()
		crashed := fs.crashClone(rng)
		l, err = Open(testDir, crashOpts(crashed))
		if err != nil {
			t.Fatalf("iter %d: reopen: %v", iter, err)
		}
		got := keyCounts(t, l, crashShards, iter)
		for g := range appenders {
			for k, n := range acked[g] {
				if got[k] < n {
					t.Fatalf("iter %d: key %s: %d records survived, %d were acknowledged", iter, k, got[k], n)
				}
			}
		}
		l.Close()
	}
}

// keyCounts reads every record of l's shards 0..shards-1, whose Data is
// the record's sequence number among its key's records (0, 1, ...), fails
// on a gap or reorder, and returns how many records each key has.
func keyCounts(t *testing.T, l *Log, shards, iter int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for sh := range shards {
		end, _ := l.End(context.Background(), sh)
		for off := int64(0); off < end; {
			recs, err := l.Read(context.Background(), sh, off, 1000)
			if err != nil {
				t.Fatalf("iter %d: Read: %v", iter, err)
			}
			for _, r := range recs {
				k := string(r.PartitionKey)
				if string(r.Data) != fmt.Sprint(got[k]) {
					t.Fatalf("iter %d: key %s: seq %s after %d: a gap or reorder", iter, k, r.Data, got[k])
				}
				got[k]++
				off++
			}
		}
	}
	return got
}

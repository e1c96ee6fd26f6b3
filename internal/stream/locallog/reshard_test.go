package locallog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/stream"
)

// runReshardUntilCrash is runUntilCrash with reshards in the workload:
// logical shard 0's physical shard is split after 30 batches, the lower
// child split again after 60, and those two children merged after 90, so
// a crash can hit a reshard's drain, its META commit or a child's
// creation, and parallel children with torn tails.
func runReshardUntilCrash(t *testing.T, fs *memFS, k int) (r crashRun) {
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
	ctx := context.Background()
	seq := 0
	for i := range 120 {
		if err := reshardStep(ctx, l, i); err != nil {
			if !errors.Is(err, errInjected) {
				t.Fatalf("reshard at batch %d: %v", i, err)
			}
			return r
		}
		var batch []stream.Entry
		for range 1 + i%3 {
			e := rec(seq)
			seq++
			batch = append(batch, e)
			sh := stream.ShardFor(e.PartitionKey, crashShards)
			r.attempted[sh] = append(r.attempted[sh], e)
		}
		if err := l.Append(ctx, batch); err != nil {
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

func reshardStep(ctx context.Context, l *Log, batch int) error {
	var open []Shard
	for _, s := range l.Topology() {
		if s.Open && s.Logical == 0 {
			open = append(open, s)
		}
	}
	var err error
	switch batch {
	case 30, 60:
		_, err = l.SplitShard(ctx, open[0].ID, "")
	case 90:
		_, err = l.MergeShards(ctx, open[len(open)-2].ID, open[len(open)-1].ID)
	}
	return err
}

// TestCrashDuringReshard fails the k-th mutating file operation of a
// workload that splits and merges, for every k until a run completes. The
// durable state, and the durable state plus a random part of each file's
// unsynced writes (which can leave a record of one child lost while a
// later one in its sibling survived), must reopen to a gapless prefix per
// shard holding every acknowledged record, readable in order and
// appendable.
func TestCrashDuringReshard(t *testing.T) {
	t.Run("pieces=default", testCrashDuringReshard)
	t.Run("pieces=1record", func(t *testing.T) {
		smallPieces(t)
		testCrashDuringReshard(t)
	})
}

func testCrashDuringReshard(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	runs, reshards := 0, 0
	for k := 0; ; k++ {
		fs := newMemFS()
		r := runReshardUntilCrash(t, fs, k)
		checkAfterCrash(t, fs.crashClone(nil), r, fmt.Sprintf("crash at op %d", k))
		checkAfterCrash(t, fs.crashClone(rng), r, fmt.Sprintf("crash at op %d with torn unsynced tail", k))
		runs++
		if !r.crashed {
			// The finished run must really have resharded.
			fs.failAfter(-1)
			l := openT(t, testDir, crashOpts(fs))
			for _, s := range l.Topology() {
				if len(s.Parents) > 0 {
					reshards++
				}
			}
			break
		}
	}
	t.Logf("%d crash points", runs)
	if runs < 200 || reshards != 5 {
		t.Fatalf("%d crash points, %d physical shards made by reshards (want 5): the workload is too small to mean much", runs, reshards)
	}
}

// TestReshardHoleCut builds what a crash can leave after a split: the
// logical shard's offset n lost in one child while n+1 survived in the
// other. Reopening must end the shard at n, cutting n+1 (never
// acknowledged: End never passed n), and say so in the log.
func TestReshardHoleCut(t *testing.T) {
	fs := newMemFS()
	var logs logBuffer
	opts := Options{FS: fs, SegmentBytes: 4 << 10, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	l := openT(t, testDir, opts)
	ctx := context.Background()
	for i := range 10 {
		if err := l.Append(ctx, []stream.Entry{rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := l.SplitShard(ctx, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	mid, _ := parseHash(l.Topology()[1].Hi)
	// Keys for each child: below or above the split point.
	var low, high []byte
	for i := 0; low == nil || high == nil; i++ {
		k := []byte(fmt.Sprintf("key-%d", i))
		if h := hashOf(k); mid.less(h) {
			high = k
		} else {
			low = k
		}
	}
	if err := l.Append(ctx, []stream.Entry{{PartitionKey: low, Data: []byte("a")}, {PartitionKey: low, Data: []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	// Offset 12 goes to the low child, 13 to the high one.
	if err := l.Append(ctx, []stream.Entry{{PartitionKey: low, Data: []byte("lost")}, {PartitionKey: high, Data: []byte("orphan")}}); err != nil {
		t.Fatal(err)
	}
	if end, _ := l.End(ctx, 0); end != 14 {
		t.Fatalf("End = %d, want 14", end)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Drop the low child's last frame, as if its write never reached the disk.
	seg := filepath.Join(shardDir(testDir, ids[0]), segName2(0, 10))
	f := fs.file(seg)
	if f == nil {
		t.Fatalf("no segment %s", seg)
	}
	data := f.data
	setFile(f, data[:len(data)-frameLen2(low, []byte("lost"))])

	l2 := openT(t, testDir, opts)
	if end, _ := l2.End(ctx, 0); end != 12 {
		t.Fatalf("after the crash End = %d, want 12 (offset 12 is lost, 13 must be cut)", end)
	}
	if !strings.Contains(logs.String(), "cut records after a hole") {
		t.Fatalf("recovery did not report the cut; log:\n%s", logs.String())
	}
	recs, err := l2.Read(ctx, 0, 10, 100)
	if err != nil || len(recs) != 2 || string(recs[0].Data) != "a" || string(recs[1].Data) != "b" {
		t.Fatalf("Read after the cut: %v, %v", recs, err)
	}
	// Appends continue at 12, in the right child.
	if err := l2.Append(ctx, []stream.Entry{{PartitionKey: high, Data: []byte("new")}}); err != nil {
		t.Fatal(err)
	}
	recs, err = l2.Read(ctx, 0, 12, 100)
	if err != nil || len(recs) != 1 || string(recs[0].Data) != "new" || recs[0].Offset != 12 {
		t.Fatalf("Read after append: %v, %v", recs, err)
	}
}

// TestReshardRetention trims a resharded shard: consumed segments of the
// parent and of the children go, reading them is stream.ErrTrimmed, and
// the shard's last record (which the pipeline's dedup reads) stays.
func TestReshardRetention(t *testing.T) {
	fs := newMemFS()
	l := openT(t, testDir, Options{FS: fs, SegmentBytes: 4 << 10, Durability: DurabilityNone})
	ctx := context.Background()
	segs := func() int {
		n := 0
		for _, s := range l.Topology() {
			names, _ := fs.ReadDir(shardDir(testDir, s.ID))
			n += len(names)
		}
		return n
	}
	for i := range 2000 {
		if i == 500 {
			if _, err := l.SplitShard(ctx, 0, ""); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Append(ctx, []stream.Entry{rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	before := segs()
	end, _ := l.End(ctx, 0)
	if err := l.Trim(ctx, 0, end); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for segs() >= before-2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	after := segs()
	t.Logf("%d segments before Trim, %d after", before, after)
	if after >= before-2 {
		t.Fatalf("%d segments before Trim, %d after: retention deleted nothing", before, after)
	}
	if _, err := l.Read(ctx, 0, 0, 10); !errors.Is(err, stream.ErrTrimmed) {
		t.Fatalf("Read(0) after retention: %v, want ErrTrimmed", err)
	}
	recs, err := l.Read(ctx, 0, end-1, 10)
	if err != nil || len(recs) != 1 || string(recs[0].Data) != string(rec(1999).Data) {
		t.Fatalf("last record after retention: %v, %v", recs, err)
	}
}

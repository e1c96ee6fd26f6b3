package locallog

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/stream"
)

// TestPiecesOneFsync appends 3 MiB in one Append, three pieces or more
// per shard: the flushers write the pieces as they come, but the syncers
// hold their fsync until the last piece is written, so each shard pays for
// one fsync, and the records read back in order.
func TestPiecesOneFsync(t *testing.T) {
	for _, shards := range []int{1, 3} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			l := openT(t, testDir, Options{Shards: shards, FS: newMemFS()})
			data := make([]byte, 1000)
			var batch []stream.Entry
			for i := range 3 * shards * (1 << 20) / len(data) {
				batch = append(batch, stream.Entry{PartitionKey: fmt.Appendf(nil, "k%d", i), Data: data})
			}
			ctx := context.Background()
			for round := range 2 {
				if err := l.Append(ctx, batch); err != nil {
					t.Fatal(err)
				}
				for _, s := range l.physical() {
					if got := s.syncs.Load(); got != int64(round+1) {
						t.Fatalf("round %d: shard %d: %d fsyncs, want %d (one per Append)", round, s.id, got, round+1)
					}
				}
			}
			want := make([][]string, shards)
			for _, e := range append(batch, batch...) {
				sh := stream.ShardFor(e.PartitionKey, shards)
				want[sh] = append(want[sh], string(e.PartitionKey))
			}
			for sh := range shards {
				if end, _ := l.End(ctx, sh); end != int64(len(want[sh])) {
					t.Fatalf("shard %d: End %d, want %d", sh, end, len(want[sh]))
				}
				for off := int64(0); off < int64(len(want[sh])); {
					recs, err := l.Read(ctx, sh, off, 10000)
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range recs {
						if string(r.PartitionKey) != want[sh][off] {
							t.Fatalf("shard %d offset %d: key %q, want %q", sh, off, r.PartitionKey, want[sh][off])
						}
						off++
					}
				}
			}
		})
	}
}

// TestPiecesWithReshards appends multi-piece batches while logical shard 0
// is split, then merged. A reshard drains the shard while an Append may
// hold its syncer between pieces (shard.drain must override the hold, or
// both wait for each other forever); per key the records must come back
// gapless and in order. Only the first split drains an original shard, so
// each iteration starts a fresh log.
func TestPiecesWithReshards(t *testing.T) {
	smallPieces(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a deadlock detector, not a speed check
	defer cancel()
	for iter := range 30 {
		l := openT(t, testDir, Options{Shards: 2, SegmentBytes: 16 << 10, FS: newMemFS()})
		const batches, perBatch, keys = 100, 20, 7
		errc := make(chan error, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			seq := 0
			for range batches {
				var b []stream.Entry
				for range perBatch {
					b = append(b, stream.Entry{PartitionKey: fmt.Appendf(nil, "key-%d", seq%keys), Data: fmt.Appendf(nil, "%d", seq/keys)})
					seq++
				}
				if err := l.Append(ctx, b); err != nil {
					errc <- err
					return
				}
			}
		}()
		// Split while the appender runs (End moving says it does).
		if err := l.Wait(ctx, 0, int64(iter*10)); err != nil {
			t.Fatal(err)
		}
		kids, err := l.SplitShard(ctx, 0, "")
		if err != nil {
			t.Fatalf("iter %d: split: %v", iter, err)
		}
		if _, err := l.MergeShards(ctx, kids[0], kids[1]); err != nil {
			t.Fatalf("iter %d: merge: %v", iter, err)
		}
		<-done
		close(errc)
		if err := <-errc; err != nil {
			t.Fatalf("iter %d: Append: %v", iter, err)
		}
		got := keyCounts(t, l, 2, iter)
		total := 0
		for _, n := range got {
			total += n
		}
		if total != batches*perBatch {
			t.Fatalf("iter %d: %d records read back, %d appended", iter, total, batches*perBatch)
		}
		l.Close()
	}
}

// TestReshardDrainsHeldShard holds shard 0's syncer as an Append does
// between its pieces, with another Append waiting for its record to be
// fsynced, and splits the shard: the reshard's drain must override the
// hold (the Append holding it could not queue its next piece before the
// reshard ends).
func TestReshardDrainsHeldShard(t *testing.T) {
	l := openT(t, testDir, Options{Shards: 1, FS: newMemFS()})
	s := l.physical()[0]
	s.holdBegin()
	released := false
	defer func() {
		if !released {
			s.holdEnd(0)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a deadlock detector, not a speed check
	defer cancel()
	appended := make(chan error, 1)
	go func() { appended <- l.Append(ctx, []stream.Entry{rec(0)}) }()
	for {
		s.mu.Lock()
		queued := s.tail == 1
		s.mu.Unlock()
		if queued {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := l.SplitShard(ctx, 0, ""); err != nil {
		t.Fatalf("split while an Append holds the syncer: %v", err)
	}
	s.holdEnd(0)
	released = true
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	checkRecords(t, l, 1)
}

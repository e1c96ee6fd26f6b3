package kinesis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/silt-dev/silt/internal/stream"
	"github.com/silt-dev/silt/internal/stream/streamtest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var streamSeq atomic.Int64

func streamName(t *testing.T) string {
	name := strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())
	if len(name) > 80 {
		name = name[len(name)-80:]
	}
	return fmt.Sprintf("silt-%d-%s", streamSeq.Add(1), name)
}

// seed returns a seed for the test's randomness and logs it.
func seed(t *testing.T) uint64 {
	s := rand.Uint64()
	t.Logf("seed %d", s)
	return s
}

// opener returns a streamtest opener over api, one stream per call.
func opener(api API) streamtest.New {
	return func(t *testing.T, shards int) streamtest.Opener {
		name, dir := streamName(t), t.TempDir()
		return func(t *testing.T) stream.Log {
			l, err := Open(ctxT(t), Options{Client: api, Stream: name, Shards: shards, StateDir: dir, Create: true, Logger: quiet(), Seed: seed(t)})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return l
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestConformanceFake(t *testing.T) {
	t.Parallel()
	f := newFake()
	streamtest.RunWith(t, opener(f), streamtest.Options{MaxRecordBytes: maxRecordBytes - 64,
		Reshard: func(t *testing.T, sl stream.Log, step int) {
			name := sl.(*Log).opts.Stream
			open := f.openShards(name)
			switch step {
			case 0:
				f.split(name, open[0])
			case 1:
				f.split(name, open[len(open)-1])
			case 2:
				f.merge(name, open[len(open)-2], open[len(open)-1])
			}
		}})
}

func openFake(t *testing.T, f *fake, name string, shards int, dir string, mod func(*Options)) *Log {
	t.Helper()
	o := Options{Client: f, Stream: name, Shards: shards, StateDir: dir, Create: true, Logger: quiet(), Seed: seed(t),
		BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond}
	if mod != nil {
		mod(&o)
	}
	l, err := Open(ctxT(t), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// readAll reads every record of every shard up to End and checks that
// offsets are dense.
func readAll(t *testing.T, l stream.Log) [][]stream.Record {
	t.Helper()
	ctx := ctxT(t)
	out := make([][]stream.Record, l.Shards())
	for sh := range l.Shards() {
		end, err := l.End(ctx, sh)
		if err != nil {
			t.Fatal(err)
		}
		for next := int64(0); next < end; {
			recs, err := l.Read(ctx, sh, next, 1000)
			if err != nil {
				t.Fatalf("Read(%d, %d): %v", sh, next, err)
			}
			for _, r := range recs {
				if r.Offset != next {
					t.Fatalf("shard %d: offset %d, want %d", sh, r.Offset, next)
				}
				out[sh] = append(out[sh], r)
				next++
			}
		}
	}
	return out
}

// checkOrder checks that each key's records read back are 0, 1, 2, ...
func checkOrder(t *testing.T, shards [][]stream.Record, want map[string]int) {
	t.Helper()
	next := map[string]int{}
	for _, recs := range shards {
		for _, r := range recs {
			k := string(r.PartitionKey)
			if string(r.Data) != fmt.Sprint(next[k]) {
				t.Fatalf("key %s: got %s, want %d: a record was overtaken, lost or duplicated", k, r.Data, next[k])
			}
			next[k]++
		}
	}
	for k, n := range want {
		if next[k] != n {
			t.Fatalf("key %s: read %d records, appended %d", k, next[k], n)
		}
	}
}

// TestRetryKeepsKeyOrder fails a random share of PutRecords entries with
// ProvisionedThroughputExceeded (and some whole calls) while several
// goroutines append; every key must read back complete, once, in order.
func TestRetryKeepsKeyOrder(t *testing.T) {
	t.Parallel()
	f := newFake()
	rng := rand.New(rand.NewPCG(seed(t), 1))
	var rmu sync.Mutex
	f.putEntry = func(types.PutRecordsRequestEntry) string {
		rmu.Lock()
		defer rmu.Unlock()
		if rng.IntN(100) < 30 {
			return codeThroughput
		}
		if rng.IntN(100) < 3 {
			return codeInternal
		}
		return ""
	}
	f.putCall = func() error {
		rmu.Lock()
		defer rmu.Unlock()
		if rng.IntN(100) < 5 {
			return apiErr("ServiceUnavailable", "injected")
		}
		return nil
	}
	l := openFake(t, f, "retry", 3, t.TempDir(), nil)
	const appenders, batches = 6, 20
	var wg sync.WaitGroup
	for g := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := map[string]int{}
			for range batches {
				var es []stream.Entry
				for i := range 10 {
					k := fmt.Sprintf("g%d-k%d", g, i%4)
					es = append(es, stream.Entry{PartitionKey: []byte(k), Data: []byte(fmt.Sprint(seq[k]))})
					seq[k]++
				}
				if err := l.Append(ctxT(t), es); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	want := map[string]int{}
	for g := range appenders {
		want[fmt.Sprintf("g%d-k0", g)] = batches * 3
		want[fmt.Sprintf("g%d-k1", g)] = batches * 3
		want[fmt.Sprintf("g%d-k2", g)] = batches * 2
		want[fmt.Sprintf("g%d-k3", g)] = batches * 2
	}
	checkOrder(t, readAll(t, l), want)
	var throttled int64
	for _, s := range l.Stats() {
		throttled += s.ThrottledWrites
	}
	total := appenders * batches * 10
	if throttled == 0 {
		t.Error("no throttled writes counted")
	}
	if n := f.count("retry"); n <= total {
		t.Errorf("Kinesis holds %d records for %d appended: expected resent duplicates", n, total)
	}
	t.Logf("%d records appended, %d stored in Kinesis (resends), %d throttled", total, f.count("retry"), throttled)
}

func TestOversizeRejected(t *testing.T) {
	t.Parallel()
	l := openFake(t, newFake(), "big", 1, t.TempDir(), nil)
	ctx := ctxT(t)
	err := l.Append(ctx, []stream.Entry{{PartitionKey: []byte("a"), Data: []byte("ok")}, {PartitionKey: []byte("b"), Data: make([]byte, maxRecordBytes)}})
	if !errors.Is(err, stream.ErrTooLarge) || !strings.Contains(err.Error(), "entry 1") {
		t.Fatalf("Append of a 1 MiB record = %v, want ErrTooLarge naming entry 1", err)
	}
	err = l.Append(ctx, []stream.Entry{{PartitionKey: bytes.Repeat([]byte{0}, 100), Data: []byte("x")}})
	if !errors.Is(err, stream.ErrTooLarge) || !strings.Contains(err.Error(), "partition key") {
		t.Fatalf("Append with a 300-character escaped key = %v, want ErrTooLarge about the partition key", err)
	}
	if end, _ := l.End(ctx, 0); end != 0 {
		t.Fatalf("a refused Append queued records: End = %d", end)
	}
	// The log still works.
	if err := l.Append(ctx, []stream.Entry{{PartitionKey: []byte("a"), Data: make([]byte, maxRecordBytes-100)}}); err != nil {
		t.Fatalf("Append just under the limit: %v", err)
	}
}

func TestNonRetryableErrorFailsLog(t *testing.T) {
	t.Parallel()
	f := newFake()
	l := openFake(t, f, "denied", 1, t.TempDir(), nil)
	f.putCall = func() error { return apiErr("AccessDeniedException", "no") }
	ctx := ctxT(t)
	err := l.Append(ctx, []stream.Entry{{PartitionKey: []byte("a"), Data: []byte("1")}})
	if err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("Append = %v, want the access error", err)
	}
	f.putCall = nil
	if err := l.Append(ctx, []stream.Entry{{PartitionKey: []byte("a"), Data: []byte("2")}}); err == nil {
		t.Fatal("Append after a fatal error succeeded; the failure must stick")
	}
}

// TestReshard splits and merges Kinesis shards between appends; the log
// reads every logical shard complete and in order, parents before
// children, before and after a reopen.
func TestReshard(t *testing.T) {
	t.Parallel()
	f := newFake()
	dir := t.TempDir()
	l := openFake(t, f, "reshard", 2, dir, nil)
	ctx := ctxT(t)
	want := map[string]int{}
	appendSome := func(l stream.Log, n int) {
		var es []stream.Entry
		for i := range n {
			k := fmt.Sprintf("key-%d", i%16)
			es = append(es, stream.Entry{PartitionKey: []byte(k), Data: []byte(fmt.Sprint(want[k]))})
			want[k]++
		}
		if err := l.Append(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	appendSome(l, 100)
	ids := f.openShards("reshard")
	f.split("reshard", ids[0])
	appendSome(l, 100)
	open := f.openShards("reshard") // [shard 1, child a, child b]
	f.merge("reshard", open[1], open[2])
	appendSome(l, 100)
	open = f.openShards("reshard") // [shard 1, merged]
	f.merge("reshard", open[1], open[0])
	appendSome(l, 100) // one Kinesis shard now carries both logical shards
	checkOrder(t, readAll(t, l), want)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := openFake(t, f, "reshard", 2, dir, nil)
	appendSome(l2, 50)
	checkOrder(t, readAll(t, l2), want)
	if got := f.maxGetsPerSecond(); got > getRecordsPerSec {
		t.Errorf("%d GetRecords calls within one second on a shard; the limit is %d", got, getRecordsPerSec)
	}
}

// TestEpochVoidsOrphans builds what a crash can leave: the old writer's
// offsets 0-2, a hole at 3 and an orphan at 4. Open must find End 3, and
// the new writer's 3 and 4 must win over the orphan.
func TestEpochVoidsOrphans(t *testing.T) {
	t.Parallel()
	f := newFake()
	ctx := ctxT(t)
	if _, err := f.CreateStream(ctx, createInput("crash", 1)); err != nil {
		t.Fatal(err)
	}
	lay := newLayout(1)
	var entries []types.PutRecordsRequestEntry
	for _, off := range []int64{0, 1, 2, 4} {
		entries = append(entries, types.PutRecordsRequestEntry{Data: []byte(fmt.Sprintf("old-%d", off)),
			PartitionKey: aws.String(string(encodeKey(nil, off, 1, []byte("k")))), ExplicitHashKey: aws.String(lay.explicitHashKey(0, []byte("k")))})
	}
	if _, err := f.PutRecords(ctx, putInput("crash", entries)); err != nil {
		t.Fatal(err)
	}
	l := openFake(t, f, "crash", 1, t.TempDir(), nil)
	if end, _ := l.End(ctx, 0); end != 3 {
		t.Fatalf("End after the crash = %d, want 3 (the hole)", end)
	}
	if l.epoch <= 1 {
		t.Fatalf("new epoch %d is not above the old writer's 1", l.epoch)
	}
	for _, d := range []string{"new-3", "new-4"} {
		if err := l.Append(ctx, []stream.Entry{{PartitionKey: []byte("k"), Data: []byte(d)}}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, r := range readAll(t, l)[0] {
		got = append(got, string(r.Data))
	}
	if want := "old-0 old-1 old-2 new-3 new-4"; strings.Join(got, " ") != want {
		t.Fatalf("read %q, want %q", strings.Join(got, " "), want)
	}
}

// TestResumeFromSavedPosition checks that a reopened log reads from the
// position saved at Trim rather than from the start of the stream.
func TestResumeFromSavedPosition(t *testing.T) {
	t.Parallel()
	f := newFake()
	dir := t.TempDir()
	l := openFake(t, f, "resume", 1, dir, func(o *Options) { o.ReadLimit = 50 })
	ctx := ctxT(t)
	var es []stream.Entry
	for i := range 300 {
		es = append(es, stream.Entry{PartitionKey: []byte("k"), Data: []byte(fmt.Sprint(i))})
	}
	if err := l.Append(ctx, es); err != nil {
		t.Fatal(err)
	}
	for next := int64(0); next < 250; {
		recs, err := l.Read(ctx, 0, next, 50)
		if err != nil {
			t.Fatal(err)
		}
		next += int64(len(recs))
	}
	if err := l.Trim(ctx, 0, 250); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := openFake(t, f, "resume", 1, dir, func(o *Options) { o.ReadLimit = 50 })
	if p := l2.state.Positions[0]; p == nil || p.Next != 250 {
		t.Fatalf("saved position %+v, want one at 250", p)
	}
	recs, err := l2.Read(ctx, 0, 250, 10)
	if err != nil || len(recs) == 0 || string(recs[0].Data) != "250" {
		t.Fatalf("Read(250) after reopen = %v, %v", recs, err)
	}
	if err := l2.Trim(ctx, 0, 301); !errors.Is(err, stream.ErrOutOfRange) {
		t.Fatalf("Trim past End = %v", err)
	}
}

func TestKeyEncoding(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("public.t\x0042"), []byte("%:%"), {0xff, 0, ' ', '~'}} {
		enc := string(encodeKey(nil, 12345, 7, key))
		off, ep, got, err := decodeKey(enc)
		if err != nil || off != 12345 || ep != 7 || !bytes.Equal(got, key) {
			t.Errorf("round trip of %q via %q = %d %d %q %v", key, enc, off, ep, got, err)
		}
	}
	for _, bad := range []string{"", "1:2", "x:1:k", "1:x:k", "-1:1:k", "1:1:%4", "1:1:%zz"} {
		if _, _, _, err := decodeKey(bad); err == nil {
			t.Errorf("decodeKey(%q) succeeded", bad)
		}
	}
}

// TestLayoutMatchesShardFor: the hash key the writer sends stays inside
// the logical shard that ShardFor picks and inside Kinesis's shard of the
// same number for a stream created with n shards.
func TestLayoutMatchesShardFor(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 64} {
		lay := newLayout(n)
		f := newFake()
		if _, err := f.CreateStream(context.Background(), createInput("s", n)); err != nil {
			t.Fatal(err)
		}
		for i := range 2000 {
			key := []byte(fmt.Sprintf("k-%d", i))
			s := stream.ShardFor(key, n)
			h, _ := parseRange(aws.String(lay.explicitHashKey(s, key)), aws.String("0"))
			k := f.streams["s"].shards[s]
			if h.lo.Cmp(k.lo) < 0 || h.lo.Cmp(k.hi) > 0 {
				t.Fatalf("n=%d key %q: hash %v outside Kinesis shard %d [%v, %v]", n, key, h.lo, s, k.lo, k.hi)
			}
		}
		// Logical ranges cover each Kinesis shard exactly once.
		for i, r := range lay.used {
			k := f.streams["s"].shards[i]
			if r.lo.Cmp(k.lo) < 0 || r.hi.Cmp(k.hi) > 0 {
				t.Fatalf("n=%d: logical shard %d [%v, %v] not inside Kinesis shard [%v, %v]", n, i, r.lo, r.hi, k.lo, k.hi)
			}
		}
	}
}

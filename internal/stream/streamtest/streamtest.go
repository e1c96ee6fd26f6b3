// Package streamtest is the conformance suite every stream.Log
// implementation must pass (locallog, and kinesis over a fake and over
// kinesalite). It is imported only by tests.
//
// The suite checks the contract of package stream: routing by ShardFor,
// dense offsets from 0, order per partition key, the bounds of Read,
// durability across Close and reopen, concurrent appenders, reads while
// appending, Close, and, when the log implements them, stream.Waiter and
// stream.Trimmer. It never sleeps to wait for a condition.
package streamtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/stream"
)

// Opener opens a Log over one storage. The suite calls it again after it
// has closed the previous Log, to check that data survives a reopen.
type Opener func(t *testing.T) stream.Log

// New creates fresh, empty storage for a log with the given number of
// shards, and returns how to open it. It is called once per subtest.
type New func(t *testing.T, shards int) Opener

// Options describes what an implementation can hold, for the checks that
// depend on it.
type Options struct {
	// MaxRecordBytes is the largest partition key plus data the log
	// accepts. 0 means at least 1 MiB of data. Kinesis counts its own
	// partition key in its 1 MiB record limit, so it holds a little less.
	MaxRecordBytes int
	// Reshard, when set, changes the storage under an open log of 2
	// shards while appends run (testReshard): step 0 splits a shard of the
	// storage, step 1 splits one of the children, step 2 merges two
	// adjacent open ones. The shards the Log shows stay the same.
	Reshard func(t *testing.T, l stream.Log, step int)
}

// Run runs the suite. The implementation must cap Read below 10,000 records
// no lower than 100 and hold records of at least 1 MiB.
func Run(t *testing.T, newLog New) { RunWith(t, newLog, Options{}) }

// RunWith runs the suite with the implementation's limits.
func RunWith(t *testing.T, newLog New, opts Options) {
	bigRecord = 1 << 20
	if opts.MaxRecordBytes > 0 {
		bigRecord = opts.MaxRecordBytes - len("big")
	}
	tests := []struct {
		name string
		fn   func(*testing.T, New)
	}{
		{"Empty", testEmpty},
		{"AppendRead", testAppendRead},
		{"Routing", testRouting},
		{"OrderPerKey", testOrderPerKey},
		{"ReadBounds", testReadBounds},
		{"OutOfRange", testOutOfRange},
		{"Reopen", testReopen},
		{"Close", testClose},
		{"ContextDone", testContextDone},
		{"LargeRecord", testLargeRecord},
		{"ConcurrentAppenders", testConcurrentAppenders},
		{"ReadWhileAppending", testReadWhileAppending},
		{"Wait", testWait},
		{"Trim", testTrim},
	}
	if opts.Reshard != nil {
		tests = append(tests, struct {
			name string
			fn   func(*testing.T, New)
		}{"Reshard", func(t *testing.T, n New) { testReshard(t, n, opts.Reshard) }})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newLog) })
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func open(t *testing.T, newLog New, shards int) (Opener, stream.Log) {
	t.Helper()
	o := newLog(t, shards)
	l := o(t)
	t.Cleanup(func() { l.Close() })
	if got := l.Shards(); got != shards {
		t.Fatalf("Shards() = %d, want %d", got, shards)
	}
	return o, l
}

func mustAppend(t *testing.T, l stream.Log, entries ...stream.Entry) {
	t.Helper()
	if err := l.Append(ctxT(t), entries); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func entry(key, data string) stream.Entry {
	return stream.Entry{PartitionKey: []byte(key), Data: []byte(data)}
}

// readAll reads shard from offset from to its current End, copying every
// record (Read may alias its buffers), and checks offsets are dense.
func readAll(t *testing.T, l stream.Log, shard int, from int64) []stream.Record {
	t.Helper()
	ctx := ctxT(t)
	end, err := l.End(ctx, shard)
	if err != nil {
		t.Fatalf("End(%d): %v", shard, err)
	}
	var out []stream.Record
	for next := from; next < end; {
		recs, err := l.Read(ctx, shard, next, 1000)
		if err != nil {
			t.Fatalf("Read(%d, %d): %v", shard, next, err)
		}
		if len(recs) == 0 {
			t.Fatalf("Read(%d, %d) returned nothing below End %d", shard, next, end)
		}
		for _, r := range recs {
			if r.Offset != next || r.Shard != shard {
				t.Fatalf("Read(%d) gave record shard %d offset %d, want shard %d offset %d", shard, r.Shard, r.Offset, shard, next)
			}
			out = append(out, stream.Record{Shard: r.Shard, Offset: r.Offset,
				PartitionKey: bytes.Clone(r.PartitionKey), Data: bytes.Clone(r.Data)})
			next++
		}
	}
	return out
}

func testEmpty(t *testing.T, newLog New) {
	_, l := open(t, newLog, 3)
	ctx := ctxT(t)
	for sh := range 3 {
		end, err := l.End(ctx, sh)
		if err != nil || end != 0 {
			t.Fatalf("End(%d) = %d, %v; want 0", sh, end, err)
		}
		recs, err := l.Read(ctx, sh, 0, 10)
		if err != nil || recs == nil || len(recs) != 0 {
			t.Fatalf("Read(%d, 0) = %v, %v; want an empty, non-nil slice", sh, recs, err)
		}
	}
	if err := l.Append(ctx, nil); err != nil {
		t.Fatalf("Append(nil) = %v", err)
	}
}

func testAppendRead(t *testing.T, newLog New) {
	_, l := open(t, newLog, 1)
	var want []stream.Entry
	for i := range 50 {
		want = append(want, entry(fmt.Sprintf("k%d", i%7), fmt.Sprintf("value-%d", i)))
	}
	mustAppend(t, l, want[:20]...)
	mustAppend(t, l, want[20:]...)
	mustAppend(t, l, entry("", ""), entry("k", "")) // empty key and data are records too
	want = append(want, entry("", ""), entry("k", ""))
	got := readAll(t, l, 0, 0)
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if !bytes.Equal(r.PartitionKey, want[i].PartitionKey) || !bytes.Equal(r.Data, want[i].Data) {
			t.Fatalf("record %d = (%q, %q), want (%q, %q)", i, r.PartitionKey, r.Data, want[i].PartitionKey, want[i].Data)
		}
	}
	// Reading from the middle starts exactly there.
	recs, err := l.Read(ctxT(t), 0, 33, 5)
	if err != nil || len(recs) == 0 || recs[0].Offset != 33 || string(recs[0].Data) != "value-33" {
		t.Fatalf("Read(0, 33) = %v, %v", recs, err)
	}
}

func testRouting(t *testing.T, newLog New) {
	const shards = 4
	_, l := open(t, newLog, shards)
	var entries []stream.Entry
	for i := range 400 {
		entries = append(entries, entry(fmt.Sprintf("public.t.%d", i), fmt.Sprint(i)))
	}
	mustAppend(t, l, entries...)
	seen := 0
	for sh := range shards {
		for _, r := range readAll(t, l, sh, 0) {
			if want := stream.ShardFor(r.PartitionKey, shards); want != sh {
				t.Fatalf("key %q on shard %d, ShardFor says %d", r.PartitionKey, sh, want)
			}
			seen++
		}
	}
	if seen != len(entries) {
		t.Fatalf("found %d records, appended %d", seen, len(entries))
	}
}

// checkPerKey checks that, per key, the data read is the sequence
// 0, 1, 2, ... written by appenders that number their entries per key.
func checkPerKey(t *testing.T, recs []stream.Record, want map[string]int) {
	t.Helper()
	next := map[string]int{}
	for _, r := range recs {
		k := string(r.PartitionKey)
		if got := string(r.Data); got != fmt.Sprint(next[k]) {
			t.Fatalf("key %q: got seq %s, want %d (order per key broken)", k, got, next[k])
		}
		next[k]++
	}
	for k, n := range want {
		if next[k] != n {
			t.Fatalf("key %q: read %d records, appended %d", k, next[k], n)
		}
	}
}

func testOrderPerKey(t *testing.T, newLog New) {
	const shards = 3
	_, l := open(t, newLog, shards)
	want := map[string]int{}
	for batch := range 20 {
		var entries []stream.Entry
		for i := range 30 {
			k := fmt.Sprintf("key-%d", (batch*7+i)%11)
			entries = append(entries, entry(k, fmt.Sprint(want[k])))
			want[k]++
		}
		mustAppend(t, l, entries...)
	}
	var all []stream.Record
	for sh := range shards {
		all = append(all, readAll(t, l, sh, 0)...)
	}
	checkPerKey(t, all, want)
}

func testReadBounds(t *testing.T, newLog New) {
	_, l := open(t, newLog, 1)
	ctx := ctxT(t)
	var entries []stream.Entry
	for i := range 300 {
		entries = append(entries, entry("k", fmt.Sprint(i)))
	}
	mustAppend(t, l, entries...)
	for _, max := range []int{1, 7, 100} {
		recs, err := l.Read(ctx, 0, 10, max)
		if err != nil {
			t.Fatalf("Read(max=%d): %v", max, err)
		}
		if len(recs) == 0 || len(recs) > max {
			t.Fatalf("Read(max=%d) returned %d records", max, len(recs))
		}
		for i, r := range recs {
			if r.Offset != int64(10+i) || string(r.Data) != fmt.Sprint(10+i) {
				t.Fatalf("Read(max=%d)[%d] = offset %d data %q", max, i, r.Offset, r.Data)
			}
		}
	}
	recs, err := l.Read(ctx, 0, 299, 100)
	if err != nil || len(recs) != 1 || recs[0].Offset != 299 {
		t.Fatalf("Read of the last record = %d records, %v", len(recs), err)
	}
}

func testOutOfRange(t *testing.T, newLog New) {
	_, l := open(t, newLog, 2)
	ctx := ctxT(t)
	mustAppend(t, l, entry("a", "1"))
	sh := stream.ShardFor([]byte("a"), 2)
	if _, err := l.Read(ctx, sh, 2, 10); !errors.Is(err, stream.ErrOutOfRange) {
		t.Fatalf("Read past End = %v, want ErrOutOfRange", err)
	}
	if _, err := l.Read(ctx, sh, -1, 10); !errors.Is(err, stream.ErrOutOfRange) {
		t.Fatalf("Read(-1) = %v, want ErrOutOfRange", err)
	}
	for _, bad := range []int{-1, 2} {
		if _, err := l.Read(ctx, bad, 0, 10); !errors.Is(err, stream.ErrOutOfRange) {
			t.Fatalf("Read(shard %d) = %v, want ErrOutOfRange", bad, err)
		}
		if _, err := l.End(ctx, bad); !errors.Is(err, stream.ErrOutOfRange) {
			t.Fatalf("End(shard %d) = %v, want ErrOutOfRange", bad, err)
		}
	}
}

func testReopen(t *testing.T, newLog New) {
	const shards = 2
	o, l := open(t, newLog, shards)
	want := map[string]int{}
	appendSeq := func(l stream.Log, n int) {
		var entries []stream.Entry
		for i := range n {
			k := fmt.Sprintf("k%d", i%5)
			entries = append(entries, entry(k, fmt.Sprint(want[k])))
			want[k]++
		}
		mustAppend(t, l, entries...)
	}
	appendSeq(l, 100)
	ends := make([]int64, shards)
	for sh := range shards {
		ends[sh], _ = l.End(ctxT(t), sh)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	l2 := o(t)
	t.Cleanup(func() { l2.Close() })
	for sh := range shards {
		if end, err := l2.End(ctxT(t), sh); err != nil || end != ends[sh] {
			t.Fatalf("after reopen End(%d) = %d, %v; want %d", sh, end, err, ends[sh])
		}
	}
	appendSeq(l2, 100) // offsets continue after the reopen
	var all []stream.Record
	for sh := range shards {
		all = append(all, readAll(t, l2, sh, 0)...)
	}
	checkPerKey(t, all, want)
}

func testClose(t *testing.T, newLog New) {
	_, l := open(t, newLog, 1)
	mustAppend(t, l, entry("a", "1"))
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := ctxT(t)
	if err := l.Append(ctx, []stream.Entry{entry("a", "2")}); !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
	if _, err := l.Read(ctx, 0, 0, 1); !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("Read after Close = %v, want ErrClosed", err)
	}
	if _, err := l.End(ctx, 0); !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("End after Close = %v, want ErrClosed", err)
	}
}

func testContextDone(t *testing.T, newLog New) {
	_, l := open(t, newLog, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Append(ctx, []stream.Entry{entry("a", "1")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a done context = %v, want context.Canceled", err)
	}
}

// bigRecord is the data size of testLargeRecord's large record (RunWith
// sets it before any subtest runs).
var bigRecord = 1 << 20

func testLargeRecord(t *testing.T, newLog New) {
	_, l := open(t, newLog, 1)
	big := bytes.Repeat([]byte("0123456789abcdef"), bigRecord/16+1)[:bigRecord] // 1 MiB unless the log holds less
	mustAppend(t, l, entry("small", "x"), stream.Entry{PartitionKey: []byte("big"), Data: big}, entry("small", "y"))
	got := readAll(t, l, 0, 0)
	if len(got) != 3 || !bytes.Equal(got[1].Data, big) || string(got[2].Data) != "y" {
		t.Fatalf("large record round trip failed: %d records", len(got))
	}
}

func testConcurrentAppenders(t *testing.T, newLog New) {
	const (
		shards    = 3
		appenders = 8
		batches   = 25
		perBatch  = 8
	)
	_, l := open(t, newLog, shards)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, appenders)
	for g := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := map[string]int{}
			for range batches {
				var entries []stream.Entry
				for i := range perBatch {
					k := fmt.Sprintf("g%d-k%d", g, i%3)
					entries = append(entries, entry(k, fmt.Sprint(seq[k])))
					seq[k]++
				}
				if err := l.Append(ctx, entries); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Append: %v", err)
	}
	want := map[string]int{}
	for g := range appenders {
		// perBatch=8 over 3 keys: keys 0 and 1 get 3 per batch, key 2 gets 2.
		want[fmt.Sprintf("g%d-k0", g)] = batches * 3
		want[fmt.Sprintf("g%d-k1", g)] = batches * 3
		want[fmt.Sprintf("g%d-k2", g)] = batches * 2
	}
	var all []stream.Record
	for sh := range shards {
		all = append(all, readAll(t, l, sh, 0)...)
	}
	checkPerKey(t, all, want)
}

// nextAvailable blocks until shard has a record at offset, through
// stream.Waiter when the log has it, else by polling.
func nextAvailable(ctx context.Context, l stream.Log, shard int, offset int64) error {
	if w, ok := l.(stream.Waiter); ok {
		return w.Wait(ctx, shard, offset)
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		end, err := l.End(ctx, shard)
		if err != nil || end > offset {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func testReadWhileAppending(t *testing.T, newLog New) {
	const (
		shards    = 2
		appenders = 4
		perApp    = 300
	)
	_, l := open(t, newLog, shards)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for g := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perApp {
				if err := l.Append(ctx, []stream.Entry{entry(fmt.Sprintf("g%d", g), fmt.Sprint(i))}); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		}()
	}
	// Each shard's reader tails it until it has seen every key's last
	// record, checking offsets and per-key order as it goes.
	keysOn := make([]map[string]bool, shards)
	for g := range appenders {
		k := fmt.Sprintf("g%d", g)
		sh := stream.ShardFor([]byte(k), shards)
		if keysOn[sh] == nil {
			keysOn[sh] = map[string]bool{}
		}
		keysOn[sh][k] = true
	}
	var rg sync.WaitGroup
	for sh := range shards {
		rg.Add(1)
		go func() {
			defer rg.Done()
			next := map[string]int{}
			var off int64
			for done := 0; done < len(keysOn[sh]); {
				if err := nextAvailable(ctx, l, sh, off); err != nil {
					t.Errorf("shard %d: wait for %d: %v", sh, off, err)
					return
				}
				recs, err := l.Read(ctx, sh, off, 50)
				if err != nil {
					t.Errorf("shard %d: Read(%d): %v", sh, off, err)
					return
				}
				for _, r := range recs {
					k := string(r.PartitionKey)
					if r.Offset != off {
						t.Errorf("shard %d: offset %d, want %d", sh, r.Offset, off)
						return
					}
					if string(r.Data) != fmt.Sprint(next[k]) {
						t.Errorf("shard %d key %s: seq %s, want %d", sh, k, r.Data, next[k])
						return
					}
					next[k]++
					if next[k] == perApp {
						done++
					}
					off++
				}
			}
		}()
	}
	wg.Wait()
	rg.Wait()
}

func testWait(t *testing.T, newLog New) {
	_, l := open(t, newLog, 1)
	w, ok := l.(stream.Waiter)
	if !ok {
		t.Skip("log does not implement stream.Waiter")
	}
	ctx := ctxT(t)
	// Cancelled while nothing arrives.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := w.Wait(cctx, 0, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a done context = %v, want context.Canceled", err)
	}
	// Woken by an Append.
	woke := make(chan error, 1)
	go func() { woke <- w.Wait(ctx, 0, 0) }()
	mustAppend(t, l, entry("a", "1"))
	if err := <-woke; err != nil {
		t.Fatalf("Wait after Append = %v", err)
	}
	// Immediate when data is there.
	if err := w.Wait(ctx, 0, 0); err != nil {
		t.Fatalf("Wait below End = %v", err)
	}
	// Woken by Close.
	go func() { woke <- w.Wait(ctx, 0, 1) }()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-woke; !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("Wait across Close = %v, want ErrClosed", err)
	}
}

func testTrim(t *testing.T, newLog New) {
	_, l := open(t, newLog, 1)
	tr, ok := l.(stream.Trimmer)
	if !ok {
		t.Skip("log does not implement stream.Trimmer")
	}
	ctx := ctxT(t)
	var entries []stream.Entry
	for i := range 200 {
		entries = append(entries, entry("k", fmt.Sprint(i)))
	}
	mustAppend(t, l, entries...)
	if err := tr.Trim(ctx, 0, 201); !errors.Is(err, stream.ErrOutOfRange) {
		t.Fatalf("Trim past End = %v, want ErrOutOfRange", err)
	}
	if err := tr.Trim(ctx, 0, 150); err != nil {
		t.Fatalf("Trim(150): %v", err)
	}
	if err := tr.Trim(ctx, 0, 100); err != nil {
		t.Fatalf("Trim backwards must be ignored, got %v", err)
	}
	mustAppend(t, l, entry("k", "200"))
	// Everything at or above the trim point stays readable and intact.
	got := readAll(t, l, 0, 150)
	if len(got) != 51 || string(got[0].Data) != "150" || string(got[50].Data) != "200" {
		t.Fatalf("after Trim read %d records from 150", len(got))
	}
	// Below it a record is either still there, intact, or reported trimmed.
	recs, err := l.Read(ctx, 0, 0, 10)
	switch {
	case errors.Is(err, stream.ErrTrimmed):
	case err != nil:
		t.Fatalf("Read below the trim point: %v", err)
	case len(recs) == 0 || recs[0].Offset != 0 || string(recs[0].Data) != "0":
		t.Fatalf("Read below the trim point returned wrong data: %+v", recs)
	}
}

// testReshard appends from several goroutines while the storage is split,
// split again and merged, then checks every record is read exactly once,
// per key in order, with dense offsets, before and after a reopen and after
// more appends: readers drain parents before children.
func testReshard(t *testing.T, newLog New, reshard func(*testing.T, stream.Log, int)) {
	const (
		shards    = 2
		appenders = 4
		batches   = 30
		perBatch  = 10
	)
	o, l := open(t, newLog, shards)
	ctx := ctxT(t)
	var (
		mu   sync.Mutex
		want = map[string]int{}
		done int // batches appended, all appenders
		wg   sync.WaitGroup
	)
	cond := sync.NewCond(&mu)
	errs := make(chan error, appenders)
	for g := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := map[string]int{}
			for range batches {
				var entries []stream.Entry
				for i := range perBatch {
					k := fmt.Sprintf("g%d-k%d", g, i%7)
					entries = append(entries, entry(k, fmt.Sprint(seq[k])))
					seq[k]++
				}
				if err := l.Append(ctx, entries); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				done++
				cond.Broadcast()
				mu.Unlock()
			}
			mu.Lock()
			for k, n := range seq {
				want[k] = n
			}
			mu.Unlock()
		}()
	}
	// Each step once a further quarter of the batches is in, so appends
	// run before, between and after the steps.
	for step := range 3 {
		mu.Lock()
		for done < (step+1)*appenders*batches/4 && len(errs) == 0 {
			cond.Wait()
		}
		mu.Unlock()
		if len(errs) > 0 {
			break
		}
		reshard(t, l, step)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Append: %v", err)
	}
	readShards := func(l stream.Log) []stream.Record {
		var all []stream.Record
		for sh := range shards {
			all = append(all, readAll(t, l, sh, 0)...)
		}
		return all
	}
	all := readShards(l)
	if len(all) != appenders*batches*perBatch {
		t.Fatalf("read %d records, appended %d", len(all), appenders*batches*perBatch)
	}
	checkPerKey(t, all, want)
	// Reading again from the middle of each shard gives the same records.
	for sh := range shards {
		end, _ := l.End(ctx, sh)
		mid := readAll(t, l, sh, end/2)
		full := readAll(t, l, sh, 0)[end/2:]
		for i := range mid {
			if !bytes.Equal(mid[i].Data, full[i].Data) || !bytes.Equal(mid[i].PartitionKey, full[i].PartitionKey) {
				t.Fatalf("shard %d offset %d: read from the middle gives %q, from 0 %q", sh, mid[i].Offset, mid[i].Data, full[i].Data)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	l2 := o(t)
	t.Cleanup(func() { l2.Close() })
	checkPerKey(t, readShards(l2), want)
	var more []stream.Entry
	for i := range 50 {
		k := fmt.Sprintf("g%d-k%d", i%appenders, i%7)
		more = append(more, entry(k, fmt.Sprint(want[k])))
		want[k]++
	}
	mustAppend(t, l2, more...)
	checkPerKey(t, readShards(l2), want)
}

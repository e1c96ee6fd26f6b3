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

func openLimited(t *testing.T, opts Options) *Log {
	t.Helper()
	opts.Logger = quietLogger()
	opts.Durability = DurabilityNone
	l, err := Open(filepath.Join(t.TempDir(), "log"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestLimitsThrottleWrites: with 1,000 records/s, 2,500 records cannot be
// appended in much under 1.5 s (one second of burst, then the rate); the
// appends wait rather than fail, and count as throttled.
func TestLimitsThrottleWrites(t *testing.T) {
	l := openLimited(t, Options{Limits: Limits{WriteRecordsPerSec: 1000}})
	ctx := context.Background()
	start := time.Now()
	for b := range 125 {
		var es []stream.Entry
		for i := range 20 {
			es = append(es, stream.Entry{PartitionKey: []byte("k"), Data: []byte(fmt.Sprint(b*20 + i))})
		}
		if err := l.Append(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	if el := time.Since(start); el < 1400*time.Millisecond {
		t.Fatalf("2,500 records at 1,000/s took %v, want about 1.5 s", el)
	}
	st := l.Stats()[0]
	if st.IncomingRecords != 2500 || st.ThrottledWrites == 0 || st.End != 2500 {
		t.Fatalf("stats %+v: want 2,500 incoming, some throttled, End 2,500", st)
	}
	// A done context ends the wait.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Append(cctx, []stream.Entry{{PartitionKey: []byte("k")}}); err == nil {
		t.Fatal("Append with a done context succeeded")
	}
}

func TestLimitsThrottleReads(t *testing.T) {
	l := openLimited(t, Options{Limits: Limits{ReadBytesPerSec: 100_000}, MaxReadBytes: 20_000})
	ctx := context.Background()
	data := make([]byte, 1000)
	var es []stream.Entry
	for range 250 {
		es = append(es, stream.Entry{PartitionKey: []byte("k"), Data: data})
	}
	if err := l.Append(ctx, es); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for next := int64(0); next < 250; {
		recs, err := l.Read(ctx, 0, next, 1000)
		if err != nil {
			t.Fatal(err)
		}
		next += int64(len(recs))
	}
	if el := time.Since(start); el < 1200*time.Millisecond {
		t.Fatalf("250 KB at 100 KB/s read in %v, want about 1.5 s", el)
	}
	if st := l.Stats()[0]; st.ThrottledReads == 0 || st.OutgoingRecords != 250 {
		t.Fatalf("stats %+v: want throttled reads and 250 records out", st)
	}
}

// TestStatsIteratorAge uses a manual clock: a record appended and not read
// for 5 s is 5,000 ms behind; once read the reader is caught up.
func TestStatsIteratorAge(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := openLimited(t, Options{Shards: 2, Now: clock})
	ctx := context.Background()
	if err := l.Append(ctx, []stream.Entry{{PartitionKey: []byte("a"), Data: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	sh := stream.ShardFor([]byte("a"), 2)
	mu.Lock()
	now = now.Add(5 * time.Second)
	mu.Unlock()
	if age := l.Stats()[sh].IteratorAgeMillis; age != 5000 {
		t.Fatalf("iterator age %d ms, want 5000", age)
	}
	if age := l.Stats()[1-sh].IteratorAgeMillis; age != 0 {
		t.Fatalf("empty shard's iterator age %d ms, want 0", age)
	}
	if _, err := l.Read(ctx, sh, 0, 10); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()[sh]
	if st.IteratorAgeMillis != 0 || st.OutgoingRecords != 1 || st.IncomingBytes != 2 {
		t.Fatalf("after reading: %+v, want age 0, 1 record out, 2 bytes in", st)
	}
}

func TestLimitsValidate(t *testing.T) {
	if _, err := Open(t.TempDir(), Options{Limits: Limits{WriteBytesPerSec: -1}}); err == nil {
		t.Fatal("negative limit accepted")
	}
}

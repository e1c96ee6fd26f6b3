package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/silt-dev/silt/internal/stream"
	"github.com/silt-dev/silt/internal/stream/locallog"
)

// TestStreamReshard splits and merges an embedded stream through the CLI
// and checks the log still reads every record in order.
func TestStreamReshard(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "stream")
	l, err := locallog.Open(dir, locallog.Options{Shards: 2, Durability: locallog.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	appendN := func(l *locallog.Log, from, n int) {
		var es []stream.Entry
		for i := from; i < from+n; i++ {
			es = append(es, stream.Entry{PartitionKey: []byte("k"), Data: []byte(fmt.Sprint(i))})
		}
		if err := l.Append(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	appendN(l, 0, 10)
	if code, _, errOut := run(t, "stream", "split", "1", "--dir", dir); code == 0 || !strings.Contains(errOut, "stop it first") {
		t.Fatalf("split while the log is open: exit %d, %q; want a refusal naming the lock", code, errOut)
	}
	l.Close()
	sh := stream.ShardFor([]byte("k"), 2)
	if code, out, errOut := run(t, "stream", "split", fmt.Sprint(sh), "--dir", dir); code != 0 || !strings.Contains(out, "into 2 and 3") {
		t.Fatalf("split: exit %d, %q %q", code, out, errOut)
	}
	if code, _, errOut := run(t, "stream", "merge", "2", fmt.Sprint(1-sh), "--dir", dir); code == 0 || !strings.Contains(errOut, "logical shards") {
		t.Fatalf("merge across logical shards: exit %d, %q; want a refusal", code, errOut)
	}
	l, err = locallog.Open(dir, locallog.Options{Durability: locallog.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	appendN(l, 10, 10)
	l.Close()
	if code, out, errOut := run(t, "stream", "merge", "2", "3", "--dir", dir); code != 0 || !strings.Contains(out, "into 4") {
		t.Fatalf("merge: exit %d, %q %q", code, out, errOut)
	}
	code, out, _ := run(t, "stream", "shards", "--dir", dir)
	if code != 0 || strings.Count(out, "closed") != 3 || strings.Count(out, "open") != 2 {
		t.Fatalf("shards: exit %d\n%s", code, out)
	}
	if code, out, errOut := run(t, "stream", "split", "--all", "--dir", dir); code != 0 || strings.Count(out, "split physical shard") != 2 {
		t.Fatalf("split --all: exit %d, %q %q", code, out, errOut)
	}
	if code, _, _ := run(t, "stream", "split", "--all", "4", "--dir", dir); code != 2 {
		t.Fatalf("split --all with a shard: exit %d, want 2", code)
	}
	l, err = locallog.Open(dir, locallog.Options{Durability: locallog.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(l, 20, 10)
	var got []string
	for off := int64(0); ; {
		recs, err := l.Read(ctx, sh, off, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			got = append(got, string(r.Data))
			off++
		}
	}
	for i, g := range got {
		if g != fmt.Sprint(i) {
			t.Fatalf("record %d is %s: %v", i, g, got)
		}
	}
	if len(got) != 30 {
		t.Fatalf("read %d records, want 30", len(got))
	}
}

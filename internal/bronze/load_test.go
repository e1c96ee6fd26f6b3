package bronze

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
)

// TestLoaderChunksOnce: chunks written at once by several goroutines into a
// table none of them found (each races to create it) land once each, with
// their txn identity; a chunk begun again is reported done, and a new plan
// generation of the same chunk is not.
func TestLoaderChunksOnce(t *testing.T) {
	ctx := context.Background()
	for round := 0; round < 5; round++ {
		st, err := local.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		rel := &change.Relation{Table: change.TableID{Schema: "s", Name: "t"}, Columns: []change.Column{
			{Name: "id", TypeOID: 20, Key: true}, {Name: "v", TypeOID: 25}}}
		l := NewLoader(st, Options{})
		commit := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
		var wg sync.WaitGroup
		for chunk := 0; chunk < 4; chunk++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, done, err := l.Begin(ctx, rel, fmt.Sprintf("silt-snap-%d", chunk), 1)
				if err != nil || done {
					t.Errorf("begin chunk %d: done %v, %v", chunk, done, err)
					return
				}
				defer c.Release()
				rows := make([]*change.Change, 10)
				for i := range rows {
					rows[i] = &change.Change{Rel: rel, Op: change.OpLoad, LSN: 99, Pos: uint32(chunk), CommitTime: commit,
						New: []change.Datum{{Kind: change.Text, Data: []byte(fmt.Sprint(chunk*10 + i))}, {Kind: change.Text, Data: []byte("x")}}}
				}
				if err := c.Append(rows); err != nil {
					t.Error(err)
					return
				}
				if _, err := c.Commit(ctx); err != nil {
					t.Errorf("commit chunk %d: %v", chunk, err)
				}
			}()
		}
		wg.Wait()
		snap, err := delta.NewTable(st, TablePath(rel.Table)).Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Version != 4 || len(snap.Files()) != 4 {
			t.Fatalf("version %d with %d files, want 4 and 4", snap.Version, len(snap.Files()))
		}
		for chunk := 0; chunk < 4; chunk++ {
			if v, ok := snap.TxnVersion(fmt.Sprintf("silt-snap-%d", chunk)); !ok || v != 1 {
				t.Fatalf("chunk %d: txn %d %v", chunk, v, ok)
			}
		}
		if _, done, err := l.Begin(ctx, rel, "silt-snap-2", 1); err != nil || !done {
			t.Fatalf("chunk 2 again: done %v, %v", done, err)
		}
		c, done, err := l.Begin(ctx, rel, "silt-snap-2", 2)
		if err != nil || done {
			t.Fatalf("chunk 2 of plan 2: done %v, %v", done, err)
		}
		c.Release()
	}
}

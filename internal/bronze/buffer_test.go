package bronze_test

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/silt-dev/silt/internal/bronze"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/testutil/lakeh"
)

var tid = change.TableID{Schema: "public", Name: "items"}

func relWith(cols ...string) *change.Relation {
	r := &change.Relation{ID: 7, Table: tid, Columns: []change.Column{{Name: "id", TypeOID: 23, TypeMod: -1, Key: true}}}
	for _, c := range cols {
		r.Columns = append(r.Columns, change.Column{Name: c, TypeOID: 25, TypeMod: -1})
	}
	return r
}

func ins(rel *change.Relation, vals ...string) *change.Change {
	c := &change.Change{Rel: rel, Op: change.OpInsert}
	for _, v := range vals {
		c.New = append(c.New, lakeh.Text(v))
	}
	return c
}

// bronzeRows reads the Bronze table as "id,v,w" strings (NULL for null).
func bronzeRows(t *testing.T, h *lakeh.H) ([]string, *delta.Snapshot) {
	t.Helper()
	tb := delta.NewTable(h.Store, bronze.TablePath(tid))
	snap, err := tb.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	err = datafile.Scan(context.Background(), h.Store, datafile.Info(tb, snap), snap.Files(), func(r arrow.RecordBatch) error {
		ix := map[string]int{}
		for i, f := range r.Schema().Fields() {
			ix[f.Name] = i
		}
		for row := 0; row < int(r.NumRows()); row++ {
			s := ""
			for k, n := range []string{"id", "v", "w"} {
				if k > 0 {
					s += ","
				}
				if c := r.Column(ix[n]); c.IsNull(row) {
					s += "NULL"
				} else {
					s += c.ValueStr(row)
				}
			}
			out = append(out, s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out, snap
}

// TestBufferNewColumnMidFlush: a column added between changes of one flush
// closes the files of the old schema; the one commit holds both files, the
// table schema has the column, and the older rows read it as null.
func TestBufferNewColumnMidFlush(t *testing.T) {
	h := lakeh.New(t)
	a, b := relWith("v"), relWith("v", "w")
	h.Txn(ins(a, "1", "x"), ins(a, "2", "y"))
	h.Txn(ins(b, "3", "z", "new"))
	h.Bronze()
	rows, snap := bronzeRows(t, h)
	if want := "[1,x,NULL 2,y,NULL 3,z,new]"; fmt.Sprint(rows) != want {
		t.Fatalf("bronze rows %v, want %s", rows, want)
	}
	if snap.Version != 1 || len(snap.Files()) < 2 || snap.Schema().Field("w") == nil {
		t.Fatalf("version %d, %d files, schema %s: want one data commit (version 1) of at least two files with column w",
			snap.Version, len(snap.Files()), snap.Schema().SchemaString())
	}
}

// TestBufferMemoryBounded: one flush of 200,000 changes (flush_bytes far
// above them) holds about one Arrow chunk and the encoded pages of an open
// file, not the decoded changes: the live heap, sampled after forced
// collections while the writer runs, stays under 48 MiB above the start
// (decoded changes alone would take over 60 MiB).
func TestBufferMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200,000 rows")
	}
	const n = 200_000
	h := lakeh.New(t)
	rel := relWith("v", "w")
	for start := 0; start < n; start += 10_000 {
		var cs []*change.Change
		for i := start; i < start+10_000; i++ {
			cs = append(cs, ins(rel, fmt.Sprint(i), fmt.Sprintf("value number %d", i), "some other text"))
		}
		h.Txn(cs...)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.GC()
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	commits := 0
	w := bronze.NewWriter(h.Store, h.Log, bronze.Options{FlushInterval: time.Hour, FlushBytes: 1 << 40,
		OnCommit: func(change.TableID, int64, int) { commits++ }})
	// The writer flushes what it buffered when ctx ends: cancel once it has
	// read everything (the stream's ends), then Run's final flush commits.
	go func() {
		for ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			if w.Consumed() >= n {
				cancel()
			}
		}
	}()
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-sampled
	grew := int64(peak.Load()) - int64(base)
	t.Logf("%d changes in %d commit(s): live heap peak %.1f MiB above the start", n, commits, float64(grew)/(1<<20))
	if commits != 1 {
		t.Fatalf("%d commits, want 1 (one flush)", commits)
	}
	if rows, _ := bronzeRows(t, h); len(rows) != n {
		t.Fatalf("bronze holds %d rows, want %d", len(rows), n)
	}
	if grew > 48<<20 {
		t.Errorf("live heap grew %.1f MiB while buffering one flush, want < 48 MiB", float64(grew)/(1<<20))
	}
}

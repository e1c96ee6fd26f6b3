package silver_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/silt-dev/silt/internal/bronze"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/silver"
)

// TestSilverMaxRowsPerBatch: a micro-batch stops before the Bronze commit
// that would take it past MaxRowsPerBatch rows (bounded memory for a large
// backlog), except that one commit larger than the bound is merged whole;
// every row still arrives.
func TestSilverMaxRowsPerBatch(t *testing.T) {
	h := newHarness(t)
	id := 0
	commit := func(n int) { insertCommit(h, &id, n) }
	for range 5 {
		commit(3)
	}
	commit(10) // larger than the bound on its own
	p := silver.New(h.store, silver.Options{MaxRowsPerBatch: 7})
	got := batches(t, p)
	// Version 0 creates the table; versions 1-5 hold 3 rows each, 6 holds 10.
	want := "[v0-2:6 v3-4:6 v5-5:3 v6-6:10]"
	if fmt.Sprint(got) != want {
		t.Fatalf("batches %v, want %s", got, want)
	}
	if rows := h.rows(); len(rows) != 25 {
		t.Fatalf("silver has %d rows, want 25", len(rows))
	}
	// The default bound merges the same backlog in one batch.
	h2 := newHarness(t)
	h = h2
	id = 0
	for range 5 {
		commit(3)
	}
	if n := h.silver(); n != 1 {
		t.Fatalf("default options: %d batches, want 1", n)
	}
}

// TestSilverMaxBytesPerBatch: the same rule by the Bronze files' bytes (a
// wide table reaches it long before the row bound).
func TestSilverMaxBytesPerBatch(t *testing.T) {
	h := newHarness(t)
	id := 0
	commit := func(n int) { insertCommit(h, &id, n) }
	for range 5 {
		commit(3)
	}
	commit(30) // merged alone
	// Sizes of the 3-row commits (versions 1-5): a bound of twice the
	// largest holds any two of them, never three.
	bt := delta.NewTable(h.store, bronze.TablePath(rel.Table))
	var largest, smallest int64
	for v := int64(1); v <= 5; v++ {
		acts, err := bt.ReadCommit(context.Background(), v)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, a := range acts {
			if a.Add != nil {
				n += a.Add.Size
			}
		}
		largest = max(largest, n)
		if smallest == 0 || n < smallest {
			smallest = n
		}
	}
	if 3*smallest <= 2*largest {
		t.Fatalf("3-row commits of %d to %d bytes: too different for this test", smallest, largest)
	}
	p := silver.New(h.store, silver.Options{MaxBytesPerBatch: 2 * largest})
	got := batches(t, p)
	want := "[v0-2:6 v3-4:6 v5-5:3 v6-6:30]"
	if fmt.Sprint(got) != want {
		t.Fatalf("batches %v, want %s", got, want)
	}
	if rows := h.rows(); len(rows) != 45 {
		t.Fatalf("silver has %d rows, want 45", len(rows))
	}
}

// insertCommit makes one Bronze commit of n inserts, ids counting on
// from *id.
func insertCommit(h *harness, id *int, n int) {
	var cs []*change.Change
	for i := 0; i < n; i++ {
		*id++
		cs = append(cs, &change.Change{Op: change.OpInsert, New: []change.Datum{txt(fmt.Sprint(*id)), txt("v"), null}})
	}
	h.txn(cs...)
	h.bronze()
}

// batches runs p's micro-batches of rel.Table until there is nothing left
// and returns them as "vFROM-TO:CHANGES".
func batches(t *testing.T, p *silver.Processor) []string {
	t.Helper()
	var got []string
	for {
		res, err := p.Process(context.Background(), rel.Table)
		if err != nil {
			t.Fatal(err)
		}
		if res.ToVersion < 0 {
			return got
		}
		got = append(got, fmt.Sprintf("v%d-%d:%d", res.FromVersion, res.ToVersion, res.Changes))
	}
}

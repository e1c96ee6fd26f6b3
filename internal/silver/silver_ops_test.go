package silver_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/silver"
)

// insertRange appends one transaction inserting ids lo..hi.
func (h *harness) insertRange(lo, hi int) {
	var cs []*change.Change
	for id := lo; id <= hi; id++ {
		cs = append(cs, &change.Change{Op: change.OpInsert, New: []change.Datum{txt(fmt.Sprint(id)), txt("v"), null}})
	}
	h.txn(cs...)
}

func (h *harness) process(p *silver.Processor) silver.Result {
	h.t.Helper()
	res, err := p.Process(context.Background(), rel.Table)
	if err != nil {
		h.t.Fatal(err)
	}
	return res
}

func TestSilverMergeReadsOnlyFilesThatCanHoldChangedKeys(t *testing.T) {
	h := newHarness(t)
	p := silver.New(h.store, silver.Options{OptimizeEvery: -1})
	for b := 0; b < 4; b++ { // four batches, four Silver files of disjoint id ranges
		h.insertRange(b*100+1, b*100+100)
		h.bronze()
		if res := h.process(p); res.Upserts != 100 {
			t.Fatalf("batch %d: %+v", b, res)
		}
	}
	h.txn(&change.Change{Op: change.OpUpdate, New: []change.Datum{txt("150"), txt("changed"), unchanged}},
		&change.Change{Op: change.OpDelete, Old: []change.Datum{txt("399"), {Kind: change.Absent}, {Kind: change.Absent}}})
	h.bronze()
	res := h.process(p)
	if res.FilesScanned != 2 || res.FilesRewritten != 2 || res.Upserts != 1 || res.Deletes != 1 {
		t.Fatalf("%+v: want 2 files scanned and rewritten", res)
	}
	rows := h.rows()
	if len(rows) != 399 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		if r == "150,changed,NULL" {
			return
		}
	}
	t.Fatal("row 150 not updated")
}

func TestSilverAutomaticOptimize(t *testing.T) {
	h := newHarness(t)
	p := silver.New(h.store, silver.Options{OptimizeEvery: 3})
	var optimized int
	for b := 0; b < 7; b++ {
		h.insertRange(b*10+1, b*10+10)
		h.txn(&change.Change{Op: change.OpUpdate, New: []change.Datum{txt(fmt.Sprint(b*10 + 1)), txt("u"), unchanged}})
		h.bronze()
		res := h.process(p)
		if res.OptimizeErr != nil {
			t.Fatal(res.OptimizeErr)
		}
		if res.Optimize != nil && res.Optimize.Version >= 0 {
			optimized++
		}
	}
	if optimized == 0 {
		t.Fatal("no automatic OPTIMIZE ran")
	}
	tb := delta.NewTable(h.store, silver.TablePath(rel.Table))
	hist, err := tb.History(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	ops := map[any]int{}
	for _, e := range hist {
		ops[e.CommitInfo["operation"]]++
	}
	if ops["OPTIMIZE"] != optimized {
		t.Fatalf("history operations %v, want %d OPTIMIZE", ops, optimized)
	}
	snap, _ := tb.Snapshot(context.Background())
	if n := len(snap.Files()); n > 3 {
		t.Fatalf("%d files after automatic OPTIMIZE", n)
	}
	if rows := h.rows(); len(rows) != 70 {
		t.Fatalf("%d rows", len(rows))
	}
	// Progress survived OPTIMIZE commits: nothing left to merge.
	if res := h.process(p); res.ToVersion != -1 {
		t.Fatalf("%+v", res)
	}
}

package silver_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/silver"
)

// TestSilverOptimizeStops: once Options.Stop is closed, the automatic
// OPTIMIZE does not run (even though batches run on a context that is never
// cancelled), while merges still commit.
func TestSilverOptimizeStops(t *testing.T) {
	h := newHarness(t)
	stop := make(chan struct{})
	p := silver.New(h.store, silver.Options{OptimizeEvery: 1, Stop: stop})
	h.insertRange(1, 10)
	h.bronze()
	if res := h.process(p); res.OptimizeErr != nil {
		t.Fatal(res.OptimizeErr)
	}
	close(stop)
	for b := 1; b < 4; b++ {
		h.insertRange(b*10+1, b*10+10)
		h.txn(&change.Change{Op: change.OpUpdate, New: []change.Datum{txt(fmt.Sprint(b*10 + 1)), txt("u"), unchanged}})
		h.bronze()
		res, err := p.Process(context.WithoutCancel(context.Background()), rel.Table)
		if err != nil {
			t.Fatal(err)
		}
		if res.Optimize != nil || !errors.Is(res.OptimizeErr, context.Canceled) {
			t.Fatalf("batch %d after stop: optimize %+v, %v", b, res.Optimize, res.OptimizeErr)
		}
	}
	if rows := h.rows(); len(rows) != 40 {
		t.Fatalf("%d rows", len(rows))
	}
}

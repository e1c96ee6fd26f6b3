package silver_test

import (
	"context"
	"testing"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/silver"
)

// load appends snapshot rows (OpLoad) at LSN lsn, position pos.
func (h *harness) load(lsn change.LSN, pos uint32, rows ...[]change.Datum) {
	h.loadRel(rel, lsn, pos, rows...)
}

// TestSilverLoadPassBeforeChanges: logged changes that reached Bronze
// before the snapshot rows they follow (in earlier Bronze versions, merged
// one version per batch) still apply on top of them: the load pass merges
// snapshot rows first, and Process skips them.
func TestSilverLoadPassBeforeChanges(t *testing.T) {
	h := newHarness(t)
	// Logged changes after the snapshot's consistent point (LSN > 100)...
	h.txn(&change.Change{Op: change.OpUpdate, New: []change.Datum{txt("1"), txt("a2"), unchanged}})
	h.txn(&change.Change{Op: change.OpDelete, Old: []change.Datum{txt("2"), {Kind: change.Absent}, {Kind: change.Absent}}})
	h.bronze()
	// ...then the snapshot rows (LSN 99: before every logged change), in a
	// later Bronze version, one of them twice (a redone chunk).
	h.load(99, 0, []change.Datum{txt("1"), txt("a"), txt("BIG1")}, []change.Datum{txt("2"), txt("b"), null})
	h.load(99, 1, []change.Datum{txt("3"), txt("c"), null}, []change.Datum{txt("1"), txt("a"), txt("BIG1")})
	h.bronze()
	h.txn(&change.Change{Op: change.OpUpdate, New: []change.Datum{txt("3"), txt("c2"), null}})
	h.bronze()

	p := silver.New(h.store, silver.Options{MaxVersionsPerBatch: 1})
	ctx := context.Background()
	for {
		res, err := p.ProcessLoad(ctx, rel.Table)
		if err != nil {
			t.Fatal(err)
		}
		if res.ToVersion < 0 {
			break
		}
	}
	expect(t, h.rows(), "1,a,BIG1", "2,b,NULL", "3,c,NULL")
	for {
		res, err := p.Process(ctx, rel.Table)
		if err != nil {
			t.Fatal(err)
		}
		if res.ToVersion < 0 {
			break
		}
	}
	expect(t, h.rows(), "1,a2,BIG1", "3,c2,NULL")
	// Both passes are idempotent.
	if res, err := p.ProcessLoad(ctx, rel.Table); err != nil || res.ToVersion >= 0 {
		t.Fatalf("load pass again: %+v %v", res, err)
	}
	expect(t, h.rows(), "1,a2,BIG1", "3,c2,NULL")
}

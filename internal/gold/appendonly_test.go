package gold_test

import (
	"context"
	"strings"
	"testing"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/gold"
	"github.com/silt-dev/silt/internal/silver"
	"github.com/silt-dev/silt/internal/testutil/lakeh"
)

// TestGoldRefusesAppendOnlySilver: an append-only Silver table (a keyless
// table's change log) holds changes, not rows; Gold says so instead of
// aggregating them.
func TestGoldRefusesAppendOnlySilver(t *testing.T) {
	h := lakeh.New(t)
	keyless := &change.Relation{ID: 2, Table: readings.Table, Columns: []change.Column{
		{Name: "tag_id", TypeOID: 23, TypeMod: -1},
		{Name: "ts", TypeOID: 1184, TypeMod: -1},
		{Name: "value", TypeOID: 701, TypeMod: -1},
	}}
	c := ins(1, "2026-01-01 00:00:10+00", 1)
	c.Rel = keyless
	h.Txn(c)
	h.Bronze()
	h.SilverWith(readings.Table, silver.Options{Table: func(change.TableID) silver.TableOptions { return silver.TableOptions{KeylessAppend: true} }})
	_, err := gold.Process(context.Background(), h.Store, spec)
	if err == nil || !strings.Contains(err.Error(), "append-only change log") || !strings.Contains(err.Error(), "public.readings") {
		t.Fatalf("err = %v, want the append-only refusal", err)
	}
}

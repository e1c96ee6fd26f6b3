package silver_test

import (
	"context"
	"testing"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/silver"
	"github.com/silt-dev/silt/internal/testutil/lakeh"
)

func ins(id, v string) *change.Change {
	return &change.Change{Rel: rel, Op: change.OpInsert, New: []change.Datum{lakeh.Text(id), lakeh.Text(v), lakeh.Null}}
}

func upd(id, v string) *change.Change {
	c := ins(id, v)
	c.Op = change.OpUpdate
	return c
}

func deleteKey(id string) *change.Change {
	return &change.Change{Rel: rel, Op: change.OpDelete, Old: []change.Datum{lakeh.Text(id), {Kind: change.Absent}, {Kind: change.Absent}}}
}

func silverRows(t *testing.T, h *lakeh.H) []string {
	return (&harness{H: h, t: t, store: h.Store}).rows()
}

// TestReplayedBronzeCommitsChangeNothing: the same changes delivered twice
// (a second Bronze commit with the same LSNs and positions) leave Silver as it was.
func TestReplayedBronzeCommitsChangeNothing(t *testing.T) {
	h := lakeh.New(t)
	h.TxnAt(100, ins("1", "a"), ins("2", "b"))
	h.TxnAt(110, upd("1", "a2"), deleteKey("2"))
	h.Bronze()
	h.Silver(rel.Table)
	expect(t, silverRows(t, h), "1,a2,NULL")
	// Replay both transactions.
	h.TxnAt(100, ins("1", "a"), ins("2", "b"))
	h.TxnAt(110, upd("1", "a2"), deleteKey("2"))
	h.Bronze()
	h.Silver(rel.Table)
	expect(t, silverRows(t, h), "1,a2,NULL")
}

// TestOutOfOrderChangesOfAKey: a key's newer change arrives in an earlier
// batch than its older one; the older one must not win.
func TestOutOfOrderChangesOfAKey(t *testing.T) {
	h := lakeh.New(t)
	h.TxnAt(300, upd("1", "newest"))
	h.Bronze()
	h.Silver(rel.Table)
	h.TxnAt(100, ins("1", "oldest"))
	h.TxnAt(200, upd("1", "middle"))
	h.Bronze()
	h.Silver(rel.Table)
	expect(t, silverRows(t, h), "1,newest,NULL")
	// Within one batch, out of order too.
	h.TxnAt(600, upd("2", "late-but-newest"))
	h.TxnAt(500, ins("2", "early"))
	h.Bronze()
	h.Silver(rel.Table)
	expect(t, silverRows(t, h), "1,newest,NULL", "2,late-but-newest,NULL")
}

// TestOldUpdateAfterDeleteDoesNotResurrect: an update older than the key's
// delete, delivered in a later batch (even after a restart of the
// processor), is dropped; a newer re-insert is applied.
func TestOldUpdateAfterDeleteDoesNotResurrect(t *testing.T) {
	h := lakeh.New(t)
	h.TxnAt(100, ins("1", "a"), ins("2", "b"))
	h.TxnAt(300, deleteKey("1"))
	h.Bronze()
	h.Silver(rel.Table) // a fresh processor each call: tombstones come from disk
	expect(t, silverRows(t, h), "2,b,NULL")

	h.TxnAt(200, upd("1", "stale"))
	h.Bronze()
	h.Silver(rel.Table)
	expect(t, silverRows(t, h), "2,b,NULL")

	h.TxnAt(400, ins("1", "reborn"))
	h.Bronze()
	h.Silver(rel.Table)
	expect(t, silverRows(t, h), "1,reborn,NULL", "2,b,NULL")

	// The tombstone table exists and is a readable Delta table.
	if _, err := silverTombstones(h); err != nil {
		t.Fatal(err)
	}
}

func silverTombstones(h *lakeh.H) (int64, error) {
	return deltaVersion(h, silver.TombstonePath(rel.Table))
}

func deltaVersion(h *lakeh.H, root string) (int64, error) {
	return deltaTable(h, root).LatestVersion(context.Background())
}

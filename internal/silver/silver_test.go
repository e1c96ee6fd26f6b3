package silver_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/bronze"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/silver"
	"github.com/silt-dev/silt/internal/testutil/lakeh"
)

var rel = &change.Relation{ID: 1, Table: change.TableID{Schema: "public", Name: "t"}, Columns: []change.Column{
	{Name: "id", TypeOID: 23, TypeMod: -1, Key: true},
	{Name: "v", TypeOID: 25, TypeMod: -1},
	{Name: "big", TypeOID: 25, TypeMod: -1},
}}

func txt(s string) change.Datum { return change.Datum{Kind: change.Text, Data: []byte(s)} }

var null = change.Datum{Kind: change.Null}
var unchanged = change.Datum{Kind: change.Unchanged}

// harness adapts lakeh.H to this file's tests (changes default to rel).
type harness struct {
	*lakeh.H
	t     *testing.T
	store *local.Store
}

func newHarness(t *testing.T) *harness {
	h := lakeh.New(t)
	return &harness{H: h, t: t, store: h.Store}
}

// txn appends one transaction of changes.
func (h *harness) txn(cs ...*change.Change) {
	for _, c := range cs {
		if c.Rel == nil {
			c.Rel = rel
		}
	}
	h.H.Txn(cs...)
}

// bronze runs the Bronze writer until it has consumed the stream.
func (h *harness) bronze() { h.H.Bronze() }

// silver runs micro-batches until caught up and returns how many merged something.
func (h *harness) silver() int { return h.H.Silver(rel.Table) }

func (h *harness) rows() []string {
	tb := delta.NewTable(h.store, silver.TablePath(rel.Table))
	snap, err := tb.Snapshot(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	ti := datafile.Info(tb, snap)
	var out []string
	err = datafile.Scan(context.Background(), h.store, ti, snap.Files(), func(r arrow.RecordBatch) error {
		for i := 0; i < int(r.NumRows()); i++ {
			var parts []string
			for c := 0; c < 3; c++ {
				if r.Column(c).IsNull(i) {
					parts = append(parts, "NULL")
				} else {
					parts = append(parts, r.Column(c).ValueStr(i))
				}
			}
			out = append(out, strings.Join(parts, ","))
		}
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func expect(t *testing.T, got []string, want ...string) {
	t.Helper()
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("silver rows:\n got  %q\n want %q", got, want)
	}
}

func TestSilverUpsertDeleteToast(t *testing.T) {
	h := newHarness(t)
	h.txn(&change.Change{Op: change.OpInsert, New: []change.Datum{txt("1"), txt("a"), txt("BIG1")}},
		&change.Change{Op: change.OpInsert, New: []change.Datum{txt("2"), txt("b"), null}},
		&change.Change{Op: change.OpInsert, New: []change.Datum{txt("3"), txt("c"), null}})
	h.bronze()
	h.silver()
	expect(t, h.rows(), "1,a,BIG1", "2,b,NULL", "3,c,NULL")

	// Update with an unchanged TOAST value keeps the old value; delete; re-insert in one batch.
	h.txn(&change.Change{Op: change.OpUpdate, New: []change.Datum{txt("1"), txt("a2"), unchanged}},
		&change.Change{Op: change.OpDelete, Old: []change.Datum{txt("2"), {Kind: change.Absent}, {Kind: change.Absent}}})
	h.txn(&change.Change{Op: change.OpUpdate, New: []change.Datum{txt("1"), txt("a3"), unchanged}},
		&change.Change{Op: change.OpDelete, Old: []change.Datum{txt("3"), {Kind: change.Absent}, {Kind: change.Absent}}},
		&change.Change{Op: change.OpInsert, New: []change.Datum{txt("3"), txt("c2"), null}})
	h.bronze()
	h.silver()
	expect(t, h.rows(), "1,a3,BIG1", "3,c2,NULL")

	// Key change: old key deleted, new key inserted.
	h.txn(&change.Change{Op: change.OpUpdate, Old: []change.Datum{txt("3"), {Kind: change.Absent}, {Kind: change.Absent}}, New: []change.Datum{txt("4"), txt("c2"), null}})
	h.bronze()
	h.silver()
	expect(t, h.rows(), "1,a3,BIG1", "4,c2,NULL")

	// Truncate then insert.
	h.txn(&change.Change{Op: change.OpTruncate})
	h.txn(&change.Change{Op: change.OpInsert, New: []change.Datum{txt("9"), txt("z"), null}})
	h.bronze()
	h.silver()
	expect(t, h.rows(), "9,z,NULL")
}

func TestSilverReplayIsNoop(t *testing.T) {
	h := newHarness(t)
	h.txn(&change.Change{Op: change.OpInsert, New: []change.Datum{txt("1"), txt("a"), null}})
	h.txn(&change.Change{Op: change.OpUpdate, New: []change.Datum{txt("1"), txt("b"), null}})
	h.bronze()
	h.silver()
	expect(t, h.rows(), "1,b,NULL")
	// Run Bronze again from scratch position: the per-table txn versions make it skip everything.
	bt := delta.NewTable(h.store, bronze.TablePath(rel.Table))
	before, _ := bt.LatestVersion(context.Background())
	h.bronze()
	after, _ := bt.LatestVersion(context.Background())
	if before != after {
		// a progress-only flush must not add Bronze data commits
		t.Fatalf("bronze version moved from %d to %d with no new records", before, after)
	}
	if n := h.silver(); n != 0 {
		t.Fatalf("silver merged %d batches again", n)
	}
	expect(t, h.rows(), "1,b,NULL")
}

func deltaTable(h *lakeh.H, root string) *delta.Table { return delta.NewTable(h.Store, root) }

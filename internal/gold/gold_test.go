package gold_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/gold"
	"github.com/silt-dev/silt/internal/testutil/lakeh"
)

var readings = &change.Relation{ID: 2, Table: change.TableID{Schema: "public", Name: "readings"}, Columns: []change.Column{
	{Name: "tag_id", TypeOID: 23, TypeMod: -1, Key: true},
	{Name: "ts", TypeOID: 1184, TypeMod: -1, Key: true},
	{Name: "value", TypeOID: 701, TypeMod: -1},
}}

func ins(tag int, ts string, v float64) *change.Change {
	return &change.Change{Rel: readings, Op: change.OpInsert, New: []change.Datum{lakeh.Text(fmt.Sprint(tag)), lakeh.Text(ts), lakeh.Text(fmt.Sprint(v))}}
}

func upd(tag int, ts string, v float64) *change.Change {
	c := ins(tag, ts, v)
	c.Op = change.OpUpdate
	return c
}

func del(tag int, ts string) *change.Change {
	return &change.Change{Rel: readings, Op: change.OpDelete, Old: []change.Datum{lakeh.Text(fmt.Sprint(tag)), lakeh.Text(ts), {Kind: change.Absent}}}
}

var spec = gold.Spec{Name: "readings_1m", Source: readings.Table, TimeColumn: "ts", Window: time.Minute, GroupBy: []string{"tag_id"}, Value: "value", Lateness: 5 * time.Minute}

func step(t *testing.T, h *lakeh.H) gold.Result {
	t.Helper()
	h.Bronze()
	h.Silver(readings.Table)
	res, err := gold.Process(context.Background(), h.Store, spec)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// rows renders the Gold table as "tag window_start count min max avg".
func rows(t *testing.T, h *lakeh.H) []string {
	t.Helper()
	tb := delta.NewTable(h.Store, gold.TablePath(spec.Name))
	snap, err := tb.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ti := datafile.Info(tb, snap)
	var out []string
	err = datafile.Scan(context.Background(), h.Store, ti, snap.Files(), func(r arrow.RecordBatch) error {
		for i := 0; i < int(r.NumRows()); i++ {
			var p []string
			for _, c := range []int{0, 1, 3, 4, 5, 7} {
				p = append(p, r.Column(c).ValueStr(i))
			}
			out = append(out, strings.Join(p, " "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func expect(t *testing.T, got []string, want ...string) {
	t.Helper()
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("gold rows:\ngot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestGoldWindowsUpdatesDeletesLateData(t *testing.T) {
	h := lakeh.New(t)
	h.Txn(ins(1, "2026-01-01 00:00:10+00", 10), ins(1, "2026-01-01 00:00:20+00", 20), ins(2, "2026-01-01 00:00:30+00", 5))
	h.Txn(ins(1, "2026-01-01 00:01:05+00", 7))
	step(t, h)
	expect(t, rows(t, h),
		"1 2026-01-01T00:00:00Z 2 10 20 15",
		"1 2026-01-01T00:01:00Z 1 7 7 7",
		"2 2026-01-01T00:00:00Z 1 5 5 5")

	// An update and a delete change the first window; nothing else is touched.
	h.Txn(upd(1, "2026-01-01 00:00:10+00", 30), del(2, "2026-01-01 00:00:30+00"))
	res := step(t, h)
	if res.Windows != 2 {
		t.Fatalf("recomputed %d windows, want 2", res.Windows)
	}
	expect(t, rows(t, h),
		"1 2026-01-01T00:00:00Z 2 20 30 25",
		"1 2026-01-01T00:01:00Z 1 7 7 7")

	// Event time jumps ahead: the watermark moves to 00:10:00 - 5m = 00:05:00.
	h.Txn(ins(1, "2026-01-01 00:10:00+00", 1))
	step(t, h)
	// A late reading for 00:00 (window ended before the watermark) is not applied;
	// one for 00:06 (still open) is.
	h.Txn(ins(1, "2026-01-01 00:00:40+00", 100), ins(1, "2026-01-01 00:06:00+00", 2))
	res = step(t, h)
	if res.Late != 1 {
		t.Fatalf("late = %d, want 1", res.Late)
	}
	expect(t, rows(t, h),
		"1 2026-01-01T00:00:00Z 2 20 30 25",
		"1 2026-01-01T00:01:00Z 1 7 7 7",
		"1 2026-01-01T00:06:00Z 1 2 2 2",
		"1 2026-01-01T00:10:00Z 1 1 1 1")

	// Nothing new: no commit.
	if res, err := gold.Process(context.Background(), h.Store, spec); err != nil || res.ToVersion != -1 {
		t.Fatalf("idle batch: %+v %v", res, err)
	}
}

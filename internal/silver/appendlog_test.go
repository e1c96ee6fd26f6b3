package silver_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/silt-dev/silt/internal/blob/faulty"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/silver"
)

// keylessRel is a table without a key (REPLICA IDENTITY DEFAULT, no
// primary key: no column flagged).
var keylessRel = &change.Relation{ID: 2, Table: change.TableID{Schema: "public", Name: "log"}, Columns: []change.Column{
	{Name: "a", TypeOID: 23, TypeMod: -1},
	{Name: "b", TypeOID: 25, TypeMod: -1},
}}

func logRows(t *testing.T, h *harness, id change.TableID) []string {
	t.Helper()
	ctx := context.Background()
	tbl := delta.NewTable(h.store, silver.TablePath(id))
	snap, err := tbl.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !silver.IsAppendOnly(snap) || snap.Config()["delta.appendOnly"] != "true" {
		t.Fatalf("silver %s config %v: want an append-only change log", id, snap.Config())
	}
	var out []string
	err = datafile.Scan(ctx, h.store, datafile.Info(tbl, snap), snap.Files(), func(rec arrow.RecordBatch) error {
		for row := 0; row < int(rec.NumRows()); row++ {
			var parts []string
			for i, f := range rec.Schema().Fields() {
				if f.Name == silver.ColCommitTS {
					continue
				}
				parts = append(parts, f.Name+"="+rec.Column(i).ValueStr(row))
			}
			out = append(out, strings.Join(parts, " "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out) // file order is not row order
	return out
}

func TestAppendOnlyKeylessTable(t *testing.T) {
	h := newHarness(t)
	id := keylessRel.Table
	h.txn(&change.Change{Op: change.OpInsert, Rel: keylessRel, New: []change.Datum{txt("1"), txt("x")}},
		&change.Change{Op: change.OpInsert, Rel: keylessRel, New: []change.Datum{txt("1"), txt("x")}})
	h.bronze()

	// Default (source.keyless: error): refused, naming the setting.
	_, err := silver.New(h.store, silver.Options{}).Process(context.Background(), id)
	if err == nil || !strings.Contains(err.Error(), "public.log") || !strings.Contains(err.Error(), "source.keyless: append") {
		t.Fatalf("keyless table without append: err = %v", err)
	}

	appendOpts := silver.Options{Table: func(change.TableID) silver.TableOptions { return silver.TableOptions{KeylessAppend: true} }}
	if n := h.SilverWith(id, appendOpts); n != 1 {
		t.Fatalf("%d batches, want 1", n)
	}
	want := []string{
		"a=1 b=x _silt_op=I _silt_lsn=110 _silt_pos=0 _silt_unchanged=(null)",
		"a=1 b=x _silt_op=I _silt_lsn=110 _silt_pos=1 _silt_unchanged=(null)",
	}
	if got := logRows(t, h, id); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("silver log:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Caught up: a new processor (a restart) appends nothing again.
	if n := h.SilverWith(id, appendOpts); n != 0 {
		t.Fatalf("replay merged %d batches", n)
	}
	// A new column and a TRUNCATE; the mode is sticky (options say nothing now).
	wide := &change.Relation{ID: 2, Table: id, Columns: append(append([]change.Column{}, keylessRel.Columns...), change.Column{Name: "c", TypeOID: 25, TypeMod: -1})}
	h.txn(&change.Change{Op: change.OpInsert, Rel: wide, New: []change.Datum{txt("2"), null, txt("new")}},
		&change.Change{Op: change.OpTruncate, Rel: wide})
	h.bronze()
	if n := h.SilverWith(id, silver.Options{}); n != 1 {
		t.Fatalf("%d batches, want 1", n)
	}
	want = []string{
		"a=(null) b=(null) c=(null) _silt_op=T _silt_lsn=120 _silt_pos=1 _silt_unchanged=(null)",
		"a=1 b=x c=(null) _silt_op=I _silt_lsn=110 _silt_pos=0 _silt_unchanged=(null)",
		"a=1 b=x c=(null) _silt_op=I _silt_lsn=110 _silt_pos=1 _silt_unchanged=(null)",
		"a=2 b=(null) c=new _silt_op=I _silt_lsn=120 _silt_pos=0 _silt_unchanged=(null)",
	}
	if got := logRows(t, h, id); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("silver log:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestAppendOnlyRefusesMirroredTable(t *testing.T) {
	h := newHarness(t)
	h.txn(&change.Change{Op: change.OpInsert, New: []change.Datum{txt("1"), txt("a"), null}})
	h.bronze()
	h.silver() // a mirror keyed by id
	h.txn(&change.Change{Op: change.OpInsert, New: []change.Datum{txt("2"), txt("b"), null}})
	h.bronze()
	opts := silver.Options{Table: func(change.TableID) silver.TableOptions {
		return silver.TableOptions{Keyless: true, KeylessAppend: true}
	}}
	_, err := silver.New(h.store, opts).Process(context.Background(), rel.Table)
	if err == nil || !strings.Contains(err.Error(), "silver/public/t is a mirrored table") {
		t.Fatalf("err = %v, want the mirrored-table error", err)
	}
}

// TestAppendOnlyCommitFaults: a Silver commit whose outcome is unknown,
// whether it landed or not, is settled by the next batch (a restart)
// without appending any change twice or losing one.
func TestAppendOnlyCommitFaults(t *testing.T) {
	h := newHarness(t)
	id := keylessRel.Table
	fs := faulty.NewStore(h.store)
	opts := silver.Options{Table: func(change.TableID) silver.TableOptions { return silver.TableOptions{KeylessAppend: true} }}
	ins := func(a string) *change.Change {
		return &change.Change{Op: change.OpInsert, Rel: keylessRel, New: []change.Datum{txt(a), txt("same")}}
	}
	h.txn(ins("1"))
	h.bronze()
	if _, err := silver.New(fs, opts).Process(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	for i, after := range []bool{false, true} {
		h.txn(ins(fmt.Sprint(i+2)), ins(fmt.Sprint(i+2)))
		h.bronze()
		// The next commit fails, and so does delta's re-read that would
		// resolve the outcome: the batch ends with an unknown outcome.
		snap, err := delta.NewTable(h.store, silver.TablePath(id)).Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("%s/_delta_log/%020d.json", silver.TablePath(id), snap.Version+1)
		fs.Add(faulty.StoreRule{Op: faulty.OpPutIfAbsent, KeyContains: key, After: after, Times: 1})
		fs.Add(faulty.StoreRule{Op: faulty.OpGet, KeyContains: key, Times: 1})
		if _, err := silver.New(fs, opts).Process(context.Background(), id); !errors.Is(err, delta.ErrCommitUnknown) {
			t.Fatalf("after=%v: err = %v, want an unknown commit outcome", after, err)
		}
		for { // the next batches (a new processor: a restart)
			res, err := silver.New(fs, opts).Process(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if res.ToVersion < 0 {
				break
			}
		}
	}
	var got []string
	for _, r := range logRows(t, h, id) {
		got = append(got, r[:strings.Index(r, " _silt_lsn")])
	}
	want := []string{"a=1 b=same _silt_op=I", "a=2 b=same _silt_op=I", "a=2 b=same _silt_op=I", "a=3 b=same _silt_op=I", "a=3 b=same _silt_op=I"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("silver log:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

package bronze

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

// TestLoaderChunksOnce: chunks written at once by several goroutines into a
// table none of them found (each races to create it) land once each, with
// their txn identity; a chunk begun again is reported done, and a new plan
// generation of the same chunk is not.
func TestLoaderChunksOnce(t *testing.T) {
	ctx := context.Background()
	for round := 0; round < 5; round++ {
		st, err := local.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		rel := &change.Relation{Table: change.TableID{Schema: "s", Name: "t"}, Columns: []change.Column{
			{Name: "id", TypeOID: 20, Key: true}, {Name: "v", TypeOID: 25}}}
		l := NewLoader(st, Options{})
		commit := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
		var wg sync.WaitGroup
		for chunk := 0; chunk < 4; chunk++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, done, err := l.Begin(ctx, rel, fmt.Sprintf("silt-snap-%d", chunk), 1)
				if err != nil || done {
					t.Errorf("begin chunk %d: done %v, %v", chunk, done, err)
					return
				}
				defer c.Release()
				rows := make([]*change.Change, chunkSize(chunk))
				for i := range rows {
					rows[i] = &change.Change{Rel: rel, Op: change.OpLoad, LSN: 99, Pos: uint32(chunk), CommitTime: commit,
						New: []change.Datum{{Kind: change.Text, Data: []byte(fmt.Sprint(chunk*100000 + i))}, {Kind: change.Text, Data: []byte("x")}}}
				}
				if err := c.Append(rows); err != nil {
					t.Error(err)
					return
				}
				if _, err := c.Commit(ctx); err != nil {
					t.Errorf("commit chunk %d: %v", chunk, err)
				}
			}()
		}
		wg.Wait()
		snap, err := delta.NewTable(st, TablePath(rel.Table)).Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Version != 4 || len(snap.Files()) != 4 {
			t.Fatalf("version %d with %d files, want 4 and 4", snap.Version, len(snap.Files()))
		}
		var n int64
		err = datafile.Scan(ctx, st, datafile.Info(delta.NewTable(st, TablePath(rel.Table)), snap), snap.Files(), func(rec arrow.RecordBatch) error {
			n += rec.NumRows()
			return nil
		})
		if want := int64(chunkSize(0) + 3*chunkSize(1)); err != nil || n != want {
			t.Fatalf("bronze holds %d rows (%v), want %d", n, err, want)
		}
		for chunk := 0; chunk < 4; chunk++ {
			if v, ok := snap.TxnVersion(fmt.Sprintf("silt-snap-%d", chunk)); !ok || v != 1 {
				t.Fatalf("chunk %d: txn %d %v", chunk, v, ok)
			}
		}
		if _, done, err := l.Begin(ctx, rel, "silt-snap-2", 1); err != nil || !done {
			t.Fatalf("chunk 2 again: done %v, %v", done, err)
		}
		c, done, err := l.Begin(ctx, rel, "silt-snap-2", 2)
		if err != nil || done {
			t.Fatalf("chunk 2 of plan 2: done %v, %v", done, err)
		}
		c.Release()
	}
}

// chunkSize: chunk 0 spans several Arrow records (loadRecordRows each).
func chunkSize(chunk int) int {
	if chunk == 0 {
		return 2*loadRecordRows + 123
	}
	return 10
}

// TestLoaderSchemaBehind: a relation with a column the Bronze table lacks
// is refused (ErrSchemaBehind: the chunk must go through the stream, where
// the Writer evolves the schema), and a chunk whose table gains a column
// between Begin and Commit (the Writer's metadata commit) still commits,
// once.
func TestLoaderSchemaBehind(t *testing.T) {
	ctx := context.Background()
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id := change.TableID{Schema: "s", Name: "t"}
	rel := &change.Relation{Table: id, Columns: []change.Column{{Name: "id", TypeOID: 20, Key: true}}}
	wider := &change.Relation{Table: id, Columns: append(append([]change.Column(nil), rel.Columns...), change.Column{Name: "extra", TypeOID: 25})}
	l := NewLoader(st, Options{})
	c, _, err := l.Begin(ctx, rel, "silt-snap-0", 1)
	if err != nil {
		t.Fatal(err)
	}
	row := &change.Change{Rel: rel, Op: change.OpLoad, LSN: 9, CommitTime: time.Unix(0, 0), New: []change.Datum{{Kind: change.Text, Data: []byte("1")}}}
	if err := c.Append([]*change.Change{row}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Begin(ctx, wider, "silt-snap-1", 1); !errors.Is(err, ErrSchemaBehind) {
		t.Fatalf("begin with a column the table lacks: %v, want ErrSchemaBehind", err)
	}
	// The Writer adds the column meanwhile (a metadata commit).
	tbl := delta.NewTable(st, TablePath(id))
	snap, err := tbl.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	schema, changed, _, err := evolve(snap.Schema(), []*change.Change{{Rel: wider}}, nil)
	if err != nil || !changed {
		t.Fatalf("evolve: %v %v", changed, err)
	}
	md := *snap.Metadata
	md.SchemaString = schema.SchemaString()
	tx := tbl.Begin(snap)
	tx.SetMetadata(&md)
	tx.SetAppTxn(AppID(0), 5)
	if _, err := tx.Commit(ctx, "STREAMING UPDATE", nil); err != nil {
		t.Fatal(err)
	}
	v, err := c.Commit(ctx)
	if err != nil {
		t.Fatalf("commit over a concurrent schema change: %v", err)
	}
	c.Release()
	snap, err = tbl.SnapshotAt(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := snap.TxnVersion("silt-snap-0"); !ok || got != 1 || len(snap.Files()) != 1 || snap.Schema().Field("extra") == nil {
		t.Fatalf("after commit: txn %d %v, %d files, schema %s", got, ok, len(snap.Files()), snap.Schema().SchemaString())
	}
}

// TestLoaderMatchesBuildRecord: a chunk written by the Loader (binary and
// text datums, nulls, a run of rows with other shared columns, records
// built one after another from reused pooled buffers, increasing columns
// delta-encoded, from -infinity to infinity) reads back exactly
// as the Writer's buildRecord turns the same changes into Bronze rows,
// through the flat path (loadflat.go) and through Arrow records (the
// fallback for tables without a flat form).
func TestLoaderMatchesBuildRecord(t *testing.T) {
	for _, viaArrow := range []bool{false, true} {
		t.Run(map[bool]string{false: "flat", true: "arrow"}[viaArrow], func(t *testing.T) { testLoaderMatchesBuildRecord(t, viaArrow) })
	}
}

func testLoaderMatchesBuildRecord(t *testing.T, viaArrow bool) {
	ctx := context.Background()
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rel := &change.Relation{Table: change.TableID{Schema: "s", Name: "t"}, Columns: []change.Column{
		{Name: "id", TypeOID: 20, Key: true}, {Name: "a", TypeOID: 23}, {Name: "b", TypeOID: 25},
		{Name: "c", TypeOID: 1184}, {Name: "d", TypeOID: 1700, TypeMod: (12<<16 | 2) + 4}, {Name: "e", TypeOID: 701},
		{Name: "f", TypeOID: 16}, {Name: "g", TypeOID: 1082}, {Name: "h", TypeOID: 21}, {Name: "i", TypeOID: 17}}}
	commit := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	bin := binDatum
	txt := func(s string) change.Datum { return change.Datum{Kind: change.Text, Data: []byte(s)} }
	null := change.Datum{Kind: change.Null}
	n := 2*loadRecordRows + 777
	rows := make([]*change.Change, n)
	for k := range rows {
		img := []change.Datum{bin(8, uint64(k)), bin(4, uint64(int32(-k))), txt(fmt.Sprintf("row %d é", k)),
			bin(8, uint64(int64(k)*1_000_003)), txt(fmt.Sprintf("%d.%02d", k, k%100)), bin(8, math.Float64bits(float64(k)/3)),
			bin(1, uint64(k%2)), bin(4, uint64(k)), bin(2, uint64(k%300)), txt(fmt.Sprintf("\\x%04x", k%65536))}
		for ci := 1; ci < len(img); ci++ {
			if (k+ci)%(7+ci) == 0 && ci != 3 {
				img[ci] = null
			}
		}
		minTS := int64(math.MinInt64)
		switch k { // increasing timestamps (DELTA_BINARY_PACKED) from -infinity to infinity: deltas wrap
		case 0:
			img[3] = bin(8, uint64(minTS))
		case n - 1:
			img[3] = bin(8, uint64(math.MaxInt64))
		}
		lsn, pos := change.LSN(99), uint32(5)
		if k > loadRecordRows+100 && k < loadRecordRows+5000 { // another run of shared columns
			lsn, pos = 100, 6
		}
		rows[k] = &change.Change{Rel: rel, Op: change.OpLoad, LSN: lsn, Pos: pos, XID: 7, CommitTime: commit, New: img}
	}
	l := NewLoader(st, Options{})
	l.arrow = viaArrow
	flat0 := FlatChunks()
	for round := 0; round < 2; round++ { // round 1 reuses round 0's pooled buffers
		c, done, err := l.Begin(ctx, rel, "silt-snap-"+strconv.Itoa(round), 1)
		if err != nil || done {
			t.Fatalf("begin: done %v, %v", done, err)
		}
		for k := 0; k < n; k += 1000 {
			if err := c.Append(rows[k:min(k+1000, n)]); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		c.Release()
	}
	if flat := FlatChunks() - flat0; flat != map[bool]int64{false: 2, true: 0}[viaArrow] {
		t.Fatalf("%d chunks took the flat path", flat)
	}
	tbl := delta.NewTable(st, TablePath(rel.Table))
	snap, err := tbl.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := buildRecord(snap.Schema(), snap.PartitionColumns(), rows)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Release()
	for _, f := range snap.Files() {
		var got []string
		err := datafile.Scan(ctx, st, datafile.Info(tbl, snap), []*delta.Add{f}, func(rec arrow.RecordBatch) error {
			for r := 0; r < int(rec.NumRows()); r++ {
				got = append(got, rowString(rec, r))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			t.Fatalf("file %s: %d rows, want %d", f.Path, len(got), n)
		}
		for r := range got {
			if w := rowString(want, r); got[r] != w {
				t.Fatalf("file %s row %d:\n got %s\nwant %s", f.Path, r, got[r], w)
			}
		}
	}
}

// binDatum is a binary datum of the n low bytes of v, big-endian (as
// PostgreSQL sends bool, int2/4/8, float8, date, timestamps).
func binDatum(n int, v uint64) change.Datum {
	d := binary.BigEndian.AppendUint64(nil, v)
	return change.Datum{Kind: change.Binary, Data: d[8-n:]}
}

// rowString renders row r of rec as name=value pairs in name order.
func rowString(rec arrow.RecordBatch, r int) string {
	var parts []string
	for i, f := range rec.Schema().Fields() {
		parts = append(parts, f.Name+"="+rec.Column(i).ValueStr(r))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// TestLoaderWideRowsFlushByBytes: a flat batch also ends at
// loadRecordBytes of string values, so wide rows keep a chunk's memory
// bounded (and its int32 offsets far from overflowing); the rows all come
// back.
func TestLoaderWideRowsFlushByBytes(t *testing.T) {
	ctx := context.Background()
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rel := &change.Relation{Table: change.TableID{Schema: "s", Name: "wide"}, Columns: []change.Column{
		{Name: "id", TypeOID: 20, Key: true}, {Name: "doc", TypeOID: 25}}}
	const width = 32 << 10
	perBatch := loadRecordBytes / width
	n := perBatch + 52
	doc := strings.Repeat("x", width)
	rows := make([]*change.Change, n)
	for k := range rows {
		rows[k] = &change.Change{Rel: rel, Op: change.OpLoad, LSN: 9, Pos: 1, XID: 3, CommitTime: time.Unix(1700000000, 0),
			New: []change.Datum{binDatum(8, uint64(k)), {Kind: change.Text, Data: []byte(doc)}}}
	}
	c, _, err := NewLoader(st, Options{}).Begin(ctx, rel, "silt-snap-0", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	if c.flat == nil {
		t.Fatal("the chunk does not take the flat path")
	}
	if err := c.Append(rows); err != nil {
		t.Fatal(err)
	}
	if got := c.flat.batch.Rows; got != n-perBatch {
		t.Fatalf("open batch holds %d rows after %d of %d bytes each, want %d (a batch ends at %d bytes)", got, n, width, n-perBatch, loadRecordBytes)
	}
	if _, err := c.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	tbl := delta.NewTable(st, TablePath(rel.Table))
	snap, err := tbl.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	err = datafile.Scan(ctx, st, datafile.Info(tbl, snap), snap.Files(), func(rec arrow.RecordBatch) error {
		for r := 0; r < int(rec.NumRows()); r++ {
			if !strings.Contains(rowString(rec, r), "doc="+doc) {
				t.Fatalf("row %d lost its doc", got+r)
			}
		}
		got += int(rec.NumRows())
		return nil
	})
	if err != nil || got != n {
		t.Fatalf("read %d rows, want %d (%v)", got, n, err)
	}
}

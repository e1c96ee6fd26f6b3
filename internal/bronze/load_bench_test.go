package bronze

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
)

// BenchmarkLoadChunk writes one snapshot chunk of rows shaped like `silt
// bench`'s snapshot table (bigint key, int, text, timestamptz, numeric,
// float8; text form as COPY sends it) through the Loader, at zstd level 3
// (the Writer's) and the Loader's default: ns/row and bytes/row of the
// stored files, to compare the levels in one run.
func BenchmarkLoadChunk(b *testing.B) {
	const rows = 100_000
	rel := &change.Relation{Table: change.TableID{Schema: "s", Name: "t"}, Columns: []change.Column{
		{Name: "id", TypeOID: 20, Key: true}, {Name: "a", TypeOID: 23}, {Name: "b", TypeOID: 25},
		{Name: "c", TypeOID: 1184}, {Name: "d", TypeOID: 1700, TypeMod: (12<<16 | 2) + 4}, {Name: "e", TypeOID: 701}}}
	commit := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	in := make([]*change.Change, rows)
	for i := range in {
		g := i + 1
		ts := base.Add(time.Duration(g) * time.Second).Format("2006-01-02 15:04:05-07")
		in[i] = &change.Change{Rel: rel, Op: change.OpLoad, CommitTime: commit, New: []change.Datum{
			{Kind: change.Text, Data: []byte(strconv.Itoa(g))},
			{Kind: change.Text, Data: []byte(strconv.Itoa(g % 100000))},
			{Kind: change.Text, Data: []byte(fmt.Sprintf("name-%d-%032x", g, uint64(g)*0x9e3779b97f4a7c15))},
			{Kind: change.Text, Data: []byte(ts)},
			{Kind: change.Text, Data: []byte(strconv.FormatFloat(float64(g%1000000)/100, 'f', 2, 64))},
			{Kind: change.Text, Data: []byte(strconv.FormatFloat(float64(g)/7, 'g', -1, 64))},
		}}
	}
	for _, level := range []int{3, DefaultSnapshotZstdLevel} {
		b.Run(fmt.Sprintf("zstd%d", level), func(b *testing.B) {
			ctx := context.Background()
			st, err := local.New(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			l := NewLoader(st, Options{SnapshotZstdLevel: level})
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				c, _, err := l.Begin(ctx, rel, "silt-snap-0", int64(n+1))
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Append(in); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Commit(ctx); err != nil {
					b.Fatal(err)
				}
				c.Release()
			}
			b.StopTimer()
			snap, err := delta.NewTable(st, TablePath(rel.Table)).Snapshot(ctx)
			if err != nil {
				b.Fatal(err)
			}
			var size int64
			for _, f := range snap.Files() {
				size += f.Size
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
			b.ReportMetric(float64(size)/float64(b.N*rows), "bytes/row")
		})
	}
}

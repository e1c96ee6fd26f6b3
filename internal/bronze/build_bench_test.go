package bronze

import (
	"fmt"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/change"
)

// BenchmarkBuildRecord measures turning decoded changes into an Arrow record
// (Bronze's per-change hot path), for a 7-column telemetry row.
func BenchmarkBuildRecord(b *testing.B) {
	rel := &change.Relation{Table: change.TableID{Schema: "s", Name: "readings"}, Columns: []change.Column{
		{Name: "tag_id", TypeOID: 23, Key: true}, {Name: "ts", TypeOID: 1184, Key: true}, {Name: "plant", TypeOID: 25},
		{Name: "value", TypeOID: 701}, {Name: "quality", TypeOID: 21}, {Name: "seq", TypeOID: 20}, {Name: "local_ts", TypeOID: 1114},
	}}
	rows := make([]*change.Change, 10000)
	for i := range rows {
		txt := func(s string) change.Datum { return change.Datum{Kind: change.Text, Data: []byte(s)} }
		rows[i] = &change.Change{Rel: rel, Op: change.OpInsert, LSN: change.LSN(1000 + i), CommitTime: time.Unix(1767225600, 0),
			New: []change.Datum{txt(fmt.Sprint(i % 500)), txt("2026-01-01 00:00:01.123456+00"), txt("north"), txt("123.456"), txt("192"), txt(fmt.Sprint(i)), txt("2026-01-01 02:00:01")}}
	}
	schema, _, parts, err := evolve(nil, rows[:1], nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec, err := buildRecord(schema, parts, rows)
		if err != nil {
			b.Fatal(err)
		}
		rec.Release()
	}
	b.ReportMetric(float64(b.N*len(rows))/b.Elapsed().Seconds(), "rows/s")
}

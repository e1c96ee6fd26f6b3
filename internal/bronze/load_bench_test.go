package bronze

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/blob"
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
	rel := benchRel()
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
			size := storedBytes(b, st, rel.Table)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
			b.ReportMetric(float64(size)/float64(b.N*rows), "bytes/row")
		})
	}
}

// BenchmarkLoadChunkBinary writes snapshot chunks of `silt bench`'s
// snapshot table as pgsnap reads them (the ReadsBinary columns in binary,
// the others as text) and the size the bench's chunks have: wall and CPU
// (user+system of the process) ns per row, and stored bytes per row.
func BenchmarkLoadChunkBinary(b *testing.B) {
	const rows = 31_000
	rel := benchRel()
	commit := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	in := make([]*change.Change, rows)
	bin := binDatum
	for i := range in {
		g := i + 1
		us := (int64(g) + 24*3600*365*24) * 1_000_000 // since 2000-01-01
		in[i] = &change.Change{Rel: rel, Op: change.OpLoad, LSN: 123456, Pos: 3, CommitTime: commit, New: []change.Datum{
			bin(8, uint64(g)),
			bin(4, uint64(g%100000)),
			{Kind: change.Text, Data: []byte(fmt.Sprintf("name-%d-%x", g, md5.Sum([]byte(strconv.Itoa(g)))))}, // as the bench's 'name-' || g || '-' || md5(g::text)
			bin(8, uint64(us)),
			numericBin(int64(g%1000000), 2),
			bin(8, math.Float64bits(float64(g)/7)),
		}}
	}
	for _, path := range []string{"flat", "arrow"} {
		b.Run(path, func(b *testing.B) { benchLoadChunk(b, rel, in, path == "arrow") })
	}
}

// benchLoadChunk writes the rows in as one chunk per iteration, one row
// per Append call as pgsnap does, through the flat or the Arrow path.
func benchLoadChunk(b *testing.B, rel *change.Relation, in []*change.Change, viaArrow bool) {
	rows := len(in)
	ctx := context.Background()
	st, err := local.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	l := NewLoader(st, Options{})
	l.arrow = viaArrow
	cpu0 := cpuTime()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		c, _, err := l.Begin(ctx, rel, "silt-snap-"+strconv.Itoa(n), 1)
		if err != nil {
			b.Fatal(err)
		}
		for k := 0; k < rows; k++ { // one row per call, as pgsnap does
			if err := c.Append(in[k : k+1]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := c.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		c.Release()
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	size := storedBytes(b, st, rel.Table)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*rows), "cpu-ns/row")
	b.ReportMetric(float64(size)/float64(b.N*rows), "bytes/row")
}

// benchRel is the relation of `silt bench`'s snapshot table (bigint key,
// int, text, timestamptz, numeric(12,2), float8).
func benchRel() *change.Relation {
	return &change.Relation{Table: change.TableID{Schema: "s", Name: "t"}, Columns: []change.Column{
		{Name: "id", TypeOID: 20, Key: true}, {Name: "a", TypeOID: 23}, {Name: "b", TypeOID: 25},
		{Name: "c", TypeOID: 1184}, {Name: "d", TypeOID: 1700, TypeMod: (12<<16 | 2) + 4}, {Name: "e", TypeOID: 701}}}
}

// storedBytes is the size of the files of table's Bronze table in st.
func storedBytes(b *testing.B, st blob.Store, table change.TableID) int64 {
	snap, err := delta.NewTable(st, TablePath(table)).Snapshot(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	for _, f := range snap.Files() {
		size += f.Size
	}
	return size
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// numericBin is numeric's binary send format of unscaled / 10^scale.
func numericBin(unscaled int64, scale int) change.Datum {
	sign := uint16(0)
	if unscaled < 0 {
		sign, unscaled = 0x4000, -unscaled
	}
	// base-10000 digits of the value shifted so that the last digit holds
	// the fraction's 4 places (scale <= 4)
	v := unscaled
	for i := scale; i < 4; i++ {
		v *= 10
	}
	var digits []uint16
	for ; v > 0; v /= 10000 {
		digits = append([]uint16{uint16(v % 10000)}, digits...)
	}
	weight := len(digits) - 2 // the last digit is the fraction
	out := binary.BigEndian.AppendUint16(nil, uint16(len(digits)))
	out = binary.BigEndian.AppendUint16(out, uint16(int16(weight)))
	out = binary.BigEndian.AppendUint16(out, sign)
	out = binary.BigEndian.AppendUint16(out, uint16(scale))
	for _, d := range digits {
		out = binary.BigEndian.AppendUint16(out, d)
	}
	return change.Datum{Kind: change.Binary, Data: out}
}

// Command deltaops times silt's MERGE and OPTIMIZE (internal/delta/ops) on
// tables prepared by bench/deltaops/bench.py, which runs delta-rs on copies
// of the same tables in the same run. Each invocation does one operation
// and prints one JSON line: seconds, peak RSS (VmHWM) and the operation's
// figures.
//
//	deltaops merge -table DIR -source DIR   # source: Delta table with the
//	                                        # target's columns plus op ('U'/'D')
//	deltaops optimize -table DIR [-target 128MiB]
//	deltaops small -table DIR -files 1000 -rows 1000   # prepare small files
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/delta/ops"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: deltaops merge|optimize|small [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	table := fs.String("table", "", "table directory")
	source := fs.String("source", "", "source table directory (merge)")
	target := fs.Int64("target", 128<<20, "target file size in bytes (optimize)")
	files := fs.Int("files", 1000, "files to write (small)")
	rows := fs.Int("rows", 1000, "rows per file (small)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile here")
	traceFile := fs.String("trace", "", "write an execution trace here")
	memprofile := fs.String("memprofile", "", "write an allocation profile here (at exit)")
	heapAt := fs.Duration("heapat", 0, "with -memprofile: also write the live heap to <memprofile>.live this long after the start")
	_ = fs.Parse(os.Args[2:])
	if *traceFile != "" {
		f, err := os.Create(*traceFile)
		if err == nil && trace.Start(f) == nil {
			defer trace.Stop()
		}
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	if *heapAt > 0 && *memprofile != "" {
		time.AfterFunc(*heapAt, func() {
			if f, err := os.Create(*memprofile + ".live"); err == nil {
				runtime.GC()
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		})
	}
	ctx := context.Background()
	var out map[string]any
	var err error
	start := time.Now()
	switch os.Args[1] {
	case "merge":
		out, err = merge(ctx, *table, *source)
	case "optimize":
		out, err = optimize(ctx, *table, *target)
	case "small":
		out, err = small(ctx, *table, *files, *rows)
	default:
		err = fmt.Errorf("unknown operation %q", os.Args[1])
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "deltaops:", err)
		os.Exit(1)
	}
	if *memprofile != "" {
		if f, err := os.Create(*memprofile); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	out["op"] = os.Args[1]
	out["seconds"] = time.Since(start).Seconds()
	out["peak_rss_mb"] = peakRSSMB()
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil { // the whole process
		out["cpu_seconds"] = float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
	}
	out["gomaxprocs"] = runtime.GOMAXPROCS(0)
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}

// peakRSSMB is VmHWM from /proc/self/status, in MiB.
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}

func open(dir string) (*delta.Table, *local.Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, nil, err
	}
	st, err := local.New(abs)
	if err != nil {
		return nil, nil, err
	}
	st.NoSync = os.Getenv("DELTAOPS_NOSYNC") != ""
	return delta.NewTable(st, ""), st, nil
}

// readAll reads a whole table as one record.
func readAll(ctx context.Context, dir string) (arrow.RecordBatch, *delta.Snapshot, error) {
	t, st, err := open(dir)
	if err != nil {
		return nil, nil, err
	}
	s, err := t.Snapshot(ctx)
	if err != nil {
		return nil, nil, err
	}
	ti := datafile.TableInfo{Schema: s.Schema(), PartitionColumns: s.PartitionColumns(), Config: s.Config()}
	var recs []arrow.RecordBatch
	for _, f := range s.Files() {
		rs, err := datafile.Read(ctx, st, ti, f)
		if err != nil {
			return nil, nil, err
		}
		recs = append(recs, rs...)
	}
	as, _ := datafile.ArrowSchema(s.Schema())
	tbl := array.NewTableFromRecords(as, recs)
	defer tbl.Release()
	for _, r := range recs {
		r.Release()
	}
	cols := make([]arrow.Array, tbl.NumCols())
	for i := range cols {
		c, err := array.Concatenate(tbl.Column(i).Data().Chunks(), memory.DefaultAllocator)
		if err != nil {
			return nil, nil, err
		}
		cols[i] = c
		defer c.Release()
	}
	return array.NewRecordBatch(as, cols, tbl.NumRows()), s, nil
}

func merge(ctx context.Context, tableDir, sourceDir string) (map[string]any, error) {
	src, _, err := readAll(ctx, sourceDir)
	if err != nil {
		return nil, fmt.Errorf("read source: %w", err)
	}
	defer src.Release()
	t, _, err := open(tableDir)
	if err != nil {
		return nil, err
	}
	snap, err := t.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	// Split the source by op: upserts keep the target's columns; deletes
	// are the keys.
	opIdx := -1
	for i, f := range src.Schema().Fields() {
		if f.Name == "op" {
			opIdx = i
		}
	}
	if opIdx < 0 {
		return nil, fmt.Errorf("source has no op column")
	}
	ops_ := src.Column(opIdx).(*array.String)
	mb := array.NewBooleanBuilder(memory.DefaultAllocator)
	nb := array.NewBooleanBuilder(memory.DefaultAllocator)
	for i := 0; i < ops_.Len(); i++ {
		mb.Append(ops_.Value(i) == "D")
		nb.Append(ops_.Value(i) != "D")
	}
	isDel, notDel := mb.NewBooleanArray(), nb.NewBooleanArray()
	mb.Release()
	nb.Release()
	defer isDel.Release()
	defer notDel.Release()
	var fields []arrow.Field
	var cols []arrow.Array
	for i, f := range src.Schema().Fields() {
		if i != opIdx {
			fields = append(fields, f)
			cols = append(cols, src.Column(i))
		}
	}
	noOp := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, src.NumRows())
	defer noOp.Release()
	filter := func(mask compute.Datum) (arrow.RecordBatch, error) {
		d, err := compute.Filter(ctx, compute.NewDatum(noOp), mask, *compute.DefaultFilterOptions())
		if err != nil {
			return nil, err
		}
		return d.(*compute.RecordDatum).Value, nil
	}
	ups, err := filter(compute.NewDatum(notDel))
	if err != nil {
		return nil, err
	}
	defer ups.Release()
	dels, err := filter(compute.NewDatum(isDel))
	if err != nil {
		return nil, err
	}
	defer dels.Release()
	ch, err := ops.NewChanges(snap.Schema(), []string{"id"}, nil, ups, dels)
	if err != nil {
		return nil, err
	}
	defer ch.Release()
	res, err := ops.Merge(ctx, t, ops.MergeSpec{Keys: []string{"id"}, Changed: ch.Keys(), Decider: ch, Snapshot: snap})
	if err != nil {
		return nil, err
	}
	return map[string]any{"version": res.Version, "files_total": res.FilesTotal, "files_candidate": res.FilesCandidate,
		"files_rewritten": res.FilesRewritten, "files_added": res.FilesAdded, "rows_copied": res.RowsCopied,
		"inserted": res.Inserted, "updated": res.Updated, "deleted": res.Deleted}, nil
}

func optimize(ctx context.Context, dir string, target int64) (map[string]any, error) {
	t, _, err := open(dir)
	if err != nil {
		return nil, err
	}
	res, err := ops.Optimize(ctx, t, ops.OptimizeOptions{TargetFileSize: target})
	if err != nil {
		return nil, err
	}
	return map[string]any{"version": res.Version, "files_removed": res.FilesRemoved, "files_added": res.FilesAdded,
		"bytes_removed": res.BytesRemoved, "bytes_added": res.BytesAdded}, nil
}

// small writes a table of files x rows rows (id, grp, val, note, lsn) in
// one commit, one file per rows rows.
func small(ctx context.Context, dir string, files, rows int) (map[string]any, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	t, st, err := open(dir)
	if err != nil {
		return nil, err
	}
	st.NoSync = true
	schema := &delta.StructType{Fields: []*delta.StructField{
		{Name: "id", Type: delta.Long, Nullable: true, Metadata: map[string]any{}},
		{Name: "grp", Type: delta.Integer, Nullable: true, Metadata: map[string]any{}},
		{Name: "val", Type: delta.Double, Nullable: true, Metadata: map[string]any{}},
		{Name: "note", Type: delta.String, Nullable: true, Metadata: map[string]any{}},
		{Name: "lsn", Type: delta.Long, Nullable: true, Metadata: map[string]any{}},
	}}
	snap, err := delta.CreateTable(ctx, t, schema, nil, nil, "small")
	if err != nil {
		return nil, err
	}
	as, _ := datafile.ArrowSchema(schema)
	ti := datafile.TableInfo{Schema: schema}
	tx := t.Begin(snap)
	for f := 0; f < files; f++ {
		b := array.NewRecordBuilder(memory.DefaultAllocator, as)
		for i := 0; i < rows; i++ {
			id := int64(f*rows + i)
			b.Field(0).(*array.Int64Builder).Append(id)
			b.Field(1).(*array.Int32Builder).Append(int32(id % 100))
			b.Field(2).(*array.Float64Builder).Append(float64(id) * 0.5)
			b.Field(3).(*array.StringBuilder).Append(fmt.Sprintf("note-%d", id%1000))
			b.Field(4).(*array.Int64Builder).Append(1)
		}
		rec := b.NewRecordBatch()
		adds, err := datafile.Write(ctx, st, ti, rec, datafile.WriteOptions{DataChange: true})
		rec.Release()
		b.Release()
		if err != nil {
			return nil, err
		}
		tx.Add(adds...)
	}
	v, err := tx.Commit(ctx, "WRITE", map[string]any{"mode": "Append"})
	if err != nil {
		return nil, err
	}
	return map[string]any{"version": v, "files": files, "rows": files * rows}, nil
}

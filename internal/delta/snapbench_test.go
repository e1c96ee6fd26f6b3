package delta

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/blob/local"
)

// countingStore counts the requests a blob.Store would send to S3: LIST
// (List and ListFrom: one request per page of 1,000 keys), GET (Get), OPEN (Open: a HEAD, then ranged GETs counted by
// ReadAt) and PUT.
type countingStore struct {
	blob.Store
	lists, gets, opens, readAts, puts atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, key string) ([]byte, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}

func (c *countingStore) Open(ctx context.Context, key string) (blob.Reader, error) {
	c.opens.Add(1)
	r, err := c.Store.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	return &countingReader{Reader: r, c: c}, nil
}

type countingReader struct {
	blob.Reader
	c *countingStore
}

func (r *countingReader) ReadAt(p []byte, off int64) (int, error) {
	r.c.readAts.Add(1)
	return r.Reader.ReadAt(p, off)
}

func (c *countingStore) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	infos, err := c.Store.List(ctx, prefix)
	c.lists.Add(pages(len(infos)))
	return infos, err
}

// ListFrom passes through when the wrapped store has it.
func (c *countingStore) ListFrom(ctx context.Context, prefix, startAfter string) ([]blob.Info, error) {
	lf, ok := c.Store.(interface {
		ListFrom(ctx context.Context, prefix, startAfter string) ([]blob.Info, error)
	})
	if !ok {
		panic("countingStore.ListFrom: wrapped store has none")
	}
	infos, err := lf.ListFrom(ctx, prefix, startAfter)
	c.lists.Add(pages(len(infos)))
	return infos, err
}

func pages(keys int) int64 { return int64(max(1, (keys+999)/1000)) }

func (c *countingStore) Put(ctx context.Context, key string, data []byte) error {
	c.puts.Add(1)
	return c.Store.Put(ctx, key, data)
}

func (c *countingStore) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	c.puts.Add(1)
	return c.Store.PutIfAbsent(ctx, key, data)
}

func (c *countingStore) reset() {
	c.lists.Store(0)
	c.gets.Store(0)
	c.opens.Store(0)
	c.readAts.Store(0)
	c.puts.Store(0)
}

func (c *countingStore) report(b *testing.B) {
	n := float64(b.N)
	b.ReportMetric(float64(c.lists.Load())/n, "LIST/op")
	b.ReportMetric(float64(c.gets.Load()+c.readAts.Load())/n, "GET/op")
	b.ReportMetric(float64(c.opens.Load())/n, "HEAD/op")
}

// benchLog writes a table of n commits straight to the store: commit v
// adds one file with stats and sets txn(app, v); every 50th commit removes
// the file of 25 versions before. With interval > 0 a checkpoint is written
// every interval versions.
func benchLog(b *testing.B, st blob.Store, n, interval int) {
	ctx := context.Background()
	tab := NewTable(st, "t")
	schema := `{"type":"struct","fields":[{"name":"id","type":"long","nullable":true,"metadata":{}},{"name":"v","type":"string","nullable":true,"metadata":{}}]}`
	conf := map[string]string{"delta.checkpointInterval": fmt.Sprint(interval)}
	created := int64(1)
	for v := 0; v < n; v++ {
		ts := time.Now().UnixMilli()
		acts := []Action{{CommitInfo: map[string]any{"timestamp": ts, "operation": "WRITE"}}}
		if v == 0 {
			acts = append(acts, Action{Protocol: &Protocol{MinReaderVersion: 1, MinWriterVersion: 2}},
				Action{MetaData: &Metadata{ID: "bench", Format: Format{Provider: "parquet", Options: map[string]string{}},
					SchemaString: schema, PartitionColumns: []string{}, Configuration: conf, CreatedTime: &created}})
		}
		acts = append(acts, Action{Txn: &SetTransaction{AppID: "app", Version: int64(v)}},
			Action{Add: &Add{Path: fmt.Sprintf("part-%05d.parquet", v), PartitionValues: map[string]*string{}, Size: 1000,
				ModificationTime: ts, DataChange: true,
				Stats: fmt.Sprintf(`{"numRecords":10,"minValues":{"id":%d,"v":"a"},"maxValues":{"id":%d,"v":"z"},"nullCount":{"id":0,"v":0}}`, v*10, v*10+9)}})
		if v%50 == 0 && v >= 25 {
			dt := ts
			acts = append(acts, Action{Remove: &Remove{Path: fmt.Sprintf("part-%05d.parquet", v-25), DataChange: true, DeletionTimestamp: &dt}})
		}
		data, err := MarshalActions(acts)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.PutIfAbsent(ctx, tab.CommitKey(int64(v)), data); err != nil {
			b.Fatal(err)
		}
		if interval > 0 && v > 0 && v%interval == 0 {
			s, err := tab.SnapshotAt(ctx, int64(v))
			if err != nil {
				b.Fatal(err)
			}
			if err := tab.WriteCheckpoint(ctx, s); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkSnapshot5000 measures Table.Snapshot on a 5,000-commit table
// (checkpoint interval 10, and none) with request counts per call:
//
//   - new-table: a new Table per call on the same store (what Bronze,
//     Silver and Gold do on each tick);
//   - fresh-store: a new store value per call as well (nothing known in
//     the process: the cold start);
//   - new-commit: one new commit before each call (the busy tick).
func BenchmarkSnapshot5000(b *testing.B) {
	for _, interval := range []int{10, 0} {
		dir := b.TempDir()
		ls, err := local.New(dir)
		if err != nil {
			b.Fatal(err)
		}
		ls.NoSync = true
		benchLog(b, ls, 5000, interval)
		name := fmt.Sprintf("ckpt=%d", interval)
		if interval == 0 {
			name = "ckpt=none"
		}
		ctx := context.Background()
		b.Run(name+"/new-table", func(b *testing.B) {
			cs := &countingStore{Store: ls}
			if _, err := NewTable(cs, "t").Snapshot(ctx); err != nil {
				b.Fatal(err)
			}
			cs.reset()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := NewTable(cs, "t").Snapshot(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if s.Version != 4999 {
					b.Fatalf("version %d", s.Version)
				}
			}
			cs.report(b)
		})
		b.Run(name+"/fresh-store", func(b *testing.B) {
			var lists, gets int64
			for i := 0; i < b.N; i++ {
				cs := &countingStore{Store: ls}
				if _, err := NewTable(cs, "t").Snapshot(ctx); err != nil {
					b.Fatal(err)
				}
				lists += cs.lists.Load()
				gets += cs.gets.Load() + cs.readAts.Load()
			}
			b.ReportMetric(float64(lists)/float64(b.N), "LIST/op")
			b.ReportMetric(float64(gets)/float64(b.N), "GET/op")
		})
		b.Run(name+"/new-commit", func(b *testing.B) {
			dir2 := b.TempDir()
			if err := os.CopyFS(dir2, os.DirFS(dir)); err != nil {
				b.Fatal(err)
			}
			st, err := local.New(dir2)
			if err != nil {
				b.Fatal(err)
			}
			st.NoSync = true
			cs := &countingStore{Store: st}
			tab := NewTable(cs, "t")
			snap, err := tab.Snapshot(ctx)
			if err != nil {
				b.Fatal(err)
			}
			cs.reset()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tx := tab.Begin(snap)
				tx.Add(&Add{Path: fmt.Sprintf("new-%d.parquet", i), PartitionValues: map[string]*string{}, Size: 1, DataChange: true})
				if _, err := tx.Commit(ctx, "WRITE", nil); err != nil {
					b.Fatal(err)
				}
				if snap, err = NewTable(cs, "t").Snapshot(ctx); err != nil {
					b.Fatal(err)
				}
			}
			cs.report(b)
		})
	}
}

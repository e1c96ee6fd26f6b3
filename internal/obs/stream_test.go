package obs

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/stream"
	"github.com/silt-dev/silt/internal/stream/locallog"
)

// skewed appends changes of one hot table (and a trickle of another)
// through the partitioner to a 4-shard embedded log, and returns the
// hot-shard figure the metrics endpoint shows.
func skewed(t *testing.T, strategy string) (float64, *locallog.Log) {
	t.Helper()
	l, err := locallog.Open(filepath.Join(t.TempDir(), "log"), locallog.Options{Shards: 4, Durability: locallog.DurabilityNone,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	part, err := stream.NewPartitioner(stream.PartitionConfig{Strategy: strategy}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hot := &change.Relation{ID: 1, Table: change.TableID{Schema: "public", Name: "readings"}, Columns: []change.Column{{Name: "id", Key: true}, {Name: "v"}}}
	cold := &change.Relation{ID: 2, Table: change.TableID{Schema: "public", Name: "devices"}, Columns: []change.Column{{Name: "id", Key: true}, {Name: "v"}}}
	var entries []stream.Entry
	for i := range 2000 {
		rel := hot
		if i%100 == 0 {
			rel = cold
		}
		c := &change.Change{Rel: rel, Op: change.OpInsert, LSN: change.LSN(i), New: []change.Datum{
			{Kind: change.Text, Data: []byte(fmt.Sprint(i))}, {Kind: change.Text, Data: []byte("12.5")}}}
		entries = append(entries, stream.Entry{PartitionKey: part.Key(c), Data: change.AppendEncode(nil, c)})
	}
	if err := l.Append(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewStreamCollector(l))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "silt_stream_hot_shard_ratio" {
			return mf.GetMetric()[0].GetGauge().GetValue(), l
		}
	}
	t.Fatal("no silt_stream_hot_shard_ratio metric")
	return 0, nil
}

// TestHotShardInMetrics: schema-table keys put the busy table on one
// shard, and the metric says so; primary-key keys spread the same load.
func TestHotShardInMetrics(t *testing.T) {
	ratio, l := skewed(t, stream.KeySchemaTable)
	if ratio < 3 {
		t.Errorf("schema-table on one hot table: hot_shard_ratio %.2f, want near 4 (of 4 shards)", ratio)
	}
	if HotShard(l.Stats()) < 3 {
		t.Errorf("HotShard(stats) = %.2f", HotShard(l.Stats()))
	}
	if ratio, _ := skewed(t, stream.KeyPrimaryKey); ratio > 1.2 {
		t.Errorf("primary-key: hot_shard_ratio %.2f, want near 1", ratio)
	}
}

func TestStreamCollectorMetrics(t *testing.T) {
	_, l := skewed(t, stream.KeyPrimaryKey)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewStreamCollector(l))
	gather := func() map[string][]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				v := m.GetGauge().GetValue()
				if m.GetCounter() != nil {
					v = m.GetCounter().GetValue()
				}
				out[mf.GetName()] = append(out[mf.GetName()], v)
			}
		}
		return out
	}
	got := gather()
	for _, name := range []string{"incoming_bytes_total", "incoming_records_total", "throttled_writes_total", "outgoing_bytes_total",
		"outgoing_records_total", "throttled_reads_total", "iterator_age_milliseconds", "end_offset"} {
		if n := len(got["silt_stream_"+name]); n != 4 {
			t.Errorf("silt_stream_%s has %d series, want one per shard (4)", name, n)
		}
	}
	var total float64
	for _, v := range got["silt_stream_incoming_records_total"] {
		total += v
	}
	if total != 2000 {
		t.Errorf("incoming records %v, want 2000", total)
	}
	// With nothing new since the previous scrape, the ratio covers
	// everything since start rather than dropping to 0.
	if v := gather()["silt_stream_hot_shard_ratio"]; len(v) != 1 || v[0] < 1 {
		t.Errorf("hot ratio after an idle interval = %v", v)
	}
}

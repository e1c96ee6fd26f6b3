package stream

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/silt-dev/silt/internal/change"
)

var readings = &change.Relation{ID: 1, Table: change.TableID{Schema: "public", Name: "readings"}, Columns: []change.Column{
	{Name: "id", Key: true}, {Name: "tag_id"}, {Name: "ts"}, {Name: "v"},
}}

var devices = &change.Relation{ID: 2, Table: change.TableID{Schema: "public", Name: "devices"}, Columns: []change.Column{
	{Name: "id", Key: true}, {Name: "name"},
}}

func text(s string) change.Datum { return change.Datum{Kind: change.Text, Data: []byte(s)} }

func reading(op change.Op, id, tag, ts string, lsn change.LSN, pos uint32, xid uint32) *change.Change {
	img := []change.Datum{text(id), text(tag), text(ts), text("1.5")}
	c := &change.Change{Rel: readings, Op: op, LSN: lsn, Pos: pos, XID: xid}
	if op == change.OpDelete {
		c.Old = img
	} else {
		c.New = img
	}
	return c
}

func mustPartitioner(t *testing.T, cfg PartitionConfig) *Partitioner {
	t.Helper()
	p, err := NewPartitioner(cfg, nil)
	if err != nil {
		t.Fatalf("NewPartitioner(%+v): %v", cfg, err)
	}
	return p
}

func TestPartitionKeys(t *testing.T) {
	c := reading(change.OpInsert, "42", "7", "2024-01-01", 0x100, 3, 900)
	tests := []struct {
		cfg  PartitionConfig
		want string
	}{
		{PartitionConfig{}, "public.readings\x0042"},
		{PartitionConfig{Strategy: KeyPrimaryKey}, "public.readings\x0042"},
		{PartitionConfig{Strategy: KeySchemaTable}, "public.readings"},
		{PartitionConfig{Strategy: KeyConstant}, "silt"},
		{PartitionConfig{Strategy: KeyTransactionID}, "900"},
		{PartitionConfig{Strategy: KeyColumns, Columns: []string{"tag_id", "ts"}}, "public.readings\x007\x002024-01-01"},
	}
	for _, tc := range tests {
		if got := mustPartitioner(t, tc.cfg).Key(c); string(got) != tc.want {
			t.Errorf("%+v: key %q, want %q", tc.cfg, got, tc.want)
		}
	}
	// A delete is keyed by its old image, like the insert of the same row.
	pk := mustPartitioner(t, PartitionConfig{})
	del := reading(change.OpDelete, "42", "7", "2024-01-01", 0x200, 0, 901)
	if !bytes.Equal(pk.Key(del), pk.Key(c)) {
		t.Errorf("delete key %q differs from insert key %q", pk.Key(del), pk.Key(c))
	}
	// AppendKey appends.
	if got := pk.AppendKey([]byte("x"), c); string(got) != "xpublic.readings\x0042" {
		t.Errorf("AppendKey = %q", got)
	}
}

func TestPartitionRandomIsDeterministicAndSpread(t *testing.T) {
	p := mustPartitioner(t, PartitionConfig{Strategy: KeyRandom})
	const shards = 4
	counts := make([]int, shards)
	for i := range 8000 {
		c := reading(change.OpUpdate, "1", "1", "t", change.LSN(0x1000+i/10), uint32(i%10), 1)
		k := p.Key(c)
		if !bytes.Equal(k, p.Key(c)) {
			t.Fatal("random key differs for the same change: a resent change would change shard")
		}
		counts[ShardFor(k, shards)]++
	}
	for s, n := range counts {
		if n < 1700 || n > 2300 {
			t.Errorf("shard %d got %d of 8000 records; random should spread evenly", s, n)
		}
	}
}

func TestPartitionColumnsFallback(t *testing.T) {
	var fell []string
	p, err := NewPartitioner(PartitionConfig{Strategy: KeyColumns, Columns: []string{"tag_id"}}, func(tb change.TableID, why string) {
		fell = append(fell, tb.String()+": "+why)
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &change.Change{Rel: devices, Op: change.OpInsert, New: []change.Datum{text("5"), text("pump")}}
	if got := string(p.Key(c)); got != "public.devices\x005" {
		t.Errorf("fallback key %q, want the primary-key form", got)
	}
	p.Key(c)
	if len(fell) != 1 || !strings.Contains(fell[0], "tag_id") {
		t.Errorf("fallback reported %q, want once, naming tag_id", fell)
	}
}

func TestPartitionLongKeysAreHashed(t *testing.T) {
	p := mustPartitioner(t, PartitionConfig{})
	long := strings.Repeat("x", 200)
	a := p.Key(reading(change.OpInsert, long, "1", "t", 1, 0, 1))
	b := p.Key(reading(change.OpUpdate, long, "2", "u", 2, 0, 2))
	other := p.Key(reading(change.OpInsert, long+"y", "1", "t", 1, 0, 1))
	if len(a) > MaxKeyBytes || a[0] != '#' {
		t.Fatalf("long key %q not shortened", a)
	}
	if !bytes.Equal(a, b) || bytes.Equal(a, other) {
		t.Fatalf("shortened keys must stay equal per row and differ between rows: %q %q %q", a, b, other)
	}
}

func TestPartitionConfigValidate(t *testing.T) {
	bad := []struct {
		cfg  PartitionConfig
		want string
	}{
		{PartitionConfig{Strategy: "hash"}, "not one of"},
		{PartitionConfig{Strategy: KeyColumns}, "at least one column"},
		{PartitionConfig{Strategy: KeyPrimaryKey, Columns: []string{"a"}}, "strategy is"},
		{PartitionConfig{Strategy: KeyColumns, Columns: []string{"a", "a"}}, "twice"},
		{PartitionConfig{Strategy: KeyColumns, Columns: []string{""}}, "not a column name"},
		{PartitionConfig{Strategy: KeyColumns, Columns: []string{strings.Repeat("c", 64)}}, "not a column name"},
	}
	for _, tc := range bad {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
	for _, s := range Strategies {
		cfg := PartitionConfig{Strategy: s}
		if s == KeyColumns {
			cfg.Columns = []string{"tag_id", "ts"}
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", cfg, err)
		}
	}
}

// TestPartitionHotShards is the skew check at key level: schema-table keys
// of one busy table land on one shard; primary-key keys spread it.
func TestPartitionHotShards(t *testing.T) {
	const shards, n = 8, 8000
	hot := func(cfg PartitionConfig) float64 {
		p := mustPartitioner(t, cfg)
		counts := make([]int, shards)
		for i := range n {
			counts[ShardFor(p.Key(reading(change.OpInsert, fmt.Sprint(i), "1", "t", 1, uint32(i), 1)), shards)]++
		}
		return HotShardRatio(counts)
	}
	if r := hot(PartitionConfig{Strategy: KeySchemaTable}); r != shards {
		t.Errorf("schema-table on one table: hot ratio %.2f, want %d (everything on one shard)", r, shards)
	}
	if r := hot(PartitionConfig{}); r > 1.2 {
		t.Errorf("primary-key: hot ratio %.2f, want close to 1", r)
	}
}

func TestPartitionWarnings(t *testing.T) {
	for _, s := range Strategies {
		cfg := PartitionConfig{Strategy: s}
		if s == KeyColumns {
			cfg.Columns = []string{"tag_id"}
		}
		w := mustPartitioner(t, cfg).Warnings(4)
		if (len(w) == 0) != (s == KeyPrimaryKey) {
			t.Errorf("strategy %s: warnings %q", s, w)
		}
	}
	if w := mustPartitioner(t, PartitionConfig{Strategy: KeyConstant}).Warnings(1); len(w) != 0 {
		t.Errorf("constant with one shard warned: %q", w)
	}
}

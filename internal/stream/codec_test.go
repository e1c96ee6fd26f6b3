package stream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/stream"
	"github.com/silt-dev/silt/internal/stream/locallog"
	"github.com/silt-dev/silt/internal/stream/streamtest"
)

// upper is a reversible toy codec: it prefixes stored data with "X".
type upper struct{}

func (upper) Encode(dst, key, data []byte) ([]byte, error) {
	return append(append(dst, 'X'), data...), nil
}
func (upper) Decode(dst, stored []byte) ([]byte, error) { return append(dst, stored[1:]...), nil }

func openLocal(t *testing.T, dir string, shards int) *locallog.Log {
	l, err := locallog.Open(dir, locallog.Options{Shards: shards, Durability: locallog.DurabilityNone, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestCodecConformance: a log wrapped in a codec still passes the suite.
func TestCodecConformance(t *testing.T) {
	streamtest.Run(t, func(t *testing.T, shards int) streamtest.Opener {
		dir := filepath.Join(t.TempDir(), "log")
		return func(t *testing.T) stream.Log { return stream.WithCodec(openLocal(t, dir, shards), upper{}) }
	})
}

// TestDMSFormatOnLog: with the DMS codec the log stores DMS JSON, and the
// pipeline reads back its compact records unchanged.
func TestDMSFormatOnLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	raw := openLocal(t, dir, 1)
	defer raw.Close()
	l := stream.WithCodec(raw, &change.DMSCodec{PartitionKeyType: stream.KeyPrimaryKey})
	rel := &change.Relation{ID: 1, Table: change.TableID{Schema: "public", Name: "readings"}, Columns: []change.Column{
		{Name: "id", TypeOID: 23, TypeMod: -1, Key: true}, {Name: "v", TypeOID: 701, TypeMod: -1}}}
	c := &change.Change{Rel: rel, Op: change.OpInsert, LSN: 0x10, EndLSN: 0x20, XID: 7, CommitTime: time.Unix(1700000000, 0).UTC(),
		New: []change.Datum{{Kind: change.Text, Data: []byte("5")}, {Kind: change.Text, Data: []byte("1.25")}}}
	compact := change.AppendEncode(nil, c)
	ctx := context.Background()
	if err := l.Append(ctx, []stream.Entry{{PartitionKey: []byte("public.readings\x005"), Data: compact}}); err != nil {
		t.Fatal(err)
	}
	stored, err := raw.Read(ctx, 0, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Data     map[string]any `json:"data"`
		Metadata map[string]any `json:"metadata"`
	}
	if err := json.Unmarshal(stored[0].Data, &env); err != nil {
		t.Fatalf("stored record is not JSON: %v: %s", err, stored[0].Data)
	}
	if env.Data["id"] != 5.0 || env.Metadata["operation"] != "insert" || env.Metadata["partition-key-value"] != "public.readings.5" {
		t.Fatalf("stored envelope %s", stored[0].Data)
	}
	got, err := l.Read(ctx, 0, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[0].Data, compact) {
		t.Fatal("compact record changed through the DMS format")
	}
	if _, ok := l.(stream.StatsReporter); !ok {
		t.Fatal("the codec log hides Stats")
	}
}

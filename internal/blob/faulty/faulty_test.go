package faulty_test

import (
	"context"
	"errors"
	"testing"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/blob/faulty"
	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/delta"
)

func TestStoreRules(t *testing.T) {
	ctx := context.Background()
	l, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := faulty.NewStore(l)
	s.Add(faulty.StoreRule{Op: faulty.OpPutIfAbsent, KeyContains: "a", After: true, Times: 1})
	s.Add(faulty.StoreRule{Op: faulty.OpPutIfAbsent, KeyContains: "b", Times: 1})
	if err := s.PutIfAbsent(ctx, "a", []byte("x")); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("after-rule: %v", err)
	}
	if _, err := l.Get(ctx, "a"); err != nil {
		t.Fatalf("after-rule must perform the write: %v", err)
	}
	if err := s.PutIfAbsent(ctx, "b", []byte("x")); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("before-rule: %v", err)
	}
	if _, err := l.Get(ctx, "b"); !errors.Is(err, blob.ErrNotExist) {
		t.Fatalf("before-rule must not write: %v", err)
	}
	if err := s.PutIfAbsent(ctx, "b", []byte("x")); err != nil {
		t.Fatalf("rule fired more than Times: %v", err)
	}
}

// TestDeltaAmbiguousCommit: a commit whose put-if-absent lands but reports
// an error is recognised by its txnId: one version, no duplicate.
func TestDeltaAmbiguousCommit(t *testing.T) {
	ctx := context.Background()
	l, _ := local.New(t.TempDir())
	l.NoSync = true
	s := faulty.NewStore(l)
	tab := delta.NewTable(s, "t")
	schema, _ := delta.ParseSchema(`{"type":"struct","fields":[{"name":"id","type":"long","nullable":false,"metadata":{}}]}`)
	snap, err := delta.CreateTable(ctx, tab, schema, nil, nil, "t")
	if err != nil {
		t.Fatal(err)
	}
	s.Add(faulty.StoreRule{Op: faulty.OpPutIfAbsent, KeyContains: "_delta_log/00000000000000000001.json", After: true, Times: 1})
	tx := tab.Begin(snap)
	tx.Add(&delta.Add{Path: "f.parquet", PartitionValues: map[string]*string{}, Size: 1, ModificationTime: 1, DataChange: true})
	if v, err := tx.Commit(ctx, "WRITE", nil); err != nil || v != 1 {
		t.Fatalf("commit = %d, %v", v, err)
	}
	if v, _ := tab.LatestVersion(ctx); v != 1 {
		t.Fatalf("latest = %d, want 1", v)
	}
}

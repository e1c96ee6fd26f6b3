package local

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestSweepTemp(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, "t/part-1.parquet", []byte("data")); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(s.Root(), "t/.tmp-part-2.parquet-123")
	young := filepath.Join(s.Root(), "t/_delta_log/.tmp-00000000000000000003.json-9")
	other := filepath.Join(s.Root(), "u/.tmp-x-1")
	for _, p := range []string{old, young, other} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * time.Hour)
	for _, p := range []string{old, other} {
		if err := os.Chtimes(p, past, past); err != nil {
			t.Fatal(err)
		}
	}
	keys, n, err := s.SweepTemp(ctx, "t/", time.Hour, true)
	if err != nil || !slices.Equal(keys, []string{"t/.tmp-part-2.parquet-123"}) || n != 7 {
		t.Fatalf("dry run: %v %d %v", keys, n, err)
	}
	if _, err := os.Stat(old); err != nil {
		t.Fatalf("dry run deleted: %v", err)
	}
	if keys, _, err = s.SweepTemp(ctx, "t/", time.Hour, false); err != nil || len(keys) != 1 {
		t.Fatalf("sweep: %v %v", keys, err)
	}
	for p, want := range map[string]bool{old: false, young: true, other: true, filepath.Join(s.Root(), "t/part-1.parquet"): true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists=%v, want %v", p, err == nil, want)
		}
	}
}

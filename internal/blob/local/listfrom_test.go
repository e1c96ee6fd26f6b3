package local_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/blob/local"
)

// TestListFrom: ListFrom(prefix, after) == the keys of List(prefix) after
// `after`, for every prefix and start point around the keys.
func TestListFrom(t *testing.T) {
	ctx := context.Background()
	s, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.NoSync = true
	keys := []string{
		"t/_delta_log/00000000000000000000.json",
		"t/_delta_log/00000000000000000001.json",
		"t/_delta_log/00000000000000000010.checkpoint.parquet",
		"t/_delta_log/00000000000000000010.json",
		"t/_delta_log/00000000000000000011.json",
		"t/_delta_log/_last_checkpoint",
		"t/_delta_log/_sidecars/a.parquet",
		"t/_delta_log/_staged_commits/x/y.json",
		"t/part-0.parquet",
		"t/year=2024/part-1.parquet",
		"t2/_delta_log/00000000000000000000.json",
		"u",
	}
	for _, k := range keys {
		if err := s.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	// A temp file of an unfinished Put is not an object.
	if err := os.WriteFile(filepath.Join(s.Root(), "t/_delta_log/.tmp-00000000000000000012.json-1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	prefixes := []string{"", "t", "t/", "t/_delta_log/", "t/_delta_log/0000", "t/_delta_log/_s", "t2/", "nope/", "t/_delta_log/_staged_commits/"}
	afters := append([]string{"", "a", "t/", "t/_delta_log/", "t/_delta_log/00000000000000000010", "t/_delta_log/_", "t/_delta_log/_sidecars", "t/_delta_log/_sidecars/", "zz"}, keys...)
	for _, p := range prefixes {
		all, err := s.List(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range afters {
			var want []string
			for _, in := range all {
				if in.Key > a {
					want = append(want, in.Key)
				}
			}
			got, err := s.ListFrom(ctx, p, a)
			if err != nil {
				t.Fatal(err)
			}
			var gotKeys []string
			for _, in := range got {
				gotKeys = append(gotKeys, in.Key)
				if in.Size != int64(len(in.Key)) || in.ModTime.IsZero() {
					t.Errorf("ListFrom(%q, %q): %s has size %d, mtime %v", p, a, in.Key, in.Size, in.ModTime)
				}
			}
			if !reflect.DeepEqual(gotKeys, want) {
				t.Errorf("ListFrom(%q, %q) = %q, want %q", p, a, gotKeys, want)
			}
			// The generic helper agrees.
			viaHelper, err := blob.ListFrom(ctx, s, p, a)
			if err != nil || len(viaHelper) != len(got) {
				t.Errorf("blob.ListFrom(%q, %q): %d keys, %v", p, a, len(viaHelper), err)
			}
		}
	}
	var _ blob.ListerFrom = s
}

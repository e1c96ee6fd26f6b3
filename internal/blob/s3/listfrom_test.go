package s3_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/blob/s3"
	"github.com/silt-dev/silt/internal/blob/s3/s3test"
)

// TestListFrom: ListFrom(prefix, after) == the keys of List(prefix) after
// `after`, across pages (ListPageSize 7), on both fake servers.
func TestListFrom(t *testing.T) {
	for _, mk := range []func(testing.TB) *s3test.Server{s3test.Gofakes3, s3test.VersityGW} {
		srv := mk(t)
		t.Run(srv.Name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t, srv, testOptions(srv, freshPrefix()))
			var keys []string
			for i := 0; i < 23; i++ {
				keys = append(keys, "t/_delta_log/"+pad(i)+".json")
				if i%10 == 0 {
					keys = append(keys, "t/_delta_log/"+pad(i)+".checkpoint.parquet")
				}
			}
			keys = append(keys, "t/_delta_log/_last_checkpoint", "t/data.parquet", "u")
			for _, k := range keys {
				if err := s.Put(ctx, k, []byte(k)); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range []string{"", "t/_delta_log/", "t/_delta_log/0000"} {
				all, err := s.List(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				for _, a := range []string{"", "a", "t/_delta_log/" + pad(10), "t/_delta_log/" + pad(3) + ".json", "t/_delta_log/" + pad(22) + ".json", "t/_delta_log/_", "zz"} {
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
					}
					if !reflect.DeepEqual(gotKeys, want) {
						t.Errorf("ListFrom(%q, %q) = %q, want %q", p, a, gotKeys, want)
					}
				}
			}
		})
	}
	var _ blob.ListerFrom = (*s3.Store)(nil)
}

func pad(v int) string { return fmt.Sprintf("%020d", v) }

package s3_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/blob/blobtest"
	"github.com/silt-dev/silt/internal/blob/s3"
	"github.com/silt-dev/silt/internal/blob/s3/s3test"
)

// testOptions are small enough that the suite's 11 MiB objects go through
// multipart uploads (three 5 MiB parts) and listings span several pages.
func testOptions(srv *s3test.Server, prefix string) s3.Options {
	return s3.Options{
		Bucket: srv.Bucket, Prefix: prefix, Endpoint: srv.Endpoint, PathStyle: true, Region: s3test.Region,
		Credentials: srv.Credentials(),
		PartSize:    s3.MinPartSize, MultipartThreshold: s3.MinPartSize, ListPageSize: 7,
		MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond,
	}
}

func newStore(t *testing.T, srv *s3test.Server, o s3.Options) *s3.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := s3.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// freshPrefix gives each subtest its own empty part of the bucket.
func freshPrefix() string { return fmt.Sprintf("lake-%08x/silt", rand.Uint32()) }

func TestConformanceGofakes3(t *testing.T) {
	srv := s3test.Gofakes3(t)
	blobtest.Run(t, func(t *testing.T) blob.Store {
		return newStore(t, srv, testOptions(srv, freshPrefix()))
	}, blobtest.Options{
		SkipLargePutIfAbsentExists: "gofakes3 v1.2.0 ignores If-None-Match on CompleteMultipartUpload; versitygw proves it (TestConformanceVersityGW)",
	})
}

func TestConformanceVersityGW(t *testing.T) {
	srv := s3test.VersityGW(t)
	blobtest.Run(t, func(t *testing.T) blob.Store {
		return newStore(t, srv, testOptions(srv, freshPrefix()))
	}, blobtest.Options{})
}

// TestConformanceNoPrefix: a lake at the bucket's root.
func TestConformanceNoPrefix(t *testing.T) {
	srv := s3test.Gofakes3(t)
	n := 0
	blobtest.Run(t, func(t *testing.T) blob.Store {
		n++
		bucket := fmt.Sprintf("root-%d", n)
		srv.CreateBucket(t, bucket)
		o := testOptions(srv, "")
		o.Bucket = bucket
		return newStore(t, srv, o)
	}, blobtest.Options{SkipLargePutIfAbsentExists: "gofakes3: see TestConformanceGofakes3"})
}

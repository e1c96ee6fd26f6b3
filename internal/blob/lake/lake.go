// Package lake opens the object store that holds the lake, from its
// configuration: a local directory (blob/local) or s3://bucket/prefix
// (blob/s3). It is separate from package blob because blob/local and
// blob/s3 import blob.
package lake

import (
	"context"
	"fmt"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/blob/s3"
	"github.com/silt-dev/silt/internal/config"
)

// Open opens the lake's store. For S3 it checks that the bucket is
// reachable with the credentials of the default AWS chain, so a wrong
// region, bucket or credentials fail here with a message saying what to
// fix. Zero numeric settings take the S3 store's defaults, so a LakeConfig
// with only Path set works (the table commands use it that way).
func Open(ctx context.Context, c config.LakeConfig) (blob.Store, error) {
	if !c.IsS3() {
		st, err := local.New(c.Path)
		if err != nil {
			return nil, fmt.Errorf("lake.path %s: %w", c.Path, err)
		}
		return st, nil
	}
	o, err := S3Options(c)
	if err != nil {
		return nil, err
	}
	st, err := s3.New(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("lake.path %s: %w", c.Path, err)
	}
	return st, nil
}

// S3Options maps the lake configuration to S3 store options.
func S3Options(c config.LakeConfig) (s3.Options, error) {
	bucket, prefix, err := s3.ParseURL(c.Path)
	if err != nil {
		return s3.Options{}, fmt.Errorf("lake.path: %w", err)
	}
	return s3.Options{
		Bucket: bucket, Prefix: prefix,
		Region: c.Region, Endpoint: c.Endpoint, PathStyle: c.PathStyle, Profile: c.Profile,
		SSE: c.SSE, KMSKeyID: c.KMSKeyID,
		PartSize:       int64(c.PartSize),
		Concurrency:    c.UploadConcurrency,
		MaxAttempts:    c.MaxAttempts,
		RequestTimeout: c.RequestTimeout.Duration,
	}, nil
}

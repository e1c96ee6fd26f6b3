package s3

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// putMultipart uploads data in parts of PartSize (more if data would need
// more than 10,000 parts), at most Concurrency at a time, then completes the
// upload; nothing is visible until CompleteMultipartUpload succeeds, so the
// object still appears whole or not at all. With ifAbsent, the completion
// carries If-None-Match: *. On failure the upload is aborted (best effort;
// a bucket lifecycle rule AbortIncompleteMultipartUpload cleans up what an
// abort could not).
func (s *Store) putMultipart(ctx context.Context, op, key, k string, data []byte, ifAbsent bool) (err error) {
	partSize := s.opts.PartSize
	if n := (int64(len(data)) + partSize - 1) / partSize; n > maxParts {
		partSize = (int64(len(data)) + maxParts - 1) / maxParts
	}
	sse, kms := s.sse()
	var uploadID string
	res, err := s.do(ctx, op, key, func(ctx context.Context) error {
		out, err := s.client.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{
			Bucket: &s.bucket, Key: &k, ServerSideEncryption: sse, SSEKMSKeyId: kms,
		})
		if err != nil {
			return err
		}
		uploadID = aws.ToString(out.UploadId)
		return nil
	})
	if err != nil {
		return s.wrap(op, key, res.attempts, fmt.Errorf("create multipart upload: %w", err))
	}
	completed := false
	defer func() {
		if !completed {
			s.abort(key, k, uploadID)
		}
	}()

	nparts := int((int64(len(data)) + partSize - 1) / partSize)
	parts := make([]types.CompletedPart, nparts)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, s.opts.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	var firstAttempts int
	for i := range nparts {
		start := int64(i) * partSize
		end := min(start+partSize, int64(len(data)))
		select {
		case sem <- struct{}{}:
		case <-pctx.Done():
		}
		if pctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			num := int32(i + 1)
			body := data[start:end]
			res, err := s.do(pctx, op, key, func(ctx context.Context) error {
				out, err := s.client.UploadPart(ctx, &awss3.UploadPartInput{
					Bucket: &s.bucket, Key: &k, UploadId: &uploadID, PartNumber: &num,
					Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
				})
				if err != nil {
					return err
				}
				parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)}
				return nil
			})
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr, firstAttempts = fmt.Errorf("upload part %d of %d: %w", num, nparts, err), res.attempts
				}
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return s.wrap(op, key, firstAttempts, firstErr)
	}

	res, err = s.do(ctx, op, key, func(ctx context.Context) error {
		in := &awss3.CompleteMultipartUploadInput{
			Bucket: &s.bucket, Key: &k, UploadId: &uploadID,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		}
		if ifAbsent {
			in.IfNoneMatch = aws.String("*")
		}
		_, err := s.client.CompleteMultipartUpload(ctx, in)
		return err
	})
	if err == nil {
		completed = true
		return nil
	}
	if res.unknown && ((ifAbsent && isPrecondition(err)) || errorCode(err) == "NoSuchUpload") {
		// An earlier completion may have succeeded with its reply lost: a
		// retry then finds the upload gone (NoSuchUpload) or, for
		// put-if-absent, the key taken by our own object.
		rerr := s.resolveAmbiguous(ctx, op, key, data, res, err)
		completed = rerr == nil
		return rerr
	}
	return s.wrap(op, key, res.attempts, fmt.Errorf("complete multipart upload: %w", err))
}

// abort cancels an unfinished upload with its own short context, since the
// caller's may be the reason the upload failed.
func (s *Store) abort(key, k, uploadID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.do(ctx, "abort", key, func(ctx context.Context) error {
		_, err := s.client.AbortMultipartUpload(ctx, &awss3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &k, UploadId: &uploadID})
		return err
	})
	// An abort that fails leaves parts that a lifecycle rule removes; the
	// caller already has the error that matters.
	_ = err
}
